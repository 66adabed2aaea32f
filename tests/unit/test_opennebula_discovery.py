"""The hypervisors group built from OpenNebula's host pool."""

import pytest

from tasks.opennebula.discovery import DiscoveryError, discovered_hypervisors
from tasks.opennebula.pool import OneHost


def one_host(host_id, name, im_mad="kvm", state_name="MONITORED", hostname=None, **template):
    return OneHost(
        id=host_id,
        name=name,
        hostname=hostname,
        im_mad=im_mad,
        state=2,
        state_name=state_name,
        template=tuple(sorted((k, str(v)) for k, v in template.items())),
    )


POOL = [
    one_host(12, "kvm-c", hostname="node-c", SSH_PORT=2203),
    one_host(3, "kvm-a", hostname="node-a", SSH_PORT=2201),
    one_host(5, "kvm-off", state_name="OFFLINE"),
    one_host(6, "kvm-err", state_name="ERROR"),
    one_host(7, "kvm-dis", state_name="DISABLED"),
    one_host(9, "lxc-1", im_mad="lxc"),
]


def test_usable_kvm_hosts_become_inventory_hosts_with_their_ids():
    entries, _ = discovered_hypervisors(POOL, {})
    assert [(name, data["one_host_id"], data["ssh_hostname"]) for name, data in entries] == [
        ("kvm-a", 3, "kvm-a"),
        ("kvm-c", 12, "kvm-c"),
    ]


def test_each_skipped_host_gets_a_line_saying_why():
    _, skipped = discovered_hypervisors(POOL, {})
    assert len(skipped) == 4
    assert any("kvm-off" in line and "offline" in line for line in skipped)
    assert any("kvm-err" in line and "error" in line for line in skipped)
    assert any("kvm-dis" in line and "disabled" in line for line in skipped)
    assert any("lxc-1" in line and "not KVM" in line for line in skipped)


def test_connection_data_comes_from_patterns_and_template_attributes():
    settings = {
        "discovery_ssh_address": "{hostname}.mgmt.example",
        "discovery_ssh_port": "{template[SSH_PORT]}",
        "discovery_ssh_user": "oneadmin",
        "discovery_scrape_host": "{hostname}",
        "discovery_host_data": {"ssh_key": "/keys/id"},
    }
    entries, _ = discovered_hypervisors(POOL, settings)
    name, data = entries[0]
    assert name == "kvm-a"
    assert data == {
        "ssh_key": "/keys/id",
        "one_host_id": 3,
        "ssh_hostname": "node-a.mgmt.example",
        "scaphandre_scrape_host": "node-a",
        "ssh_port": 2201,
        "ssh_user": "oneadmin",
    }


def test_a_pattern_naming_a_missing_attribute_is_refused_naming_host_and_attribute():
    with pytest.raises(DiscoveryError, match=r"kvm-a.*SSH_ADDR"):
        discovered_hypervisors(POOL, {"discovery_ssh_address": "{template[SSH_ADDR]}"})


def test_a_port_pattern_that_is_not_a_number_is_refused():
    with pytest.raises(DiscoveryError, match="not a port"):
        discovered_hypervisors(POOL, {"discovery_ssh_port": "{name}"})


@pytest.mark.parametrize("template_value", ["2001:db8::10", "[2001:db8::10]"])
def test_an_ipv6_address_from_the_template_is_scraped_in_brackets(template_value):
    from tasks.scaphandre.spec import exporter_address
    from tasks.settings import Settings
    from tests.unit.pyinfra_harness import default_data

    pool = [one_host(4, "kvm-v6", IP6=template_value)]
    entries, _ = discovered_hypervisors(
        pool,
        {"discovery_ssh_address": "{template[IP6]}", "discovery_scrape_host": "{template[IP6]}"},
    )
    name, data = entries[0]
    assert (
        data["ssh_hostname"] == "2001:db8::10" and data["scaphandre_scrape_host"] == "2001:db8::10"
    )
    settings = Settings.from_data({**default_data(), **data})
    assert exporter_address(settings, name) == "[2001:db8::10]:8080"


def test_a_host_without_a_name_or_with_a_taken_name_is_skipped_and_the_others_discovered():
    pool = [*POOL, one_host(20, ""), one_host(21, "kvm-a")]
    entries, skipped = discovered_hypervisors(pool, {})
    assert [name for name, _ in entries] == ["kvm-a", "kvm-c"]
    assert any("host ID 20 skipped: it has no NAME" in line for line in skipped)
    assert any("kvm-a (ID 21) skipped: host ID 3 has the same NAME" in line for line in skipped)


def test_a_pattern_one_host_cannot_fill_skips_that_host_only():
    entries, skipped = discovered_hypervisors(
        [*POOL, one_host(14, "kvm-d")], {"discovery_ssh_port": "{template[SSH_PORT]}"}
    )
    assert [name for name, _ in entries] == ["kvm-a", "kvm-c"]
    assert any(
        line.startswith("kvm-d (ID 14) skipped: discovery_ssh_port") and "SSH_PORT" in line
        for line in skipped
    )


def test_inventory_time_discovery_reads_the_models_defaults_and_the_groups_overrides(
    tmp_path, monkeypatch
):
    """At inventory time pyinfra has not merged group data yet: discovery runs group_data/all.py
    (which takes every default from the settings model) and hypervisors.py itself."""
    from pathlib import Path

    from tasks.opennebula.discovery import _group_data_settings
    from tasks.settings import defaults

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.chdir(repo)
    assert _group_data_settings() == defaults()
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text((repo / "group_data" / "all.py").read_text())
    (tmp_path / "group_data" / "hypervisors.py").write_text('discovery_ssh_user = "oneadmin"\n')
    monkeypatch.chdir(tmp_path)
    settings = _group_data_settings()
    assert settings == defaults() | {"discovery_ssh_user": "oneadmin"}
    entries, _ = discovered_hypervisors(POOL, settings)
    assert {data["ssh_user"] for _, data in entries} == {"oneadmin"}
