"""The energy sync script, run as the systemd service runs it (a subprocess with --config),
against the OpenNebula API simulator and the Prometheus API double over real HTTP on 127.0.0.1.

Every test counts the simulator's calls per method: the script must read each pool once and
write each object at most once, and not at all when nothing changed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from xmlrpc.server import SimpleXMLRPCServer

import pyone
import pytest

from tests.doubles.one_api_simulator import OneApiSimulator
from tests.doubles.one_scheduler_model import best_hosts
from tests.doubles.prometheus_api_double import PrometheusApiDouble, steady_samples

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "files" / "opennebula" / "scaphandre_energy_sync.py"
PASSWORD = "Sync-Pa55-never-shown"
OWNED = (
    "SCAPHANDRE_POWER_W",
    "SCAPHANDRE_SCORE",
    "SCAPHANDRE_ENERGY_KWH_24H",
    "SCAPHANDRE_SAMPLE_TIME",
    "SCAPHANDRE_CO2E_G_24H",
)
POOL_READS = {"one.hostpool.info": 1, "one.vmpool.infoextended": 1}
RUN_TIMEOUT_S = 60

HOSTS = [
    {"id": 3, "name": "kvm1", "hostname": "kvm1", "template": {"NOTES": "rack 4"}},
    {"id": 4, "name": "kvm2", "hostname": "kvm2"},
    {"id": 7, "name": "kvm3", "hostname": "kvm3"},
]
VMS = [
    {
        "id": 42,
        "name": "web",
        "host_id": 3,
        "user_template": {"LABELS": "prod", "SCHED_RANK": "SCAPHANDRE_SCORE"},
    },
    {"id": 43, "name": "db", "host_id": 4},
    {"id": 44, "name": "cache", "host_id": 3},
    {"id": 45, "name": "stopped", "host_id": 7, "state": 8, "lcm_state": 0},
]
# What Prometheus measures in the default scenario: host 7 and VM 45 are not measured.
HOST_POWER = {3: 151.26, 4: 98.04}
HOST_ENERGY = {3: 3.6002, 4: 2.35}
VM_POWER = {42: (3, 20.04), 43: (4, 35.57), 44: (3, 7.24)}
VM_ENERGY = {42: 0.4811, 43: 0.8533, 44: 0.174}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def newest_sample_time() -> int:
    """A sample time every run of a test sees as the newest: a whole minute, 1 to 2 minutes
    ago, so Prometheus' subquery steps (every minute) and its 5-minute lookback both reach it."""
    return (int(time.time()) // 60) * 60 - 60


@dataclass
class Cloud:
    simulator: OneApiSimulator
    prometheus: PrometheusApiDouble
    tmp_path: Path
    auth_file: Path
    config: Path
    last_sample: int

    def measure(
        self,
        host_power=None,
        vm_power=None,
        host_energy=None,
        vm_energy=None,
        *,
        ended_s_ago=0,
        ended=False,
    ):
        """(Re)set Prometheus' series: 15 minutes of constant values ending at last_sample
        (or ended_s_ago seconds before it); `ended`: closed by a staleness marker, as when
        the VM left that host or the exporter went away."""
        end = self.last_sample - ended_s_ago
        for host_id, watts in (host_power or {}).items():
            self.power_series(
                "one_host:power_watts",
                {"job": "scaphandre", "one_host_id": host_id},
                watts,
                ended_s_ago=ended_s_ago,
                ended=ended,
            )
        for vm_id, (host_id, watts) in (vm_power or {}).items():
            self.power_series(
                "one_vm:power_watts",
                {"job": "scaphandre", "one_host_id": host_id, "one_vm_id": vm_id},
                watts,
                ended_s_ago=ended_s_ago,
                ended=ended,
            )
        for host_id, kwh in (host_energy or {}).items():
            self.prometheus.add_series(
                "one_host:energy_kwh:24h",
                {"job": "scaphandre", "one_host_id": host_id},
                steady_samples(kwh, end - 900, end, 60),
            )
        for vm_id, kwh in (vm_energy or {}).items():
            host_id = {**VM_POWER, **(vm_power or {})}[vm_id][0]
            self.prometheus.add_series(
                "one_vm:energy_kwh:24h",
                {"job": "scaphandre", "one_host_id": host_id, "one_vm_id": vm_id},
                steady_samples(kwh, end - 900, end, 60),
            )

    def power_series(
        self, metric: str, labels: dict, watts: float, *, ended_s_ago: int = 0, ended: bool = False
    ):
        """One power series with any labels: 15 minutes of samples every 15 s (the value
        `watts` throughout, NaN and infinities included)."""
        end = self.last_sample - ended_s_ago
        self.prometheus.add_series(
            metric,
            labels,
            steady_samples(watts, end - 900, end),
            stale_at=end + 15 if ended else None,
        )

    def measure_default(self):
        self.measure(HOST_POWER, VM_POWER, HOST_ENERGY, VM_ENERGY)

    def write_config(self, **overrides) -> Path:
        settings = {
            "prometheus_url": self.prometheus.url,
            "one_xmlrpc": self.simulator.url,
            "one_auth_file": str(self.auth_file),
            "interval_s": 300,
            "timeout_s": 5,
            **overrides,
        }
        self.config.write_text(
            "[scaphandre-energy-sync]\n"
            + "".join(f"{key} = {value}\n" for key, value in settings.items())
        )
        return self.config

    def run(self, *args: str) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [sys.executable, str(SCRIPT), "--config", str(self.config), *args],
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            env=self.service_environment(),
            check=False,
        )
        assert PASSWORD not in result.stdout + result.stderr
        return result

    @staticmethod
    def service_environment() -> dict[str, str]:
        """What systemd gives the service: no ONE_AUTH or other credentials in the environment."""
        return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}

    def calls(self) -> dict[str, int]:
        counted = dict(self.simulator.calls)
        self.simulator.calls.clear()
        return counted

    def pyone(self) -> pyone.OneServer:
        return pyone.OneServer(
            self.simulator.url, session=f"oneadmin:{PASSWORD}", protocol="xmlrpc"
        )

    def host_values(self, host_id: int) -> dict[str, str]:
        template = self.pyone().host.info(host_id).TEMPLATE
        return {name: template[name] for name in OWNED if name in template}

    def vm_values(self, vm_id: int) -> dict[str, str]:
        template = self.pyone().vm.info(vm_id).USER_TEMPLATE
        return {name: template[name] for name in OWNED if name in template}


@pytest.fixture
def cloud(tmp_path):
    auth_file = tmp_path / "one_auth"
    auth_file.write_bytes(
        "\ufeffoneadmin:".encode() + PASSWORD.encode() + b"\n"
    )  # BOM: a Windows editor's
    auth_file.chmod(0o600)
    with (
        OneApiSimulator(
            [dict(host) for host in HOSTS],
            vms=[dict(vm) for vm in VMS],
            user="oneadmin",
            password=PASSWORD,
        ) as simulator,
        PrometheusApiDouble() as prometheus,
    ):
        cloud = Cloud(
            simulator, prometheus, tmp_path, auth_file, tmp_path / "sync.conf", newest_sample_time()
        )
        cloud.write_config()
        yield cloud


def status_line(result: subprocess.CompletedProcess) -> str:
    lines = [line for line in result.stdout.splitlines() if line.startswith("status:")]
    assert len(lines) == 1, result.stdout
    return lines[0]


def status(
    written: str = "0 (0 hosts, 0 VMs)",
    unchanged: int = 0,
    not_fresh: int = 0,
    expired: int = 0,
    refused: int = 0,
    conflicts: int = 0,
    unknown: int = 0,
    failed: int = 0,
    verb: str = "written",
) -> str:
    """The status line a run prints, every count named."""
    return (
        f"status: {verb} {written}, unchanged {unchanged}, not fresh {not_fresh}, expired {expired}, "
        f"refused {refused}, conflicts {conflicts}, not in OpenNebula {unknown}, failed {failed}"
    )


# --------------------------------------------------------------------------- writing


def test_first_run_writes_every_measured_object_with_prometheus_values(cloud):
    cloud.measure_default()
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert status_line(result) == status("5 (2 hosts, 3 VMs)")
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 3}

    stamp = str(cloud.last_sample)
    assert cloud.host_values(3) == {
        "SCAPHANDRE_POWER_W": "151.3",
        "SCAPHANDRE_SCORE": "98487",
        "SCAPHANDRE_ENERGY_KWH_24H": "3.600",
        "SCAPHANDRE_SAMPLE_TIME": stamp,
    }
    assert cloud.host_values(4) == {
        "SCAPHANDRE_POWER_W": "98.0",
        "SCAPHANDRE_SCORE": "99020",
        "SCAPHANDRE_ENERGY_KWH_24H": "2.350",
        "SCAPHANDRE_SAMPLE_TIME": stamp,
    }
    assert cloud.vm_values(42) == {
        "SCAPHANDRE_POWER_W": "20.0",
        "SCAPHANDRE_ENERGY_KWH_24H": "0.481",
        "SCAPHANDRE_SAMPLE_TIME": stamp,
    }  # no score: the scheduler ranks hosts
    assert cloud.vm_values(43)["SCAPHANDRE_POWER_W"] == "35.6"
    assert cloud.vm_values(44)["SCAPHANDRE_POWER_W"] == "7.2"
    # not measured: left alone
    assert cloud.host_values(7) == {} and cloud.vm_values(45) == {}


def test_emissions_are_written_beside_the_energy_only_while_an_intensity_is_set(cloud):
    cloud.measure_default()
    end = cloud.last_sample
    cloud.prometheus.add_series(
        "one_host:emissions_gco2e:24h",
        {"job": "scaphandre", "one_host_id": "3"},
        steady_samples(900.04, end - 900, end, 60),
    )
    # VM 42 ran on two hosts today: its grams are added up
    for host_id, grams in (("3", 100.0), ("4", 20.26)):
        cloud.prometheus.add_series(
            "one_vm:emissions_gco2e:24h",
            {"job": "scaphandre", "one_host_id": host_id, "one_vm_id": "42"},
            steady_samples(grams, end - 900, end, 60),
        )
    cloud.prometheus.queries.clear()
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert len(cloud.prometheus.queries) == 10, "the ten instant queries docs/energy-sync.md names"
    assert cloud.host_values(3)["SCAPHANDRE_CO2E_G_24H"] == "900.0"
    assert cloud.vm_values(42)["SCAPHANDRE_CO2E_G_24H"] == "120.3"
    assert "SCAPHANDRE_CO2E_G_24H" not in cloud.host_values(4) | cloud.vm_values(43)

    cloud.prometheus.clear()  # the intensity unset: no emissions recorded any more
    cloud.measure_default()
    assert cloud.run().returncode == 0
    assert "SCAPHANDRE_CO2E_G_24H" not in cloud.host_values(3) | cloud.vm_values(42)
    assert cloud.host_values(3)["SCAPHANDRE_ENERGY_KWH_24H"] == "3.600"


def test_written_values_sit_beside_the_other_attributes(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    host = cloud.pyone().host.info(3)
    assert host.TEMPLATE["NOTES"] == "rack 4" and host.TEMPLATE["HOSTNAME"] == "kvm1"
    vm = cloud.pyone().vm.info(42)
    assert vm.USER_TEMPLATE["LABELS"] == "prod"
    assert vm.USER_TEMPLATE["SCHED_RANK"] == "SCAPHANDRE_SCORE"
    assert "SCAPHANDRE_POWER_W" not in vm.TEMPLATE  # the VM's own TEMPLATE is not touched


def test_second_run_with_unchanged_power_writes_nothing(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.calls()
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == POOL_READS
    assert status_line(result) == status(unchanged=5)


def test_change_beyond_the_threshold_rewrites_only_that_object(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    before = {host_id: cloud.host_values(host_id) for host_id in (3, 4)}
    cloud.calls()
    # host 3: +2.9 W of 151.3 is under 2 %; VM 42: +0.9 W is under 1 W; VM 43's energy +0.008
    # kWh is under 0.01 kWh; host 4: +5.4 W is over 2 % of 98.0 (1.96 W) and over 1 W.
    cloud.measure({3: 154.2, 4: 103.44}, {42: (3, 20.94)}, vm_energy={43: 0.8613})
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == {**POOL_READS, "one.host.update": 1}
    assert cloud.host_values(4)["SCAPHANDRE_POWER_W"] == "103.4"
    assert cloud.host_values(3) == before[3]
    assert cloud.vm_values(42)["SCAPHANDRE_POWER_W"] == "20.0"
    assert "written 1 (1 host, 0 VMs), unchanged 4" in status_line(result)


def test_energy_change_alone_rewrites_the_object(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.calls()
    cloud.measure(host_energy={3: 3.80})  # +5.6 %: beyond 2 % and 0.01 kWh
    assert cloud.run().returncode == 0
    assert cloud.calls() == {**POOL_READS, "one.host.update": 1}
    assert cloud.host_values(3)["SCAPHANDRE_ENERGY_KWH_24H"] == "3.800"


def test_refresh_s_rewrites_unchanged_values_once_their_sample_time_is_old(cloud):
    cloud.measure_default()
    cloud.write_config(refresh_s=0)
    assert cloud.run().returncode == 0
    cloud.calls()
    assert cloud.run().returncode == 0
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 3}


def test_stale_sample_is_not_written(cloud):
    cloud.measure_default()
    cloud.measure(
        {7: 120.0}, {45: (7, 10.0)}, ended_s_ago=20 * 60
    )  # 20 minutes: older than interval_s
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 3}
    assert cloud.host_values(7) == {} and cloud.vm_values(45) == {}


def test_values_going_stale_are_kept_within_max_age_s_then_removed(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    written = cloud.host_values(4)
    cloud.calls()
    cloud.prometheus.clear()
    cloud.measure({3: HOST_POWER[3]}, {42: VM_POWER[42], 44: VM_POWER[44]}, HOST_ENERGY, VM_ENERGY)
    # host 4's exporter went away 10 minutes ago: Prometheus ended its series
    cloud.measure({4: 500.0}, {43: (4, 90.0)}, ended_s_ago=10 * 60, ended=True)
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == POOL_READS
    assert cloud.host_values(4) == written
    assert status_line(result) == status(unchanged=3, not_fresh=2)
    assert (
        "not fresh (no current power sample on its host in the last 300 s), values kept until there is "
        "none for 900 s: host 4 (kvm2), VM 43 (db)"
    ) in result.stdout

    # 20 minutes without a sample: more than max_age_s (900 s), the values go, the rest stays
    cloud.measure({4: 500.0}, {43: (4, 90.0)}, ended_s_ago=20 * 60, ended=True)
    cloud.calls()
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == {**POOL_READS, "one.host.update": 1, "one.vm.update": 1}
    assert status_line(result) == status(unchanged=3, expired=2)
    assert (
        "expired (no power sample for more than 900 s, or none it can be told from), values removed: "
        "host 4 (kvm2), VM 43 (db)"
    ) in result.stdout
    assert cloud.host_values(4) == {} and cloud.vm_values(43) == {}
    assert cloud.pyone().host.info(4).TEMPLATE["HOSTNAME"] == "kvm2"

    cloud.calls()
    again = cloud.run()
    assert status_line(again) == status(unchanged=3) and cloud.calls() == POOL_READS


def test_values_prometheus_never_backs_are_removed_at_once(cloud):
    """Values on an object Prometheus has no sample of (left by an earlier sync, or written
    by hand, with a sample time that looks recent): nothing says they are current."""
    cloud.simulator.set_hosts(
        [
            dict(HOSTS[0]),
            dict(HOSTS[1]),
            dict(
                HOSTS[2],
                template={
                    "SCAPHANDRE_POWER_W": "20.0",
                    "SCAPHANDRE_SCORE": "99800",
                    "SCAPHANDRE_SAMPLE_TIME": str(cloud.last_sample),
                    "NOTES": "spare",
                },
            ),
        ]
    )
    cloud.measure_default()
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.host_values(7) == {} and cloud.pyone().host.info(7).TEMPLATE["NOTES"] == "spare"
    assert status_line(result) == status("5 (2 hosts, 3 VMs)", expired=1)


def test_the_energy_without_a_current_value_goes_in_the_same_update_as_the_fresh_power(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.calls()
    cloud.prometheus.clear()  # the energy rules stopped (say, a rules file gone): power alone goes on
    cloud.measure({3: 160.0, 4: HOST_POWER[4]}, VM_POWER)
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    # one update per object: host 3 (power moved), and every object whose energy must go
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 3}
    assert cloud.host_values(3) == {
        "SCAPHANDRE_POWER_W": "160.0",
        "SCAPHANDRE_SCORE": "98400",
        "SCAPHANDRE_SAMPLE_TIME": str(cloud.last_sample),
    }
    assert (
        "SCAPHANDRE_ENERGY_KWH_24H" not in cloud.host_values(4)
        and cloud.host_values(4)["SCAPHANDRE_POWER_W"]
    )
    assert set(cloud.vm_values(42)) == {"SCAPHANDRE_POWER_W", "SCAPHANDRE_SAMPLE_TIME"}


def test_vm_is_taken_from_the_host_opennebula_runs_it_on(cloud):
    cloud.measure_default()
    # VM 42 migrated from host 4 to host 3 (its current host in OpenNebula): host 4 measured
    # it within the interval until it left, and Prometheus ended that series then.
    cloud.measure(vm_power={42: (4, 60.0)}, ended_s_ago=120, ended=True)
    cloud.measure(vm_power={42: (3, 20.04)})
    result = cloud.run()
    assert result.returncode == 0
    assert cloud.vm_values(42)["SCAPHANDRE_POWER_W"] == "20.0"
    assert "conflicts 0" in status_line(result)


def test_vm_measured_only_on_another_host_is_not_written(cloud):
    cloud.measure(HOST_POWER, {42: (4, 60.0)})  # OpenNebula says VM 42 runs on host 3
    result = cloud.run()
    assert result.returncode == 0
    assert cloud.vm_values(42) == {}
    assert "VM 42 (web)" in result.stdout and "not fresh 1" in status_line(result)


def test_objects_unknown_to_opennebula_are_skipped_and_named(cloud):
    cloud.measure({3: 100.0, 99: 80.0}, {42: (3, 20.0), 420: (3, 5.0)})
    result = cloud.run()
    assert result.returncode == 0
    assert "measured but not in OpenNebula, skipped: host 99, VM 420" in result.stdout
    assert "not in OpenNebula 2" in status_line(result)
    assert cloud.calls() == {**POOL_READS, "one.host.update": 1, "one.vm.update": 1}


def test_dry_run_prints_the_writes_and_makes_none(cloud):
    cloud.measure_default()
    result = cloud.run("--dry-run")
    assert result.returncode == 0, result.stderr
    assert cloud.calls() == POOL_READS
    assert (
        f"would write host 3 (kvm1): SCAPHANDRE_POWER_W=151.3 SCAPHANDRE_SCORE=98487 "
        f"SCAPHANDRE_ENERGY_KWH_24H=3.600 SCAPHANDRE_SAMPLE_TIME={cloud.last_sample}"
    ) in result.stdout
    assert status_line(result) == status("5 (2 hosts, 3 VMs)", verb="would write")
    assert cloud.host_values(3) == {}


# --------------------------------------------------------------------------- figures the scheduler must not trust


def test_implausible_figures_are_refused_and_the_old_values_removed(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.calls()
    # host 3: Scaphandre's RAPL counter overflow; VM 43: a negative power; VM 44: more than a
    # VM may draw (2000 W); host 4: its power is fine, its 24 h energy is not
    cloud.measure({3: 1e20}, {43: (4, -3.5), 44: (3, 2500.0)}, host_energy={4: 1e18})
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert (
        "implausible figures refused, not written and the object's values removed (a refused energy alone "
        "is only left out): host 3 (kvm1): power 1e+20 W (0 to 5000 W); host 4 (kvm2): 24 h energy 1e+18 kWh "
        "(0 to 120 kWh); VM 43 (db): power -3.5 W (0 to 2000 W); VM 44 (cache): power 2500 W (0 to 2000 W)"
    ) in result.stderr
    assert status_line(result) == status("1 (1 host, 0 VMs)", unchanged=1, refused=4)
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 2}
    assert cloud.host_values(3) == {} and cloud.vm_values(43) == {} and cloud.vm_values(44) == {}
    assert set(cloud.host_values(4)) == {
        "SCAPHANDRE_POWER_W",
        "SCAPHANDRE_SCORE",
        "SCAPHANDRE_SAMPLE_TIME",
    }
    assert cloud.vm_values(42)["SCAPHANDRE_POWER_W"] == "20.0"
    assert cloud.pyone().host.info(3).TEMPLATE["NOTES"] == "rack 4"

    cloud.measure(
        {3: HOST_POWER[3]}, {43: VM_POWER[43], 44: VM_POWER[44]}
    )  # plausible again: written again
    assert cloud.run().returncode == 0
    assert (
        cloud.host_values(3)["SCAPHANDRE_POWER_W"] == "151.3"
        and cloud.vm_values(44)["SCAPHANDRE_POWER_W"] == "7.2"
    )


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_a_power_that_is_not_a_number_is_refused(cloud, value):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.measure({3: value})
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert "host 3 (kvm1): power" in result.stderr and "refused 1" in status_line(result)
    assert cloud.host_values(3) == {}


def test_series_without_a_canonical_id_are_ignored_and_named(cloud):
    cloud.measure_default()
    # "042" is not VM 42, "04" not host 4, an Arabic-Indic digit three not host 3
    cloud.power_series(
        "one_vm:power_watts", {"job": "scaphandre", "one_host_id": "3", "one_vm_id": "042"}, 900.0
    )
    cloud.power_series("one_host:power_watts", {"job": "scaphandre", "one_host_id": "04"}, 900.0)
    cloud.power_series(
        "one_host:power_watts", {"job": "scaphandre", "one_host_id": "\u0663"}, 900.0
    )
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert status_line(result) == status(
        "5 (2 hosts, 3 VMs)"
    )  # nothing mistaken for a conflict either
    assert (
        cloud.vm_values(42)["SCAPHANDRE_POWER_W"] == "20.0"
        and cloud.host_values(4)["SCAPHANDRE_POWER_W"] == "98.0"
    )
    assert cloud.host_values(3)["SCAPHANDRE_POWER_W"] == "151.3"
    assert (
        'series whose ID label is not a canonical decimal ID, ignored: one_host_id="04", '
        'one_host_id="\\u0663", one_vm_id="042"'
    ) in result.stderr


def test_a_vm_measured_on_two_hosts_at_once_is_a_conflict_not_a_replacement(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    written = cloud.vm_values(42)
    cloud.calls()
    cloud.measure({3: HOST_POWER[3]}, {42: (4, 60.0)})  # VM 42 now measured on host 3 and host 4
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert (
        "conflicting series, not written (values removed once older than 900 s): VM 42 (web): 2 series at "
        "once (on host 3, 4)"
    ) in result.stderr
    assert status_line(result) == status(unchanged=4, conflicts=1)
    assert cloud.calls() == POOL_READS
    assert cloud.vm_values(42) == written  # neither figure: the values it had are not yet 900 s old


def test_one_host_under_two_label_sets_is_a_conflict(cloud):
    cloud.measure_default()
    cloud.power_series("one_host:power_watts", {"job": "scaphandre-copy", "one_host_id": 3}, 40.0)
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert "host 3 (kvm1): 2 series at once (on host 3, 3)" in result.stderr
    assert status_line(result) == status("4 (1 host, 3 VMs)", conflicts=1)
    assert cloud.host_values(3) == {}


def test_a_lasting_conflict_removes_the_values_once_they_are_older_than_max_age_s(cloud):
    old = str(cloud.last_sample - 1000)
    cloud.simulator.set_vms(
        [
            dict(
                VMS[0],
                user_template={
                    **VMS[0]["user_template"],
                    "SCAPHANDRE_POWER_W": "20.0",
                    "SCAPHANDRE_SAMPLE_TIME": old,
                },
            )
        ]
        + [dict(vm) for vm in VMS[1:]]
    )
    cloud.measure_default()
    cloud.measure(vm_power={42: (4, 60.0)})
    result = cloud.run()
    assert result.returncode == 0, result.stderr
    assert cloud.vm_values(42) == {}  # neither host's figure, and the old one gone
    assert status_line(result) == status("4 (2 hosts, 2 VMs)", expired=1, conflicts=1)
    assert cloud.pyone().vm.info(42).USER_TEMPLATE["LABELS"] == "prod"


# --------------------------------------------------------------------------- what the scheduler makes of it


def test_the_recommended_rank_prefers_the_host_drawing_least_and_puts_the_unmeasured_last(cloud):
    """The real script's output, judged by the scheduler's rules (tests/doubles/one_scheduler_model.py):
    host 3 draws 150 W, host 4 60 W, host 7 is not measured."""
    cloud.measure({3: 150.0, 4: 60.0})
    assert cloud.run().returncode == 0
    hosts = {host_id: dict(cloud.simulator.host_template(host_id)) for host_id in (3, 4, 7)}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE") == {4}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE", with_room={3, 7}) == {3}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE", with_room={7}) == {7}
    assert best_hosts(hosts, rank="-SCAPHANDRE_POWER_W") == {7}  # why the score exists
    assert (
        best_hosts(
            hosts, rank="SCAPHANDRE_SCORE", requirements="SCAPHANDRE_SCORE > 0", with_room={7}
        )
        == set()
    )

    cloud.measure({3: 60.9, 4: 60.2})  # 0.7 W apart: rewritten, as the thresholds allow
    cloud.write_config(threshold_watts=0, threshold_percent=0)
    assert cloud.run().returncode == 0
    hosts = {host_id: dict(cloud.simulator.host_template(host_id)) for host_id in (3, 4, 7)}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE") == {4}
    assert best_hosts(hosts, rank="-SCAPHANDRE_POWER_W", with_room={3, 4}) == {
        3,
        4,
    }  # the integer cast ties them

    cloud.prometheus.clear()  # no sample for longer than max_age_s: removed, so last again
    cloud.write_config(threshold_watts=0, threshold_percent=0, max_age_s=600)
    cloud.measure({3: 60.9}, ended_s_ago=700)
    cloud.measure({4: 60.2})
    assert cloud.run().returncode == 0
    hosts = {host_id: dict(cloud.simulator.host_template(host_id)) for host_id in (3, 4, 7)}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE", with_room={3, 7}) == {3, 7}


# --------------------------------------------------------------------------- failures


def test_prometheus_down_is_named_and_nothing_is_asked_of_opennebula(cloud):
    url = f"http://127.0.0.1:{closed_port()}"
    cloud.write_config(prometheus_url=url)
    result = cloud.run()
    assert result.returncode == 1
    assert f"Prometheus at {url} is unreachable: connection refused" in result.stderr
    assert "nothing written" in status_line(result)
    assert cloud.calls() == {}


@pytest.mark.parametrize(
    "mode, shown", [("http500", "HTTP 500"), ("garbage", "gave no usable answer")]
)
def test_prometheus_answering_badly_is_named(cloud, mode, shown):
    cloud.measure_default()
    cloud.prometheus.set_mode(mode)
    result = cloud.run()
    assert result.returncode == 1
    assert f"Prometheus at {cloud.prometheus.url}" in result.stderr and shown in result.stderr
    assert cloud.calls() == {}


def test_hanging_prometheus_is_given_up_within_timeout_s(cloud):
    cloud.prometheus.hang_s = 10
    cloud.prometheus.set_mode("hang")
    cloud.write_config(timeout_s=1)
    started = time.monotonic()
    result = cloud.run()
    assert time.monotonic() - started < 8
    assert result.returncode == 1 and "no answer within 1 s" in result.stderr
    assert cloud.calls() == {}


def test_opennebula_refusing_the_credentials_writes_nothing(cloud):
    cloud.measure_default()
    cloud.auth_file.write_text("oneadmin:wrong-" + PASSWORD + "\n")
    result = cloud.run()
    assert result.returncode == 1
    assert (
        f"OpenNebula at {cloud.simulator.url} refused the credentials of user 'oneadmin' "
        f"from {cloud.auth_file}: check the password there"
    ) in result.stderr
    assert "wrong-" not in result.stdout + result.stderr
    assert cloud.calls() == {"one.hostpool.info": 1}


def test_opennebula_unreachable_is_named(cloud):
    cloud.measure_default()
    url = f"http://127.0.0.1:{closed_port()}/RPC2"
    cloud.write_config(one_xmlrpc=url)
    result = cloud.run()
    assert result.returncode == 1
    assert (
        f"OpenNebula at {url} is unreachable (one.hostpool.info): connection refused"
        in result.stderr
    )


def test_hanging_oned_is_given_up_within_timeout_s(cloud):
    cloud.measure_default()
    cloud.simulator.hang_s = 10
    cloud.simulator.set_mode("hang")
    cloud.write_config(timeout_s=1)
    started = time.monotonic()
    result = cloud.run()
    assert time.monotonic() - started < 8
    assert result.returncode == 1
    assert (
        f"OpenNebula at {cloud.simulator.url} is unreachable (one.hostpool.info): no answer within 1 s"
        in result.stderr
    )


def test_oned_without_the_extended_vm_pool_is_named(cloud):
    """OpenNebula before 5.8 has no one.vmpool.infoextended: its XML-RPC layer refuses the call."""
    cloud.measure_default()
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_function(lambda session: [True, "<HOST_POOL/>", 0], "one.hostpool.info")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/RPC2"
        cloud.write_config(one_xmlrpc=url)
        result = cloud.run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    assert f"OpenNebula at {url}: one.vmpool.infoextended fault 1: " in result.stderr
    assert "is not supported" in result.stderr


def test_non_xmlrpc_answer_is_named(cloud):
    cloud.measure_default()
    cloud.simulator.set_mode("html")
    result = cloud.run()
    assert result.returncode == 1
    assert "did not answer one.hostpool.info in XML-RPC" in result.stderr


def test_vm_gone_between_query_and_write_is_named_and_the_others_are_written(cloud):
    cloud.measure_default()
    cloud.simulator.add_hook("one.vmpool.infoextended", lambda: cloud.simulator.remove_vm(44))
    result = cloud.run()
    assert result.returncode == 1
    assert (
        "VM 44 (cache): not written: [one.vm.update] Error getting virtual machine [44]."
        in result.stderr.splitlines()
    )
    assert "written 4 (2 hosts, 2 VMs)" in status_line(result) and status_line(result).endswith(
        "failed 1"
    )
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 3}
    assert cloud.vm_values(42)["SCAPHANDRE_POWER_W"] == "20.0"
    assert cloud.vm_values(43)["SCAPHANDRE_POWER_W"] == "35.6"


def test_oned_dying_mid_run_stops_the_writes_and_names_the_rest(cloud):
    cloud.measure_default()
    cloud.simulator.add_hook("one.host.update", lambda: cloud.simulator.set_mode("http500"))
    result = cloud.run()
    assert result.returncode == 1
    assert "HTTP 500" in result.stderr
    assert (
        "4 object(s) not written: host 4 (kvm2), VM 42 (web), VM 43 (db), VM 44 (cache)"
        in result.stderr
    )
    assert status_line(result).endswith("failed 4")
    assert cloud.calls() == {**POOL_READS, "one.host.update": 1}  # the 500s are not oned's answers


def test_malformed_credentials_file_is_a_clear_error(cloud):
    cloud.measure_default()
    cloud.auth_file.write_text(PASSWORD + "\n")  # no user:
    result = cloud.run()
    assert result.returncode == 1
    assert (
        f"OpenNebula credentials file {cloud.auth_file} is malformed: its first line must be user:password"
        in result.stderr
    )
    assert cloud.calls() == {}


def test_config_errors_name_the_setting(cloud):
    cloud.config.write_text("[scaphandre-energy-sync]\nintervall_s = 300\n")
    result = cloud.run()
    assert result.returncode == 1
    assert f"configuration {cloud.config}: unknown setting 'intervall_s'" in result.stderr
    cloud.write_config(interval_s="5m")
    result = cloud.run()
    assert result.returncode == 1 and "interval_s is '5m'" in result.stderr
    assert cloud.calls() == {}


@pytest.mark.parametrize("named", [True, False])
def test_journal_gets_line_priorities_only_when_the_output_is_the_journal(cloud, named):
    """systemd names the journal stream it connected (JOURNAL_STREAM=device:inode); an
    inherited variable naming another stream must not prefix a terminal's lines."""
    cloud.write_config(prometheus_url=f"http://127.0.0.1:{closed_port()}")
    output = cloud.tmp_path / "journal-stream"
    with output.open("w+") as stream:
        status = os.fstat(stream.fileno())
        journal = f"{status.st_dev}:{status.st_ino}" if named else f"{status.st_dev}:1"
        env = {**cloud.service_environment(), "JOURNAL_STREAM": journal}
        subprocess.run(
            [sys.executable, str(SCRIPT), "--config", str(cloud.config)],
            stdout=stream,
            stderr=stream,
            timeout=RUN_TIMEOUT_S,
            env=env,
            check=False,
        )
    lines = output.read_text().splitlines()
    prefixes = ("<3>Prometheus at ", "<6>status: ") if named else ("Prometheus at ", "status: ")
    assert [line.startswith(prefix) for line, prefix in zip(lines, prefixes, strict=False)] == [
        True,
        True,
    ], lines


# --------------------------------------------------------------------------- the secret


def test_password_is_in_no_argv_environment_or_output(cloud):
    cloud.measure_default()
    seen: dict[str, bytes] = {}
    process: subprocess.Popen | None = None

    def look_at_the_running_process():
        # Runs inside the simulator while the script waits for its answer: it is alive.
        for name in ("cmdline", "environ"):
            seen[name] = Path(f"/proc/{process.pid}/{name}").read_bytes()

    cloud.simulator.add_hook("one.hostpool.info", look_at_the_running_process)
    process = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--config", str(cloud.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cloud.service_environment(),
    )
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=10)
    assert process.returncode == 0, err
    assert seen["cmdline"].split(b"\0")[-3:-1] == [b"--config", str(cloud.config).encode()]
    for text in (
        seen["cmdline"],
        seen["environ"],
        out.encode(),
        err.encode(),
        cloud.config.read_bytes(),
    ):
        assert PASSWORD.encode() not in text


@pytest.mark.parametrize(
    "password", ["pa ss word", "tab\tin\tit", "two  spaces  here", "mixed\t \tblanks"]
)
def test_a_password_with_blanks_is_masked_even_when_oned_echoes_it(cloud, password):
    """A stand-in oned that repeats the session in its failure message: the password, blanks
    and all, must not reach the output, flattened or not (the line is flattened after masking)."""
    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    server.register_function(
        lambda session: [
            False,
            f"[one.hostpool.info] bad session {session}\n(password {session.split(':', 1)[1]})",
            0x0800,
            -1,
            0,
        ],
        "one.hostpool.info",
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cloud.measure_default()
        cloud.auth_file.write_text(f"oneadmin:{password}\n")
        cloud.write_config(one_xmlrpc=f"http://127.0.0.1:{server.server_address[1]}/RPC2")
        result = cloud.run()
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == 1
    shown = result.stdout + result.stderr
    assert "bad session *** (password ***)" in shown, shown
    stored = password.strip()  # the credentials file's line, as oned gets it
    for form in (stored, " ".join(stored.split())):
        assert form not in shown


def test_password_is_in_no_error_text(cloud):
    """Every failure path that talks to oned with the session: none repeats it."""
    cloud.measure_default()
    for mode in ("html", "garbage", "http500"):
        cloud.simulator.set_mode(mode)
        result = cloud.run()  # run() asserts the password is absent from stdout and stderr
        assert result.returncode == 1 and result.stderr
    cloud.simulator.set_mode("ok")
    cloud.simulator.add_hook("one.vmpool.infoextended", lambda: cloud.simulator.remove_vm(42))
    assert cloud.run().returncode == 1


# --------------------------------------------------------------------------- removal


TRICKY_HOST_TEMPLATE = {
    "NOTES": 'says "hello", C:\\path\\ and ]] brackets',
    "MULTI": "line one\nline two",
    "EMPTY": "",
    "PCI_FILTER": {"CLASS": "0300", "vendor": "10de"},
    "LABEL": ["first", "second"],
}


def test_remove_attributes_deletes_only_ours_from_objects_carrying_them(cloud):
    hosts = [dict(HOSTS[0], template={**HOSTS[0]["template"], **TRICKY_HOST_TEMPLATE})] + [
        dict(h) for h in HOSTS[1:]
    ]
    cloud.simulator.set_hosts(hosts)
    vms = [
        dict(
            VMS[0],
            user_template={
                **VMS[0]["user_template"],
                "VECTOR": {"A": "1", "B": "two words"},
                "QUOTED": 'x "y" z',
            },
        )
    ] + [dict(vm) for vm in VMS[1:]]
    cloud.simulator.set_vms(vms)
    client = cloud.pyone()
    before_hosts = {host_id: dict(client.host.info(host_id).TEMPLATE) for host_id in (3, 4, 7)}
    before_vms = {vm_id: dict(client.vm.info(vm_id).USER_TEMPLATE) for vm_id in (42, 43, 44, 45)}
    cloud.measure(HOST_POWER, {42: VM_POWER[42]}, HOST_ENERGY, VM_ENERGY)
    assert cloud.run().returncode == 0
    assert cloud.host_values(3) and cloud.vm_values(42)
    cloud.calls()

    result = cloud.run("--remove-attributes")
    assert result.returncode == 0, result.stderr
    assert status_line(result) == "status: removed from 3 (2 hosts, 1 VM), failed 0"
    # one merge-mode update per object carrying our attributes, none for the others
    assert cloud.calls() == {**POOL_READS, "one.host.update": 2, "one.vm.update": 1}
    client = cloud.pyone()
    assert {
        host_id: dict(client.host.info(host_id).TEMPLATE) for host_id in (3, 4, 7)
    } == before_hosts
    assert {
        vm_id: dict(client.vm.info(vm_id).USER_TEMPLATE) for vm_id in (42, 43, 44, 45)
    } == before_vms
    # the simulator's own view: the repeated attribute is still there twice, in order
    assert [value for name, value in cloud.simulator.host_template(3) if name == "LABEL"] == [
        "first",
        "second",
    ]
    cloud.calls()

    again = cloud.run("--remove-attributes")
    assert (
        again.returncode == 0
        and status_line(again) == "status: removed from 0 (0 hosts, 0 VMs), failed 0"
    )
    assert cloud.calls() == POOL_READS


def test_remove_attributes_with_refused_credentials_changes_nothing(cloud):
    cloud.auth_file.write_text("oneadmin:nope\n")
    result = cloud.run("--remove-attributes")
    assert result.returncode == 1 and "refused the credentials" in result.stderr
    assert cloud.calls() == {"one.hostpool.info": 1}


def test_remove_attributes_needs_no_prometheus(cloud):
    cloud.measure_default()
    assert cloud.run().returncode == 0
    cloud.write_config(prometheus_url=f"http://127.0.0.1:{closed_port()}")
    result = cloud.run("--remove-attributes")
    assert result.returncode == 0, result.stderr
    assert cloud.host_values(3) == {} and cloud.vm_values(42) == {}


def test_script_needs_only_the_standard_library(cloud):
    """Run with -I -S: no site-packages (no pyone, no requests), no user paths."""
    cloud.measure_default()
    result = subprocess.run(
        [sys.executable, "-I", "-S", str(SCRIPT), "--config", str(cloud.config)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=cloud.service_environment(),
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "written 5" in status_line(result)
    assert os.access(SCRIPT, os.X_OK), "installed as an executable"
