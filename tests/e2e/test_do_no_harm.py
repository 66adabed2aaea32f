"""End to end: the deploy does no harm on hypervisors shaped like production bridged KVM nodes
(forwarding off, guests on br0, bridge netfilter on), and takes away only what it brought.

Its own bed: hv1 a bare node, hv2 a bare node whose operator already wrote a daemon.json
(no engine yet; a symbolic link to a root-only file they keep elsewhere), hv3 a node whose
operator installed Docker's engine at its defaults
(so its FORWARD policy is DROP and its guests do not reach each other: the operator's
damage, which the deploy must report and not touch). The scenarios run in file order:
before = after over a deploy, a no-op rerun, a reboot and remove.py; the operator's
engine never reconfigured, restarted or removed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.cloud import (
    REPO,
    PrometheusApi,
    bed_port,
    bed_prefix,
    bed_with_opennebula,
    render_inventory,
    run_pyinfra,
    wait_until,
)

pytestmark = pytest.mark.e2e

PREFIX = bed_prefix("sotb-noharm")
SSH_PORT_BASE = bed_port(3101)
PROMETHEUS_API_PORT = bed_port(9205)
HYPERVISORS = ("hv1", "hv2", "hv3")
OPERATORS_ENGINE = "hv3"
ENGINE_BY_DEPLOY = ("hv1", "hv2")
POOL = [
    {"id": 31 + i, "name": name, "hostname": name, "im_mad": "kvm", "state": 2}
    for i, name in enumerate(HYPERVISORS)
]
ONE_IDS = {host["name"]: str(host["id"]) for host in POOL}

IMAGE = "scaphandre-test-double:1.0.2"
DAEMON_JSON = "/etc/docker/daemon.json"
RECORD_DIR = "/var/lib/scaphandre-opennebula"
RECORD_FILE = f"{RECORD_DIR}/installed.json"
OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}
# hv2's operator prepared the engine's logging before any engine was installed, and once
# asked for iptables explicitly: the deploy overrides that key and gives the file back on
# removal byte for byte. They keep it in /srv/docker (root only) and link it into /etc/docker.
HV2_OPERATOR_DAEMON_JSON = {
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m"},
    "iptables": True,
}
HV2_OPERATOR_BYTES = (json.dumps(HV2_OPERATOR_DAEMON_JSON, indent=4) + "\n").encode()
HV2_LINK_TARGET = "/srv/docker/daemon.json"
WARNING = "warning: the Docker engine here was not installed by this deploy and is left as it is"


class NoHarmBed:
    """The bed, its simulator, inventories, and each hypervisor's state before any deploy."""

    def __init__(self, bed, simulator, state_dir):
        self.bed, self.simulator, self.state_dir = bed, simulator, state_dir
        self.before: dict[str, dict] = {}
        self.reach_before: dict[str, bool] = {}
        self.engine_before: str = ""

    def inventory(self, name: str = "inventory", **data) -> Path:
        """An inventory of the bed as an operator writes it, with `data` for every hypervisor."""
        path = self.state_dir / f"{name}.py"
        return render_inventory(
            path, self.bed, list(HYPERVISORS), {h: dict(data) for h in HYPERVISORS}
        )

    def sh(self, host: str, script: str, check: bool = True) -> str:
        return self.bed.exec(host, "sh", "-c", script, check=check, timeout=120).stdout

    def engine_identity(self, host: str) -> str:
        """docker.service's main PID and start time: they change when the engine is restarted."""
        return self.sh(
            host, "systemctl show -p MainPID -p ExecMainStartTimestampMonotonic docker.service"
        ).strip()

    def json_file(self, host: str, path: str):
        text = self.sh(host, f"cat {path} 2>/dev/null || echo '<missing>'")
        return None if text.strip() == "<missing>" else json.loads(text)

    def link_state(self, host: str) -> str:
        """hv2's daemon.json: where the link points, and the mode and bytes (base64) of that file."""
        return self.sh(
            host,
            f"readlink {DAEMON_JSON}; stat -c %a {HV2_LINK_TARGET}; base64 -w0 {HV2_LINK_TARGET}",
        )

    def exists(self, host: str, path: str) -> bool:
        return self.bed.exec(host, "test", "-e", path, check=False).returncode == 0

    def assert_vm_networking_as_before(self, when: str) -> None:
        """ip_forward (v4, v6), FORWARD policies, the operator's rules, bridges and bridge-nf-*
        sysctls as before the first deploy on every hypervisor, and the guests' ping as before."""
        for host in HYPERVISORS:
            assert self.bed.network_state(host) == self.before[host], (
                f"{host}'s VM networking changed {when}"
            )
            assert self.bed.vms_reach_each_other(host) is self.reach_before[host], (
                f"{host}'s guests {when}"
            )

    @property
    def prometheus(self) -> PrometheusApi:
        return PrometheusApi(self.bed.prometheus_url)


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("noharm")
    with bed_with_opennebula(
        PREFIX,
        state_dir,
        HYPERVISORS,
        SSH_PORT_BASE,
        PROMETHEUS_API_PORT,
        POOL,
        preinstalled_docker=(OPERATORS_ENGINE,),
    ) as (bed, simulator, _password):
        noharm = NoHarmBed(bed, simulator, state_dir)
        bed.exec(
            "hv2",
            "sh",
            "-c",
            f"mkdir -p /etc/docker /srv/docker && cat > {HV2_LINK_TARGET} && "
            f"chmod 600 {HV2_LINK_TARGET} && ln -s {HV2_LINK_TARGET} {DAEMON_JSON}",
            input=HV2_OPERATOR_BYTES.decode(),
        )
        noharm.before = {host: bed.network_state(host) for host in HYPERVISORS}
        noharm.reach_before = {host: bed.vms_reach_each_other(host) for host in HYPERVISORS}
        noharm.engine_before = noharm.engine_identity(OPERATORS_ENGINE)
        yield noharm


def hosts_warned(run) -> set[str]:
    return {
        host for host in HYPERVISORS if re.search(rf"\[{host}\].*{re.escape(WARNING)}", run.output)
    }


def failed_verify_checks(completed: subprocess.CompletedProcess) -> set[str]:
    return set(re.findall(r"^FAILED tests/verify/\S+::(\S+)", completed.stdout, re.MULTILINE))


def run_verification_suite(cloud, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/verify",
            "--inventory",
            str(cloud.inventory()),
            "-q",
            "-p",
            "no:cacheprovider",
            *extra,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_hypervisors_start_shaped_like_production(cloud):
    for host in ENGINE_BY_DEPLOY:
        state = cloud.before[host]
        assert (state["ipv4_forward"], state["ipv6_forward_all"]) == (0, 0)
        assert state["iptables_forward_policy"] == "ACCEPT" and state["bridges"] == ["br0"]
        assert cloud.reach_before[host] is True
    # The operator's engine at Docker's defaults: forwarding on, FORWARD DROP, guests cut off.
    operators = cloud.before[OPERATORS_ENGINE]
    assert operators["iptables_forward_policy"] == "DROP" and "docker0" in operators["bridges"]
    assert cloud.reach_before[OPERATORS_ENGINE] is False


def test_an_unparseable_daemon_json_fails_that_host_untouched_and_the_others_are_deployed(cloud):
    operators = cloud.sh("hv2", f"cat {DAEMON_JSON}")
    broken = operators.replace('"iptables": true', '"iptables": true,')  # a trailing comma
    cloud.bed.exec("hv2", "sh", "-c", f"cat > {DAEMON_JSON}", input=broken)
    try:
        run = run_pyinfra(cloud.inventory())
        assert run.returncode != 0 and run.failed_hosts() == ["hv2"], run.output[-6000:]
        assert re.search(
            rf"\[hv2\].*{DAEMON_JSON} is not valid JSON \(.* at line \d+ column \d+\): fix it or move it "
            "aside, then rerun; the deploy left it untouched and installed no Docker engine",
            run.output,
        )
        assert cloud.sh("hv2", f"cat {DAEMON_JSON}") == broken
        assert cloud.bed.exec("hv2", "sh", "-c", "command -v dockerd", check=False).returncode != 0
        assert not cloud.exists("hv2", RECORD_DIR)
        assert cloud.bed.network_state("hv2") == cloud.before["hv2"]
    finally:
        cloud.bed.exec("hv2", "sh", "-c", f"cat > {DAEMON_JSON}", input=operators)


def test_the_deploy_changes_no_vm_networking_and_leaves_the_operators_engine_alone(cloud):
    run = run_pyinfra(cloud.inventory())
    assert run.returncode == 0, run.output[-6000:]
    assert run.failed_hosts() == []

    cloud.assert_vm_networking_as_before("over the deploy")
    # The engines the deploy installed started with its daemon.json, merged with the operator's:
    # hv2's written through its link, into the file it points to, still root-only.
    assert cloud.json_file("hv1", DAEMON_JSON) == OURS
    assert cloud.json_file("hv2", DAEMON_JSON) == {**HV2_OPERATOR_DAEMON_JSON, **OURS}
    link, mode, _ = cloud.link_state("hv2").split("\n")
    assert (link, mode) == (HV2_LINK_TARGET, "600")
    # The operator's engine: daemon.json not written, engine not restarted, damage reported there only.
    assert not cloud.exists(OPERATORS_ENGINE, DAEMON_JSON)
    assert cloud.engine_identity(OPERATORS_ENGINE) == cloud.engine_before
    assert hosts_warned(run) == {OPERATORS_ENGINE}, run.output[-6000:]
    warning = next(line for line in run.output.splitlines() if WARNING in line)
    assert (
        "iptables FORWARD policy is DROP" in warning
        and "iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT" in warning
    )

    for host in HYPERVISORS:
        network = cloud.sh(
            host,
            "docker inspect -f '{{.HostConfig.NetworkMode}} {{json .HostConfig.PortBindings}}' scaphandre",
        )
        assert network.split()[0] == "host" and network.split()[1] in ("{}", "null"), network
        assert cloud.bed.exec(host, "pgrep", "-x", "docker-proxy", check=False).returncode == 1, (
            f"docker-proxy on {host}"
        )


def test_the_record_holds_what_the_deploy_brought_root_only(cloud):
    engine = {"package_manager": "apt", "packages": ["docker.io"]}

    def written(settings: dict) -> str:
        return hashlib.sha256((json.dumps(settings, indent=2) + "\n").encode()).hexdigest()

    assert cloud.json_file("hv1", RECORD_FILE) == {
        "format": 2,
        "engine": engine,
        "images": [IMAGE],
        "daemon_json": {
            "settings": OURS,
            "previous_file": {"present": False},
            "written_sha256": written(OURS),
        },
    }
    assert cloud.json_file("hv2", RECORD_FILE) == {
        "format": 2,
        "engine": engine,
        "images": [IMAGE],
        "daemon_json": {
            "settings": OURS,
            "previous": {"iptables": True},
            "previous_file": {
                "present": True,
                "base64": base64.b64encode(HV2_OPERATOR_BYTES).decode(),
            },
            "written_sha256": written({**HV2_OPERATOR_DAEMON_JSON, **OURS}),
        },
    }
    # hv3's engine and image (loaded when its engine started at boot) were the operator's: nothing to record.
    assert not cloud.exists(OPERATORS_ENGINE, RECORD_DIR)
    for host in ENGINE_BY_DEPLOY:
        assert cloud.sh(host, f"stat -c '%U %a' {RECORD_DIR} {RECORD_FILE}").split("\n")[:2] == [
            "root 700",
            "root 600",
        ]


def test_prometheus_scrapes_every_hypervisor_on_the_host_network_with_vm_ids(cloud):
    wanted = {f"{host}:8080": ONE_IDS[host] for host in HYPERVISORS}

    def all_up():
        targets = {t["labels"]["instance"]: t for t in cloud.prometheus.targets()}
        return set(targets) == set(wanted) and all(t["health"] == "up" for t in targets.values())

    cloud.prometheus.wait_for(f"targets {sorted(wanted)} up", all_up)

    def vm_power():
        series = cloud.prometheus.query('scaph_process_power_consumption_microwatts{one_vm_id!=""}')
        found = {(s["metric"]["one_host_id"], s["metric"]["one_vm_id"]) for s in series}
        expected = {(ONE_IDS[h], str(vm)) for h in HYPERVISORS for vm in cloud.bed.vm_ids(h)}
        return expected <= found

    cloud.prometheus.wait_for("per-VM power with one_vm_id on every hypervisor", vm_power)


def test_the_verification_suite_fails_only_the_vm_traffic_check_of_the_operators_host(cloud):
    done = run_verification_suite(cloud)
    assert done.returncode != 0
    assert failed_verify_checks(done) == {
        f"test_vm_traffic_not_blocked_by_docker[{OPERATORS_ENGINE}]"
    }, done.stdout[-6000:] + done.stderr[-2000:]
    assert re.search(
        rf"{OPERATORS_ENGINE}: the iptables FORWARD policy is DROP .* VMs on br0 cannot reach",
        done.stdout,
    )


def test_a_no_op_rerun_changes_nothing_and_warns_again(cloud):
    started = time.monotonic()
    run = run_pyinfra(cloud.inventory())
    elapsed = time.monotonic() - started
    assert run.returncode == 0, run.output[-6000:]
    assert run.changed_hosts() == {}, "a rerun with nothing changed must change nothing"
    assert hosts_warned(run) == {OPERATORS_ENGINE}
    cloud.assert_vm_networking_as_before("over a no-op rerun")
    assert cloud.engine_identity(OPERATORS_ENGINE) == cloud.engine_before
    print(f"no-op rerun: {elapsed:.1f} s")


def test_a_reboot_keeps_vm_networking_as_it_was(cloud):
    cloud.bed.restart_host("hv1")
    wait_until(
        "hv1's container back after the reboot",
        lambda: (
            cloud.sh(
                "hv1", "docker inspect -f '{{.State.Status}}' scaphandre 2>/dev/null; true"
            ).strip()
            == "running"
        ),
        120,
    )
    cloud.assert_vm_networking_as_before("over a reboot")


def test_the_documented_fix_lets_the_operators_vms_through(cloud):
    fix = "iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT"
    cloud.sh(OPERATORS_ENGINE, fix)
    try:
        assert cloud.bed.vms_reach_each_other(OPERATORS_ENGINE) is True
        run = run_pyinfra(cloud.inventory(), "--limit", OPERATORS_ENGINE)
        assert run.returncode == 0 and run.changed_hosts() == {}, run.output[-4000:]
        assert hosts_warned(run) == set(), "the fixed host is no longer warned about"
        done = run_verification_suite(cloud, "-k", "vm_traffic")
        assert done.returncode == 0, done.stdout[-4000:]
    finally:
        cloud.sh(OPERATORS_ENGINE, fix.replace("-I DOCKER-USER", "-D DOCKER-USER"))
    assert cloud.bed.vms_reach_each_other(OPERATORS_ENGINE) is False


def test_removal_takes_away_only_what_the_deploy_brought(cloud):
    run = run_pyinfra(
        cloud.inventory("remove_engine", remove_docker_engine=True), script="remove.py"
    )
    assert run.returncode == 0, run.output[-6000:]

    cloud.assert_vm_networking_as_before("over remove.py")
    changed = {op.split(" | ")[-1]: sorted(hosts) for op, hosts in run.changed_hosts().items()}
    assert changed.get(f"Remove the image {IMAGE} the deploy brought") == list(ENGINE_BY_DEPLOY), (
        changed
    )
    assert changed.get("Remove the Docker engine") == list(ENGINE_BY_DEPLOY), changed
    for host in ENGINE_BY_DEPLOY:
        assert cloud.bed.exec(host, "sh", "-c", "command -v dockerd", check=False).returncode != 0
        assert not cloud.exists(host, RECORD_DIR)
    assert not cloud.exists("hv1", DAEMON_JSON), "there was none before the deploy"
    link, mode, content = cloud.link_state("hv2").split("\n")
    assert (link, mode) == (HV2_LINK_TARGET, "600"), "still a link to a root-only file"
    assert base64.b64decode(content) == HV2_OPERATOR_BYTES, "the operator's file back byte for byte"

    # The operator's engine stays, untouched and running, with its image; the host says so.
    assert re.search(
        rf"\[{OPERATORS_ENGINE}\].*the Docker engine here was not installed by this deploy: it stays",
        run.output,
    ), run.output[-4000:]
    assert cloud.engine_identity(OPERATORS_ENGINE) == cloud.engine_before
    assert cloud.sh(OPERATORS_ENGINE, f"docker image inspect -f '{{{{.Id}}}}' {IMAGE}").startswith(
        "sha256:"
    )
    assert cloud.sh(OPERATORS_ENGINE, "docker ps -aq --filter name=^scaphandre$").strip() == ""
    assert not cloud.exists(OPERATORS_ENGINE, DAEMON_JSON)

    again = run_pyinfra(
        cloud.inventory("remove_engine", remove_docker_engine=True), script="remove.py"
    )
    assert again.returncode == 0, again.output[-4000:]
    assert again.changed_hosts() == {}, "removing twice must change nothing the second time"
    cloud.assert_vm_networking_as_before("over a second remove.py")
