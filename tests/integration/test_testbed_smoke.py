"""Smoke test of the end-to-end test bed itself, WITHOUT the product.

It proves the simulation the end-to-end tests rely on: SSH with the bed's key,
the modprobe shim and RAPL counters, the simulated VMs' command lines, the
Prometheus host, and once the risky inner-Docker path (docker.io installed by
apt in a hypervisor, the stand-in Scaphandre image loaded, run privileged with
the upstream mounts, scraped across the bed network).

Needs a Docker engine on this machine and Debian's mirror (apt in a host).
SOTB_BED_PREFIX / SOTB_BED_SSH_PORT_BASE / SOTB_BED_PROMETHEUS_PORT move its bed.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest

from tests.testbed.bed import QEMU_KVM_ONE, QEMU_SYSTEM, TestBed, bed_settings_from_env

PREFIX = "sotb-smoke"
STAND_IN = "scaphandre-test-double:1.0.2"
RUN_UPSTREAM_STYLE = (
    "docker",
    "run",
    "-d",
    "--name",
    "scaphandre",
    "--privileged",
    "--restart",
    "unless-stopped",
    "-v",
    "/proc:/proc",
    "-v",
    "/sys/class/powercap:/sys/class/powercap",
    "-v",
    "/var/run/docker.sock:/var/run/docker.sock",
    "-p",
    "8080:8080",
    STAND_IN,
    "prometheus",
    "--qemu",
    "--containers",
)


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """A fresh two-hypervisor bed for this module, removed afterwards."""
    test_bed = TestBed(
        state_dir=tmp_path_factory.mktemp("smoke-bed"),
        hypervisors=("hv1", "hv2"),
        **bed_settings_from_env(PREFIX),
    )
    test_bed.build_images()
    try:
        test_bed.up()
        yield test_bed
    finally:
        test_bed.down()


def energy_uj(bed: TestBed, host: str) -> int:
    return int(bed.exec(host, "cat", "/sys/class/powercap/intel-rapl:0/energy_uj").stdout)


def wait_until(check, timeout_s: float, what: str):
    """Poll check() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what} not seen within {timeout_s} s")


def test_ssh_with_the_bed_key_reaches_each_host_by_its_name(bed):
    for name in ("hv1", "hv2", bed.prometheus_name):
        assert bed.ssh(name, "uname -n").stdout.strip() == name


def test_hosts_boot_clean_and_have_no_docker_engine(bed):
    for name in bed.hypervisors:
        assert bed.exec(name, "systemctl", "is-system-running").stdout.strip() == "running"
        assert bed.exec(name, "sh", "-c", "command -v docker dockerd", check=False).returncode != 0


def test_modprobe_shim_creates_rapl_tree_and_counter_advances(bed):
    assert (
        bed.exec("hv2", "test", "-e", "/sys/class/powercap/intel-rapl:0", check=False).returncode
        == 1
    ), "no RAPL before a module is loaded"
    bed.exec("hv2", "modprobe", "-a", "intel_rapl_common", "intel_rapl_msr")
    zones = bed.exec("hv2", "ls", "/sys/class/powercap").stdout.split()
    assert {"intel-rapl:0", "intel-rapl:0:0", "intel-rapl:0:1"} <= set(zones)
    assert (
        bed.exec("hv2", "cat", "/sys/class/powercap/intel-rapl:0/name").stdout.strip()
        == "package-0"
    )
    first = energy_uj(bed, "hv2")
    time.sleep(2)
    watts = (energy_uj(bed, "hv2") - first) / 2 / 1e6
    assert 10 < watts < 80, f"simulated package power {watts:.1f} W"


def test_unknown_module_fails_like_modprobe(bed):
    proc = bed.exec("hv2", "modprobe", "no_such_module", check=False)
    assert proc.returncode == 1
    assert re.match(
        r"modprobe: FATAL: Module no_such_module not found in directory /lib/modules/\S+",
        proc.stderr,
    )


def test_intel_rapl_common_alone_exposes_nothing(bed):
    bed.exec("hv1", "modprobe", "intel_rapl_common")
    assert (
        bed.exec("hv1", "test", "-e", "/sys/class/powercap/intel-rapl:0", check=False).returncode
        == 1
    )


def test_vm_processes_have_opennebula_command_lines(bed):
    for name in bed.hypervisors:
        host = bed.hosts[name]
        for vm in host.vms:
            pid = bed.exec(name, "pgrep", "-f", f"guest={vm.name},").stdout.split()[0]
            raw = bed.exec(name, "cat", f"/proc/{pid}/cmdline").stdout
            assert raw.split("\0")[:-1] == [
                vm.program,
                "-name",
                f"guest={vm.name},debug-threads=on",
                "-machine",
                "pc",
            ]
        assert {vm.program for vm in host.vms} == {QEMU_SYSTEM, QEMU_KVM_ONE}
    all_ids = [i for name in bed.hypervisors for i in bed.vm_ids(name)]
    assert len(all_ids) == len(set(all_ids)), "VM IDs must be distinct across hosts"


def test_prometheus_runs_under_systemd_with_debian_default_config(bed):
    assert (
        bed.exec(bed.prometheus_name, "systemctl", "is-active", "prometheus").stdout.strip()
        == "active"
    )
    with urllib.request.urlopen(
        bed.prometheus_url + "/api/v1/status/buildinfo", timeout=10
    ) as reply:
        assert json.load(reply)["data"]["version"].startswith("2.")
    config = bed.exec(bed.prometheus_name, "cat", "/etc/prometheus/prometheus.yml").stdout
    assert "job_name: 'prometheus'" in config


def test_persisted_modules_come_back_after_restart_others_do_not(bed):
    bed.exec("hv2", "sh", "-c", "echo intel_rapl_msr > /etc/modules-load.d/testbed-smoke.conf")
    bed.exec("hv1", "modprobe", "intel_rapl_msr")  # loaded but not persisted
    bed.restart_host("hv2")
    bed.restart_host("hv1")
    assert (
        bed.exec("hv2", "test", "-d", "/sys/class/powercap/intel-rapl:0", check=False).returncode
        == 0
    )
    assert (
        bed.exec("hv1", "test", "-d", "/sys/class/powercap/intel-rapl:0", check=False).returncode
        == 1
    )
    bed.exec("hv2", "rm", "/etc/modules-load.d/testbed-smoke.conf")


def test_inner_docker_runs_the_stand_in_and_prometheus_host_scrapes_it(bed):
    """The risky path, once: apt-get docker.io in hv1, stand-in loaded, upstream-style run."""
    bed.exec("hv1", "modprobe", "-a", "intel_rapl_common", "intel_rapl_msr")
    bed.exec(
        "hv1",
        "sh",
        "-c",
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive "
        "apt-get install -y -qq docker.io >/tmp/apt-docker.log 2>&1 || "
        "{ tail -20 /tmp/apt-docker.log; exit 1; }",
        timeout=600,
    )
    assert bed.exec("hv1", "systemctl", "is-active", "docker").stdout.strip() == "active"
    assert bed.exec("hv1", "docker", "image", "inspect", STAND_IN, check=False).returncode == 0, (
        "docker.service should have loaded the stand-in image"
    )
    bed.exec("hv1", *RUN_UPSTREAM_STYLE)

    def scraped() -> str | None:
        proc = bed.exec(
            bed.prometheus_name,
            "curl",
            "-s",
            "--max-time",
            "5",
            "-i",
            "http://hv1:8080/metrics",
            check=False,
        )
        return proc.stdout if "scaph_host_power_microwatts" in proc.stdout else None

    reply = wait_until(scraped, 30, "/metrics of hv1:8080 from the Prometheus host")
    headers, body = reply.split("\n\n", 1)  # text mode turned CRLF into LF
    assert "content-type" not in headers.lower(), "Scaphandre sends no Content-Type"
    host_power = float(re.search(r"^scaph_host_power_microwatts (\S+)$", body, re.M).group(1))
    assert host_power > 0
    vm_a, vm_b = bed.hosts["hv1"].vms
    assert f'vmname="{vm_a.name}"' in body
    assert f'cmdline="{vm_b.cmdline}"' in body
    kvm_one_line = next(line for line in body.splitlines() if vm_b.cmdline in line)
    assert "vmname" not in kvm_one_line, "qemu-kvm-one gets no vmname, as with real Scaphandre"
    assert re.search(
        r'^scaph_domain_power_microwatts\{domain_name="core",socket_id="0"\} \d+$', body, re.M
    )


def test_stand_in_fails_visibly_without_rapl_or_host_proc(bed):
    """Same hypervisor as above (docker.io installed there): the failure modes."""
    no_proc = bed.exec("hv1", "docker", "run", "--rm", STAND_IN, "prometheus", check=False)
    assert no_proc.returncode == 1
    assert "mount the host's /proc" in no_proc.stderr
    no_socket = bed.exec(
        "hv1",
        "docker",
        "run",
        "--rm",
        "-v",
        "/proc:/proc",
        STAND_IN,
        "prometheus",
        "--containers",
        check=False,
    )
    assert no_socket.returncode == 1 and "/var/run/docker.sock" in no_socket.stderr
    bed.exec("hv1", "modprobe", "-r", "intel_rapl_msr")
    try:
        no_rapl = bed.exec(
            "hv1",
            "docker",
            "run",
            "--rm",
            "-v",
            "/proc:/proc",
            "-v",
            "/sys/class/powercap:/sys/class/powercap",
            STAND_IN,
            "prometheus",
            check=False,
        )
        assert no_rapl.returncode == 1
        assert "intel-rapl:0 not found: RAPL is not exposed" in no_rapl.stderr
    finally:
        bed.exec("hv1", "modprobe", "intel_rapl_msr")
    port_taken = bed.exec(
        "hv1",
        "docker",
        "run",
        "--rm",
        "--network",
        "host",
        "-v",
        "/proc:/proc",
        STAND_IN,
        "prometheus",
        "-p",
        "8080",
        check=False,
    )
    assert (
        port_taken.returncode == 1 and "port 8080 on 0.0.0.0 is already in use" in port_taken.stderr
    )
    bad_arg = bed.exec(
        "hv1", "docker", "run", "--rm", STAND_IN, "prometheus", "--bogus", check=False
    )
    assert bad_arg.returncode == 2 and "--bogus" in bad_arg.stderr
