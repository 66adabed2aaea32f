"""Takes everything deploy.py set up away again.

    pyinfra inventory.py remove.py

Hypervisors lose the Scaphandre container, the exporter image when the deploy brought
it, and the RAPL modules-load file; with `--data remove_docker_engine=true` also the
Docker engine the deploy installed and its daemon.json settings (an engine that was
there before stays). What the deploy brought is read from its record on each host
(/var/lib/scaphandre-opennebula/installed.json). Prometheus servers lose the energy
sync (first its SCAPHANDRE_* attributes in OpenNebula, deleted by the sync itself from
that server), the scaphandre job and rules (checked, backed up, reloaded) and the
targets and rules files; Grafana hosts lose the dashboard and its provider. The machine
running pyinfra needs no OpenNebula access. Safe to run again: what is already gone is
left alone.
"""

from pyinfra import host, inventory

from tasks import compat, groups
from tasks.docker_engine import remove_docker_engine
from tasks.energy_sync import remove_energy_sync
from tasks.grafana import remove_dashboard
from tasks.install_record import install_ledger
from tasks.preflight import check_settings
from tasks.prometheus import remove_prometheus_job
from tasks.rapl import forget_rapl_modules
from tasks.scaphandre import remove_scaphandre

compat.report_lost_connections_as_host_failures()  # a host lost mid-run fails alone
settings = check_settings(inventory)  # None: this host failed, naming the setting to fix
# What the deploy brought here (only that is taken away), read with this host's lock taken.
ledger = (
    install_ledger(settings.host_lock_timeout_s)
    if settings and groups.keeps_a_record(host)
    else None
)
# The steps below are @deploy functions, called with keywords: pyinfra's declared signature of
# a deploy puts its own arguments (_sudo, ...) first.

if settings and ledger and ledger.readable and groups.HYPERVISORS in host.groups:
    remove_scaphandre(settings=settings, ledger=ledger)
    forget_rapl_modules()
    if settings.remove_docker_engine:
        remove_docker_engine(ledger=ledger)

if settings and ledger and ledger.readable and groups.PROMETHEUS in host.groups:
    # Whether or not energy_sync is on now: an earlier deploy may have installed it.
    remove_energy_sync(settings=settings, ledger=ledger)
    remove_prometheus_job(settings=settings, ledger=ledger)

if settings and groups.GRAFANA in host.groups:
    remove_dashboard(settings=settings)
