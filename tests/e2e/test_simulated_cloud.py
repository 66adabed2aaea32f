"""End to end: the real `pyinfra` CLI over SSH against simulated KVM hypervisors and a
real Prometheus, ending with Prometheus itself reporting every hypervisor's power.

The scenarios run in file order on one cloud: fresh deploy, no-op rerun, a new
hypervisor, the verification suite, a reboot.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time

import pytest
import yaml

from tests.e2e.cloud import REPO, PrometheusApi, bed_port, run_pyinfra

pytestmark = pytest.mark.e2e

CONTAINER = "scaphandre"
PROMETHEUS2_API_PORT = bed_port(9201)


def container_identity(cloud, host: str) -> str:
    return cloud.bed.exec(
        host, "docker", "inspect", "-f", "{{.Id}} {{.State.StartedAt}}", CONTAINER
    ).stdout.strip()


def last_reload(cloud) -> float:
    series = cloud.prometheus.query("prometheus_config_last_reload_success_timestamp_seconds")
    return float(series[0]["value"][1])


def expected_targets(cloud, names) -> dict[str, str]:
    """scrape address -> OpenNebula ID, as the simulator lists them."""
    return {f"{name}:8080": str(cloud.one_ids[name]) for name in names}


def wait_for_targets_up(cloud, names):
    want = expected_targets(cloud, names)

    def all_up():
        targets = {t["labels"]["instance"]: t for t in cloud.prometheus.targets()}
        if set(targets) != set(want):
            return None
        return targets if all(t["health"] == "up" for t in targets.values()) else None

    return cloud.prometheus.wait_for(f"targets {sorted(want)} up", all_up)


def test_fresh_deploy_reports_every_hypervisor_with_its_opennebula_id(cloud):
    networking_before = {host: cloud.bed.network_state(host) for host in cloud.hypervisors}
    run = run_pyinfra(cloud.inventory)
    assert run.returncode == 0, run.output[-6000:]
    assert run.failed_hosts() == []
    assert cloud.simulator.calls["one.hostpool.info"] == 1, "one OpenNebula API call per run"
    assert cloud.password not in run.output
    # Bridged KVM nodes: the Docker engine the deploy installed left their VM networking alone.
    for host in cloud.hypervisors:
        assert cloud.bed.network_state(host) == networking_before[host], host
        assert cloud.bed.vms_reach_each_other(host), f"{host}'s guests no longer reach each other"

    targets = wait_for_targets_up(cloud, cloud.hypervisors)
    for address, one_id in expected_targets(cloud, cloud.hypervisors).items():
        labels = targets[address]["labels"]
        assert labels["host_id"] == one_id and labels["one_host_id"] == one_id, labels

    def host_power():
        series = cloud.prometheus.query('scaph_host_power_microwatts{job="scaphandre"} > 0')
        return (
            series
            if {s["metric"]["one_host_id"] for s in series} == set(cloud.one_ids.values())
            else None
        )

    cloud.prometheus.wait_for("scaph_host_power_microwatts > 0 for every hypervisor", host_power)

    def vm_power():
        series = cloud.prometheus.query('scaph_process_power_consumption_microwatts{one_vm_id!=""}')
        found = {(s["metric"]["one_host_id"], s["metric"]["one_vm_id"]) for s in series}
        # Each host runs one VM as qemu-system-x86_64 (Scaphandre names it) and one as qemu-kvm-one (it does not).
        wanted = {(cloud.one_ids[h], str(vm)) for h in cloud.hypervisors for vm in cloud.vm_ids(h)}
        return found if wanted <= found else None

    cloud.prometheus.wait_for("per-VM power with one_vm_id for both kinds of VM process", vm_power)


def test_immediate_rerun_changes_nothing(cloud):
    before = {host: container_identity(cloud, host) for host in cloud.hypervisors}
    reload_before = last_reload(cloud)
    calls_before = cloud.simulator.calls["one.hostpool.info"]

    run = run_pyinfra(cloud.inventory)

    assert run.returncode == 0, run.output[-6000:]
    assert run.changed_hosts() == {}, "a rerun with nothing changed must change nothing"
    assert cloud.simulator.calls["one.hostpool.info"] == calls_before + 1
    assert {host: container_identity(cloud, host) for host in cloud.hypervisors} == before
    assert last_reload(cloud) == reload_before, "Prometheus was reloaded on a no-op rerun"


def test_a_new_hypervisor_is_added_without_touching_the_others(cloud):
    before = {host: container_identity(cloud, host) for host in cloud.hypervisors}
    cloud.add_hypervisor("hv4", one_id=21)

    run = run_pyinfra(cloud.inventory, "--limit", "hv4", "--limit", cloud.bed.prometheus_name)

    assert run.returncode == 0, run.output[-6000:]
    changed = {host for hosts in run.changed_hosts().values() for host in hosts}
    assert "hv4" in changed and not changed & set(before)
    assert {host: container_identity(cloud, host) for host in before} == before
    wait_for_targets_up(cloud, cloud.hypervisors)


def run_verification_suite(cloud) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/verify",
            "--inventory",
            str(cloud.inventory),
            "-q",
            "-p",
            "no:cacheprovider",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_verification_suite_passes_then_names_a_stopped_container(cloud):
    passing = run_verification_suite(cloud)
    assert passing.returncode == 0, passing.stdout[-6000:] + passing.stderr[-2000:]

    cloud.bed.exec("hv2", "docker", "stop", CONTAINER)
    try:
        failing = run_verification_suite(cloud)
    finally:
        cloud.bed.exec("hv2", "docker", "start", CONTAINER)
    assert failing.returncode != 0
    assert "test_container_running[hv2]" in failing.stdout
    assert "test_container_running[hv1]" not in failing.stdout.split("short test summary")[-1]


def test_a_rebooted_hypervisor_comes_back_by_itself(cloud):
    started_before = container_identity(cloud, "hv3")
    cloud.bed.restart_host("hv3")

    deadline = time.monotonic() + 120
    state = ""
    while time.monotonic() < deadline:
        probe = cloud.bed.exec(
            "hv3",
            "sh",
            "-c",
            "test -e /sys/class/powercap/intel-rapl:0 && docker inspect -f '{{.State.Status}}' scaphandre",
            check=False,
        )
        state = probe.stdout.strip()
        if state == "running":
            break
        time.sleep(2)
    assert state == "running", "RAPL or the container did not come back after a restart"
    assert container_identity(cloud, "hv3") != started_before, (
        "the container should have been restarted"
    )
    wait_for_targets_up(cloud, cloud.hypervisors)


def test_discovered_inventory_matches_and_picks_up_a_new_hypervisor(cloud):
    calls_before = cloud.simulator.calls["one.hostpool.info"]
    run = run_pyinfra(cloud.discovery_inventory)
    assert run.returncode == 0, run.output[-6000:]
    assert cloud.simulator.calls["one.hostpool.info"] == calls_before + 1, (
        "discovery shares the run's one API call"
    )
    assert "hv-retired (ID 30) skipped: disabled" in run.output
    assert "lxc-node (ID 2) skipped" in run.output
    assert run.changed_hosts() == {}, "the same hosts, discovered instead of listed, need no change"

    before = {host: container_identity(cloud, host) for host in cloud.hypervisors}
    cloud.add_hypervisor(
        "hv5", one_id=40
    )  # registered in OpenNebula; the discovery inventory is not edited
    run = run_pyinfra(cloud.discovery_inventory)
    assert run.returncode == 0, run.output[-6000:]
    changed = {host for hosts in run.changed_hosts().values() for host in hosts}
    assert "hv5" in changed and not changed & {"hv1.cloud.test", "hv2", "kvm-node-c", "hv4"}
    assert {host: container_identity(cloud, host) for host in before} == before
    wait_for_targets_up(cloud, cloud.hypervisors)


def test_two_prometheus_servers_share_the_hypervisors_when_sharded(cloud):
    cloud.bed.add_prometheus("prom2", api_port=PROMETHEUS2_API_PORT)
    cloud.prometheus_data = {"prometheus_scrape_mode": "shard"}
    cloud.write_inventory()

    run = run_pyinfra(cloud.inventory, "--limit", "prom1", "--limit", "prom2")
    assert run.returncode == 0, run.output[-6000:]

    servers = [PrometheusApi(cloud.bed.prometheus_url_of(name)) for name in ("prom1", "prom2")]
    # Prometheus' hashmod: the low 8 bytes of the MD5 of the address, modulo the number of servers.
    expected = [set(), set()]
    for name in cloud.hypervisors:
        address = f"{name}:8080"
        expected[
            int.from_bytes(hashlib.md5(address.encode(), usedforsecurity=False).digest()[8:], "big")
            % 2
        ].add(address)

    seen = []

    def split_as_expected():
        targets = [server.targets() for server in servers]
        shares = [
            {t["labels"]["instance"] for t in listed if t["health"] == "up"} for listed in targets
        ]
        seen[:] = [
            [
                {t["labels"]["instance"]: (t["health"], t.get("lastError")) for t in listed}
                for listed in targets
            ]
        ]
        return shares if shares == expected else None

    try:
        servers[0].wait_for(
            "the hypervisors split between prom1 and prom2", split_as_expected, timeout_s=180
        )
    except AssertionError:
        raise AssertionError(
            f"expected prom1, prom2 to scrape {expected}; they report {seen}"
        ) from None


def test_an_air_gapped_host_gets_the_image_from_a_local_archive(cloud, tmp_path):
    """No registry: the image comes from a `docker save` archive on the machine running pyinfra."""
    image = "scaphandre-test-double:1.0.2-airgap"
    subprocess.run(["docker", "tag", "scaphandre-test-double:1.0.2", image], check=True, timeout=60)
    archive = tmp_path / "scaphandre-image.tar"
    try:
        subprocess.run(["docker", "save", "-o", str(archive), image], check=True, timeout=300)
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True, timeout=60, check=False)
    cloud.host_data["hv1"] = {"scaphandre_image": image, "scaphandre_image_archive": str(archive)}
    cloud.write_inventory()

    run = run_pyinfra(cloud.inventory, "--limit", "hv1")
    assert run.returncode == 0, run.output[-6000:]
    assert (
        cloud.bed.exec(
            "hv1", "docker", "inspect", "-f", "{{.Config.Image}}", CONTAINER
        ).stdout.strip()
        == image
    )
    assert (
        cloud.bed.exec(
            "hv1", "sh", "-c", "ls /var/tmp | grep -c scaphandre-image || true"
        ).stdout.strip()
        == "0"
    )

    again = run_pyinfra(cloud.inventory, "--limit", "hv1")
    assert again.returncode == 0 and again.changed_hosts() == {}, (
        "a loaded image is not uploaded again"
    )

    cloud.host_data["hv1"] = {
        "scaphandre_image": "scaphandre-test-double:9.9.9",
        "scaphandre_image_archive": str(archive),
    }
    cloud.write_inventory()
    wrong = run_pyinfra(cloud.inventory, "--limit", "hv1")
    assert wrong.returncode != 0
    assert "does not hold scaphandre-test-double:9.9.9" in wrong.output
    assert (
        cloud.bed.exec(
            "hv1", "docker", "inspect", "-f", "{{.State.Status}}", CONTAINER
        ).stdout.strip()
        == "running"
    )
    cloud.host_data.pop("hv1")
    cloud.write_inventory()


def test_removal_takes_it_all_away_and_keeps_docker_and_other_jobs(cloud):
    run = run_pyinfra(cloud.inventory, script="remove.py")
    assert run.returncode == 0, run.output[-6000:]

    for host in cloud.hypervisors:
        assert (
            cloud.bed.exec(
                host, "docker", "ps", "-aq", "--filter", f"name=^{CONTAINER}$"
            ).stdout.strip()
            == ""
        )
        assert (
            cloud.bed.exec(
                host, "test", "-e", "/etc/modules-load.d/scaphandre-rapl.conf", check=False
            ).returncode
            == 1
        )
        assert cloud.bed.exec(host, "systemctl", "is-active", "docker").stdout.strip() == "active"
    for server in cloud.bed.prometheus_servers:
        config = cloud.bed.exec(server, "cat", "/etc/prometheus/prometheus.yml").stdout
        jobs = [job["job_name"] for job in yaml.safe_load(config)["scrape_configs"]]
        assert "scaphandre" not in jobs and "prometheus" in jobs, f"{server}:\n{config}"
        assert "scaphandre_rules.yml" not in config
        for leftover in (
            "/etc/prometheus/scaphandre_targets.yml",
            "/etc/prometheus/scaphandre_rules.yml",
        ):
            assert cloud.bed.exec(server, "test", "-e", leftover, check=False).returncode == 1, (
                leftover
            )
        api = PrometheusApi(cloud.bed.prometheus_url_of(server))
        api.wait_for(
            f"the scaphandre job gone from {server} after the reload",
            lambda api=api: api.targets() == [],
        )

    again = run_pyinfra(cloud.inventory, script="remove.py")
    assert again.returncode == 0, again.output[-6000:]
    assert again.changed_hosts() == {}, "removing twice must change nothing the second time"
