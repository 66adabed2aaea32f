"""Energy and emissions per VM and per hypervisor over a period (a month by default),
from what Prometheus recorded with the attribution rules.

    python3 energy_report.py --prometheus http://127.0.0.1:9090 --month 2026-11

The attribution group (files/prometheus/scaphandre_rules.yml) records once a minute, so
each sample stands for one minute: energy is the samples' sum in watt-minutes, and the
minutes measured are the samples' count. Both come from the samples Prometheus holds in
the period and nothing else: a minute without a sample adds no energy and counts as a
minute without samples (never filled in from its neighbours). One instant query asks for
every figure at once (plus one request for Prometheus' version, which decides how a range
selector treats its left edge).

Standard library only: it runs without the deploy's
dependencies. Pure logic in plain functions; `main` does the I/O.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MINUTE_MS = 60_000  # the attribution rules' interval: one sample per series and minute
WATT_MINUTES_PER_KWH = 60 * 1000
GRAM_HOUR_MINUTES_PER_GRAM = 60  # g/h sampled once a minute: sum / 60 = grams

PARTS = ("vms_dynamic", "vms_constant", "unallocated", "host_processes")

# Each figure of the report: (quantity name, PromQL over the window W, labels kept).
# Sums are in watt-minutes (or gram-per-hour-minutes), counts in minutes.
QUANTITIES: tuple[tuple[str, str, str], ...] = (
    ("vm_measured", "sum_over_time(one_vm:measured_power_watts[W])", "one_vm_id"),
    ("vm_attributed", "sum_over_time(one_vm:attributed_power_watts[W])", "one_vm_id"),
    ("vm_co2e", "sum_over_time(one_vm:emissions_gco2e_per_hour[W])", "one_vm_id"),
    ("vm_minutes", "count_over_time(one_vm:host_count[W])", "one_vm_id"),
    (
        "vm_minutes_with_intensity",
        "count_over_time(one_vm:host_count_with_intensity[W])",
        "one_vm_id",
    ),
    (
        "vm_minutes_on_host",
        "count_over_time(one_vm:attributed_power_watts[W])",
        "one_vm_id, one_host_id",
    ),
    ("host_measured", "sum_over_time(one_host:measured_power_watts[W])", "one_host_id"),
    ("host_part", "sum_over_time(one_host:power_part_watts[W])", "one_host_id, part"),
    ("host_co2e", "sum_over_time(one_host:emissions_gco2e_per_hour[W])", "one_host_id"),
    ("host_minutes", "count_over_time(one_host:measured_power_watts[W])", "one_host_id"),
    (
        "host_minutes_with_intensity",
        "count_over_time(one_host:emissions_gco2e_per_hour[W])",
        "one_host_id",
    ),
)


class ReportError(Exception):
    """Something the operator must fix (a period, Prometheus' address), said in one line."""


# --------------------------------------------------------------------------- the period


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, with the name the output files carry."""

    start: datetime
    end: datetime
    label: str

    @property
    def start_ms(self) -> int:
        return _epoch_ms(self.start)

    @property
    def end_ms(self) -> int:
        return _epoch_ms(self.end)

    @property
    def minutes(self) -> float:
        return (self.end_ms - self.start_ms) / MINUTE_MS


def _epoch_ms(moment: datetime) -> int:
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _month_start(year: int, month: int) -> datetime:
    return datetime(year, month, 1, tzinfo=UTC)


def month_period(text: str) -> Period:
    """The calendar month YYYY-MM, in UTC."""
    match = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ReportError(f"month {text!r} is not of the form YYYY-MM (e.g. 2026-11)")
    year, month = int(match.group(1)), int(match.group(2))
    following = (year + 1, 1) if month == 12 else (year, month + 1)
    return Period(_month_start(year, month), _month_start(*following), f"{year:04d}-{month:02d}")


def previous_month(now: datetime) -> Period:
    """The last calendar month that is over (UTC)."""
    now = now.astimezone(UTC)
    year, month = (now.year - 1, 12) if now.month == 1 else (now.year, now.month - 1)
    return month_period(f"{year:04d}-{month:02d}")


def _moment(text: str, what: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ReportError(
            f"{what} {text!r} is not a date or time such as 2026-11-01 or 2026-11-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # a bare date or time is UTC
    return moment.astimezone(UTC)


def period_between(start: str, end: str) -> Period:
    """[start, end) from two ISO dates or times (UTC unless they say otherwise)."""
    first, last = _moment(start, "start"), _moment(end, "end")
    if first >= last:
        raise ReportError(f"the period must end after it starts ({start} to {end})")
    return Period(first, last, f"{first:%Y%m%dT%H%M%SZ}-{last:%Y%m%dT%H%M%SZ}")


def up_to(period: Period, now: datetime) -> Period:
    """The period cut at `now` when it is not over yet: the future is not "without samples"."""
    now = now.astimezone(UTC)
    if period.end <= now:
        return period
    if period.start >= now:
        raise ReportError(f"the period {period.label} has not started yet")
    return Period(period.start, now, period.label)


# --------------------------------------------------------------------------- the query


def window(period: Period, prometheus_major: int) -> tuple[int, int]:
    """(evaluation time, range) in milliseconds selecting exactly the samples of [start, end).

    Evaluated 1 ms before the end, so a sample at `end` belongs to the next period. A range
    selector holds [t - range, t] in Prometheus 2 and (t - range, t] since Prometheus 3.
    """
    evaluation = period.end_ms - 1
    span = evaluation - period.start_ms
    return evaluation, span if prometheus_major < 3 else span + 1


def report_query(range_ms: int) -> str:
    """One query returning every figure, each series tagged with a `quantity` label."""
    parts = []
    for name, expression, labels in QUANTITIES:
        summed = f"sum by ({labels}) ({expression.replace('[W]', f'[{range_ms}ms]')})"
        parts.append(f'label_replace({summed}, "quantity", "{name}", "", "")')
    return "\nor ".join(parts)


# --------------------------------------------------------------------------- the rows


@dataclass
class VmRow:
    vm_id: str
    measured_kwh: float = 0.0
    attributed_kwh: float = 0.0
    co2e_g: float | None = None
    minutes: int = 0
    minutes_with_intensity: int = 0
    minutes_on_host: dict[str, int] = field(default_factory=dict)

    @property
    def hosts(self) -> list[str]:
        return sorted(self.minutes_on_host, key=_id_order)


@dataclass
class HostRow:
    host_id: str
    measured_kwh: float = 0.0
    parts_kwh: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    co2e_g: float | None = None
    minutes: int = 0
    minutes_with_intensity: int = 0

    @property
    def attributed_to_vms_kwh(self) -> float:
        return self.parts_kwh["vms_dynamic"] + self.parts_kwh["vms_constant"]


def _id_order(identifier: str) -> tuple[int, str]:
    return (int(identifier), "") if identifier.isdigit() else (1 << 62, identifier)


def hours(minutes: int) -> float:
    return minutes / 60


def share_without_samples(minutes: int, period: Period) -> float:
    """The share of the period with no sample, from 0 (measured throughout) to 1."""
    if period.minutes <= 0:
        return 1.0
    return min(1.0, max(0.0, 1 - minutes / period.minutes))


def rows_from_result(result: list[dict[str, Any]]) -> tuple[list[VmRow], list[HostRow]]:
    """VM and host rows from the query's result vector (sorted by ID)."""
    vms: dict[str, VmRow] = {}
    hosts: dict[str, HostRow] = {}
    for item in result:
        labels = item["metric"]
        value = float(item["value"][1])
        quantity = labels.get("quantity", "")
        if quantity.startswith("vm_"):
            vm = vms.setdefault(labels["one_vm_id"], VmRow(labels["one_vm_id"]))
            if quantity == "vm_measured":
                vm.measured_kwh = value / WATT_MINUTES_PER_KWH
            elif quantity == "vm_attributed":
                vm.attributed_kwh = value / WATT_MINUTES_PER_KWH
            elif quantity == "vm_co2e":
                vm.co2e_g = value / GRAM_HOUR_MINUTES_PER_GRAM
            elif quantity == "vm_minutes":
                vm.minutes = round(value)
            elif quantity == "vm_minutes_with_intensity":
                vm.minutes_with_intensity = round(value)
            elif quantity == "vm_minutes_on_host":
                vm.minutes_on_host[labels["one_host_id"]] = round(value)
        elif quantity.startswith("host_"):
            host = hosts.setdefault(labels["one_host_id"], HostRow(labels["one_host_id"]))
            if quantity == "host_measured":
                host.measured_kwh = value / WATT_MINUTES_PER_KWH
            elif quantity == "host_part" and labels.get("part") in PARTS:
                host.parts_kwh[labels["part"]] = value / WATT_MINUTES_PER_KWH
            elif quantity == "host_co2e":
                host.co2e_g = value / GRAM_HOUR_MINUTES_PER_GRAM
            elif quantity == "host_minutes":
                host.minutes = round(value)
            elif quantity == "host_minutes_with_intensity":
                host.minutes_with_intensity = round(value)
    return (
        sorted(vms.values(), key=lambda r: _id_order(r.vm_id)),
        sorted(hosts.values(), key=lambda r: _id_order(r.host_id)),
    )


def carbon_reported(vms: list[VmRow], hosts: list[HostRow]) -> bool:
    """True when any emissions were recorded: otherwise no column speaks of carbon."""
    return any(row.co2e_g is not None for row in vms) or any(
        row.co2e_g is not None for row in hosts
    )


# --------------------------------------------------------------------------- output


def _number(value: float | None, decimals: int) -> str:
    return "" if value is None else f"{value:.{decimals}f}"


def vm_records(vms: list[VmRow], period: Period, carbon: bool) -> list[dict[str, str]]:
    records = []
    for row in vms:
        record = {
            "vm_id": row.vm_id,
            "hosts": ";".join(row.hosts),
            "measured_kwh": _number(row.measured_kwh, 6),
            "attributed_kwh": _number(row.attributed_kwh, 6),
        }
        if carbon:
            record["co2e_g"] = _number(row.co2e_g, 3)
            record["hours_with_intensity"] = _number(hours(row.minutes_with_intensity), 6)
        record["hours_measured"] = _number(hours(row.minutes), 6)
        record["share_without_samples"] = _number(share_without_samples(row.minutes, period), 6)
        records.append(record)
    return records


def host_records(hosts: list[HostRow], period: Period, carbon: bool) -> list[dict[str, str]]:
    records = []
    for row in hosts:
        record = {
            "host_id": row.host_id,
            "measured_kwh": _number(row.measured_kwh, 6),
            "attributed_to_vms_kwh": _number(row.attributed_to_vms_kwh, 6),
        }
        record.update({f"{part}_kwh": _number(row.parts_kwh[part], 6) for part in PARTS})
        if carbon:
            record["co2e_g"] = _number(row.co2e_g, 3)
            record["hours_with_intensity"] = _number(hours(row.minutes_with_intensity), 6)
        record["hours_measured"] = _number(hours(row.minutes), 6)
        record["share_without_samples"] = _number(share_without_samples(row.minutes, period), 6)
        records.append(record)
    return records


def to_csv(records: list[dict[str, str]], columns: list[str]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue()


def vm_columns(carbon: bool) -> list[str]:
    return [
        "vm_id",
        "hosts",
        "measured_kwh",
        "attributed_kwh",
        *(["co2e_g", "hours_with_intensity"] if carbon else []),
        "hours_measured",
        "share_without_samples",
    ]


def host_columns(carbon: bool) -> list[str]:
    return [
        "host_id",
        "measured_kwh",
        "attributed_to_vms_kwh",
        *(f"{part}_kwh" for part in PARTS),
        *(["co2e_g", "hours_with_intensity"] if carbon else []),
        "hours_measured",
        "share_without_samples",
    ]


def _aligned(header: list[str], lines: list[list[str]], text_columns: int) -> list[str]:
    """Columns padded to one width; the first `text_columns` to the left, figures to the right."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines, strict=True)]
    return [
        "  ".join(
            cell.ljust(width) if n < text_columns else cell.rjust(width)
            for n, (cell, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in [header, *lines]
    ]


def readable(vms: list[VmRow], hosts: list[HostRow], period: Period, source: str) -> str:
    """The report as text for a terminal: the same figures, rounded for reading."""
    carbon = carbon_reported(vms, hosts)
    out = [
        (
            f"Energy report {period.label}: {period.start:%Y-%m-%d %H:%M} to {period.end:%Y-%m-%d %H:%M} UTC "
            f"({period.minutes / 60:.1f} h), from {source}"
        ),
        "",
    ]

    def percent(minutes: int) -> str:
        return f"{100 * share_without_samples(minutes, period):.1f} %"

    def grams(value: float | None) -> list[str]:
        return [_number(value, 1) or "-"] if carbon else []

    out.append("VMs (kWh; attributed = measured + share of the host's constant power)")
    if vms:
        header = [
            "VM",
            "hosts",
            "measured",
            "attributed",
            *(["CO2e g"] if carbon else []),
            "hours measured",
            "without samples",
        ]
        lines = [
            [
                row.vm_id,
                ",".join(row.hosts),
                f"{row.measured_kwh:.3f}",
                f"{row.attributed_kwh:.3f}",
                *grams(row.co2e_g),
                f"{hours(row.minutes):.1f}",
                percent(row.minutes),
            ]
            for row in vms
        ]
        out += ["  " + line for line in _aligned(header, lines, 2)]
    else:
        out.append("  no VM measured in this period")
    out.append("")
    out.append("Hypervisors (kWh; measured = to VMs + unallocated + host processes)")
    if hosts:
        header = [
            "host",
            "measured",
            "to VMs",
            "unallocated",
            "host processes",
            *(["CO2e g"] if carbon else []),
            "hours measured",
            "without samples",
        ]
        lines = [
            [
                row.host_id,
                f"{row.measured_kwh:.3f}",
                f"{row.attributed_to_vms_kwh:.3f}",
                f"{row.parts_kwh['unallocated']:.3f}",
                f"{row.parts_kwh['host_processes']:.3f}",
                *grams(row.co2e_g),
                f"{hours(row.minutes):.1f}",
                percent(row.minutes),
            ]
            for row in hosts
        ]
        out += ["  " + line for line in _aligned(header, lines, 1)]
        total = sum(row.measured_kwh for row in hosts)
        to_vms = sum(row.attributed_to_vms_kwh for row in hosts)
        out += [
            "",
            f"  all hypervisors: {total:.3f} kWh measured, {to_vms:.3f} kWh attributed to VMs",
        ]
        if carbon:
            emitted = sum(row.co2e_g or 0.0 for row in hosts)
            out.append(
                f"  emissions: {emitted / 1000:.3f} kg CO2e, where a carbon intensity was set "
                "(hours with intensity in the CSV)"
            )
    else:
        out.append("  no hypervisor measured in this period")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- Prometheus


def _api_url(base: str) -> str:
    parsed = urllib.parse.urlsplit(base)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ReportError(
            f"--prometheus {base!r} is not an http(s) URL such as http://127.0.0.1:9090"
        )
    if parsed.username is not None or parsed.password is not None:
        raise ReportError(
            "--prometheus must not hold credentials (user:password@): the report sends none"
        )
    return base.rstrip("/")


def _request(url: str, data: dict[str, Any] | None, timeout_s: float, base: str) -> dict[str, Any]:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    request = urllib.request.Request(url, data=body)
    # Straight to Prometheus, never through an http_proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout_s) as response:
            reply = json.load(response)
    except urllib.error.HTTPError as error:
        try:
            reason = json.load(error).get("error", "")
        except (ValueError, AttributeError):
            reason = ""
        raise ReportError(
            f"Prometheus at {base} answered HTTP {error.code}{': ' + reason if reason else ''}"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise ReportError(
            f"Prometheus at {base} could not be reached ({reason}): check --prometheus"
        ) from None
    except ValueError:
        raise ReportError(
            f"Prometheus at {base} sent a reply that is not JSON: check --prometheus"
        ) from None
    if not isinstance(reply, dict) or reply.get("status") != "success":
        reason = reply.get("error", reply) if isinstance(reply, dict) else reply
        raise ReportError(f"Prometheus at {base} refused the request: {reason}")
    answer: dict[str, Any] = reply["data"]
    return answer


def prometheus_major(base: str, timeout_s: float) -> int:
    data = _request(f"{_api_url(base)}/api/v1/status/buildinfo", None, timeout_s, base)
    match = re.match(r"\s*v?(\d+)\.", str(data.get("version", "")))
    if not match:
        raise ReportError(
            f"Prometheus at {base} reports no version this report can read ({data.get('version')!r})"
        )
    return int(match.group(1))


def fetch(base: str, period: Period, timeout_s: float) -> list[dict[str, Any]]:
    evaluation_ms, range_ms = window(period, prometheus_major(base, timeout_s))
    data = _request(
        f"{_api_url(base)}/api/v1/query",
        {
            "query": report_query(range_ms),
            "time": f"{evaluation_ms / 1000:.3f}",
            "timeout": f"{int(timeout_s)}s",
        },
        timeout_s,
        base,
    )
    if data.get("resultType") != "vector":
        raise ReportError(
            f"Prometheus at {base} answered the query with a {data.get('resultType')}, not a vector"
        )
    result: list[dict[str, Any]] = data["result"]
    return result


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="energy_report.py",
        description="Energy (kWh, measured and attributed) and emissions per VM and per hypervisor over a "
        "period, from Prometheus' recording rules. Writes two CSV files and prints a table.",
    )
    parser.add_argument(
        "--prometheus", required=True, help="Prometheus' URL, e.g. http://127.0.0.1:9090"
    )
    parser.add_argument("--month", help="YYYY-MM (UTC); default: the last month that is over")
    parser.add_argument(
        "--start", help="start of another period (ISO date or time, UTC unless given)"
    )
    parser.add_argument("--end", help="its end (excluded)")
    parser.add_argument("--csv-dir", default=".", help="where the two CSV files go (default: here)")
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds Prometheus may take (default 120)"
    )
    args = parser.parse_args(argv)
    if args.month and (args.start or args.end):
        parser.error("give --month, or --start and --end, not both")
    if bool(args.start) != bool(args.end):
        parser.error("--start and --end go together")
    if args.timeout <= 0:
        parser.error("--timeout must be above 0")
    return args


def main(argv: list[str] | None = None, now: datetime | None = None) -> int:
    args = parse_args(argv)
    now = now or datetime.now(UTC)
    try:
        if args.start:
            period = period_between(args.start, args.end)
        else:
            period = month_period(args.month) if args.month else previous_month(now)
        period = up_to(period, now)
        vms, hosts = rows_from_result(fetch(args.prometheus, period, args.timeout))
    except ReportError as error:
        print(f"energy report: {error}", file=sys.stderr)
        return 1
    carbon = carbon_reported(vms, hosts)
    directory = Path(args.csv_dir)
    directory.mkdir(parents=True, exist_ok=True)
    vm_file = directory / f"energy-report-{period.label}-vms.csv"
    host_file = directory / f"energy-report-{period.label}-hosts.csv"
    vm_file.write_text(to_csv(vm_records(vms, period, carbon), vm_columns(carbon)))
    host_file.write_text(to_csv(host_records(hosts, period, carbon), host_columns(carbon)))
    sys.stdout.write(readable(vms, hosts, period, args.prometheus))
    sys.stdout.write(f"\nCSV: {vm_file}, {host_file}\n")
    return 0
