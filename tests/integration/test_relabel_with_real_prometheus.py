"""The scaphandre job, as rendered, labels per-VM series with one_vm_id inside a real Prometheus.

A real /usr/bin/prometheus (Debian's 2.42) runs as a subprocess on a free
127.0.0.1 port with a config from with_job/scaphandre_job and a targets file
from render_targets_file. It scrapes two stand-in exporters (test doubles:
http.server threads on 127.0.0.1) that serve Scaphandre 1.0's lines without a
Content-Type header, like the real Scaphandre. The test then asks Prometheus'
HTTP API which labels the stored series and the targets carry.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tasks.prometheus.config_file import with_job
from tasks.prometheus.job import scaphandre_job
from tasks.prometheus.targets import ScrapeTarget, render_targets_file

PROMETHEUS = "/usr/bin/prometheus"
STARTUP_DEADLINE_S = 30
SERIES_DEADLINE_S = 30

# What the real Scaphandre 1.0 serves on an OpenNebula host (as observed with 1.0.2):
# pid 101 runs as qemu-system-* so --qemu sets vmname; pid 102 runs as
# qemu-kvm-one so only cmdline (argv joined with no separator) names the guest.
SCAPHANDRE_LINES = """\
# HELP scaph_host_power_microwatts Power measurement on the whole host, in microwatts
# TYPE scaph_host_power_microwatts gauge
scaph_host_power_microwatts 21000000
# HELP scaph_process_power_consumption_microwatts Power consumption due to the process, measured on at the topology level, in microwatts
# TYPE scaph_process_power_consumption_microwatts gauge
scaph_process_power_consumption_microwatts{pid="101",exe="qemu-system-x86_64",cmdline="/usr/bin/qemu-system-x86_64-nameguest=one-42,debug-threads=on-machinepc",vmname="one-42"} 3000000
scaph_process_power_consumption_microwatts{pid="102",exe="qemu-kvm-one",cmdline="/usr/bin/qemu-kvm-one-nameguest=one-43,debug-threads=on-machinepc"} 2000000
scaph_process_power_consumption_microwatts{pid="103",exe="sshd",cmdline="/usr/sbin/sshd-D"} 10
scaph_process_power_consumption_microwatts{pid="104",exe="qemu-system-x86_64",cmdline="/usr/bin/qemu-system-x86_64-nameguest=lab-vm,debug-threads=on",vmname="lab-vm"} 500000
scaph_process_power_consumption_microwatts{pid="105",exe="qemu-system-x86_64",cmdline="/usr/bin/qemu-system-x86_64-nameguest=one-99,debug-threads=on",vmname="one-44"} 400000
scaph_process_power_consumption_microwatts{pid="106",exe="qemu-kvm-one",cmdline="/usr/bin/qemu-kvm-one-nameguest=one-05,debug-threads=on-machinepc"} 300000
scaph_process_power_consumption_microwatts{pid="107",exe="qemu-system-x86_64",cmdline="/usr/bin/qemu-system-x86_64-nameguest=one-007,debug-threads=on",vmname="one-007"} 200000
scaph_process_power_consumption_microwatts{pid="108",exe="qemu-kvm-one",cmdline="/usr/bin/qemu-kvm-one-nameguest=one-0,debug-threads=on"} 100000
scaph_process_power_consumption_microwatts{pid="109",exe="qemu-system-x86_64",cmdline="/usr/bin/qemu-system-x86_64-nameguest=one-12a,debug-threads=on",vmname="one-12a"} 90000
scaph_process_power_consumption_microwatts{pid="110",exe="qemu-kvm-one",cmdline="/usr/bin/qemu-kvm-one-nameguest=one-\u0663,debug-threads=on"} 80000
scaph_process_power_consumption_microwatts{pid="111",exe="qemu-kvm-one",cmdline="/usr/bin/qemu-kvm-one-nameguest=one-+5,debug-threads=on"} 70000
"""  # noqa: E501 - exposition lines as Scaphandre writes them, one sample a line
# pid 104: a guest not started by OpenNebula -> no one_vm_id.
# pid 105: contrived disagreement between vmname and cmdline -> vmname wins,
#          proving the cmdline rule never overwrites a value already set.
# pids 106-111: only a canonical decimal ID names a VM: "05", "007", "12a", an Arabic-Indic
#          digit three and "+5" name none (VM 5's power must not be another guest's); "0" is VM 0.
EXPECTED_VM_IDS = {
    "101": "42",
    "102": "43",
    "103": None,
    "104": None,
    "105": "44",
    "106": None,
    "107": None,
    "108": "0",
    "109": None,
    "110": None,
    "111": None,
}


class ScaphandreTestDoubleHandler(BaseHTTPRequestHandler):
    """Serves SCAPHANDRE_LINES on /metrics with no Content-Type header."""

    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = SCAPHANDRE_LINES.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name; output kept clean
        pass


@dataclass
class RunningPrometheus:
    url: str
    targets: list[ScrapeTarget]
    log: Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def api_get(base_url: str, path: str, **params) -> dict:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    with urllib.request.urlopen(f"{base_url}{path}{query}", timeout=5) as response:
        return json.load(response)


def wait_until(condition, deadline_s: float, what: str, log: Path):
    """Poll condition() until it returns something truthy, at most deadline_s seconds."""
    deadline = time.monotonic() + deadline_s
    last_error = None
    while time.monotonic() < deadline:
        try:
            result = condition()
            if result:
                return result
        except OSError as error:  # not listening yet
            last_error = error
        time.sleep(0.5)
    log_tail = log.read_text()[-3000:] if log.exists() else "(no log)"
    pytest.fail(
        f"{what} not within {deadline_s}s (last error: {last_error})\nPrometheus log:\n{log_tail}"
    )


@pytest.fixture(scope="module")
def exporters():
    """Two stand-in Scaphandre exporters on 127.0.0.1, stopped after the module."""
    servers = [ThreadingHTTPServer(("127.0.0.1", 0), ScaphandreTestDoubleHandler) for _ in range(2)]
    threads = [threading.Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@pytest.fixture(scope="module")
def prometheus(exporters, tmp_path_factory):
    """A real Prometheus scraping the exporters through the rendered scaphandre job."""
    assert shutil.which(PROMETHEUS), f"{PROMETHEUS} missing: apt-get install prometheus"
    workdir = tmp_path_factory.mktemp("prometheus")
    targets = [
        ScrapeTarget(address=exporters[0], one_host_id=3, host_name="kvm-node-a"),
        # A NAME with what YAML reads otherwise than JSON (NEL, LINE SEPARATOR), quotes, a
        # backslash and non-ASCII: Prometheus must label with it exactly as OpenNebula has it.
        ScrapeTarget(address=exporters[1], one_host_id=7, host_name='kvm-node-b "é" \\ \x85\u2028'),
    ]
    targets_file = workdir / "scaphandre_targets.yml"
    targets_file.write_text(render_targets_file(targets))
    job = scaphandre_job(
        targets_file=str(targets_file),
        prometheus_version=(2, 42, 0),
        scrape_interval="1s",
        scrape_timeout="1s",
    )
    config = workdir / "prometheus.yml"
    config.write_bytes(with_job(None, job, None, str(targets_file)))
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("w") as log_stream:
        process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log_stream,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: (
                process.poll() is None
                and urllib.request.urlopen(f"{url}/-/ready", timeout=2).status == 200
            ),
            STARTUP_DEADLINE_S,
            "Prometheus ready",
            log,
        )
        yield RunningPrometheus(url=url, targets=targets, log=log)
    finally:
        process.terminate()  # only the process this fixture started, by its PID
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def process_series(prometheus: RunningPrometheus) -> list[dict]:
    """Label sets of every scraped per-process series, once all of them are stored."""
    expected = len(EXPECTED_VM_IDS) * len(prometheus.targets)

    def all_series():
        reply = api_get(
            prometheus.url, "/api/v1/query", query="scaph_process_power_consumption_microwatts"
        )
        series = [item["metric"] for item in reply["data"]["result"]]
        return series if len(series) >= expected else None

    return wait_until(
        all_series, SERIES_DEADLINE_S, f"{expected} per-process series", prometheus.log
    )


def test_one_vm_id_from_vmname_else_cmdline_and_absent_otherwise(prometheus):
    series = process_series(prometheus)
    assert len(series) == len(EXPECTED_VM_IDS) * len(prometheus.targets)
    for labels in series:
        expected = EXPECTED_VM_IDS[labels["pid"]]
        if expected is None:
            assert "one_vm_id" not in labels, labels
        else:
            assert labels.get("one_vm_id") == expected, labels
        assert all(value != "" for value in labels.values()), labels


def test_every_series_carries_its_hypervisors_ids(prometheus):
    series = process_series(prometheus)
    reply = api_get(prometheus.url, "/api/v1/query", query="scaph_host_power_microwatts")
    series += [item["metric"] for item in reply["data"]["result"]]
    by_address = {t.address: t for t in prometheus.targets}
    for labels in series:
        target = by_address[labels["instance"]]
        assert labels["job"] == "scaphandre"
        assert labels["host_id"] == labels["one_host_id"] == str(target.one_host_id)
        assert labels["host_name"] == target.host_name


def test_targets_are_up_with_host_labels(prometheus):
    def healthy_targets():
        reply = api_get(prometheus.url, "/api/v1/targets", state="active")
        active = reply["data"]["activeTargets"]
        up = [t for t in active if t["health"] == "up"]
        return active if len(up) == len(prometheus.targets) else None

    active = wait_until(healthy_targets, SERIES_DEADLINE_S, "all targets up", prometheus.log)
    found = {
        t["labels"]["instance"]: (
            t["labels"]["host_id"],
            t["labels"]["one_host_id"],
            t["labels"]["host_name"],
        )
        for t in active
    }
    assert found == {
        t.address: (str(t.one_host_id), str(t.one_host_id), t.host_name) for t in prometheus.targets
    }
    assert {t["scrapePool"] for t in active} == {"scaphandre"}
