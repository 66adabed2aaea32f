"""Smoke test of the test bed's production-shaped hosts, WITHOUT the product.

It proves, on a fresh bed and before any deploy, what the end-to-end tests of
"do no harm" and of the Prometheus variants rely on:

* a hypervisor is shaped like a bridged KVM node: forwarding off (also after a
  reboot), FORWARD ACCEPT, two guests on br0 that reach each other only through
  the host's FORWARD chain (bridge netfilter on);
* a hypervisor whose operator installed Docker's engine at its defaults shows
  Docker's damage: forwarding on, FORWARD DROP, guests cut off; and its engine
  runs the stand-in exporter;
* prom1 is an OpenNebula-style Prometheus (opennebula-prometheus.service, no
  ExecReload, /etc/one/prometheus) with its own jobs scraped;
* prom3's prometheus.service runs Prometheus 3.5 from /usr/local/bin, which
  scrapes a target sending no Content-Type only with fallback_scrape_protocol.

Needs a Docker engine on this machine, Debian's mirror (image builds) and
tests/testbed/fetch-prometheus3.sh run once (scripts/setup.sh does it).
SOTB_BED_PREFIX / SOTB_BED_SSH_PORT_BASE / SOTB_BED_PROMETHEUS_PORT move its bed
(prom3's API port is the Prometheus port + 1).
"""

from __future__ import annotations

import json
import time
import urllib.request

import pytest

from tests.testbed.bed import PROMETHEUS_KINDS, TestBed, bed_settings_from_env

PREFIX = "sotb-shape"
SSH_PORT_BASE = 2801
PROMETHEUS_API_PORT = 9231  # and 9232 for the Prometheus 3 host
PLAIN, WITH_DOCKER = "hv1", "hv3"
OPENNEBULA_PROMETHEUS, PROMETHEUS3 = "prom1", "prom3"
STAND_IN = "scaphandre-test-double:1.0.2"
NO_CONTENT_TYPE_PORT = 9299

# A target that, like Scaphandre, answers /metrics without a Content-Type header.
NO_CONTENT_TYPE_SERVER = f"""
import http.server

class Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"# TYPE no_content_type_double_up gauge\\nno_content_type_double_up 1\\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.HTTPServer(("127.0.0.1", {NO_CONTENT_TYPE_PORT}), Metrics).serve_forever()
"""
NO_CONTENT_TYPE_JOBS = f"""
  - job_name: no_content_type_with_fallback
    fallback_scrape_protocol: PrometheusText0.0.4
    scrape_interval: 2s
    static_configs:
      - targets: ['localhost:{NO_CONTENT_TYPE_PORT}']
  - job_name: no_content_type_strict
    scrape_interval: 2s
    static_configs:
      - targets: ['localhost:{NO_CONTENT_TYPE_PORT}']
"""


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    """A fresh bed: hv1 plain, hv3 with a preinstalled engine, prom1 OpenNebula-style,
    prom3 Prometheus 3; removed afterwards."""
    settings = bed_settings_from_env(PREFIX, SSH_PORT_BASE, PROMETHEUS_API_PORT)
    test_bed = TestBed(
        state_dir=tmp_path_factory.mktemp("shape-bed"),
        hypervisors=(PLAIN, WITH_DOCKER),
        preinstalled_docker=(WITH_DOCKER,),
        prometheus_kind="opennebula",
        extra_prometheus={PROMETHEUS3: ("prometheus3", settings["prometheus_api_port"] + 1)},
        **settings,
    )
    test_bed.build_images()
    try:
        test_bed.up()
        yield test_bed
    finally:
        test_bed.down()


def wait_until(check, timeout_s: float, what: str):
    """Poll check() until it returns something truthy; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(1)
    pytest.fail(f"{what} not seen within {timeout_s} s")


def api(bed: TestBed, host: str, path: str) -> dict:
    """GET a Prometheus host's API (published on 127.0.0.1); the `data` member."""
    with urllib.request.urlopen(bed.prometheus_url_of(host) + path, timeout=10) as reply:
        return json.load(reply)["data"]


def target_health(bed: TestBed, host: str) -> dict[str, tuple[str, str]]:
    """{job: (health, lastError)} of a Prometheus host's active targets."""
    targets = api(bed, host, "/api/v1/targets")["activeTargets"]
    return {t["labels"]["job"]: (t["health"], t["lastError"]) for t in targets}


def assert_shaped_like_a_bridged_kvm_node(state: dict) -> None:
    assert state["ipv4_forward"] == 0
    assert state["ipv6_forward_all"] == 0
    assert state["iptables_forward_policy"] == "ACCEPT"
    assert state["ip6tables_forward_policy"] == "ACCEPT"
    assert state["rules"] == {tool: {"filter": [], "nat": []} for tool in ("iptables", "ip6tables")}
    assert state["bridges"] == ["br0"]
    assert state["bridge_nf"]["bridge-nf-call-iptables"] == 1
    assert state["bridge_nf"]["bridge-nf-call-ip6tables"] == 1


def assert_damaged_by_docker_defaults(state: dict) -> None:
    """Docker sets FORWARD to DROP only when it finds forwarding off and turns it on
    itself: so this also proves the host's sysctl was applied before the engine started."""
    assert state["ipv4_forward"] == 1, "the engine turned forwarding on"
    assert state["iptables_forward_policy"] == "DROP", "the engine set FORWARD to DROP"
    assert state["ip6tables_forward_policy"] == "ACCEPT", "no IPv6 in Docker's default setup"
    assert set(state["bridges"]) == {"br0", "docker0"}
    assert state["bridge_nf"]["bridge-nf-call-iptables"] == 1


def test_plain_hypervisor_routes_nothing_and_its_vms_reach_each_other(bed):
    assert_shaped_like_a_bridged_kvm_node(bed.network_state(PLAIN))
    assert bed.vms_reach_each_other(PLAIN)
    assert bed.exec(PLAIN, "sh", "-c", "command -v dockerd", check=False).returncode != 0


def test_vm_traffic_crosses_the_forward_chain_and_never_leaves_the_host(bed):
    """Bridge netfilter really applies: a FORWARD DROP cuts the guests off; the guests
    have no route but their link-local subnet and br0 has no uplink."""
    bed.exec(PLAIN, "iptables", "-P", "FORWARD", "DROP")
    try:
        assert not bed.vms_reach_each_other(PLAIN)
    finally:
        bed.exec(PLAIN, "iptables", "-P", "FORWARD", "ACCEPT")
    assert bed.vms_reach_each_other(PLAIN)
    for vm in ("vmA", "vmB"):
        routes = bed.exec(PLAIN, "ip", "-n", vm, "route", "show").stdout.split("\n")
        assert [r.split()[0] for r in routes if r.strip()] == ["169.254.99.0/24"]
    members = bed.exec(PLAIN, "ip", "-o", "link", "show", "master", "br0").stdout
    assert sorted(line.split(": ")[1].split("@")[0] for line in members.splitlines()) == [
        "vethA",
        "vethB",
    ]


def test_forwarding_off_is_the_hosts_own_persisted_setting(bed):
    persisted = bed.exec(PLAIN, "sh", "-c", "cat /etc/sysctl.d/*.conf").stdout.splitlines()
    assert "net.ipv4.ip_forward = 0" in persisted
    assert "net.ipv6.conf.all.forwarding = 0" in persisted
    assert bed.exec(PLAIN, "systemctl", "is-active", "systemd-sysctl").stdout.strip() == "active"
    order = bed.exec(
        PLAIN, "systemctl", "show", "-p", "After", "-p", "Before", "testbed-vm-network.service"
    ).stdout
    assert "systemd-sysctl.service" in order and "docker.service" in order


def test_preinstalled_engine_at_defaults_cut_the_vms_off(bed):
    assert bed.exec(WITH_DOCKER, "systemctl", "is-enabled", "docker").stdout.strip() == "enabled"
    assert bed.exec(WITH_DOCKER, "systemctl", "is-active", "docker").stdout.strip() == "active"
    assert (
        bed.exec(WITH_DOCKER, "test", "-e", "/etc/docker/daemon.json", check=False).returncode == 1
    ), "Docker's defaults: no daemon.json"
    state = bed.network_state(WITH_DOCKER)
    assert_damaged_by_docker_defaults(state)
    raw = bed.exec(WITH_DOCKER, "iptables", "-S").stdout
    assert "-N DOCKER-USER" in raw and "-A FORWARD -j DOCKER-USER" in raw
    assert state["rules"]["iptables"] == {"filter": [], "nat": []}, (
        "every rule the engine added counts as Docker's"
    )
    assert not bed.vms_reach_each_other(WITH_DOCKER)


def test_preinstalled_engine_runs_the_stand_in_exporter(bed):
    assert (
        bed.exec(WITH_DOCKER, "docker", "image", "inspect", STAND_IN, check=False).returncode == 0
    ), "docker.service should have loaded the stand-in"
    bed.exec(WITH_DOCKER, "modprobe", "intel_rapl_msr")
    bed.exec(
        WITH_DOCKER,
        "docker",
        "run",
        "-d",
        "--name",
        "scaphandre",
        "--network",
        "host",
        "--privileged",
        "-v",
        "/proc:/proc",
        "-v",
        "/sys/class/powercap:/sys/class/powercap",
        "-v",
        "/var/run/docker.sock:/var/run/docker.sock",
        STAND_IN,
        "prometheus",
        "--qemu",
        "--containers",
    )
    try:

        def scraped() -> bool:
            proc = bed.exec(
                WITH_DOCKER,
                "curl",
                "-s",
                "--max-time",
                "3",
                "http://127.0.0.1:8080/metrics",
                check=False,
            )
            return "scaph_host_power_microwatts" in proc.stdout

        wait_until(scraped, 30, f"the stand-in's /metrics on {WITH_DOCKER}")
    finally:
        bed.exec(WITH_DOCKER, "docker", "rm", "-f", "scaphandre", check=False)


def test_reboot_brings_each_hypervisor_back_as_it_was(bed):
    before = bed.network_state(PLAIN)
    for host in (PLAIN, WITH_DOCKER):
        bed.stop_host(host)
    for host in (PLAIN, WITH_DOCKER):
        bed.start_host(host)
    assert bed.network_state(PLAIN) == before
    assert_shaped_like_a_bridged_kvm_node(before)
    assert bed.vms_reach_each_other(PLAIN)
    assert_damaged_by_docker_defaults(bed.network_state(WITH_DOCKER))
    assert not bed.vms_reach_each_other(WITH_DOCKER)


def test_opennebula_style_prometheus_runs_as_opennebula_ships_it(bed):
    host = OPENNEBULA_PROMETHEUS
    kind = bed.hosts[host].prometheus
    assert kind == PROMETHEUS_KINDS["opennebula"]

    def systemctl(*args: str) -> str:
        return bed.exec(host, "systemctl", *args, check=False).stdout.strip()

    assert systemctl("is-active", kind.service) == "active"
    assert systemctl("is-enabled", kind.service) == "enabled"
    assert systemctl("is-enabled", "prometheus.service") == "masked"
    assert systemctl("show", "-p", "ExecReload", "--value", kind.service) == ""
    assert bed.exec(host, "systemctl", "reload", kind.service, check=False).returncode != 0
    assert systemctl("show", "-p", "User", "--value", kind.service) == "oneadmin"
    assert (
        bed.exec(host, "stat", "-c", "%U", "/var/lib/prometheus/data").stdout.strip() == "oneadmin"
    )
    assert api(bed, host, "/api/v1/status/flags")["config.file"] == kind.config_file
    bed.exec(host, kind.promtool, "check", "config", kind.config_file)


def test_opennebula_style_prometheus_scrapes_its_own_jobs(bed):
    def settled() -> dict | None:
        health = target_health(bed, OPENNEBULA_PROMETHEUS)
        return health if all(h != "unknown" for h, _ in health.values()) else None

    health = wait_until(settled, 60, "a first scrape of every OpenNebula job")
    assert set(health) == {"prometheus", "node_exporter", "opennebula_exporter", "libvirt_exporter"}
    assert health["prometheus"][0] == "up" and health["node_exporter"][0] == "up"
    # OpenNebula's own exporters are not simulated: their jobs are down, visibly.
    assert health["opennebula_exporter"][0] == "down"
    assert health["libvirt_exporter"][0] == "down"


def test_opennebula_style_prometheus_reloads_on_sighup(bed):
    def last_config_time() -> str:
        return api(bed, OPENNEBULA_PROMETHEUS, "/api/v1/status/runtimeinfo")["lastConfigTime"]

    before = last_config_time()
    time.sleep(1.1)  # lastConfigTime has one-second resolution
    bed.exec(
        OPENNEBULA_PROMETHEUS,
        "systemctl",
        "kill",
        "--kill-who=main",
        "-s",
        "HUP",
        "opennebula-prometheus",
    )
    wait_until(lambda: last_config_time() != before, 20, "a configuration reload after SIGHUP")
    assert api(bed, OPENNEBULA_PROMETHEUS, "/api/v1/status/runtimeinfo")["reloadConfigSuccess"]


def test_prometheus3_host_service_runs_3_5_beside_debians_2_42(bed):
    host = PROMETHEUS3
    kind = bed.hosts[host].prometheus
    assert api(bed, host, "/api/v1/status/buildinfo")["version"].startswith("3.5.")
    main_pid = bed.exec(
        host, "systemctl", "show", "-p", "MainPID", "--value", kind.service
    ).stdout.strip()
    assert bed.exec(host, "readlink", f"/proc/{main_pid}/exe").stdout.strip() == kind.binary
    assert kind.binary != "/usr/bin/prometheus"
    assert "version 2.42" in bed.exec(host, "/usr/bin/prometheus", "--version").stdout
    assert "version 3.5." in bed.exec(host, kind.promtool, "--version").stdout


def test_prometheus3_scrapes_a_target_without_content_type_only_with_fallback(bed):
    host = PROMETHEUS3
    kind = bed.hosts[host].prometheus
    bed.exec(
        host,
        "systemd-run",
        "--unit",
        "no-content-type-double",
        "python3",
        "-c",
        NO_CONTENT_TYPE_SERVER,
    )
    headers = wait_until(
        lambda: (
            bed.exec(
                host,
                "curl",
                "-s",
                "-i",
                "--max-time",
                "3",
                f"http://localhost:{NO_CONTENT_TYPE_PORT}/metrics",
                check=False,
            ).stdout
        ),
        15,
        "the no-Content-Type target",
    )
    assert "content-type" not in headers.lower()
    bed.exec(host, "sh", "-c", f"cat >> {kind.config_file}", input=NO_CONTENT_TYPE_JOBS)
    bed.exec(host, kind.promtool, "check", "config", kind.config_file)
    bed.exec(host, "systemctl", "reload", kind.service)

    def both_scraped() -> dict | None:
        health = target_health(bed, host)
        jobs = ("no_content_type_with_fallback", "no_content_type_strict")
        if all(job in health and health[job][0] != "unknown" for job in jobs):
            return health
        return None

    health = wait_until(both_scraped, 30, "scrapes of the no-Content-Type target")
    assert health["no_content_type_with_fallback"][0] == "up"
    assert health["no_content_type_strict"][0] == "down"
    assert "Content-Type" in health["no_content_type_strict"][1]
