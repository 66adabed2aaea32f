"""The run's view of the cloud (tasks/cloud.py): which hypervisor is which OpenNebula host,
scraped where, with what the nodes would report supplied by the test."""

from __future__ import annotations

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state

from tasks import opennebula
from tasks.cloud import build_view
from tasks.opennebula import OpenNebulaLookupError, host_pool
from tasks.opennebula.client import OneUnreachableError
from tasks.opennebula.pool import OneHost
from tasks.prometheus.targets import ScrapeTarget
from tasks.settings import Settings, SettingsError
from tests.unit.pyinfra_harness import default_data

POOL = [
    OneHost(
        id=7, name="hv1.cloud.test", hostname="hv1", im_mad="kvm", state=2, state_name="MONITORED"
    ),
    OneHost(
        id=12,
        name="kvm-node-c",
        hostname="node-c.cloud.test",
        im_mad="kvm",
        state=2,
        state_name="MONITORED",
    ),
]


def settings(**overrides) -> Settings:
    return Settings.from_data(default_data() | overrides)


class Nodes:
    """What each node would answer when asked, and who was asked (None: not in this run)."""

    def __init__(self, hostnames=None, monitor_dbs=None):
        self.hostnames = hostnames or {}
        self.monitor_dbs = monitor_dbs or {}
        self.asked: list[str] = []

    def hostname(self, name):
        self.asked.append(name)
        return self.hostnames.get(name)

    def monitor_db_names(self, name):
        self.asked.append(name)
        return self.monitor_dbs.get(name)


def view(hosts: dict, pool=POOL, nodes=None):
    nodes = nodes or Nodes()
    return build_view(list(hosts), hosts, pool, nodes.hostname, nodes.monitor_db_names), nodes


def test_inventory_name_match_asks_no_node():
    cloud, nodes = view({"hv1": settings()})
    assert cloud.get("hv1").one_host.id == 7 and cloud.get("hv1").problem is None
    assert nodes.asked == []


def test_node_hostname_is_asked_only_when_names_do_not_match():
    cloud, nodes = view(
        {"198.51.100.3": settings()}, nodes=Nodes({"198.51.100.3": "node-c.cloud.test"})
    )
    assert cloud.get("198.51.100.3").one_host.id == 12
    assert nodes.asked == ["198.51.100.3"]


def test_a_host_that_cannot_be_asked_is_reported_not_raised():
    cloud, _ = view({"198.51.100.3": settings()})
    hypervisor = cloud.get("198.51.100.3")
    assert hypervisor.one_host is None and "is not known to OpenNebula" in hypervisor.problem


def test_explicit_id_wins_and_an_unknown_one_is_not_second_guessed():
    cloud, nodes = view(
        {"x": settings(one_host_id=12), "hv1": settings(one_host_id=99)},
        nodes=Nodes({"hv1": "hv1"}),
    )
    assert cloud.get("x").one_host.id == 12
    assert "one_host_id 99 is not an OpenNebula host" in cloud.get("hv1").problem
    assert nodes.asked == []


def test_an_inventory_name_equal_to_template_hostname_matches_without_asking_the_node():
    """hv3 registered as NAME kvm-node-d, TEMPLATE/HOSTNAME hv3: found even outside --limit."""
    pool = [
        *POOL,
        OneHost(
            id=31, name="kvm-node-d", hostname="hv3", im_mad="kvm", state=2, state_name="MONITORED"
        ),
    ]
    cloud, nodes = view({"hv3": settings()}, pool=pool)
    assert cloud.get("hv3").one_host.id == 31 and nodes.asked == []


def test_monitor_database_fallback_when_the_api_is_down():
    nodes = Nodes(monitor_dbs={"hv5": ["status_kvm_31.db", "other"], "hv6": []})
    cloud, _ = view(
        {"hv5": settings(), "hv6": settings(), "hv7": settings(one_host_id=4)},
        pool=None,
        nodes=nodes,
    )
    assert (cloud.get("hv5").one_host.id, cloud.get("hv5").one_host.name) == (31, "hv5")
    assert "one_host_id" in cloud.get("hv6").problem
    assert cloud.get("hv7").one_host.id == 4, "an explicit ID needs neither the API nor the node"


def test_several_monitor_databases_fail_that_host_only():
    nodes = Nodes(
        monitor_dbs={"hv5": ["status_kvm_31.db", "status_kvm_32.db"], "hv6": ["status_kvm_33.db"]}
    )
    cloud, _ = view({"hv5": settings(), "hv6": settings()}, pool=None, nodes=nodes)
    assert "several OpenNebula host IDs (31, 32)" in cloud.get("hv5").problem
    assert cloud.get("hv6").one_host.id == 33


def test_two_hypervisors_on_one_opennebula_host_fail_alone():
    cloud, _ = view(
        {"hv1": settings(), "other": settings(one_host_id=7), "c": settings(one_host_id=12)}
    )
    assert "all match OpenNebula host hv1.cloud.test (ID 7)" in cloud.get("hv1").problem
    assert cloud.get("other").problem == cloud.get("hv1").problem
    targets, warnings = cloud.scrape_targets(previous=list)
    assert [t.one_host_id for t in targets] == [12]
    assert len(warnings) == 2


def test_two_hypervisors_scraped_at_one_address_fail_alone():
    cloud, _ = view(
        {
            "hv1": settings(scaphandre_scrape_host="shared"),
            "x": settings(one_host_id=12, scaphandre_scrape_host="shared"),
        }
    )
    assert "are all scraped at shared:8080" in cloud.get("hv1").problem
    assert cloud.scrape_targets(previous=list)[0] == []


def test_an_opennebula_host_without_a_name_cannot_be_labelled_and_fails_alone():
    pool = [
        *POOL,
        OneHost(id=40, name="", hostname="hv4", im_mad="kvm", state=2, state_name="MONITORED"),
    ]
    cloud, _ = view({"hv1": settings(), "hv4": settings(one_host_id=40)}, pool=pool)
    assert "empty host name" in cloud.get("hv4").problem
    assert [t.one_host_id for t in cloud.scrape_targets(previous=list)[0]] == [7]


def test_unusable_settings_leave_that_hypervisor_out():
    broken = SettingsError(["setting scaphandre_port is 'x', not a TCP port number (1-65535)"])
    cloud, _ = view({"hv1": settings(), "bad": broken})
    assert "settings are unusable" in cloud.get("bad").problem and cloud.get("bad").address is None
    targets, warnings = cloud.scrape_targets(previous=list)
    assert [t.address for t in targets] == ["hv1:8080"]
    assert any("bad left out" in line for line in warnings)


def test_an_unmatched_hypervisor_keeps_its_previous_entry():
    cloud, _ = view({"hv1": settings(), "gone-from-run": settings()})
    kept = ScrapeTarget(address="gone-from-run:8080", one_host_id=12, host_name="kvm-node-c")
    targets, warnings = cloud.scrape_targets(previous=lambda: [kept])
    assert kept in targets and warnings == []


def test_ipv6_scrape_addresses_are_bracketed():
    cloud, _ = view({"hv1": settings(scaphandre_scrape_host="2001:db8::10")})
    assert cloud.get("hv1").address == "[2001:db8::10]:8080"


# --------------------------------------------------------------------------- the pool, once per run


def test_api_failure_is_one_error_for_the_whole_run(monkeypatch):
    calls = []

    def unreachable(endpoint):
        calls.append(endpoint)
        raise OneUnreachableError(
            "OpenNebula API at http://127.0.0.1:9/RPC2 refused the connection"
        )

    monkeypatch.setattr(opennebula, "fetch_host_pool", unreachable)
    monkeypatch.setattr(opennebula, "resolve_endpoint", lambda **kwargs: "endpoint")
    with ctx_state.use(State()):
        for _ in range(3):
            with pytest.raises(OpenNebulaLookupError, match=r"127\.0\.0\.1:9"):
                host_pool(None, None, None)
    assert calls == ["endpoint"], "a failed call is not retried per host"


def test_the_pool_is_fetched_once_per_run(monkeypatch):
    calls = []
    monkeypatch.setattr(
        opennebula, "fetch_host_pool", lambda endpoint: calls.append(endpoint) or POOL
    )
    monkeypatch.setattr(opennebula, "resolve_endpoint", lambda **kwargs: "endpoint")
    for _run in range(2):
        with ctx_state.use(State()):
            for _ in range(5):
                assert host_pool(None, None, None) == POOL
    assert calls == ["endpoint", "endpoint"]


# ---------------------------------------------------- the monitor-database fallback: only when unreachable


def fallback_view(monkeypatch, error: OpenNebulaLookupError, fallback: bool = True):
    """cloud_view over a two-hypervisor inventory whose API call fails with `error`."""
    from pyinfra.api import Config, Inventory

    import tasks.cloud as cloud_module

    def failing(*args):
        raise error

    monkeypatch.setattr(cloud_module, "host_pool", failing)
    data = default_data() | {"one_monitor_db_fallback": fallback}
    inventory = Inventory((["hv5", "hv6"], data), hypervisors=(["hv5", "hv6"], {}))
    state = State(inventory=inventory, config=Config())
    monkeypatch.setattr(
        cloud_module,
        "_asked_on",
        lambda active, name, inventory, fact, **kwargs: (
            ["status_kvm_31.db"] if name == "hv5" else ["status_kvm_31.db", "status_kvm_32.db"]
        ),
    )
    with ctx_state.use(state):
        return cloud_module.cloud_view(inventory)


def test_the_fallback_reads_the_nodes_when_the_api_cannot_be_reached(monkeypatch):
    view = fallback_view(monkeypatch, OpenNebulaLookupError("API down", api_unreachable=True))
    assert view.get("hv5").one_host.id == 31
    assert (
        "several OpenNebula host IDs (31, 32)" in view.get("hv6").problem
        and "one_host_id" in view.get("hv6").problem
    )


@pytest.mark.parametrize(
    "message",
    [
        "OpenNebula API at URL refused the credentials of user 'oneadmin'",
        "OpenNebula API at URL sent a reply that is not OpenNebula XML-RPC",
        "OpenNebula API at URL: TLS verification failed",
    ],
)
def test_the_fallback_never_hides_an_api_that_answered_wrongly(monkeypatch, message):
    with pytest.raises(OpenNebulaLookupError, match=message):
        fallback_view(monkeypatch, OpenNebulaLookupError(message, api_unreachable=False))


def test_without_the_fallback_an_unreachable_api_stops_the_run(monkeypatch):
    with pytest.raises(OpenNebulaLookupError, match="API down"):
        fallback_view(
            monkeypatch, OpenNebulaLookupError("API down", api_unreachable=True), fallback=False
        )


# --------------------------------------------------------------------------- one host's bad data fails that host only


def checked(**overrides) -> Settings | SettingsError:
    try:
        return settings(**overrides)
    except SettingsError as error:
        return error


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"one_host_id": "kvm1"}, "one_host_id"),
        ({"one_host_id": ""}, "one_host_id"),
        ({"scaphandre_scrape_host": "kvm 1"}, "scaphandre_scrape_host"),
        ({"scaphandre_scrape_host": "kvm1/metrics"}, "scaphandre_scrape_host"),
        ({"rapl_modules": "intel_rapl_msr"}, "rapl_modules"),
        ({"rapl_modules": ["intel_rapl_msr\nblacklist x"]}, "rapl_modules"),
        ({"scaphandre_extra_docker_args": "--memory=256m"}, "scaphandre_extra_docker_args"),
    ],
)
def test_one_hypervisors_bad_setting_leaves_the_others_resolved_and_listed(bad, key):
    cloud, _ = view({"hv1": checked(), "bad": checked(**bad), "c": checked(one_host_id=12)})
    assert f"setting {key} " in cloud.get("bad").problem and cloud.get("bad").address is None
    assert cloud.get("hv1").one_host.id == 7 and cloud.get("c").one_host.id == 12
    targets, warnings = cloud.scrape_targets(previous=list)
    assert sorted(t.one_host_id for t in targets) == [7, 12]
    assert any(
        line.startswith("bad left out of the scrape targets") and key in line for line in warnings
    )


# --------------------------------------------------------------------------- carbon intensity


CLUSTERED = [
    OneHost(
        id=7,
        name="hv1",
        hostname="hv1",
        im_mad="kvm",
        state=2,
        state_name="MONITORED",
        cluster_id=100,
        cluster="paris",
    ),
    OneHost(
        id=8,
        name="hv2",
        hostname="hv2",
        im_mad="kvm",
        state=2,
        state_name="MONITORED",
        cluster_id=104,
        cluster="berlin",
    ),
    OneHost(
        id=9,
        name="hv3",
        hostname="hv3",
        im_mad="kvm",
        state=2,
        state_name="MONITORED",
        cluster_id=0,
        cluster="default",
    ),
]


def test_each_hypervisor_gets_its_own_intensity_else_its_clusters_by_name_then_id():
    clusters = {"paris": 56, 104: 'grid_intensity{zone="DE"}', "default": 900}
    cloud, _ = view(
        {
            "hv1": settings(carbon_intensity_clusters=clusters),
            "hv2": settings(carbon_intensity_clusters=clusters),
            "hv3": settings(carbon_intensity=300, carbon_intensity_clusters=clusters),
        },
        pool=CLUSTERED,
    )
    assert cloud.get("hv1").carbon_intensity == 56.0
    assert cloud.get("hv2").carbon_intensity == 'grid_intensity{zone="DE"}'
    assert cloud.get("hv3").carbon_intensity == 300.0, (
        "the host's own setting wins over its cluster's"
    )
    assert cloud.carbon_intensities() == {7: 56.0, 8: 'grid_intensity{zone="DE"}', 9: 300.0}
    partial, _ = view(
        {"hv1": settings(carbon_intensity_clusters={"berlin": 1}), "hv2": settings()},
        pool=CLUSTERED,
    )
    assert partial.carbon_intensities() == {}, "a cluster nobody set: no emissions"


def test_no_intensity_anywhere_gives_none_and_an_unknown_host_none():
    cloud, _ = view({"hv1": settings(), "ghost": settings(carbon_intensity=56)}, pool=CLUSTERED)
    assert cloud.carbon_intensities() == {}
    assert cloud.get("ghost").one_host is None and cloud.get("ghost").carbon_intensity is None


def test_each_hypervisor_is_found_by_its_name_and_an_unknown_name_is_not():
    hosts = {f"hv{n}": settings(one_host_id=n) for n in range(1, 40)}
    pool = [
        OneHost(
            id=n,
            name=f"hv{n}.cloud.test",
            hostname=f"hv{n}",
            im_mad="kvm",
            state=2,
            state_name="MONITORED",
        )
        for n in range(1, 40)
    ]
    cloud, _ = view(hosts, pool)
    assert [cloud.get(name).one_host.id for name in reversed(list(hosts))] == list(range(39, 0, -1))
    with pytest.raises(KeyError):
        cloud.get("not-a-hypervisor")
