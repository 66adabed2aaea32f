"""One bad host never stops the run, and the paths no other scenario walks: the real
`pyinfra` CLI over SSH against simulated hypervisors, a real Prometheus and the
OpenNebula API simulator (test doubles), on a bed of its own.

Every scenario sets up what it needs itself (a deploy of the good inventory first when
it needs deployed hosts) and judges by what this run changed, so none depends on the
order or timing of the others. docs/faults.md names every test here.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.e2e.cloud import PYINFRA, REPO, PyinfraRun, bed_port, bed_prefix, bed_with_opennebula
from tests.e2e.fault_cloud import FaultCloud, free_loopback_port

pytestmark = pytest.mark.e2e

PREFIX = bed_prefix("sotb-rob")
SSH_PORT_BASE = bed_port(2601)
PROMETHEUS_API_PORT = bed_port(9199)
HYPERVISORS = ("hv1", "hv2", "hv3")
POOL = [
    {"id": 5, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2},
    {"id": 8, "name": "hv2", "hostname": "hv2", "im_mad": "kvm", "state": 2},
    {"id": 11, "name": "hv3", "hostname": "hv3", "im_mad": "kvm", "state": 2},
]
ONE_IDS = {"hv1": "5", "hv2": "8", "hv3": "11"}
TARGETS_FILE = "/etc/prometheus/scaphandre_targets.yml"
PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
MONITOR_DIR = "/var/tmp/one/im"
DEPLOYED = {"modules_load": True, "docker": True, "rapl": True, "container": "running"}


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("robustness")
    with bed_with_opennebula(
        PREFIX, state_dir, HYPERVISORS, SSH_PORT_BASE, PROMETHEUS_API_PORT, POOL
    ) as (bed, simulator, password):
        yield FaultCloud(bed=bed, simulator=simulator, state_dir=state_dir, password=password)


def inventory(cloud, name: str, one: dict | None = None, **host_data) -> Path:
    return cloud.write_inventory(name, HYPERVISORS, one=one, host_data=host_data)


def deploy_all(cloud) -> None:
    """The precondition of the scenarios that need deployed hosts: every host as the good inventory says."""
    run = cloud.deploy(inventory(cloud, "good"))
    assert run.returncode == 0, run.output[-4000:]


def states(cloud) -> dict:
    return {host: cloud.hypervisor_state(host) for host in HYPERVISORS}


def targets_file_ids(cloud) -> dict[str, str]:
    entries = yaml.safe_load(cloud.read("prom1", TARGETS_FILE)) or []
    return {
        target: entry["labels"]["one_host_id"] for entry in entries for target in entry["targets"]
    }


def fingerprint(cloud) -> dict:
    """Everything a deploy could change, to tell "changed nothing" from "changed something"."""
    seen = {}
    for host in HYPERVISORS:
        seen[host] = cloud.sh(
            host,
            (
                "cat /etc/modules-load.d/scaphandre-rapl.conf 2>/dev/null; "
                "docker inspect -f '{{.Id}} {{.State.StartedAt}} {{.Config.Labels}}' scaphandre 2>/dev/null; "
                "docker images -q | sort; true"
            ),
        )
    seen["prom1"] = cloud.sh(
        "prom1",
        f"cat {PROMETHEUS_YML} {TARGETS_FILE} /etc/prometheus/scaphandre_rules.yml "
        "2>/dev/null; systemctl show -p ExecMainStartTimestamp prometheus",
    )
    return seen


def failed(run: PyinfraRun) -> list[str]:
    return sorted(run.failed_hosts())


# ---------------------------------------------------------------- one host's bad data fails that host only


def test_a_one_host_id_that_is_not_a_number_fails_that_host_only(cloud):
    before = cloud.hypervisor_state("hv2")
    run = cloud.deploy(inventory(cloud, "bad-id", hv2={"one_host_id": "kvm1"}))

    assert run.returncode != 0 and failed(run) == ["hv2"], run.output[-4000:]
    assert (
        "setting one_host_id is 'kvm1', not an OpenNebula host ID (the number `onehost list` shows): "
        "fix it in the host's or group's data"
    ) in run.output
    assert cloud.hypervisor_state("hv2") == before, "the refused host is not touched"
    assert cloud.hypervisor_state("hv1") == DEPLOYED and cloud.hypervisor_state("hv3") == DEPLOYED
    assert targets_file_ids(cloud) == {"hv1:8080": "5", "hv3:8080": "11"}


def test_two_hypervisors_on_one_opennebula_id_fail_alone(cloud):
    deploy_all(cloud)
    before, listed_before = states(cloud), targets_file_ids(cloud)
    run = cloud.deploy(inventory(cloud, "duplicate-id", hv2={"one_host_id": 11}))

    assert run.returncode != 0 and failed(run) == ["hv2", "hv3"], run.output[-4000:]
    assert (
        "inventory hosts hv2, hv3 all match OpenNebula host hv3 (ID 11): set one_host_id in the host data "
        "of the ones that are different machines, or remove the duplicate from the inventory"
    ) in run.output
    assert states(cloud) == before
    # Neither gets a new label; each keeps the entry it already had, as any host the run cannot label.
    assert (
        targets_file_ids(cloud) == listed_before == {f"{h}:8080": ONE_IDS[h] for h in HYPERVISORS}
    )


# ---------------------------------------------------------------- the monitor-database fallback, read on the hosts


def test_with_the_api_down_the_fallback_reads_ids_on_the_hosts_and_a_muddled_host_fails_alone(
    cloud,
):
    monitor_dbs = {
        "hv1": ["status_kvm_5.db"],
        "hv2": ["status_kvm_8.db", "status_kvm_9.db"],
        "hv3": ["status_kvm_11.db", "status_kvm_11.db-journal"],
    }
    for host, names in monitor_dbs.items():
        cloud.sh(host, f"mkdir -p {MONITOR_DIR} && cd {MONITOR_DIR} && touch {' '.join(names)}")
    down = cloud.one_data(
        one_xmlrpc=f"http://127.0.0.1:{free_loopback_port()}/RPC2", one_monitor_db_fallback=True
    )
    try:
        cloud.sh("prom1", f"rm -f {TARGETS_FILE}")  # the IDs below can only come from the hosts
        before = cloud.hypervisor_state("hv2")
        run = cloud.deploy(inventory(cloud, "fallback", one=down))
    finally:
        for host in HYPERVISORS:
            cloud.sh(host, "rm -rf /var/tmp/one")

    assert run.returncode != 0 and failed(run) == ["hv2"], run.output[-4000:]
    assert "could not be reached (connection refused)" in run.output
    assert "one_monitor_db_fallback is on: each hypervisor's ID is read from" in run.output
    assert "monitor databases of several OpenNebula host IDs (8, 9)" in run.output
    assert "set one_host_id in its host data" in run.output
    assert cloud.hypervisor_state("hv2") == before
    assert cloud.hypervisor_state("hv1") == DEPLOYED and cloud.hypervisor_state("hv3") == DEPLOYED
    assert targets_file_ids(cloud) == {"hv1:8080": "5", "hv3:8080": "11"}


def test_the_fallback_never_hides_wrong_credentials(cloud):
    (cloud.state_dir / "wrong_auth").write_text("oneadmin:not-the-password\n")
    for host in HYPERVISORS:
        cloud.sh(
            host, f"mkdir -p {MONITOR_DIR} && touch {MONITOR_DIR}/status_kvm_{ONE_IDS[host]}.db"
        )
    wrong = cloud.one_data(
        one_auth_file=str(cloud.state_dir / "wrong_auth"), one_monitor_db_fallback=True
    )
    try:
        before = fingerprint(cloud)
        run = cloud.deploy(inventory(cloud, "fallback-wrong-password", one=wrong))
        after = fingerprint(cloud)
    finally:
        for host in HYPERVISORS:
            cloud.sh(host, "rm -rf /var/tmp/one")

    assert run.returncode != 0
    assert "refused the credentials of user 'oneadmin'" in run.output
    assert "one_monitor_db_fallback is on" not in run.output
    assert after == before, "the run stops before any host changes"


# ---------------------------------------------------------------- --dry


def test_dry_run_on_a_changed_cloud_prints_the_changes_and_changes_nothing(cloud):
    deploy_all(cloud)
    moved = [dict(host, id=21) if host["name"] == "hv2" else dict(host) for host in POOL]
    cloud.simulator.set_hosts(moved)  # hv2 re-registered under a new ID
    try:
        before = fingerprint(cloud)
        path = inventory(cloud, "dry", hv1={"scaphandre_extra_docker_args": ["--label=dry-run=1"]})
        completed = subprocess.run(
            [str(PYINFRA), "--dry", "--json", str(path), "deploy.py"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
        after = fingerprint(cloud)
    finally:
        cloud.simulator.set_hosts(POOL)

    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    plan = json.loads(completed.stdout[completed.stdout.index("{") :])["plan"]
    changes = {
        op["name"].split(" | ")[-1]: op["hosts_with_change"]
        for op in plan
        if op["hosts_with_change"]
    }
    assert changes.get("Write the Scaphandre scrape targets") == ["prom1"], changes
    assert any(
        "Scaphandre container" in name and hosts == ["hv1"] for name, hosts in changes.items()
    ), changes
    assert after == before, "--dry changes nothing on any host"


# ---------------------------------------------------------------- a hypervisor lost mid-run


def run_killing(cloud, path: Path, victim: str, trigger: str, timeout_s: float = 600) -> PyinfraRun:
    """Run pyinfra; when its output first holds `trigger` (after every host's facts were
    read), power `victim` off at once (docker kill), from another thread."""
    process = subprocess.Popen(
        [str(PYINFRA), "-y", "--json", str(path), "deploy.py"],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "NO_COLOR": "1"},
    )
    killed = threading.Event()
    stdout_parts: list[str] = []
    stderr_lines: list[str] = []

    def watch_stderr() -> None:
        for line in process.stderr:
            stderr_lines.append(line)
            if trigger in line and not killed.is_set():
                subprocess.run(
                    ["docker", "kill", cloud.bed.hosts[victim].container],
                    capture_output=True,
                    timeout=60,
                    check=False,
                )
                killed.set()

    readers = [
        threading.Thread(target=watch_stderr, daemon=True),
        threading.Thread(target=lambda: stdout_parts.append(process.stdout.read()), daemon=True),
    ]
    for reader in readers:
        reader.start()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()  # this test's own process only
        process.wait(timeout=30)
    for reader in readers:
        reader.join(timeout=30)
    stdout = "".join(stdout_parts)
    assert killed.is_set(), f"pyinfra never printed {trigger!r}:\n{''.join(stderr_lines)[-3000:]}"
    results = json.loads(stdout[stdout.index("{") :]).get("results") if "{" in stdout else None
    run = PyinfraRun(process.returncode, stdout, "".join(stderr_lines), results)
    cloud.runs.append(run)
    return run


def test_a_hypervisor_that_goes_away_mid_run_fails_alone(cloud):
    deploy_all(cloud)
    # A changed spec gives every hypervisor a container to recreate late in the run.
    path = inventory(
        cloud,
        "lost",
        **{h: {"scaphandre_extra_docker_args": ["--label=run=lost"]} for h in HYPERVISORS},
    )
    try:
        run = run_killing(cloud, path, "hv3", trigger="--> Beginning operation run")
        assert run.returncode != 0 and failed(run) == ["hv3"], run.output[-4000:]
        # Where the loss shows depends on what hv3 was doing: a command, an upload or a fact.
        assert re.search(
            r"\[hv3\][^\n]*(socket/SSH error|SSH connection lost|Error)", run.output
        ), run.output[-4000:]
        assert "An internal exception occurred" not in run.output
        for host in ("hv1", "hv2"):
            labels = cloud.sh(host, "docker inspect -f '{{json .Config.Labels}}' scaphandre")
            assert (
                '"run":"lost"' in labels and cloud.hypervisor_state(host)["container"] == "running"
            )
        assert targets_file_ids(cloud) == {f"{h}:8080": ONE_IDS[h] for h in HYPERVISORS}, (
            "hv3 stays a target"
        )
    finally:
        cloud.bed.start_host("hv3")
    cloud.wait_until(
        "hv3 back with its container",
        lambda: cloud.hypervisor_state("hv3")["container"] == "running",
        120,
        2,
    )


# ---------------------------------------------------------------- the exporter


def test_an_exporter_that_never_serves_metrics_fails_the_host_with_its_last_log_lines(cloud):
    broken = {
        "scaphandre_extra_docker_args": ["--env=SCAPHANDRE_DOUBLE_POWERCAP_ROOT=/nonexistent"],
        "scaphandre_metrics_timeout_s": 6,
    }
    started = time.monotonic()
    run = cloud.deploy(inventory(cloud, "no-metrics", hv1=broken), "--limit", "hv1")
    elapsed = time.monotonic() - started
    try:
        assert run.returncode != 0, run.output[-4000:]
        assert "did not answer within 6s; last log lines of container scaphandre:" in run.output, (
            run.output[-4000:]
        )
        assert "/nonexistent/intel-rapl:0 not found: RAPL is not exposed" in run.output, (
            "the container's own log"
        )
        assert elapsed >= 6
    finally:
        good = cloud.deploy(inventory(cloud, "good"), "--limit", "hv1")
    assert good.returncode == 0, good.output[-3000:]


def test_the_narrower_security_set_is_deployed_and_serves_metrics(cloud):
    run = cloud.deploy(
        inventory(cloud, "unprivileged", hv2={"scaphandre_privileged": False}), "--limit", "hv2"
    )

    assert run.returncode == 0, run.output[-4000:]
    inspect = json.loads(cloud.sh("hv2", "docker inspect scaphandre"))[0]
    assert inspect["HostConfig"]["Privileged"] is False and inspect["State"]["Status"] == "running"
    assert "SYS_PTRACE" in {
        cap.upper().removeprefix("CAP_") for cap in inspect["HostConfig"]["CapAdd"]
    }

    # Power is a difference of two energy readings: the exporter's first answer after a start
    # can be 0 before it holds two, so wait for a positive reading rather than any reading.
    def host_power_microwatts():
        line = cloud.sh(
            "hv2",
            "curl -sf http://127.0.0.1:8080/metrics | grep '^scaph_host_power_microwatts'; true",
        )
        return float(line.split()[-1]) if line.strip() else None

    # 0.0 and None (no line yet) are both falsy, so this waits for a positive reading.
    power = cloud.wait_until(
        "a positive power reading from the unprivileged exporter", host_power_microwatts, 60
    )
    assert power > 0


# ---------------------------------------------------------------- remove.py on a prometheus.yml it cannot edit

UNEDITABLE = {
    "not-yaml": (REPO / "tests" / "data" / "prometheus" / "broken.yml").read_text(),
    "two-scaphandre-jobs": "scrape_configs:\n  - job_name: scaphandre\n    static_configs: [{targets: ['hv1:8080']}]\n"
    "  - job_name: scaphandre\n    static_configs: [{targets: ['hv2:8080']}]\n",
    "string-rule-files": f"rule_files: /etc/prometheus/scaphandre_rules.yml\nscrape_configs:\n"
    f"  - job_name: scaphandre\n    file_sd_configs: [{{files: [{TARGETS_FILE}]}}]\n",
}


@pytest.mark.parametrize("case", list(UNEDITABLE))
def test_remove_fails_a_server_whose_prometheus_yml_it_cannot_edit_and_the_others_are_removed(
    cloud, case
):
    deploy_all(cloud)
    deployed = cloud.read("prom1", PROMETHEUS_YML)
    cloud.write("prom1", PROMETHEUS_YML, UNEDITABLE[case])
    try:
        run = cloud.deploy(inventory(cloud, f"remove-{case}"), script="remove.py")
        live_after = cloud.read("prom1", PROMETHEUS_YML)
    finally:
        cloud.write("prom1", PROMETHEUS_YML, deployed)
        # remove.py took the exporter image the deploy recorded as its own; the bed has no registry
        # to pull it from again, so its loader stands in for the pull the next deploy would make.
        for host in HYPERVISORS:
            cloud.sh(host, "/usr/local/lib/testbed/load-scaphandre-double >/dev/null")

    assert "Traceback" not in run.output and "unexpected exception" not in run.output.lower(), (
        run.output[-4000:]
    )
    assert failed(run) == ["prom1"], run.output[-4000:]
    assert f"{PROMETHEUS_YML}: " in run.output and "left untouched" in run.output
    assert live_after == UNEDITABLE[case]
    for host in HYPERVISORS:
        assert cloud.hypervisor_state(host)["container"] is None, (
            "the hypervisors are removed all the same"
        )
