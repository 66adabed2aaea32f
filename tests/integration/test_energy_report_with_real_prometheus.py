"""The energy report (energy_report.py) against a real Prometheus holding recorded data.

The series the attribution rules record once a minute are written as OpenMetrics with
hand-chosen values, turned into TSDB blocks by the real `promtool tsdb create-blocks-from
openmetrics`, and served by a real Prometheus on 127.0.0.1: Debian's 2.42 and the 3.5 the
test bed fetches (tests/testbed/fetch-prometheus3.sh), whose range selectors treat their
left edge differently. The report runs as an operator runs it, a subprocess, and its CSV
files must hold the hand-computed figures.

February 2024 (29 days, 41 760 minutes), one sample a minute where measured:
  host 4: 100 W from Feb 1 00:00 to Feb 2 00:00 (1440 minutes). VM 101 runs there until
    12:00 (720 minutes: 20 W measured, 70 W attributed; parts 20 / 50 / 25 / 5 W), then
    the host has no VM (parts 0 / 0 / 95 / 5 W). Carbon intensity 100 g/kWh until 12:00,
    then 300: emissions 10 g/h, then 30 g/h; VM 101 7 g/h.
  host 9: 50 W from Feb 1 12:00 to Feb 2 00:00 except 18:00-19:00 (no sample: 660
    minutes). VM 101 moved there: 10 W measured, 50 W attributed (parts 10 / 40 / 0 / 0);
    intensity 200: host 10 g/h, VM 10 g/h.
  Samples just outside the month (Jan 31 23:59:59.999 and Mar 1 00:00) draw 1 MW:
    counting either would show.
January 2024: host 30 measured for 60 minutes at 60 W, and host 4's 1 MW sample at its
  very end; no intensity anywhere: that month's report says nothing about carbon.
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.integration.test_relabel_with_real_prometheus import free_port, wait_until

REPO = Path(__file__).resolve().parents[2]
PROMTOOL = "/usr/bin/promtool"
PROMETHEUS_BINARIES = {
    "prometheus-2.42": Path("/usr/bin/prometheus"),
    "prometheus-3.5": REPO / ".testbed" / "prometheus3" / "root" / "usr" / "bin" / "prometheus",
}
STARTUP_DEADLINE_S = 60
FEB = int(datetime(2024, 2, 1, tzinfo=UTC).timestamp())
MAR = int(datetime(2024, 3, 1, tzinfo=UTC).timestamp())
JAN_10 = int(datetime(2024, 1, 10, tzinfo=UTC).timestamp())
MINUTE = 60
FEBRUARY_MINUTES = 29 * 1440


def recorded_series() -> dict[str, dict[str, list[tuple[float, float]]]]:
    """{metric: {labels: [(unix seconds, value)]}}, as the rules would have recorded them."""
    series: dict[str, dict[str, list[tuple[float, float]]]] = {}

    def add(metric: str, labels: str, minutes, value) -> None:
        samples = series.setdefault(metric, {}).setdefault(labels, [])
        samples.extend(
            (FEB + minute * MINUTE, value(minute) if callable(value) else value)
            for minute in minutes
        )

    h4, h9 = 'job="scaphandre",one_host_id="4"', 'job="scaphandre",one_host_id="9"'
    vm_on_4, vm_on_9 = f'{h4},one_vm_id="101"', f'{h9},one_vm_id="101"'
    day, first_half = range(1440), range(720)
    on_9 = [m for m in range(720, 1440) if not 1080 <= m < 1140]  # 18:00-19:00 missing
    # host 4
    add("one_host:measured_power_watts", h4, day, 100.0)
    for part, before, after in (
        ("vms_dynamic", 20, 0),
        ("vms_constant", 50, 0),
        ("unallocated", 25, 95),
        ("host_processes", 5, 5),
    ):
        add(
            "one_host:power_part_watts",
            f'{h4},part="{part}"',
            day,
            lambda m, b=before, a=after: float(b if m < 720 else a),
        )
    add("one_host:emissions_gco2e_per_hour", h4, day, lambda m: 10.0 if m < 720 else 30.0)
    add("one_vm:measured_power_watts", vm_on_4, first_half, 20.0)
    add("one_vm:attributed_power_watts", vm_on_4, first_half, 70.0)
    add("one_vm:emissions_gco2e_per_hour", vm_on_4, first_half, 7.0)
    # host 9
    add("one_host:measured_power_watts", h9, on_9, 50.0)
    for part, value in (
        ("vms_dynamic", 10),
        ("vms_constant", 40),
        ("unallocated", 0),
        ("host_processes", 0),
    ):
        add("one_host:power_part_watts", f'{h9},part="{part}"', on_9, float(value))
    add("one_host:emissions_gco2e_per_hour", h9, on_9, 10.0)
    add("one_vm:measured_power_watts", vm_on_9, on_9, 10.0)
    add("one_vm:attributed_power_watts", vm_on_9, on_9, 50.0)
    add("one_vm:emissions_gco2e_per_hour", vm_on_9, on_9, 10.0)
    # VM 101's per-VM counts: one sample for each minute it was measured, on either host
    vm_minutes = sorted(set(first_half) | set(on_9))
    add("one_vm:host_count", 'job="scaphandre",one_vm_id="101"', vm_minutes, 1.0)
    add("one_vm:host_count_with_intensity", 'job="scaphandre",one_vm_id="101"', vm_minutes, 1.0)
    # just outside February: host 4 at Jan 31 23:59:59.999 (January's last millisecond), and
    # host 4 and VM 101 at Mar 1 00:00:00.000
    series["one_host:measured_power_watts"][h4] += [(FEB - 0.001, 1e6), (MAR, 1e6)]
    series["one_vm:attributed_power_watts"][vm_on_4].append((MAR, 1e6))
    # January: no carbon intensity anywhere
    h30 = 'job="scaphandre",one_host_id="30"'
    series["one_host:measured_power_watts"][h30] = [(JAN_10 + m * MINUTE, 60.0) for m in range(60)]
    return series


def openmetrics(series: dict[str, dict[str, list[tuple[float, float]]]]) -> str:
    lines = []
    for metric, by_labels in series.items():
        lines.append(f"# TYPE {metric} gauge")
        for labels, samples in by_labels.items():
            lines += [f"{metric}{{{labels}}} {value} {when}" for when, value in sorted(samples)]
    return "\n".join(lines) + "\n# EOF\n"


@pytest.fixture(scope="module")
def blocks(tmp_path_factory) -> Path:
    """TSDB blocks made by the real promtool from the recorded series."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"
    workdir = tmp_path_factory.mktemp("backfill")
    source = workdir / "recorded.om.txt"
    source.write_text(openmetrics(recorded_series()))
    made = subprocess.run(
        [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(workdir / "data")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert made.returncode == 0, made.stdout[-2000:] + made.stderr[-2000:]
    return workdir / "data"


@pytest.fixture(scope="module", params=sorted(PROMETHEUS_BINARIES))
def prometheus(request, blocks, tmp_path_factory):
    """A real Prometheus serving a copy of the blocks (retention long enough to keep 2024)."""
    binary = PROMETHEUS_BINARIES[request.param]
    assert binary.is_file(), (
        f"{binary} missing: run tests/testbed/fetch-prometheus3.sh (scripts/setup.sh does)"
    )
    workdir = tmp_path_factory.mktemp(request.param)
    shutil.copytree(blocks, workdir / "data")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = free_port()
    log = workdir / "prometheus.log"
    with log.open("w") as log_stream:
        process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                "--storage.tsdb.retention.time=100y",
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
        yield url
    finally:
        process.terminate()  # only the process this fixture started, by its PID
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def run_report(url: str, csv_dir: Path, *period: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(REPO / "energy_report.py"),
            "--prometheus",
            url,
            *period,
            "--csv-dir",
            str(csv_dir),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=csv_dir,
        check=False,
    )


def read_csv(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    return {row.get("vm_id") or row["host_id"]: row for row in rows}


def query_requests(url: str) -> dict[str, float]:
    """How many /api/v1/query and /api/v1/query_range requests Prometheus has answered, from
    its own /metrics (read directly: this Prometheus scrapes nothing)."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
        text = response.read().decode()
    counts: dict[str, float] = {}
    for line in text.splitlines():
        match = re.match(
            r'prometheus_http_requests_total\{.*handler="(/api/v1/query(?:_range)?)".*\} (\S+)$',
            line,
        )
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + float(match.group(2))
    return counts


def test_the_month_report_holds_the_hand_computed_figures(prometheus, tmp_path):
    before = query_requests(prometheus)
    report = run_report(prometheus, tmp_path, "--month", "2024-02")
    assert report.returncode == 0, report.stdout + report.stderr
    after = query_requests(prometheus)
    # One instant query for every figure, and no range query.
    assert after.get("/api/v1/query", 0) - before.get("/api/v1/query", 0) == 1
    assert after.get("/api/v1/query_range", 0) == before.get("/api/v1/query_range", 0)

    vms = read_csv(tmp_path / "energy-report-2024-02-vms.csv")
    hosts = read_csv(tmp_path / "energy-report-2024-02-hosts.csv")
    assert set(vms) == {"101"} and set(hosts) == {"4", "9"}
    vm = vms["101"]
    assert vm["hosts"] == "4;9"
    assert float(vm["measured_kwh"]) == pytest.approx((20 * 720 + 10 * 660) / 60_000)
    assert float(vm["attributed_kwh"]) == pytest.approx((70 * 720 + 50 * 660) / 60_000)
    assert float(vm["co2e_g"]) == pytest.approx((7 * 720 + 10 * 660) / 60)
    assert float(vm["hours_measured"]) == pytest.approx(1380 / 60)
    assert float(vm["hours_with_intensity"]) == pytest.approx(1380 / 60)
    assert float(vm["share_without_samples"]) == pytest.approx(
        1 - 1380 / FEBRUARY_MINUTES, abs=1e-6
    )

    four, nine = hosts["4"], hosts["9"]
    # The 1 MW samples at Jan 31 23:59:59.999 and Mar 1 00:00 are not counted, the one at Feb 1 00:00 is.
    assert float(four["measured_kwh"]) == pytest.approx(100 * 1440 / 60_000)
    assert float(four["hours_measured"]) == pytest.approx(24)
    assert float(four["vms_dynamic_kwh"]) == pytest.approx(20 * 720 / 60_000)
    assert float(four["vms_constant_kwh"]) == pytest.approx(50 * 720 / 60_000)
    assert float(four["unallocated_kwh"]) == pytest.approx((25 + 95) * 720 / 60_000)
    assert float(four["host_processes_kwh"]) == pytest.approx(5 * 1440 / 60_000)
    assert float(four["co2e_g"]) == pytest.approx((10 * 720 + 30 * 720) / 60)
    # The hour without samples on host 9 is a gap: 11 hours measured, not 12.
    assert float(nine["measured_kwh"]) == pytest.approx(50 * 660 / 60_000)
    assert float(nine["hours_measured"]) == pytest.approx(11)
    assert float(nine["share_without_samples"]) == pytest.approx(
        1 - 660 / FEBRUARY_MINUTES, abs=1e-6
    )
    for host in (four, nine):
        parts = sum(
            float(host[f"{part}_kwh"])
            for part in ("vms_dynamic", "vms_constant", "unallocated", "host_processes")
        )
        assert parts == pytest.approx(float(host["measured_kwh"]), abs=2e-6)

    table = report.stdout
    assert "Energy report 2024-02: 2024-02-01 00:00 to 2024-03-01 00:00 UTC (696.0 h)" in table
    assert (
        "CO2e g" in table
        and "all hypervisors: 2.950 kWh measured, 1.390 kWh attributed to VMs" in table
    )


def test_a_period_of_hours_counts_only_its_own_samples(prometheus, tmp_path):
    """Feb 1 11:00 to 13:00: an hour of VM 101 on each host; host 4 throughout."""
    report = run_report(
        prometheus, tmp_path, "--start", "2024-02-01T11:00:00Z", "--end", "2024-02-01T13:00:00Z"
    )
    assert report.returncode == 0, report.stdout + report.stderr
    label = "20240201T110000Z-20240201T130000Z"
    vm = read_csv(tmp_path / f"energy-report-{label}-vms.csv")["101"]
    hosts = read_csv(tmp_path / f"energy-report-{label}-hosts.csv")
    assert float(vm["attributed_kwh"]) == pytest.approx((70 * 60 + 50 * 60) / 60_000)
    assert float(vm["hours_measured"]) == pytest.approx(2)
    assert float(vm["share_without_samples"]) == 0
    assert float(hosts["4"]["measured_kwh"]) == pytest.approx(100 * 120 / 60_000)
    assert float(hosts["9"]["share_without_samples"]) == pytest.approx(0.5)


def test_a_month_without_carbon_intensity_says_nothing_about_carbon(prometheus, tmp_path):
    report = run_report(prometheus, tmp_path, "--month", "2024-01")
    assert report.returncode == 0, report.stdout + report.stderr
    hosts_file = (tmp_path / "energy-report-2024-01-hosts.csv").read_text()
    vms_file = (tmp_path / "energy-report-2024-01-vms.csv").read_text()
    assert "co2" not in (hosts_file + vms_file + report.stdout).lower()
    assert "intensity" not in (hosts_file + vms_file + report.stdout).lower()
    hosts = read_csv(tmp_path / "energy-report-2024-01-hosts.csv")
    assert float(hosts["30"]["measured_kwh"]) == pytest.approx(60 * 60 / 60_000)
    assert float(hosts["4"]["measured_kwh"]) == pytest.approx(1e6 / 60_000), (
        "Jan 31 23:59:59.999 belongs to January"
    )
    assert float(hosts["4"]["hours_measured"]) == pytest.approx(1 / 60, abs=1e-6)
    assert vms_file.splitlines() == [
        "vm_id,hosts,measured_kwh,attributed_kwh,hours_measured,share_without_samples"
    ]
    assert "no VM measured in this period" in report.stdout


def test_a_month_with_no_data_is_all_gap_not_zero_energy_invented(prometheus, tmp_path):
    report = run_report(prometheus, tmp_path, "--month", "2023-06")
    assert report.returncode == 0, report.stdout + report.stderr
    assert (tmp_path / "energy-report-2023-06-hosts.csv").read_text().count(
        "\n"
    ) == 1  # the header only
    assert "no hypervisor measured in this period" in report.stdout


def test_prometheus_unreachable_is_one_clear_line(tmp_path):
    report = run_report(f"http://127.0.0.1:{free_port()}", tmp_path, "--month", "2024-02")
    assert report.returncode == 1
    assert report.stderr.startswith("energy report: Prometheus at http://127.0.0.1:")
    assert "could not be reached" in report.stderr and "check --prometheus" in report.stderr
    assert not list(tmp_path.glob("*.csv")), "nothing written when nothing was read"
