"""Power metrics for every hypervisor of an OpenNebula cloud.

    pyinfra inventory.py deploy.py

Hypervisors (group `hypervisors`) get RAPL, a Docker engine and the Scaphandre
exporter; Prometheus servers (group `prometheus`) get a scrape job listing every
hypervisor with its OpenNebula host ID. Settings: group_data/all.py.
"""

from pyinfra import host, inventory
from pyinfra.api.exceptions import PyinfraError

from tasks import host_ids
from tasks.docker_engine import ensure_docker_engine
from tasks.grafana import provision_dashboard
from tasks.opennebula import HostMatchError
from tasks.operations import fail_host
from tasks.prometheus import configure_prometheus, write_job_snippet
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre

if host.data.get("scaphandre_image") is None:
    raise PyinfraError("settings not found: run pyinfra from the repository directory so group_data/all.py is read")

# One one.hostpool.info call for the whole run, shared by every host.
one_pool = host_ids.host_pool(host.data)

if host_ids.HYPERVISORS_GROUP in host.groups:
    try:
        host_ids.resolve_one_host(host, one_pool, may_read_facts=True)
    except HostMatchError as unknown_host:
        fail_host(name="Find this host in OpenNebula", reason=str(unknown_host))
    else:
        enable_rapl()
        ensure_docker_engine()
        run_scaphandre()

if host_ids.PROMETHEUS_GROUP in host.groups:
    configure_prometheus(inventory, one_pool)
elif not host_ids.prometheus_hosts(inventory):
    write_job_snippet(inventory, one_pool)

if host_ids.GRAFANA_GROUP in host.groups:
    provision_dashboard()
