"""Power metrics for every hypervisor of an OpenNebula cloud.

    pyinfra inventory.py deploy.py

Hypervisors (group `hypervisors`) get RAPL, a Docker engine and the Scaphandre
exporter; Prometheus servers (group `prometheus`) get a scrape job listing every
hypervisor with its OpenNebula host ID (and, with `energy_sync` on, a timer that
writes power back into OpenNebula's templates); Grafana hosts (group `grafana`) get
the dashboard. Settings and their defaults: docs/settings.md.
"""

from pyinfra import host, inventory

from tasks import compat, groups
from tasks.cloud import cloud_view
from tasks.docker_engine import ensure_docker_engine
from tasks.energy_sync import install_energy_sync
from tasks.grafana import provision_dashboard
from tasks.host_failure import fail_host
from tasks.host_state import HypervisorFound, read_host_state
from tasks.install_record import install_ledger
from tasks.preflight import check_settings
from tasks.prometheus import configure_prometheus, prometheus_server, write_job_snippet
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre

compat.report_lost_connections_as_host_failures()  # a host lost mid-run fails alone
settings = check_settings(inventory)  # None: this host failed, naming the setting to fix
cloud = cloud_view(inventory)  # one one.hostpool.info call for the whole run, shared by every host

hypervisor = settings and groups.HYPERVISORS in host.groups
problem = hypervisor and cloud.get(host.name).problem
if problem:
    fail_host(name="Find this host in OpenNebula", reason=problem)
# One round trip per host: what earlier runs brought here (the record, read with this host's
# lock taken: one run at a time) and the state of every part the host takes, from which each
# step below plans only what must change. Each step records what it is about to bring before
# it brings it.
found = None
if settings and not problem and groups.keeps_a_record(host):
    found = read_host_state(settings)
ledger = install_ledger(settings.host_lock_timeout_s, found.record) if settings and found else None
# The steps below are @deploy functions, called with keywords: pyinfra's declared signature of
# a deploy puts its own arguments (_sudo, ...) first.

if settings and found and ledger and ledger.readable and hypervisor:
    # Nothing reported (the read cut short): each step reads its own facts.
    on_hypervisor = found.hypervisor or HypervisorFound()
    enable_rapl(settings=settings, found=on_hypervisor)
    ensure_docker_engine(settings=settings, ledger=ledger, found=on_hypervisor)
    run_scaphandre(settings=settings, ledger=ledger, found=on_hypervisor)

if settings and found and ledger and ledger.readable and groups.PROMETHEUS in host.groups:
    # None: failed (no Prometheus, or an operator's file in the way)
    server = prometheus_server(settings, cloud, ledger, found.prometheus)
    if server:
        configure_prometheus(settings=settings, inventory=inventory, server=server, ledger=ledger)
        # Nothing unless energy_sync is on.
        install_energy_sync(
            settings=settings, ledger=ledger, found=server.found, state=server.energy_sync
        )
elif settings and not groups.prometheus_servers(inventory):
    write_job_snippet(settings=settings, cloud=cloud)

if settings and groups.GRAFANA in host.groups:
    provision_dashboard(settings=settings, carbon_shown=bool(cloud.carbon_intensities()))
