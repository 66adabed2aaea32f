"""The Scaphandre exporter container on a hypervisor."""

from __future__ import annotations

from pyinfra import host
from pyinfra.api import deploy

from tasks.hypervisor_plan import UnsupportedHostError, scaphandre_spec
from tasks.operations import fail_host, scaphandre_container


@deploy("Scaphandre exporter")
def run_scaphandre() -> None:
    """Guarantees the Scaphandre container runs as the host data specifies and serves /metrics."""
    try:
        spec = scaphandre_spec(host.data.dict())
    except UnsupportedHostError as error:
        fail_host(name="Check Scaphandre settings", reason=str(error))
        return
    scaphandre_container(
        name=f"Run Scaphandre container {spec.name} ({spec.image})",
        spec=spec,
        metrics_timeout_s=int(host.data.get("scaphandre_metrics_timeout_s") or 60),
    )
