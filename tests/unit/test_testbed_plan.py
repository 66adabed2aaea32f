"""The test bed's plan of hosts and images, before anything runs (no Docker needed)."""

from __future__ import annotations

import pytest

from tests.testbed import bed as testbed
from tests.testbed.bed import PROMETHEUS_KINDS, TestBed, bed_settings_from_env


def plan(**options) -> TestBed:
    return TestBed(
        "sotb-plan", state_dir=None, ssh_port_base=3000, prometheus_api_port=9300, **options
    )


def test_default_bed_is_plain_hypervisors_and_debians_prometheus():
    bed = plan()
    assert [bed.hosts[h].image_variant for h in bed.hypervisors] == ["hypervisor"] * 3
    assert not any(bed.hosts[h].preinstalled_docker for h in bed.hypervisors)
    assert bed.prometheus_servers == ["prom1"]
    assert bed.hosts["prom1"].prometheus == PROMETHEUS_KINDS["debian"]
    assert bed.hosts["prom1"].ssh_port == 3050 and bed.hosts["prom1"].api_port == 9300


def test_variants_are_planned_per_host():
    bed = plan(
        hypervisors=("hv1", "hv3"),
        preinstalled_docker=("hv3",),
        prometheus_kind="opennebula",
        extra_prometheus={"prom3": ("prometheus3", 9301)},
    )
    assert bed.hosts["hv1"].image_variant == "hypervisor"
    assert (
        bed.hosts["hv3"].preinstalled_docker
        and bed.hosts["hv3"].image_variant == "hypervisor-docker"
    )
    assert bed.prometheus_servers == ["prom1", "prom3"]
    assert bed.hosts["prom1"].prometheus.service == "opennebula-prometheus"
    assert bed.hosts["prom3"].prometheus.binary == "/usr/local/bin/prometheus"
    assert (bed.hosts["prom3"].ssh_port, bed.hosts["prom3"].api_port) == (3051, 9301)


def test_only_the_opennebula_unit_lacks_a_systemctl_reload():
    assert {kind for kind, k in PROMETHEUS_KINDS.items() if not k.reloads_with_systemctl} == {
        "opennebula"
    }


def test_preinstalled_docker_must_name_a_planned_hypervisor():
    with pytest.raises(ValueError, match=r"hv4.*list them in hypervisors"):
        plan(hypervisors=("hv1",), preinstalled_docker=("hv4",))


def test_unknown_prometheus_kind_names_the_host_and_the_choices():
    with pytest.raises(
        testbed.TestBedError, match="'prometheus4' for prom1; choose one of debian, opennebula"
    ):
        plan(prometheus_kind="prometheus4")


def test_two_prometheus_servers_cannot_share_an_api_port():
    with pytest.raises(testbed.TestBedError, match="API port 9300 for prom2 is already prom1's"):
        plan(extra_prometheus={"prom2": ("debian", 9300)})


def test_bed_settings_come_from_the_environment_when_set(monkeypatch):
    assert bed_settings_from_env("sotb-x", 2801, 9198) == {
        "prefix": "sotb-x",
        "ssh_port_base": 2801,
        "prometheus_api_port": 9198,
    }
    monkeypatch.setenv("SOTB_BED_PREFIX", "sotb-y")
    monkeypatch.setenv("SOTB_BED_SSH_PORT_BASE", "3000")
    monkeypatch.setenv("SOTB_BED_PROMETHEUS_PORT", "9300")
    assert bed_settings_from_env("sotb-x", 2801, 9198) == {
        "prefix": "sotb-y",
        "ssh_port_base": 3000,
        "prometheus_api_port": 9300,
    }
    monkeypatch.setenv("SOTB_BED_SSH_PORT_BASE", "30oo")
    with pytest.raises(ValueError, match="SOTB_BED_SSH_PORT_BASE='30oo' is not a port number"):
        bed_settings_from_env("sotb-x")


def test_bed_settings_move_with_the_checkouts_suffix_and_offset(monkeypatch):
    monkeypatch.setenv("SOTB_BED_SUFFIX", "-two")
    monkeypatch.setenv("SOTB_PORT_OFFSET", "1000")
    assert bed_settings_from_env("sotb-x", 2801, 9198) == {
        "prefix": "sotb-x-two",
        "ssh_port_base": 3801,
        "prometheus_api_port": 10198,
    }
    assert bed_settings_from_env("sotb-x") == {
        "prefix": "sotb-x-two",
        "ssh_port_base": None,
        "prometheus_api_port": None,
    }
