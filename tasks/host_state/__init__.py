"""One read per host: everything a run decides on, in a single round trip.

A rerun on a host already deployed must find that nothing needs to change, and each
pyinfra fact is one SSH round trip (and each operation pyinfra plans costs it more than
the deploy's own work). So the install record (with the host's lock), RAPL, the
modules-load file, the Docker engine, the exporter's container, and on a Prometheus
server the server, the files the deploy writes there and prometheus.yml's record, are
read by one fact (facts.py) and parsed into plain data (parse.py). Each step then judges
from that data whether its part is already as wanted; only when something must change (or
the read did not report it) does it plan pyinfra's operations, which read their own facts
as they always do. A host whose every part is as wanted gets no operation at all, only
"noop" messages saying why.
"""

from __future__ import annotations

from pyinfra import host

from tasks import groups
from tasks.energy_sync.plan import energy_sync_paths
from tasks.host_state.facts import HostState, HypervisorQuery, PrometheusQuery
from tasks.host_state.parse import HostFound, HypervisorFound, PrometheusFound
from tasks.install_record import lock_request
from tasks.scaphandre.registry import login_marker_path
from tasks.scaphandre.spec import image_registry, scaphandre_spec
from tasks.settings import Settings

__all__ = ["HostFound", "HypervisorFound", "PrometheusFound", "read_host_state"]


def hypervisor_query(settings: Settings) -> HypervisorQuery:
    spec = scaphandre_spec(settings)
    registry = image_registry(spec.image) if settings.scaphandre_registry_username else None
    return HypervisorQuery(
        container=spec.name,
        image=spec.image,
        image_always=bool(settings.scaphandre_image_archive),
        registry=registry,
        registry_marker=login_marker_path(registry) if registry else None,
    )


def prometheus_query(settings: Settings) -> PrometheusQuery:
    return PrometheusQuery(
        candidates=tuple(settings.prometheus_candidates),
        binaries=tuple(settings.prometheus_binaries),
        promtools=tuple(settings.promtool_binaries),
        config_file=settings.prometheus_config_file,
        service=settings.prometheus_service,
        targets_file=settings.prometheus_targets_file,
        rules=settings.prometheus_rules,
        rules_file=settings.prometheus_rules_file,
        energy_sync_files=tuple(managed.path for managed in energy_sync_paths(settings)),
        energy_sync_credentials=(
            settings.energy_sync_one_auth_file if settings.energy_sync else None
        ),
    )


def read_host_state(settings: Settings) -> HostFound:
    """This host's record, read after trying to take its lock (not for --dry), and, under that
    lock, the state of each part of the deploy it takes (hypervisor, Prometheus server)."""
    return host.get_fact(
        HostState,
        lock=lock_request(),
        hypervisor=hypervisor_query(settings) if groups.HYPERVISORS in host.groups else None,
        prometheus=prometheus_query(settings) if groups.PROMETHEUS in host.groups else None,
    )
