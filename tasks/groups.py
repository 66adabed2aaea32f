"""The inventory groups the deploy acts on, and their members."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyinfra.api.exceptions import NoGroupError

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.inventory import Inventory

HYPERVISORS = "hypervisors"  # OpenNebula KVM hosts: RAPL, Docker engine, Scaphandre
PROMETHEUS = "prometheus"  # servers that scrape them
GRAFANA = "grafana"  # optional: the dashboard


def members(inventory: Inventory, group: str) -> list[Host]:
    """Every host of `group` in the inventory, also those outside this run's --limit."""
    try:
        return list(inventory.get_group(group))
    except NoGroupError:
        return []


def hypervisors(inventory: Inventory) -> list[Host]:
    return members(inventory, HYPERVISORS)


def prometheus_servers(inventory: Inventory) -> list[Host]:
    return members(inventory, PROMETHEUS)


def keeps_a_record(host: Host) -> bool:
    """Whether the deploy keeps its install record (and takes its lock) on this host: on
    hypervisors and Prometheus servers."""
    return HYPERVISORS in host.groups or PROMETHEUS in host.groups
