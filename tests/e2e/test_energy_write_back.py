"""End to end: power written back into OpenNebula by the energy sync the deploy installs.

Own bed (sotb-energy): two simulated hypervisors and prom1 shaped like an OpenNebula
frontend (opennebula-prometheus, a `oneadmin` user, /etc/one), deployed with the real
`pyinfra` CLI with `energy_sync` on for prom1. Scenarios run in file order on one bed.

One OpenNebula API simulator (test double) serves both sides: this machine's deploy looks
the hypervisors up through it, and the sync on prom1 reads and writes through it. It runs
here, in the test process, bound only to this machine's address on the bed's own Docker
network (its gateway): the hosts of the bed reach it, nothing outside this machine can,
and the traffic never leaves the bed's bridge. One simulator rather than two fed the same
data, so there is nothing to keep in step: the hosts and VMs the deploy matched are, by
construction, the ones the sync writes, and the test reads the simulator's call counts
and templates directly. The VMs it lists are the QEMU stand-ins each hypervisor runs
(bed.vm_ids), registered on the OpenNebula host of that hypervisor.

prom1 holds OpenNebula's credentials file where OpenNebula keeps it
(/var/lib/one/.one/one_auth, oneadmin's, 0600), written by the test as OpenNebula's
installation would; the deploy only points the sync at it.
"""

from __future__ import annotations

import re
import secrets
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pyone
import pytest

from tests.doubles.one_api_simulator import OneApiSimulator
from tests.doubles.one_scheduler_model import best_hosts
from tests.e2e.cloud import (
    PrometheusApi,
    PyinfraRun,
    bed_port,
    bed_prefix,
    render_inventory,
    run_pyinfra,
    wait_until,
)
from tests.testbed.bed import TestBed, docker

pytestmark = pytest.mark.e2e

PREFIX = bed_prefix("sotb-energy")
SSH_PORT_BASE = bed_port(2901)
PROMETHEUS_API_PORT = bed_port(9209)
HYPERVISORS = ("hv1", "hv2")
ONE_IDS = {"hv1": 6, "hv2": 11}  # not in inventory order; hv2 registered under its FQDN
POOL = [
    {
        "id": 6,
        "name": "hv1",
        "hostname": "hv1",
        "im_mad": "kvm",
        "state": 2,
        "template": {"NOTES": "rack 4", "PUE": "1.4"},
    },
    {"id": 11, "name": "hv2.cloud.test", "hostname": "hv2", "im_mad": "kvm", "state": 2},
]
POWERED_OFF_VM = {
    "id": 150,
    "name": "archive",
    "host_id": 6,
    "hostname": "hv1",
    "state": 8,
    "lcm_state": 0,
    "user_template": {"LABELS": "cold"},
}
VM_OWNED = ("SCAPHANDRE_POWER_W", "SCAPHANDRE_ENERGY_KWH_24H", "SCAPHANDRE_SAMPLE_TIME")
HOST_OWNED = (*VM_OWNED, "SCAPHANDRE_SCORE")  # the score only on hosts: the scheduler ranks hosts
OWNED = HOST_OWNED
FRONTEND_AUTH = "/var/lib/one/.one/one_auth"
SERVICE = "scaphandre-energy-sync.service"
TIMER = "scaphandre-energy-sync.timer"
SCRIPT = "/usr/local/lib/scaphandre-energy-sync/scaphandre_energy_sync.py"
CONFIG = "/etc/one/scaphandre-energy-sync.conf"
UNITS = (f"/etc/systemd/system/{SERVICE}", f"/etc/systemd/system/{TIMER}")
INTERVAL_S = 60
POOL_READS = {"one.hostpool.info": 1, "one.vmpool.infoextended": 1}
# The power averages are compared after the sync's own rounding (0.1 W): within 0.05 W.
POWER_TOLERANCE_W = 0.05
DATA_TIMEOUT_S = 240.0  # 2 shared cores, several beds: generous, but bounded
RUN_TIMEOUT_S = 120


@dataclass
class EnergyCloud:
    bed: TestBed
    simulator: OneApiSimulator
    state_dir: Path
    password: str
    runs: list[PyinfraRun] = field(default_factory=list)

    @property
    def prom(self) -> str:
        return self.bed.prometheus_name

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory.py"

    @property
    def prometheus(self) -> PrometheusApi:
        return PrometheusApi(self.bed.prometheus_url)

    def vm_ids(self) -> dict[int, int]:
        """Every simulated running VM -> the OpenNebula ID of the host it runs on."""
        return {vm: ONE_IDS[hv] for hv in HYPERVISORS for vm in self.bed.vm_ids(hv)}

    def write_inventory(self, **energy_data) -> None:
        """The operator's inventory: the sync on for prom1, every 60 s, oned at the simulator."""
        render_inventory(
            self.inventory,
            self.bed,
            list(HYPERVISORS),
            prometheus_data={
                "energy_sync": True,
                "energy_sync_interval_s": INTERVAL_S,
                "energy_sync_one_xmlrpc": self.simulator.url,
                "energy_sync_timeout_s": 10,
                **energy_data,
            },
        )

    def deploy(self, script: str = "deploy.py") -> PyinfraRun:
        run = run_pyinfra(self.inventory, script=script)
        self.runs.append(run)
        assert self.password not in run.output
        return run

    def on_prom(
        self, command: str, check: bool = True, timeout: float = RUN_TIMEOUT_S
    ) -> subprocess.CompletedProcess:
        return self.bed.exec(self.prom, "sh", "-c", command, check=check, timeout=timeout)

    def one(self) -> pyone.OneServer:
        return pyone.OneServer(
            self.simulator.url, session=f"oneadmin:{self.password}", protocol="xmlrpc"
        )

    def host_template(self, host_id: int) -> dict:
        return dict(self.one().host.info(host_id).TEMPLATE)

    def vm_user_template(self, vm_id: int) -> dict:
        return dict(self.one().vm.info(vm_id).USER_TEMPLATE)

    def calls(self) -> dict[str, int]:
        """OpenNebula calls answered since the last look (sim.* methods are not counted)."""
        counted = {method: count for method, count in self.simulator.calls.items() if count}
        self.simulator.calls.clear()
        return counted

    def run_sync(self) -> subprocess.CompletedProcess:
        """One run of the service, as the timer would start it; returns when it has ended."""
        return self.on_prom(f"systemctl start {SERVICE}", check=False)

    def journal(self) -> list[str]:
        return self.on_prom(f"journalctl -u {SERVICE} --no-pager -o cat").stdout.splitlines()

    def status_lines(self) -> list[str]:
        return [line for line in self.journal() if line.startswith("status:")]


def bed_gateway(bed: TestBed) -> str:
    """This machine's address on the bed's own network."""
    return docker(
        "network", "inspect", bed.network, "-f", "{{(index .IPAM.Config 0).Gateway}}"
    ).stdout.strip()


def free_port(address: str) -> int:
    with socket.socket() as probe:
        probe.bind((address, 0))
        return probe.getsockname()[1]


def simulated_vms(bed: TestBed) -> list[dict]:
    """The QEMU stand-ins of each hypervisor as OpenNebula VMs on that host, plus one VM
    powered off (never measured) that the sync must leave alone."""
    vms = [
        {
            "id": vm,
            "name": f"guest-{vm}",
            "host_id": ONE_IDS[hv],
            "hostname": hv,
            "user_template": {"LABELS": "prod", "SCHED_RANK": "SCAPHANDRE_SCORE"},
        }
        for hv in HYPERVISORS
        for vm in bed.vm_ids(hv)
    ]
    return [*vms, dict(POWERED_OFF_VM)]


@pytest.fixture(scope="module")
def energy(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("energy")
    bed = TestBed(
        prefix=PREFIX,
        state_dir=state_dir / "bed",
        hypervisors=HYPERVISORS,
        ssh_port_base=SSH_PORT_BASE,
        prometheus_api_port=PROMETHEUS_API_PORT,
        prometheus_kind="opennebula",
    )
    password = f"{PREFIX}-" + secrets.token_hex(8)
    simulator = None
    bed.down()  # a bed left behind by an interrupted run
    bed.build_images()
    try:
        bed.up()
        gateway = bed_gateway(bed)
        simulator = OneApiSimulator(
            [dict(h) for h in POOL],
            vms=simulated_vms(bed),
            user="oneadmin",
            password=password,
            bind=gateway,
            port=free_port(gateway),
        ).start()
        (state_dir / "one_auth").write_text(f"oneadmin:{password}\n")
        (state_dir / "one_auth").chmod(0o600)
        (state_dir / "one_xmlrpc").write_text(simulator.url)
        # OpenNebula's own credentials file on the frontend; the password goes in on stdin.
        bed.exec(
            bed.prometheus_name,
            "sh",
            "-c",
            f"install -d -o oneadmin -g oneadmin -m 0700 {Path(FRONTEND_AUTH).parent} && umask 077 && "
            f"cat > {FRONTEND_AUTH} && chown oneadmin:oneadmin {FRONTEND_AUTH}",
            input=f"oneadmin:{password}\n",
        )
        cloud = EnergyCloud(bed=bed, simulator=simulator, state_dir=state_dir, password=password)
        cloud.write_inventory()
        yield cloud
    finally:
        if simulator is not None:
            simulator.stop()
        bed.down()


# --------------------------------------------------------------------------- helpers


def owned(template: dict) -> dict:
    return {name: template[name] for name in OWNED if name in template}


def without_owned(template: dict) -> dict:
    return {name: value for name, value in template.items() if name not in OWNED}


def stat(cloud: EnergyCloud, path: str) -> str:
    return cloud.on_prom(f"stat -c '%U:%G %a' {path}").stdout.strip()


def query_at(cloud: EnergyCloud, promql: str, at: float) -> list[dict]:
    return cloud.prometheus.get("/api/v1/query", query=promql, time=f"{at:.3f}")["result"]


def newest_power_sample(cloud: EnergyCloud) -> float:
    result = cloud.prometheus.query("max(timestamp(one_host:power_watts))")
    return float(result[0]["value"][1]) if result else 0.0


def prometheus_ready(cloud: EnergyCloud) -> bool:
    try:
        with urllib.request.urlopen(cloud.bed.prometheus_url + "/-/ready", timeout=3) as reply:
            return reply.status == 200
    except (urllib.error.URLError, OSError):
        return False


def sample_time_of(cloud: EnergyCloud, selector: str, stored: str) -> float:
    """The exact time of the rule sample the sync stored as SCAPHANDRE_SAMPLE_TIME (which
    keeps whole seconds): the newest sample at or before the next whole second."""
    [series] = query_at(cloud, f"timestamp({selector})", int(stored) + 1)
    sample_time = float(series["value"][1])
    assert int(sample_time) == int(stored), (selector, stored, sample_time)
    return sample_time


def mean_power_at(cloud: EnergyCloud, selector: str, sample_time: float) -> float:
    """What Prometheus gives for the sync's own query evaluated just after that sample: the
    mean of the same samples the run averaged (every sample of the interval up to it)."""
    [series] = query_at(cloud, f"avg_over_time({selector}[{INTERVAL_S}s])", sample_time + 0.001)
    return float(series["value"][1])


def energy_candidates(cloud: EnergyCloud, selector: str, sample_time: float) -> list[float]:
    """The energy rule's samples the run may have read: the newest at its power sample's
    time, or one evaluated before the next power sample (15 s later)."""
    [series] = query_at(cloud, f"{selector}[3m]", sample_time + 15)
    samples = [(float(t), float(v)) for t, v in series["values"]]
    before = [v for t, v in samples if t <= sample_time][-1:]
    return before + [v for t, v in samples if sample_time < t <= sample_time + 15]


def assert_matches_prometheus(
    cloud: EnergyCloud, stored: dict, power_selector: str, energy_selector: str
):
    sample_time = sample_time_of(cloud, power_selector, stored["SCAPHANDRE_SAMPLE_TIME"])
    mean = mean_power_at(cloud, power_selector, sample_time)
    assert abs(float(stored["SCAPHANDRE_POWER_W"]) - mean) <= POWER_TOLERANCE_W + 1e-9, (
        power_selector,
        stored,
        mean,
    )
    candidates = energy_candidates(cloud, energy_selector, sample_time)
    assert stored["SCAPHANDRE_ENERGY_KWH_24H"] in {f"{value:.3f}" for value in candidates}, (
        stored,
        candidates,
    )
    print(
        f"{power_selector}: stored {stored['SCAPHANDRE_POWER_W']} W, Prometheus {mean:.4f} W; "
        f"stored {stored['SCAPHANDRE_ENERGY_KWH_24H']} kWh, Prometheus {candidates}"
    )


# --------------------------------------------------------------------------- scenarios


def test_deploy_installs_the_sync_on_the_frontend_and_tries_it(energy):
    run = energy.deploy()
    assert run.returncode == 0, run.output[-6000:]
    assert run.failed_hosts() == []
    assert re.search(
        r"\[prom1\] energy sync trial run: status: would write \d+ \(\d+ hosts?, \d+ VMs?\), "
        r"unchanged \d+, not fresh \d+, expired 0, refused 0, conflicts 0, not in OpenNebula 0, failed 0",
        run.output,
    ), run.output[-4000:]

    assert stat(energy, SCRIPT) == "root:root 755"
    assert stat(energy, CONFIG) == "root:oneadmin 640"
    for unit in UNITS:
        assert stat(energy, unit) == "root:root 644"
    service = energy.on_prom(f"cat {UNITS[0]}").stdout
    assert (
        "\nUser=oneadmin\n" in service
        and f"ExecStart=/usr/bin/python3 {SCRIPT} --config {CONFIG}" in service
    )
    config = energy.on_prom(f"cat {CONFIG}").stdout
    assert (
        f"one_auth_file = {FRONTEND_AUTH}\n" in config
        and f"one_xmlrpc = {energy.simulator.url}\n" in config
    )
    assert "interval_s = 60\n" in config


def test_the_timer_is_enabled_scheduled_and_runs_the_sync_by_itself(energy):
    assert energy.on_prom(f"systemctl is-enabled {TIMER}").stdout.strip() == "enabled"
    shown = energy.on_prom(
        f"systemctl show {TIMER} -p ActiveState -p NextElapseUSecMonotonic -p TimersMonotonic"
    ).stdout
    assert "ActiveState=active" in shown
    assert "OnUnitActiveUSec=1min" in shown, shown
    assert not re.search(r"NextElapseUSecMonotonic=(infinity|0)?$", shown, re.M), shown
    # Nothing but the timer starts the service before this point (the trial run is not the unit).
    line = wait_until(
        "a status line of a timer-started run in the journal", energy.status_lines, timeout_s=150
    )
    assert line[0].startswith("status: written ") and "run aborted" not in line[0], line
    assert (
        energy.on_prom(f"systemctl show {TIMER} -p LastTriggerUSec").stdout.strip()
        != "LastTriggerUSec=n/a"
    )


def test_a_rerun_of_the_deploy_changes_nothing_on_the_frontend(energy):
    run = energy.deploy()
    assert run.returncode == 0, run.output[-6000:]
    changed = {name for name, hosts in run.changed_hosts().items() if "prom1" in hosts}
    assert not [name for name in changed if "Energy" in name], changed
    assert "energy sync trial run" not in run.output


def test_every_hypervisor_and_vm_carries_the_power_prometheus_reports(energy):
    # The test starts the runs itself from here on, so that the timer's runs cannot interleave.
    energy.on_prom(f"systemctl stop {TIMER}")
    vms = energy.vm_ids()

    def every_object_measured():
        hosts = {
            s["metric"]["one_host_id"]
            for s in energy.prometheus.query(
                f"count_over_time(one_host:power_watts[{INTERVAL_S}s]) >= 3"
            )
        }
        measured_vms = {
            s["metric"]["one_vm_id"]
            for s in energy.prometheus.query(
                f"count_over_time(one_vm:power_watts[{INTERVAL_S}s]) >= 3"
            )
        }
        host_energy = {
            s["metric"]["one_host_id"] for s in energy.prometheus.query("one_host:energy_kwh:24h")
        }
        vm_energy = {
            s["metric"]["one_vm_id"] for s in energy.prometheus.query("one_vm:energy_kwh:24h")
        }
        want_hosts, want_vms = {str(i) for i in ONE_IDS.values()}, {str(v) for v in vms}
        return (
            want_hosts <= hosts
            and want_hosts <= host_energy
            and want_vms <= measured_vms
            and want_vms <= vm_energy
        )

    wait_until(
        "power and energy of every host and VM in Prometheus", every_object_measured, DATA_TIMEOUT_S
    )

    # Two runs back to back, right after a rule evaluation: both average the same samples
    # (unchanged power) unless a new evaluation slipped in between; then try again (bounded).
    for _attempt in range(3):
        before = newest_power_sample(energy)
        wait_until(
            "a new evaluation of the power rules",
            lambda before=before: newest_power_sample(energy) > before,
            30,
            0.5,
        )
        first = energy.run_sync()
        assert first.returncode == 0, (
            first.stdout + first.stderr + "\n".join(energy.journal()[-20:])
        )
        energy.calls()
        evaluated = newest_power_sample(energy)
        second = energy.run_sync()
        assert second.returncode == 0, second.stdout + second.stderr
        second_calls = energy.calls()
        if newest_power_sample(energy) == evaluated:
            break
    else:
        pytest.fail(
            "no two runs of the sync fell between two evaluations of the power rules in 3 attempts"
        )
    assert second_calls == POOL_READS, "a second run with unchanged power writes nothing"
    assert energy.status_lines()[-1] == (
        "status: written 0 (0 hosts, 0 VMs), unchanged 6, not fresh 0, expired 0, "
        "refused 0, conflicts 0, not in OpenNebula 0, failed 0"
    )

    for hypervisor, host_id in ONE_IDS.items():
        stored = owned(energy.host_template(host_id))
        assert set(stored) == set(HOST_OWNED), (hypervisor, stored)
        # 100000 - 10 x the power written: the score SCHED_RANK = "SCAPHANDRE_SCORE" ranks by
        assert int(stored["SCAPHANDRE_SCORE"]) == 100000 - round(
            float(stored["SCAPHANDRE_POWER_W"]) * 10
        ), stored
        assert_matches_prometheus(
            energy,
            stored,
            f'one_host:power_watts{{one_host_id="{host_id}"}}',
            f'one_host:energy_kwh:24h{{one_host_id="{host_id}"}}',
        )
        assert 14 <= float(stored["SCAPHANDRE_POWER_W"]) <= 56, (
            stored
        )  # bed hosts: 20-50 W base, +-4 W swing, +-1.5 W noise
    for vm_id, host_id in vms.items():
        stored = owned(energy.vm_user_template(vm_id))
        assert set(stored) == set(VM_OWNED), (vm_id, stored)
        assert_matches_prometheus(
            energy,
            stored,
            f'one_vm:power_watts{{one_host_id="{host_id}", one_vm_id="{vm_id}"}}',
            f'one_vm:energy_kwh:24h{{one_vm_id="{vm_id}"}}',
        )
    # the scheduler's rules on what was written: the recommended rank picks the host drawing least
    hosts = {host_id: owned(energy.host_template(host_id)) for host_id in ONE_IDS.values()}
    powers = {host_id: float(values["SCAPHANDRE_POWER_W"]) for host_id, values in hosts.items()}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE") == {
        host_id for host_id, power in powers.items() if power == min(powers.values())
    }, powers
    assert owned(energy.vm_user_template(POWERED_OFF_VM["id"])) == {}, (
        "a VM that is not measured is left alone"
    )
    assert (
        energy.host_template(6)["NOTES"] == "rack 4"
        and energy.vm_user_template(101)["LABELS"] == "prod"
    )


def test_prometheus_stopped_is_named_in_the_journal_and_nothing_is_written(energy):
    before = {host_id: energy.host_template(host_id) for host_id in ONE_IDS.values()}
    energy.on_prom("systemctl stop opennebula-prometheus")
    try:
        energy.calls()
        failed = energy.run_sync()
        assert failed.returncode != 0, "the run ends failed, so systemctl shows it"
        assert energy.calls() == {}, "not even read: Prometheus is asked first"
        assert (
            "Prometheus at http://127.0.0.1:9090 is unreachable: connection refused; check prometheus_url "
            "and that Prometheus runs" in energy.journal()
        )
        assert (
            energy.on_prom(f"systemctl is-failed {SERVICE}", check=False).stdout.strip() == "failed"
        )
    finally:
        energy.on_prom("systemctl start opennebula-prometheus")
        wait_until("Prometheus ready again", lambda: prometheus_ready(energy), 90)
    assert {host_id: energy.host_template(host_id) for host_id in ONE_IDS.values()} == before


def test_oned_down_is_named_in_the_journal_and_nothing_is_written(energy):
    before = {host_id: energy.host_template(host_id) for host_id in ONE_IDS.values()}
    energy.simulator.stop()
    try:
        failed = energy.run_sync()
        assert failed.returncode != 0
        assert (
            f"OpenNebula at {energy.simulator.url} is unreachable (one.hostpool.info): connection refused; "
            "check one_xmlrpc and that oned runs"
        ) in energy.journal()
    finally:
        energy.simulator.start()
    energy.calls()
    assert {host_id: energy.host_template(host_id) for host_id in ONE_IDS.values()} == before


def test_the_password_is_in_no_process_journal_unit_or_file_on_the_frontend(energy):
    energy.simulator.delay_s = 2.0  # every oned answer takes 2 s: the run is there to be seen
    try:
        energy.on_prom(f"systemctl start --no-block {SERVICE}")

        def processes_during_the_run() -> str:
            seen = energy.on_prom(
                "for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; "
                "tr '\\0' '\\n' < $p/environ; echo; done 2>/dev/null",
                check=False,
            ).stdout
            return seen if SCRIPT in seen else ""

        seen = wait_until("the sync's process in /proc", processes_during_the_run, 30, 0.3)
        assert energy.password not in seen
        wait_until(
            "the run to end",
            lambda: (
                energy.on_prom(f"systemctl is-active {SERVICE}", check=False).stdout.strip()
                in ("inactive", "failed")
            ),
            60,
            1,
        )
    finally:
        energy.simulator.delay_s = 0.0
    assert energy.status_lines(), "the delayed run finished"
    everything = energy.on_prom("journalctl --no-pager -o cat").stdout
    assert energy.password not in everything
    for path in (*UNITS, CONFIG, SCRIPT):
        assert energy.password not in energy.on_prom(f"cat {path}").stdout
    # Every file outside OpenNebula's own directory: the pattern goes in on stdin, not argv.
    found = energy.bed.exec(
        energy.prom,
        "sh",
        "-c",
        "grep -rlF -f - /etc /usr/local /var/log /var/tmp /tmp /root 2>/dev/null",
        input=energy.password + "\n",
        check=False,
    )
    assert found.returncode == 1 and not found.stdout, found.stdout


def test_credentials_the_service_user_cannot_read_fail_the_frontend_alone(energy):
    energy.on_prom(f"chown root:root {FRONTEND_AUTH}")
    try:
        run = energy.deploy()
    finally:
        energy.on_prom(f"chown oneadmin:oneadmin {FRONTEND_AUTH}")
    assert run.failed_hosts() == ["prom1"], run.output[-4000:]
    assert (
        f"energy_sync_one_auth_file {FRONTEND_AUTH} is not readable by oneadmin, the user the energy sync "
        "runs as"
    ) in run.output


def test_a_failing_trial_run_fails_the_frontend_and_leaves_the_timer_stopped(energy):
    assert energy.on_prom(f"systemctl is-active {TIMER}", check=False).stdout.strip() == "inactive"
    # oned as seen from the frontend is wrong (this machine still reaches it, so the run goes on)
    energy.write_inventory(energy_sync_one_xmlrpc="http://127.0.0.1:9/RPC2")
    failed = energy.deploy()
    assert failed.failed_hosts() == ["prom1"], failed.output[-4000:]
    assert "the trial run of the energy sync (--dry-run) failed:" in failed.output
    assert (
        "OpenNebula at http://127.0.0.1:9/RPC2 is unreachable (one.hostpool.info): connection refused; "
        "check one_xmlrpc and that oned runs"
    ) in failed.output
    assert "the timer is not started until a trial run passes" in failed.output
    assert energy.on_prom(f"systemctl is-active {TIMER}", check=False).stdout.strip() == "inactive"

    energy.write_inventory()
    fixed = energy.deploy()
    assert fixed.returncode == 0 and fixed.failed_hosts() == [], fixed.output[-4000:]
    assert "[prom1] energy sync trial run: status: would write" in fixed.output
    assert (
        "prom1"
        in fixed.changed_hosts()[
            "Energy back into OpenNebula | Enable and start scaphandre-energy-sync.timer"
        ]
    )
    assert energy.on_prom(f"systemctl is-active {TIMER}", check=False).stdout.strip() == "active"


def test_remove_takes_the_attributes_away_first_and_a_rerun_finishes_after_oned_refused(energy):
    templates = {
        host_id: without_owned(energy.host_template(host_id)) for host_id in ONE_IDS.values()
    }
    vm_templates = {
        vm_id: without_owned(energy.vm_user_template(vm_id)) for vm_id in energy.vm_ids()
    }
    energy.simulator.set_mode("http500")  # oned's endpoint answering errors
    try:
        refused = energy.deploy("remove.py")
    finally:
        energy.simulator.set_mode("ok")
    assert refused.failed_hosts() == ["prom1"], refused.output[-4000:]
    assert "removing the SCAPHANDRE_* attributes from OpenNebula failed:" in refused.output
    assert "answered one.hostpool.info with HTTP 500" in refused.output
    for path in (*UNITS, SCRIPT, CONFIG):
        energy.on_prom(f"test -e {path}")  # left in place for the rerun
    assert energy.on_prom(f"systemctl is-enabled {TIMER}", check=False).stdout.strip() == "disabled"
    assert energy.on_prom(f"systemctl is-active {TIMER}", check=False).stdout.strip() == "inactive"
    assert owned(energy.host_template(6)), "nothing was removed yet"

    run = energy.deploy("remove.py")
    assert run.returncode == 0 and run.failed_hosts() == [], run.output[-6000:]
    assert (
        "[prom1] energy sync attributes removed: status: removed from 6 (2 hosts, 4 VMs), failed 0"
        in run.output
    )
    for path in (*UNITS, SCRIPT, CONFIG, "/usr/local/lib/scaphandre-energy-sync"):
        assert energy.on_prom(f"test -e {path}", check=False).returncode == 1, path
    for listing in ("list-unit-files", "list-units --all"):  # neither on disk nor known to systemd
        listed = energy.on_prom(
            f"systemctl {listing} 'scaphandre-energy-sync*' --no-legend", check=False
        )
        assert listed.stdout.strip() == "", listed.stdout
    for host_id, template in templates.items():
        assert energy.host_template(host_id) == template, (
            "ours gone, every other attribute as it was"
        )
    for vm_id, template in vm_templates.items():
        assert energy.vm_user_template(vm_id) == template
    energy.calls()

    again = energy.deploy("remove.py")
    assert again.returncode == 0, again.output[-4000:]
    assert not [
        name
        for name, hosts in again.changed_hosts().items()
        if "prom1" in hosts and "energy" in name.lower()
    ]
    assert energy.calls() == {}, "nothing left to remove, OpenNebula not even asked"
