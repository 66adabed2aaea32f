"""Takes everything deploy.py set up away again.

    pyinfra inventory.py remove.py

Hypervisors lose the Scaphandre container and the RAPL modules-load file (and the
Docker engine only with `--data remove_docker_engine=true`); Prometheus servers lose
the scaphandre job and rules (checked, backed up, reloaded) and the targets and
rules files; Grafana hosts lose the dashboard and its provider. Needs no
OpenNebula access. Safe to run again: what is already gone is left alone.
"""

from pyinfra import host

from tasks.grafana import remove_dashboard
from tasks.host_ids import GRAFANA_GROUP, HYPERVISORS_GROUP, PROMETHEUS_GROUP
from tasks.prometheus import remove_prometheus_job
from tasks.removal import remove_scaphandre

if HYPERVISORS_GROUP in host.groups:
    remove_scaphandre()

if PROMETHEUS_GROUP in host.groups:
    remove_prometheus_job()

if GRAFANA_GROUP in host.groups:
    remove_dashboard()
