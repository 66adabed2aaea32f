"""The energy report's plain logic (tasks/accounting/report.py): periods, the exact window of
samples, the one query, rows, CSV and table. tests/integration/test_energy_report_with_real_prometheus.py
runs it against a real Prometheus."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from tasks.accounting import report
from tasks.accounting.report import (
    PARTS,
    Period,
    ReportError,
    carbon_reported,
    host_columns,
    host_records,
    month_period,
    period_between,
    previous_month,
    readable,
    report_query,
    rows_from_result,
    share_without_samples,
    to_csv,
    up_to,
    vm_columns,
    vm_records,
    window,
)

PROMTOOL = "/usr/bin/promtool"

# Hypothesis takes naive bounds; the zone comes from `timezones`.
moments = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)


# ---------------------------------------------------------------- periods


@given(year=st.integers(1970, 2200), month=st.integers(1, 12))
def test_a_month_is_its_calendar_month_in_utc_and_the_next_one_follows_it(year, month):
    period = month_period(f"{year:04d}-{month:02d}")
    assert period.start == datetime(year, month, 1, tzinfo=UTC)
    assert period.end.day == 1 and period.end > period.start
    assert (period.end - period.start).days in (28, 29, 30, 31)
    assert period.minutes == (period.end - period.start).days * 1440
    following = month_period(f"{period.end.year:04d}-{period.end.month:02d}")
    assert following.start == period.end
    assert period.label == f"{year:04d}-{month:02d}"


@given(now=moments)
def test_the_default_is_the_last_month_that_is_over(now):
    period = previous_month(now)
    assert period.end <= now < period.end + timedelta(days=31)
    assert period.end == datetime(now.year, now.month, 1, tzinfo=UTC)


@pytest.mark.parametrize("text", ["2026-13", "2026-00", "2026-1", "november", "2026/11", ""])
def test_a_month_that_is_not_yyyy_mm_is_refused(text):
    with pytest.raises(ReportError, match="YYYY-MM"):
        month_period(text)


def test_a_period_between_two_moments_is_utc_unless_told_and_must_not_be_empty():
    period = period_between("2026-11-01", "2026-11-02T06:00:00+02:00")
    assert period.start == datetime(2026, 11, 1, tzinfo=UTC)
    assert period.end == datetime(2026, 11, 2, 4, tzinfo=UTC)
    assert period.label == "20261101T000000Z-20261102T040000Z"
    with pytest.raises(ReportError, match="must end after it starts"):
        period_between("2026-11-02", "2026-11-01")
    with pytest.raises(ReportError, match="not a date or time"):
        period_between("yesterday", "2026-11-01")


def test_a_period_not_over_ends_now_and_one_not_started_is_refused():
    november = month_period("2026-11")
    now = datetime(2026, 11, 15, 12, tzinfo=UTC)
    assert up_to(november, now) == Period(november.start, now, "2026-11")
    assert up_to(november, datetime(2026, 12, 3, tzinfo=UTC)) == november
    with pytest.raises(ReportError, match="has not started"):
        up_to(month_period("2027-01"), now)


# ---------------------------------------------------------------- the window of samples


def selected(sample_ms: int, evaluation_ms: int, range_ms: int, major: int) -> bool:
    """Whether a range selector evaluated at `evaluation_ms` holds a sample at `sample_ms`:
    [t - range, t] in Prometheus 2, (t - range, t] since Prometheus 3."""
    if major < 3:
        return evaluation_ms - range_ms <= sample_ms <= evaluation_ms
    return evaluation_ms - range_ms < sample_ms <= evaluation_ms


@given(
    start=st.integers(0, 5 * 10**12),
    length=st.integers(2, 10**11),
    offset=st.integers(-5, 5),
    major=st.sampled_from([2, 3]),
    where=st.sampled_from(["start", "end", "inside"]),
)
def test_the_window_holds_exactly_the_samples_of_the_period(start, length, offset, major, where):
    period = Period(
        datetime.fromtimestamp(start / 1000, UTC),
        datetime.fromtimestamp((start + length) / 1000, UTC),
        "p",
    )
    start_ms, end_ms = period.start_ms, period.end_ms
    evaluation, span = window(period, major)
    sample = {"start": start_ms, "end": end_ms, "inside": (start_ms + end_ms) // 2}[where] + offset
    assert selected(sample, evaluation, span, major) == (start_ms <= sample < end_ms)


def test_one_query_asks_for_every_figure_and_promtool_parses_it(tmp_path):
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"
    query = report_query(2_505_599_999)
    assert query.count("label_replace(") == len(report.QUANTITIES)
    assert "[2505599999ms]" in query and "[W]" not in query
    rules = tmp_path / "query.yml"
    rules.write_text(
        yaml.safe_dump(
            {"groups": [{"name": "report", "rules": [{"record": "report:query", "expr": query}]}]}
        )
    )
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


# ---------------------------------------------------------------- rows


def sample(quantity: str, value: float, **labels: str) -> dict:
    return {"metric": {"quantity": quantity, **labels}, "value": [1700000000.0, repr(value)]}


FEBRUARY = month_period("2024-02")
RESULT = [
    sample("vm_measured", 21_000.0, one_vm_id="101"),
    sample("vm_attributed", 83_400.0, one_vm_id="101"),
    sample("vm_co2e", 11_640.0, one_vm_id="101"),
    sample("vm_minutes", 1380, one_vm_id="101"),
    sample("vm_minutes_with_intensity", 1380, one_vm_id="101"),
    sample("vm_minutes_on_host", 660, one_vm_id="101", one_host_id="9"),
    sample("vm_minutes_on_host", 720, one_vm_id="101", one_host_id="4"),
    sample("vm_measured", 600.0, one_vm_id="7"),
    sample("vm_attributed", 600.0, one_vm_id="7"),
    sample("vm_minutes", 60, one_vm_id="7"),
    sample("vm_minutes_on_host", 60, one_vm_id="7", one_host_id="10"),
    sample("host_measured", 144_000.0, one_host_id="4"),
    sample("host_part", 14_400.0, one_host_id="4", part="vms_dynamic"),
    sample("host_part", 36_000.0, one_host_id="4", part="vms_constant"),
    sample("host_part", 86_400.0, one_host_id="4", part="unallocated"),
    sample("host_part", 7_200.0, one_host_id="4", part="host_processes"),
    sample("host_co2e", 28_800.0, one_host_id="4"),
    sample("host_minutes", 1440, one_host_id="4"),
    sample("host_minutes_with_intensity", 1440, one_host_id="4"),
    sample("something_new", 1.0, one_host_id="4"),
]


def test_rows_turn_watt_minutes_into_kwh_and_minutes_into_hours():
    vms, hosts = rows_from_result(RESULT)
    assert [row.vm_id for row in vms] == ["7", "101"], "sorted by number"
    vm = vms[1]
    assert vm.measured_kwh == pytest.approx(0.35) and vm.attributed_kwh == pytest.approx(1.39)
    assert vm.co2e_g == pytest.approx(194) and vm.minutes == 1380
    assert vm.hosts == ["4", "9"] and vm.minutes_on_host == {"4": 720, "9": 660}
    assert vms[0].co2e_g is None, "no emissions recorded: none, not zero"
    host = hosts[0]
    assert host.measured_kwh == pytest.approx(2.4)
    assert host.parts_kwh == pytest.approx(
        {"vms_dynamic": 0.24, "vms_constant": 0.6, "unallocated": 1.44, "host_processes": 0.12}
    )
    assert host.attributed_to_vms_kwh == pytest.approx(0.84)
    assert host.co2e_g == pytest.approx(480)


def test_the_csv_files_read_back_as_written_and_name_carbon_only_when_there_is_some():
    vms, hosts = rows_from_result(RESULT)
    assert carbon_reported(vms, hosts)
    text = to_csv(vm_records(vms, FEBRUARY, True), vm_columns(True))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows[1] == {
        "vm_id": "101",
        "hosts": "4;9",
        "measured_kwh": "0.350000",
        "attributed_kwh": "1.390000",
        "co2e_g": "194.000",
        "hours_with_intensity": "23.000000",
        "hours_measured": "23.000000",
        "share_without_samples": f"{1 - 1380 / (29 * 1440):.6f}",
    }
    assert rows[0]["co2e_g"] == "", "a VM without emissions has an empty cell, not 0"
    host_rows = list(
        csv.DictReader(io.StringIO(to_csv(host_records(hosts, FEBRUARY, True), host_columns(True))))
    )
    assert (
        host_rows[0]["unallocated_kwh"] == "1.440000"
        and host_rows[0]["attributed_to_vms_kwh"] == "0.840000"
    )

    without = [
        row
        for row in RESULT
        if "co2e" not in row["metric"]["quantity"] and "intensity" not in row["metric"]["quantity"]
    ]
    vms, hosts = rows_from_result(without)
    assert not carbon_reported(vms, hosts)
    for text in (
        to_csv(vm_records(vms, FEBRUARY, False), vm_columns(False)),
        to_csv(host_records(hosts, FEBRUARY, False), host_columns(False)),
        readable(vms, hosts, FEBRUARY, "http://prom:9090"),
    ):
        assert "co2" not in text.lower() and "intensity" not in text.lower()


@given(minutes=st.integers(0, 10**6), days=st.integers(1, 31))
def test_the_share_without_samples_is_a_share(minutes, days):
    period = Period(
        datetime(2024, 1, 1, tzinfo=UTC),
        datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=days),
        "p",
    )
    share = share_without_samples(minutes, period)
    assert 0 <= share <= 1
    assert (share == 0) == (minutes >= days * 1440)


@given(values=st.lists(st.tuples(st.sampled_from(PARTS), st.floats(0, 1e9)), min_size=1))
def test_a_hosts_parts_come_back_as_recorded(values):
    result = [
        sample("host_part", value, one_host_id="3", part=part)
        for part, value in dict(values).items()
    ]
    _, hosts = rows_from_result(result)
    for part, value in dict(values).items():
        assert hosts[0].parts_kwh[part] == pytest.approx(value / 60_000)


def test_the_table_says_what_it_shows():
    vms, hosts = rows_from_result(RESULT)
    text = readable(vms, hosts, FEBRUARY, "http://prom:9090")
    assert text.startswith(
        "Energy report 2024-02: 2024-02-01 00:00 to 2024-03-01 00:00 UTC (696.0 h), "
        "from http://prom:9090\n"
    )
    assert "\n  101  4,9       0.350       1.390   194.0            23.0           96.7 %\n" in text
    assert (
        "\n  4        2.400   0.840        1.440           0.120   480.0            24.0           96.6 %\n"
        in text
    )
    assert "all hypervisors: 2.400 kWh measured, 0.840 kWh attributed to VMs" in text
    empty = readable([], [], FEBRUARY, "http://prom:9090")
    assert (
        "no VM measured in this period" in empty
        and "no hypervisor measured in this period" in empty
    )


# ---------------------------------------------------------------- command line


@pytest.mark.parametrize(
    "url, message",
    [
        ("prom:9090", "not an http(s) URL"),
        ("http://admin:secret@prom:9090", "must not hold credentials"),
    ],
)
def test_a_prometheus_url_that_cannot_be_used_is_named(url, message, capsys, tmp_path):
    assert (
        report.main(
            ["--prometheus", url, "--month", "2024-02", "--csv-dir", str(tmp_path)],
            now=datetime(2026, 12, 3, tzinfo=UTC),
        )
        == 1
    )
    error = capsys.readouterr().err
    assert message in error and "secret" not in error
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ["--month", "2024-02", "--start", "2024-02-01", "--end", "2024-02-02"],
        ["--start", "2024-02-01"],
        ["--timeout", "0"],
    ],
)
def test_contradictory_options_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exited:
        report.parse_args(["--prometheus", "http://prom:9090", *argv])
    assert exited.value.code == 2
