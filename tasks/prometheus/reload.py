"""Whether Prometheus runs the configuration the deploy gave it, judged by what the server
itself reports after the reload signal: its own reload metrics, read over loopback from
the address it listens on, and its journal.

Plain logic: where Prometheus serves /metrics (from its command line), what a probe of
/metrics said, whether that confirms the reload, and the message when it does not.
operations.py runs the probes on the server.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

# Prometheus' own gauges: 1 (or 0) after each reload attempt, and when the last one succeeded
# (seconds since the epoch, on the server's clock).
RELOAD_SUCCESSFUL = "prometheus_config_last_reload_successful"
RELOAD_SUCCESS_AT = "prometheus_config_last_reload_success_timestamp_seconds"
TIMEOUT_SETTING = "prometheus_reload_timeout_s"
DEFAULT_LISTEN_ADDRESS = ":9090"  # Prometheus' default --web.listen-address
PROBE_TIMEOUT_S = (
    2  # one read of /metrics; a stopped process accepts the connection and never answers
)
JOURNAL_LINES_SHOWN = 8


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where this Prometheus serves its own /metrics, as seen from the server itself."""

    address: str  # as bash's /dev/tcp takes it: an IPv6 address without brackets
    port: int
    path: str

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}{self.path}"


def _flag_values(args: Sequence[str], flag: str) -> list[str]:
    """Every value given to `flag` on a command line, in order (`--flag=value` or `--flag value`)."""
    values = []
    for position, arg in enumerate(args):
        if arg.startswith(flag + "="):
            values.append(arg[len(flag) + 1 :])
        elif arg == flag and position + 1 < len(args):
            values.append(args[position + 1])
    return values


def _loopback_for(host: str) -> str:
    """The address to reach a listener bound to `host` from the same machine."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host  # a given address or name is the host's own: traffic to it stays on the host


def metrics_endpoint(process_args: Sequence[str], unit_args: Sequence[str]) -> MetricsEndpoint:
    """Where Prometheus serves /metrics, from the command line of its running process (which
    has the unit's $ARGS expanded), else from its unit's ExecStart: the first
    --web.listen-address (default :9090) and the route prefix (--web.route-prefix, else the
    path of --web.external-url), as Prometheus itself derives them.

    Raises ValueError naming the flag when the address cannot be read.
    """
    args = list(process_args) or list(unit_args)
    listen = (_flag_values(args, "--web.listen-address") or [DEFAULT_LISTEN_ADDRESS])[0]
    host, separator, port = listen.rpartition(":")
    if not separator or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"cannot tell where Prometheus listens from --web.listen-address={listen}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    prefix = (_flag_values(args, "--web.route-prefix") or [""])[0]
    if not prefix:
        external = (_flag_values(args, "--web.external-url") or [""])[0]
        prefix = urllib.parse.urlsplit(external).path if external else ""
    prefix = "/" + prefix.strip("/")
    return MetricsEndpoint(
        address=_loopback_for(host), port=int(port), path=prefix.rstrip("/") + "/metrics"
    )


# --------------------------------------------------------------------------- what a probe said


@dataclass(frozen=True)
class Probe:
    """One read of Prometheus' /metrics on the server: its reload gauges, or why there are none."""

    status: str = ""  # the HTTP status line, e.g. "HTTP/1.0 200 OK"
    successful: float | None = None
    success_at: float | None = None
    error: str = ""  # what the connection said when it failed
    exit_code: int | None = None  # of the probe; 124: no answer within PROBE_TIMEOUT_S

    @property
    def read(self) -> bool:
        return self.successful is not None and self.success_at is not None

    def problem(self) -> str:
        """Why this probe gave no reload gauges, or ''."""
        if self.read:
            return ""
        if self.exit_code == 124:
            return f"no answer within {PROBE_TIMEOUT_S} s"
        if self.error:
            return self.error
        if self.status and not re.match(r"^HTTP/\S+ 200\b", self.status):
            return f"it answered {self.status}"
        if self.status:
            return f"no {RELOAD_SUCCESSFUL} in what it answered"
        return "no answer" + (f" (probe exit code {self.exit_code})" if self.exit_code else "")


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def parse_probe(lines: Sequence[str]) -> Probe:
    """A probe from the lines the server printed for it: the HTTP status line, the two
    gauges in the exposition format, `exit=N`, and the shell's own error lines."""
    status, error, exit_code = "", "", None
    gauges: dict[str, float | None] = {}
    for line in lines:
        if line.startswith("HTTP/"):
            status = status or line.strip()
        elif line.startswith("exit="):
            exit_code = int(line[5:]) if line[5:].isdigit() else None
        elif line.startswith((RELOAD_SUCCESSFUL + " ", RELOAD_SUCCESS_AT + " ")):
            name, value = line.split()[:2]
            gauges[name] = _number(value)
        elif line.strip():
            # bash's own words when the connection fails, e.g. "probe: connect: Connection refused"
            error = error if error else line.split(": ")[-1].strip()
    return Probe(
        status=status,
        successful=gauges.get(RELOAD_SUCCESSFUL),
        success_at=gauges.get(RELOAD_SUCCESS_AT),
        error=error,
        exit_code=exit_code,
    )


class Outcome(enum.Enum):
    CONFIRMED = "confirmed"  # a successful reload after the signal
    FAILED = "failed"  # the reload after the signal failed
    WAITING = "waiting"  # nothing tells yet


def judge(before: Probe, after: Probe, signalled_at: float) -> Outcome:
    """What Prometheus' gauges say of the reload signalled at `signalled_at` (server clock).

    Confirmed: the last reload succeeded at or after the signal. Failed: the gauge that was
    1 before the signal reads 0 (a reload attempted since failed). Anything else, waiting:
    a Prometheus whose previous reload had failed already shows 0 until one succeeds.
    """
    if not after.read or after.success_at is None:  # (read: neither gauge is None)
        return Outcome.WAITING
    if after.successful == 1 and after.success_at >= signalled_at:
        return Outcome.CONFIRMED
    if after.successful == 0 and before.successful == 1:
        return Outcome.FAILED
    return Outcome.WAITING


# --------------------------------------------------------------------------- what the operator reads

_LOG_LEVEL = re.compile(r"\blevel=(error|warn|warning)\b", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"(://[^/\s:@\"']+:)[^@\s/\"']+@")


def relevant_journal_lines(lines: Sequence[str], limit: int = JOURNAL_LINES_SHOWN) -> list[str]:
    """The lines worth showing: Prometheus' errors and warnings (`level=error` in its logfmt,
    `level=ERROR` in Prometheus 3's), else the last lines; a password written into a URL
    (user:password@) shown as <secret>."""
    lines = [_URL_PASSWORD.sub(r"\1<secret>@", line) for line in lines if line.strip()]
    flagged = [line for line in lines if _LOG_LEVEL.search(line)]
    return (flagged or lines)[-limit:]


def _journal_text(service: str, journal: Sequence[str]) -> str:
    shown = relevant_journal_lines(journal)
    if not shown:
        return f"journalctl -u {service} shows nothing since the reload signal"
    return f"journalctl -u {service} since the reload signal:\n" + "\n".join(
        "  " + line for line in shown
    )


def _state_text(after: Probe, main_process: str) -> str:
    """What the server showed when the wait ended."""
    if not after.read:
        said = f"its /metrics gave no reload gauges ({after.problem()})"
        if after.status:  # served, but not to a plain HTTP request from the server itself
            said += (
                f"; a Prometheus whose web endpoints need TLS or a login cannot be checked this way: "
                f"set {TIMEOUT_SETTING} to 0 for it to reload without confirmation"
            )
    elif after.successful == 0:
        said = f"it reports its last reload failed ({RELOAD_SUCCESSFUL} 0)"
    else:
        said = "it reports no successful reload since the signal"
    pid, _, state = main_process.partition(" ")
    if state.startswith("T"):
        said += f"; its main process (PID {pid}) is stopped"
    return said


def not_confirmed_message(
    outcome: Outcome,
    *,
    service: str,
    changed_path: str,
    url: str,
    after: Probe,
    timeout_s: int,
    main_process: str,
    journal: Sequence[str],
) -> str:
    """The failure of a server whose Prometheus did not confirm the new configuration: what it
    reported, its journal, and what to do; names the timeout setting when the wait ran out."""
    if outcome is Outcome.FAILED:
        head = (
            f"Prometheus ({service}) failed to load the new {changed_path}: {RELOAD_SUCCESSFUL} went to 0 "
            f"at {url} after the reload signal, so the new configuration is not (or not wholly) in effect"
        )
    else:
        head = (
            f"Prometheus ({service}) did not confirm loading the new {changed_path} within {timeout_s} s "
            f"({TIMEOUT_SETTING}): {_state_text(after, main_process)} at {url}"
        )
    fix = (
        f"Fix: correct what the journal names (then rerun the deploy: it reloads Prometheus again until it "
        f"confirms); a server that is only slow to reload needs a larger {TIMEOUT_SETTING}"
    )
    return f"{head}.\n{_journal_text(service, journal)}\n{fix}"


# --------------------------------------------------------------------------- the server's report


@dataclass(frozen=True)
class ReloadReport:
    """What the reload command printed, one tagged line each: whether the service runs, the
    signal time (server clock), the probes before the signal and when the wait ended, the
    main process' PID and state, and the journal since the signal."""

    not_running: bool = False
    signal_error: str = ""
    signalled_at: float | None = None
    before_lines: tuple[str, ...] = ()
    after_lines: tuple[str, ...] = ()
    main_process: str = ""
    journal: tuple[str, ...] = ()

    @property
    def before(self) -> Probe:
        return parse_probe(self.before_lines)

    @property
    def after(self) -> Probe:
        return parse_probe(self.after_lines)

    @property
    def ran_out(self) -> bool:
        """The wait ended without Prometheus' gauges changing."""
        return self.after_lines == self.before_lines


def parse_report(lines: Sequence[str]) -> ReloadReport:
    fields: dict[str, list[str]] = {}
    for line in lines:
        tag, _, rest = line.partition(" ")
        fields.setdefault(tag, []).append(rest)
    signalled = fields.get("signalled", [""])[0]
    return ReloadReport(
        not_running="not_running" in fields,
        signal_error=" ".join(fields.get("signal_error", [])).strip(),
        signalled_at=_number(signalled) if signalled else None,
        before_lines=tuple(fields.get("before", [])),
        after_lines=tuple(fields.get("after", [])),
        main_process=fields.get("main_process", [""])[0].strip(),
        journal=tuple(fields.get("journal", [])),
    )
