"""HostPool's indexes answer every match exactly as a scan of the plain list does."""

import itertools

import pytest

from tasks.opennebula import HostMatchError, HostPool, OneHost, match_host

HOSTS = [
    OneHost(1, "hv1", "hv1", "kvm", 2, "MONITORED"),
    OneHost(2, "HV2.cloud.test", "node2", "kvm", 2, "MONITORED"),
    OneHost(3, "hv3.a.test", "hv3", "kvm", 2, "MONITORED"),
    OneHost(4, "hv3.b.test", "hv3-b", "kvm", 2, "MONITORED"),
    OneHost(5, "192.0.2.5", "kvm5.cloud.test", "kvm", 2, "MONITORED"),
    OneHost(6, "kvm6", None, "lxc", 4, "DISABLED"),
    OneHost(7, "Node7", "node7.cloud.test", "kvm", 2, "MONITORED"),
]
NAMES = ["hv1", "HV1", "hv1.cloud.test", "hv2", "hv2.cloud.test", "hv3", "hv3.a.test", "hv3.c.test",
         "192.0.2.5", "192.0.2", "kvm5", "kvm6", "node7", "node7.other.test", "unknown", "192.0.2.5.x"]
HOSTNAMES = [None, "node2", "NODE2", "kvm5", "kvm5.cloud.test", "hv3", "node7", "192.0.2.5"]


def outcome(pool, name, hostname):
    try:
        return match_host(pool, inventory_name=name, node_hostname=hostname).id
    except HostMatchError as error:
        return str(error)


@pytest.mark.parametrize("name, hostname", list(itertools.product(NAMES, HOSTNAMES)))
def test_indexed_and_scanned_matching_agree(name, hostname):
    assert outcome(HostPool(HOSTS), name, hostname) == outcome(list(HOSTS), name, hostname)


def test_the_index_is_built_once_per_pool():
    pool = HostPool(HOSTS)
    match_host(pool, inventory_name="hv1")
    first = pool.index("NAME", lambda host: host.name)
    match_host(pool, inventory_name="hv3.a.test")
    assert pool.index("NAME", lambda host: host.name) is first
