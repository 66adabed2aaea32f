"""How deploy.py finds a hypervisor's OpenNebula host, with facts supplied by the test."""

from __future__ import annotations

import pytest

from tasks import host_ids
from tasks.facts import OpenNebulaMonitorIds
from tasks.opennebula import HostMatchError, OneHost
from pyinfra.facts.server import Hostname

POOL = [
    OneHost(id=7, name="hv1.cloud.test", hostname="hv1", im_mad="kvm", state=2, state_name="MONITORED"),
    OneHost(id=12, name="kvm-node-c", hostname="node-c.cloud.test", im_mad="kvm", state=2, state_name="MONITORED"),
]


class FakeHost:
    """Stands in for a pyinfra Host: a name, its data, and the facts it would report."""

    def __init__(self, name, data=None, facts=None):
        self.name = name
        self.data = data or {}
        self.facts = facts or {}
        self.asked = []

    def get_fact(self, cls, *args, **kwargs):
        self.asked.append(cls)
        return self.facts[cls]


def test_inventory_name_match_reads_no_fact():
    hypervisor = FakeHost("hv1")
    assert host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=True).id == 7
    assert hypervisor.asked == []


def test_node_hostname_is_read_only_when_names_do_not_match():
    hypervisor = FakeHost("198.51.100.3", facts={Hostname: "node-c.cloud.test"})
    assert host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=True).id == 12
    assert hypervisor.asked == [Hostname]


def test_a_host_outside_the_run_is_not_asked_for_facts():
    hypervisor = FakeHost("198.51.100.3", facts={Hostname: "node-c.cloud.test"})
    with pytest.raises(HostMatchError):
        host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=False)
    assert hypervisor.asked == []


def test_explicit_id_wins_and_an_unknown_one_is_not_second_guessed():
    assert host_ids.resolve_one_host(FakeHost("x", {"one_host_id": 12}), POOL, may_read_facts=True).id == 12
    hypervisor = FakeHost("hv1", {"one_host_id": 99}, facts={Hostname: "hv1"})
    with pytest.raises(HostMatchError):
        host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=True)
    assert hypervisor.asked == []


def test_monitor_database_fallback_when_the_api_is_down():
    hypervisor = FakeHost("hv5", facts={OpenNebulaMonitorIds: ["status_kvm_31.db", "other"]})
    found = host_ids.resolve_one_host(hypervisor, None, may_read_facts=True)
    assert (found.id, found.name) == (31, "hv5")


def test_monitor_database_fallback_without_a_database_names_the_fix():
    hypervisor = FakeHost("hv5", facts={OpenNebulaMonitorIds: []})
    with pytest.raises(HostMatchError, match="one_host_id"):
        host_ids.resolve_one_host(hypervisor, None, may_read_facts=True)


def test_api_failure_stops_the_run_unless_the_fallback_is_allowed(monkeypatch):
    from tasks.opennebula import OneUnreachableError

    def unreachable(endpoint):
        raise OneUnreachableError("OpenNebula API at http://127.0.0.1:9/RPC2 refused the connection")

    monkeypatch.setattr(host_ids, "_cache", host_ids._PoolCache())
    monkeypatch.setattr(host_ids, "fetch_host_pool", unreachable)
    monkeypatch.setattr(host_ids, "resolve_endpoint", lambda **kwargs: object())
    with pytest.raises(host_ids.OpenNebulaLookupError, match="127.0.0.1:9"):
        host_ids.host_pool({})
    assert host_ids.host_pool({"one_monitor_db_fallback": True}) is None


def test_the_pool_is_fetched_once_for_every_host(monkeypatch):
    calls = []
    monkeypatch.setattr(host_ids, "_cache", host_ids._PoolCache())
    monkeypatch.setattr(host_ids, "fetch_host_pool", lambda endpoint: calls.append(endpoint) or POOL)
    monkeypatch.setattr(host_ids, "resolve_endpoint", lambda **kwargs: "endpoint")
    for _ in range(5):
        assert host_ids.host_pool({}) == POOL
    assert calls == ["endpoint"]


def test_an_inventory_name_equal_to_template_hostname_matches_without_asking_the_node():
    """hv3 registered as NAME kvm-node-c, TEMPLATE/HOSTNAME hv3: found even outside --limit."""
    pool = POOL + [OneHost(id=31, name="kvm-node-d", hostname="hv3", im_mad="kvm", state=2, state_name="MONITORED")]
    hypervisor = FakeHost("hv3")
    assert host_ids.resolve_one_host(hypervisor, pool, may_read_facts=False).id == 31
    assert hypervisor.asked == []


def test_a_host_is_resolved_once_per_run_even_when_asked_twice():
    """Its own deploy and the Prometheus targets both ask; the node is read once."""
    hypervisor = FakeHost("198.51.100.3", facts={Hostname: "node-c.cloud.test"})
    first = host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=True)
    second = host_ids.resolve_one_host(hypervisor, POOL, may_read_facts=False)
    assert first.id == second.id == 12
    assert hypervisor.asked == [Hostname]
