"""The Scaphandre exporter container on a hypervisor."""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.operations import docker

from tasks.hypervisor_plan import UnsupportedHostError, image_registry, scaphandre_spec
from tasks.operations import fail_host, image_from_archive, scaphandre_container


@deploy("Scaphandre exporter")
def run_scaphandre() -> None:
    """Guarantees the Scaphandre container runs as the host data specifies and serves /metrics."""
    try:
        spec = scaphandre_spec(host.data.dict())
    except UnsupportedHostError as error:
        fail_host(name="Check Scaphandre settings", reason=str(error))
        return
    username = host.data.get("scaphandre_registry_username")
    if username:
        password_file = Path(host.data.get("scaphandre_registry_password_file") or "")
        if not password_file.is_file():
            fail_host(
                name="Check the registry credentials",
                reason="scaphandre_registry_username is set but scaphandre_registry_password_file "
                f"{str(password_file)!r} is not a readable file on the machine running pyinfra",
            )
            return
        registry = image_registry(spec.image)
        if registry is None:
            fail_host(
                name="Check the registry credentials",
                reason=f"scaphandre_image {spec.image!r} names no registry host for the credentials to log in to",
            )
            return
        # pyinfra pipes the password to `docker login --password-stdin` and masks it in its output.
        docker.login(
            name=f"Log in to {registry}",
            server=registry,
            username=username,
            password=password_file.read_text().strip(),
        )
    archive = host.data.get("scaphandre_image_archive")
    if archive:
        if not Path(archive).is_file():
            fail_host(
                name="Check the image archive",
                reason=f"scaphandre_image_archive {archive!r} is not a file on the machine running pyinfra "
                "(make it with `docker save -o FILE IMAGE`)",
            )
            return
        image_from_archive(name=f"Load {spec.image} from {Path(archive).name}", image=spec.image, archive=archive)
    scaphandre_container(
        name=f"Run Scaphandre container {spec.name} ({spec.image})",
        spec=spec,
        metrics_timeout_s=int(host.data.get("scaphandre_metrics_timeout_s") or 60),
    )
