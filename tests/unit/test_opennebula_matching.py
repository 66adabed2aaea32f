"""Matching inventory hosts to OpenNebula hosts (tasks/opennebula/matching.py): by ID, by
name, by TEMPLATE/HOSTNAME, the pool's indexes, and the monitor-database fallback."""

import itertools

import pytest

from tasks.opennebula.matching import (
    HostMatchError,
    HostQuery,
    match_host,
    monitor_db_host_id,
    resolve_hypervisors,
)
from tasks.opennebula.pool import HostPool, OneHost, OpenNebulaError


def one_host(host_id, name, hostname=None, im_mad="kvm", state=2, state_name="MONITORED"):
    return OneHost(
        id=host_id, name=name, hostname=hostname, im_mad=im_mad, state=state, state_name=state_name
    )


POOL = [
    one_host(0, "hv1", hostname="hv1"),
    one_host(1, "hv2.example.org", hostname="hv2.example.org"),
    one_host(2, "kvm-node-17", hostname="rack3-n17.dc.example.org"),
    one_host(3, "Hv4", hostname="hv4"),
    one_host(4, "192.0.2.5", hostname="node5"),
    one_host(5, "lxc1", im_mad="lxc", hostname="lxc1"),
]


def test_exact_name_match():
    assert match_host(POOL, inventory_name="hv1").id == 0


def test_inventory_short_name_matches_fqdn_name():
    assert match_host(POOL, inventory_name="hv2").id == 1


def test_inventory_fqdn_matches_short_name():
    assert match_host(POOL, inventory_name="hv1.example.org").id == 0


def test_name_match_is_case_insensitive():
    assert match_host(POOL, inventory_name="hv4").id == 3
    assert match_host(POOL, inventory_name="HV2.EXAMPLE.ORG").id == 1
    assert match_host(POOL, inventory_name="HV4.example.org").id == 3


def test_exact_case_wins_over_case_insensitive():
    pool = [one_host(1, "HV1"), one_host(2, "hv1")]
    assert match_host(pool, inventory_name="hv1").id == 2
    assert match_host(pool, inventory_name="HV1").id == 1


def test_different_domains_are_not_the_same_host():
    pool = [one_host(1, "hv1.site-a.org")]
    with pytest.raises(HostMatchError):
        match_host(pool, inventory_name="hv1.site-b.org")


def test_ip_addresses_have_no_short_form():
    with pytest.raises(HostMatchError):
        match_host(POOL, inventory_name="192.0.2.6")
    assert match_host(POOL, inventory_name="192.0.2.5").id == 4


def test_node_hostname_matches_template_hostname_when_name_does_not():
    # NAME is what the admin registered; the node's `uname -n` is TEMPLATE/HOSTNAME.
    found = match_host(POOL, inventory_name="n17", node_hostname="rack3-n17.dc.example.org")
    assert found.id == 2


def test_node_hostname_short_vs_fqdn_and_case():
    assert match_host(POOL, inventory_name="n17", node_hostname="RACK3-N17").id == 2
    assert match_host(POOL, inventory_name="x", node_hostname="node5.example.org").id == 4


def test_name_match_wins_over_hostname_match():
    pool = [one_host(1, "hv1", hostname="other"), one_host(2, "other", hostname="hv1")]
    assert match_host(pool, inventory_name="hv1", node_hostname="hv1").id == 1


def test_one_host_id_overrides_names():
    assert match_host(POOL, inventory_name="hv1", one_host_id=2).id == 2


def test_one_host_id_accepts_numeric_string_from_host_data():
    assert match_host(POOL, inventory_name="hv1", one_host_id="3").id == 3


def test_unknown_one_host_id_is_an_error_naming_it():
    with pytest.raises(HostMatchError) as caught:
        match_host(POOL, inventory_name="hv1", one_host_id=99)
    message = str(caught.value)
    assert "99" in message and "'hv1'" in message and "one_host_id" in message
    assert "hv1 (ID 0)" in message  # shows what exists


def test_non_numeric_one_host_id_is_an_error():
    with pytest.raises(HostMatchError, match="not a number"):
        match_host(POOL, inventory_name="hv1", one_host_id="hv1")


def test_one_host_name_overrides_inventory_name():
    assert match_host(POOL, inventory_name="hv1", one_host_name="kvm-node-17").id == 2


def test_one_host_name_must_match_exactly():
    with pytest.raises(HostMatchError) as caught:
        match_host(POOL, inventory_name="hv1", one_host_name="kvm-node-71")
    message = str(caught.value)
    assert "one_host_name" in message and "kvm-node-17" in message


def test_unknown_host_names_closest_opennebula_names_and_the_keys_to_set():
    pool = [one_host(i, f"hypervisor-{i:02d}") for i in range(1, 9)] + [one_host(50, "storage")]
    with pytest.raises(HostMatchError) as caught:
        match_host(pool, inventory_name="hypervisor-9")
    error = caught.value
    message = str(error)
    assert "'hypervisor-9'" in message
    assert "one_host_id" in message and "one_host_name" in message
    assert 1 <= len(error.closest_names) <= 3
    assert all(name.startswith("hypervisor-") for name in error.closest_names)
    for name in error.closest_names:
        assert name in message
    assert "storage" not in message
    assert "\n" not in message


def test_unknown_host_mentions_tried_hostname():
    with pytest.raises(HostMatchError) as caught:
        match_host(POOL, inventory_name="new1", node_hostname="new1.example.org")
    assert "new1.example.org" in str(caught.value)


def test_unknown_host_with_no_similar_names():
    with pytest.raises(HostMatchError, match="no similar name"):
        match_host(POOL, inventory_name="zzzzzzzz")


def test_empty_pool_says_so():
    with pytest.raises(HostMatchError, match="no hosts at all"):
        match_host([], inventory_name="hv1")


def test_short_name_ambiguous_between_two_fqdns_names_both():
    pool = [one_host(3, "hv1.a"), one_host(7, "hv1.b"), one_host(9, "hv2")]
    with pytest.raises(HostMatchError) as caught:
        match_host(pool, inventory_name="hv1")
    error = caught.value
    message = str(error)
    assert "hv1.a (ID 3), hv1.b (ID 7)" in message
    assert "one_host_id" in message
    assert {host.id for host in error.candidates} == {3, 7}


def test_ambiguity_is_resolved_by_one_host_id():
    pool = [one_host(3, "hv1.a"), one_host(7, "hv1.b")]
    assert match_host(pool, inventory_name="hv1", one_host_id=7).id == 7


def test_exact_match_beats_a_would_be_ambiguity():
    pool = [one_host(1, "hv1"), one_host(3, "hv1.a"), one_host(7, "hv1.b")]
    assert match_host(pool, inventory_name="hv1").id == 1


def test_ambiguous_template_hostname():
    pool = [one_host(1, "a", hostname="node"), one_host(2, "b", hostname="NODE")]
    with pytest.raises(HostMatchError, match=r"a \(ID 1\), b \(ID 2\)"):
        match_host(pool, inventory_name="x", node_hostname="Node")


def test_pool_of_one_host_still_requires_a_match():
    pool = [one_host(0, "hv1")]
    assert match_host(pool, inventory_name="HV1.example.org").id == 0
    with pytest.raises(HostMatchError, match="closest OpenNebula names: hv1"):
        match_host(pool, inventory_name="hv2")


def test_resolve_hypervisors_collects_matches_and_errors_without_stopping():
    queries = [
        HostQuery("hv1"),
        HostQuery("ghost"),
        HostQuery("n17"),
        HostQuery("whatever", one_host_id=5),
    ]
    asked = []
    hostnames = {"n17": "rack3-n17"}
    matches, errors = resolve_hypervisors(
        POOL, queries, lambda name: asked.append(name) or hostnames.get(name)
    )
    assert {name: host.id for name, host in matches.items()} == {"hv1": 0, "n17": 2, "whatever": 5}
    assert set(errors) == {"ghost"}
    assert errors["ghost"].inventory_name == "ghost"
    assert asked == ["ghost", "n17"], "only hosts no name matched are asked for their hostname"


def test_resolve_hypervisors_rejects_two_inventory_hosts_on_one_opennebula_host():
    matches, errors = resolve_hypervisors(
        POOL, [HostQuery("hv1"), HostQuery("hv1.example.org"), HostQuery("hv2")]
    )
    assert set(matches) == {"hv2"}
    assert set(errors) == {"hv1", "hv1.example.org"}
    assert "hv1 (ID 0)" in str(errors["hv1"])


@pytest.mark.parametrize(
    "names, expected",
    [
        (["status_kvm_12.db"], 12),
        (["/var/tmp/one/im/status_kvm_7.db", "status_kvm_7.db-journal", "README"], 7),
        (["status_kvm_3.db", "status_kvm_3.db"], 3),
        (["status_lxc_4.db"], 4),
        ([], None),
        (["status_kvm_x.db", "status_kvm_12.dbx", "monitor.log"], None),
    ],
)
def test_monitor_db_host_id(names, expected):
    assert monitor_db_host_id(names) == expected


def test_monitor_db_with_several_ids_names_them():
    with pytest.raises(OpenNebulaError) as caught:
        monitor_db_host_id(["status_kvm_3.db", "status_kvm_11.db"])
    assert "3, 11" in str(caught.value) and "one_host_id" in str(caught.value)


# --------------------------------------------------------------------------- the pool's indexes

HOSTS = [
    OneHost(1, "hv1", "hv1", "kvm", 2, "MONITORED"),
    OneHost(2, "HV2.cloud.test", "node2", "kvm", 2, "MONITORED"),
    OneHost(3, "hv3.a.test", "hv3", "kvm", 2, "MONITORED"),
    OneHost(4, "hv3.b.test", "hv3-b", "kvm", 2, "MONITORED"),
    OneHost(5, "192.0.2.5", "kvm5.cloud.test", "kvm", 2, "MONITORED"),
    OneHost(6, "kvm6", None, "lxc", 4, "DISABLED"),
    OneHost(7, "Node7", "node7.cloud.test", "kvm", 2, "MONITORED"),
]
NAMES = [
    "hv1",
    "HV1",
    "hv1.cloud.test",
    "hv2",
    "hv2.cloud.test",
    "hv3",
    "hv3.a.test",
    "hv3.c.test",
    "192.0.2.5",
    "192.0.2",
    "kvm5",
    "kvm6",
    "node7",
    "node7.other.test",
    "unknown",
    "192.0.2.5.x",
]
HOSTNAMES = [None, "node2", "NODE2", "kvm5", "kvm5.cloud.test", "hv3", "node7", "192.0.2.5"]


def indexed_outcome(pool, name, hostname):
    try:
        return match_host(pool, inventory_name=name, node_hostname=hostname).id
    except HostMatchError as error:
        return str(error)


@pytest.mark.parametrize("name, hostname", list(itertools.product(NAMES, HOSTNAMES)))
def test_indexed_and_scanned_matching_agree(name, hostname):
    assert indexed_outcome(HostPool(HOSTS), name, hostname) == indexed_outcome(
        list(HOSTS), name, hostname
    )


def test_the_index_is_built_once_per_pool():
    pool = HostPool(HOSTS)
    match_host(pool, inventory_name="hv1")
    first = pool.name_index("NAME", lambda host: host.name)
    match_host(pool, inventory_name="hv3.a.test")
    assert pool.name_index("NAME", lambda host: host.name) is first
