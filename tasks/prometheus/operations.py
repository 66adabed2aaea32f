"""Operations of the Prometheus step, written the way pyinfra's own are: read facts,
yield commands only when the state differs, say why when nothing changes.

Every file Prometheus reads is replaced the same way: the new bytes go to a root-only
spool of the deploy, are copied into a file made with mktemp beside the live one (so
root-only from its first byte) that then takes the live file's owner and mode, are
checked with promtool as root, and only then renamed over the live file, or over the
file a symbolic link points to, which stays a link. Prometheus is reloaded, never
restarted, and the operation succeeds only once Prometheus itself reports the reload
(reload.py judges what it reports); a reload it never confirmed is redone by the next
run. Every path and name reaches the shell quoted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyinfra import host, logger
from pyinfra.api import FunctionCommand, StringCommand, operation

from tasks import compat
from tasks.host_failure import failure_command
from tasks.prometheus.edit_request import PrometheusConfigError, edit_fingerprint
from tasks.prometheus.facts import PrometheusConfigFile
from tasks.prometheus.reload import (
    PROBE_TIMEOUT_S,
    RELOAD_SUCCESS_AT,
    RELOAD_SUCCESSFUL,
    MetricsEndpoint,
    Outcome,
    judge,
    not_confirmed_message,
    parse_report,
)
from tasks.text_file import LiveFile, replace_script, upload_commands

if TYPE_CHECKING:
    from pyinfra.api.command import PyinfraCommand
    from pyinfra.api.host import Host
    from pyinfra.api.state import State
    from pyinfra.connectors.util import CommandOutput

Commands = Generator["PyinfraCommand", None, None]

# Root-only: the uploads on their way in (prometheus.yml may hold passwords) and the
# record of the prometheus.yml the deploy last wrote or checked.
STATE_DIR = "/var/lib/scaphandre-opennebula"
PROMETHEUS_STATE_DIR = f"{STATE_DIR}/prometheus"
ORIGINAL_SUFFIX = ".scaphandre-original"
BACKUP_SUFFIX = ".scaphandre-backup."
BACKUPS_KEPT = 3


@dataclass(frozen=True)
class ConfigFiles:
    """The files kept for one prometheus.yml: its original, its rotated backups (newest
    first), and, in the deploy's state directory, its upload spool, its record, and the
    marker of a reload its Prometheus has not yet confirmed."""

    config: str
    original: str
    backups: tuple[str, ...]
    spool: str
    record: str
    reload_pending: str


def config_files(config_path: str) -> ConfigFiles:
    key = hashlib.sha256(config_path.encode()).hexdigest()[:16]
    return ConfigFiles(
        config=config_path,
        original=config_path + ORIGINAL_SUFFIX,
        backups=tuple(
            f"{config_path}{BACKUP_SUFFIX}{number}" for number in range(1, BACKUPS_KEPT + 1)
        ),
        spool=f"{PROMETHEUS_STATE_DIR}/{key}.upload",
        record=f"{PROMETHEUS_STATE_DIR}/{key}.record",
        reload_pending=f"{PROMETHEUS_STATE_DIR}/{key}.reload-pending",
    )


def _rules_spool(rules_path: str) -> str:
    return f"{PROMETHEUS_STATE_DIR}/{hashlib.sha256(rules_path.encode()).hexdigest()[:16]}.rules.upload"


# --------------------------------------------------------------------------
# Shell


def _q(value: str) -> str:
    return shlex.quote(value)


def _upload(content: bytes, spool: str) -> Iterator[PyinfraCommand]:
    """The bytes into the deploy's root-only state directory."""
    yield from upload_commands(content, spool, (STATE_DIR, PROMETHEUS_STATE_DIR))


def _backup_lines(files: ConfigFiles) -> list[str]:
    """Shell keeping the file about to be replaced: as the original the first time (never
    overwritten afterwards), else as the newest of the rotated backups."""
    newest = files.backups[0]
    rotate = [
        f"if [ -e {_q(src)} ]; then mv -f -- {_q(src)} {_q(dst)} "
        '|| fail "cannot rotate the backups of $live; the live file is untouched"; fi'
        for src, dst in reversed(list(zip(files.backups, files.backups[1:], strict=False)))
    ]
    return [
        f"original={_q(files.original)}",
        'if [ -e "$target" ]; then',
        (
            '  if [ ! -e "$original" ]; then cp -p -- "$target" "$original" '
            '|| fail "cannot save the original as $original; the live file is untouched"'
        ),
        "  else",
        *("    " + line for line in rotate),
        f'    cp -p -- "$target" {_q(newest)} || fail "cannot back up $live; the live file is untouched"',
        "  fi",
        "fi",
    ]


def _replace_script(
    live: str, spool: str, promtool: str, kind: str, after_check: list[str], after_move: list[str]
) -> str:
    """Shell that puts the spooled bytes in place of `live` (tasks/text_file.replace_script:
    a link stays a link, the owner and mode stay) only if `promtool check <kind>` passes.

    The new file already has the owner and mode of the one it replaces when promtool reads
    it. A config is checked through a path in the live path's directory, since Prometheus
    reads relative paths from there. On any failure the live file is untouched and nothing
    is left behind.
    """
    check = [
        f"promtool={_q(promtool)}",
        "check=$staged",
        (
            'live_dir=$(cd -- "$(dirname -- "$live")" && pwd -P) '
            '|| fail "cannot enter the directory of $live; the live file is untouched"'
        ),
        f'if [ {_q(kind)} = config ] && [ "$live_dir" != "$dir" ]; then',
        '  check="$live_dir/.scaphandre-check.$$"; rm -f -- "$check"',
        '  ln -s -- "$staged" "$check" || fail "cannot link $check; the live file is untouched"',
        "fi",
        (
            f'out=$("$promtool" check {kind} "$check" 2>&1) '
            '|| fail "promtool rejected the new $live; the live file is untouched: $out"'
        ),
        'if [ "$check" != "$staged" ]; then rm -f -- "$check"; fi; check=\'\'',
    ]
    return replace_script(live, spool, before_move=[*check, *after_check], after_move=after_move)


def _record_lines(files: ConfigFiles, sha256: str, fingerprint: str) -> list[str]:
    record = _q(files.record)
    return [
        (
            f"{{ printf '%s\\n' {_q(f'{sha256} {fingerprint}')} > {record}.new "
            f"&& mv -f -- {record}.new {record}; }} "
            "|| { printf '%s\\n' \"the new $live is in place, "
            "but the deploy's record of it could not be written\" >&2; exit 1; }"
        )
    ]


def _record_command(files: ConfigFiles, sha256: str, fingerprint: str) -> StringCommand:
    return StringCommand(
        f"live={_q(files.config)}; umask 077 && mkdir -p {_q(PROMETHEUS_STATE_DIR)} && "
        + _record_lines(files, sha256, fingerprint)[0]
    )


def _forget_record_command(files: ConfigFiles) -> StringCommand:
    return StringCommand(
        f"rm -f -- {_q(files.record)} {_q(files.spool)} && "
        f"rmdir -- {_q(PROMETHEUS_STATE_DIR)} {_q(STATE_DIR)} 2>/dev/null || true"
    )


@dataclass(frozen=True)
class ReloadRequest:
    """A reload of the Prometheus `service` for a change of `changed_path`, confirmed by the
    server within `timeout_s` (0: signalled only). `marker` stays on the server until the
    reload is confirmed, so that a later run reloads again (with `timeout_s` 0 it goes once
    the signal is sent)."""

    service: str
    changed_path: str
    endpoint: MetricsEndpoint
    timeout_s: int
    marker: str


# One read of Prometheus' own /metrics through bash's /dev/tcp: bash (Essential on Debian and
# Ubuntu, in every RHEL) and coreutils' timeout are on every server, where curl, wget or python3
# need not be (Debian's prometheus package depends on none of them). Plain HTTP/1.0, so the
# server closes the connection after its answer; the status line, the two reload gauges, the
# shell's own error lines and the exit code (124: no answer in time) are kept.
_PROBE = (
    "probe() {\n"
    f'  timeout {PROBE_TIMEOUT_S} bash -c \'exec 3<>"/dev/tcp/$1/$2" || exit 7; '
    'printf "GET %s HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n" "$3" >&3; tr -d "\\r" <&3\' '
    'probe "$address" "$port" "$path" 2>&1 '
    f"| grep -a -E '^(HTTP/|{RELOAD_SUCCESSFUL} |{RELOAD_SUCCESS_AT} |probe: )'\n"
    '  echo "exit=${PIPESTATUS[0]}"\n'
    "}"
)


def _reload_script(
    request: ReloadRequest,
    signalled_at: str = "",
    previous: tuple[str, ...] = (),
    wait_s: int | None = None,
) -> str:
    """bash that signals Prometheus (SIGHUP to its main process: OpenNebula's unit has no
    ExecReload) and waits, at most `wait_s` seconds, for its reload gauges to change from
    what they were before the signal, then prints what it saw (reload.parse_report reads it).

    With `signalled_at`, it only waits on: for a change from `previous` (the last gauges read).
    A stopped service is reported, not started; the marker is written before the signal.
    """
    endpoint = request.endpoint
    journal = 'journalctl -u "$unit" --since "@${signalled%.*}" --no-pager -o cat'
    return "\n".join(
        [
            (
                f"unit={_q(request.service)}; marker={_q(request.marker)}; "
                f"wait_s={int(request.timeout_s if wait_s is None else wait_s)}"
            ),
            f"address={_q(endpoint.address)}; port={endpoint.port}; path={_q(endpoint.path)}",
            f"signalled={_q(signalled_at)}; before={_q(chr(10).join(previous))}",
            _PROBE,
            "deadline=$(( $(date +%s%N) + wait_s * 1000000000 ))",
            'if [ -z "$signalled" ]; then',
            '  if ! systemctl is-active --quiet "$unit"; then echo not_running; exit 0; fi',
            "  before=$(probe)",
            '  if [ "$wait_s" -gt 0 ]; then',
            (
                f"    (umask 077 && mkdir -p {_q(PROMETHEUS_STATE_DIR)} "
                f"&& chmod 0700 {_q(STATE_DIR)} {_q(PROMETHEUS_STATE_DIR)} "
                '&& : > "$marker") || { echo "signal_error cannot write $marker"; exit 0; }'
            ),
            "  fi",
            "  signalled=$(date +%s.%N)",
            (
                '  if ! out=$(systemctl kill --kill-whom=main --signal=HUP "$unit" 2>&1); then '
                "printf 'signal_error %s\\n' \"$out\"; exit 0; fi"
            ),
            '  if [ "$wait_s" -eq 0 ]; then rm -f -- "$marker"; fi',
            "fi",
            "printf 'signalled %s\\n' \"$signalled\"",
            "printf '%s\\n' \"$before\" | sed 's/^/before /'",
            "after=$before",
            (
                'while [ "$(date +%s%N)" -lt "$deadline" ]; do after=$(probe); '
                'if [ "$after" != "$before" ]; then break; fi; '
                "sleep 0.2; done"
            ),
            "printf '%s\\n' \"$after\" | sed 's/^/after /'",
            '[ "$wait_s" -gt 0 ] || exit 0',
            'pid=$(systemctl show -p MainPID --value "$unit" 2>/dev/null)',
            "echo \"main_process $pid $(sed 's/.*) //' \"/proc/$pid/stat\" 2>/dev/null | cut -d' ' -f1)\"",
            # A failed reload is logged just after the gauge goes to 0: give the journal a moment.
            f'case "$after" in *"{RELOAD_SUCCESSFUL} 0"*) for attempt in 1 2 3 4 5 6 7 8 9 10; do',
            f"  {journal} 2>/dev/null | grep -q -i -E 'level=error' && break; sleep 0.2; done ;; esac",
            f"{journal} -n 50 2>/dev/null | sed 's/^/journal /'",
            "exit 0",
        ]
    )


def _clear_marker_command(request: ReloadRequest) -> StringCommand:
    return StringCommand(
        f"rm -f -- {_q(request.marker)} && "
        f"rmdir -- {_q(PROMETHEUS_STATE_DIR)} {_q(STATE_DIR)} 2>/dev/null || true"
    )


def _run_on(state: State, host: Host) -> Callable[[StringCommand], tuple[bool, CommandOutput]]:
    """Runs a command on `host` the way pyinfra runs the operation's own commands (with its
    _sudo, _env ... arguments); returns (succeeded, output)."""
    arguments = compat.connector_arguments_of_running_operation(state, host)

    def run(command: StringCommand) -> tuple[bool, CommandOutput]:
        return host.run_shell_command(
            command, print_output=state.print_output, print_input=state.print_input, **arguments
        )

    return run


def _fail(host: Host, reason: str) -> bool:
    host.log_styled(reason, fg="red", log_func=logger.error)
    return False


def reload_and_confirm(state: State, host: Host, request: ReloadRequest) -> bool:
    """Signals Prometheus and returns True once the server itself reports a successful reload
    after the signal (its marker then cleared); else fails this host with what Prometheus
    reported and its journal. Bounded by request.timeout_s; one command when the reload is
    prompt (and one to clear the marker)."""
    run = _run_on(state, host)
    started = time.monotonic()
    succeeded, output = run(StringCommand("bash", "-c", _q(_reload_script(request))))
    report = parse_report(output.stdout_lines)
    if not succeeded or (
        report.signalled_at is None and not report.not_running and not report.signal_error
    ):
        return _fail(
            host,
            f"the reload of Prometheus ({request.service}) could not run: "
            + (output.stderr.strip() or output.stdout.strip() or "no output"),
        )
    if report.not_running:
        return _fail(
            host,
            f"Prometheus service {request.service} is not running, so it was not reloaded; "
            f"the new {request.changed_path} passed promtool and is used when it starts",
        )
    if report.signal_error:
        return _fail(
            host,
            f"cannot signal Prometheus service {request.service} to reload: {report.signal_error}",
        )
    if request.timeout_s == 0:
        return True
    # Every report without the time of the signal returned above (not run, not running, or
    # not signalled): this one has it.
    signalled_at = report.signalled_at
    assert signalled_at is not None
    before = report.before
    while True:
        outcome = judge(before, report.after, signalled_at)
        if outcome is Outcome.CONFIRMED:
            return run(_clear_marker_command(request))[0] or _fail(
                host,
                f"Prometheus ({request.service}) runs the new {request.changed_path}, but the deploy's "
                f"marker {request.marker} could not be removed (the next run reloads it again)",
            )
        remaining = request.timeout_s - (time.monotonic() - started)
        if outcome is Outcome.FAILED or report.ran_out or remaining < 1:
            return _fail(
                host,
                not_confirmed_message(
                    outcome,
                    service=request.service,
                    changed_path=request.changed_path,
                    url=request.endpoint.url,
                    after=report.after,
                    timeout_s=request.timeout_s,
                    main_process=report.main_process,
                    journal=report.journal,
                ),
            )
        # Another reload ended between the first read and the signal: wait on for ours.
        script = _reload_script(
            request,
            signalled_at=f"{report.signalled_at:.9f}",
            previous=report.after_lines,
            wait_s=int(remaining),
        )
        succeeded, output = run(StringCommand("bash", "-c", _q(script)))
        if not succeeded:
            return _fail(
                host,
                f"waiting for Prometheus ({request.service}) to reload failed: "
                + (output.stderr.strip() or "no output"),
            )
        report = dataclasses.replace(
            parse_report(output.stdout_lines), signalled_at=report.signalled_at
        )


def _reload_command(
    files: ConfigFiles, changed_path: str, service: str, endpoint: MetricsEndpoint, timeout_s: int
) -> FunctionCommand:
    return FunctionCommand(
        reload_and_confirm,
        (
            ReloadRequest(
                service=service,
                changed_path=changed_path,
                endpoint=endpoint,
                timeout_s=timeout_s,
                marker=files.reload_pending,
            ),
        ),
        {},
    )


# --------------------------------------------------------------------------
# Reading the live file


def _dangling_link_problem(path: str, dangling: dict[str, Any]) -> str:
    """Why the file read from the server cannot be used: a link to nothing."""
    return (
        f"{path} is a symbolic link to {dangling['dangling']}, which does not exist: point the link at "
        "the configuration Prometheus reads, or set prometheus_config_file"
    )


def _read_problem(path: str, live: LiveFile | None) -> str | None:
    """Why the file read from the server cannot be used, or None."""
    if live is not None and not live.regular:
        return (
            f"{path} is not a regular file: set prometheus_config_file to the file Prometheus reads"
        )
    if live is not None and not live.complete:
        return f"{path} changed while it was being read; the live file is untouched: run the deploy again"
    return None


# The bytes of each prometheus.yml read in this run, by (host, path): pyinfra runs an
# operation once to plan and again to execute, and a large file need not travel twice.
_read_this_run: dict[tuple[str, str], tuple[str, bytes]] = {}


def _config_file_fact(files: ConfigFiles, fingerprint: str) -> LiveFile | dict[str, Any] | None:
    """The live file; its content read at most once per run while it does not change."""
    key = (host.name, files.config)
    known_sha256, known_content = _read_this_run.get(key, ("", b""))
    live = host.get_fact(
        PrometheusConfigFile,
        path=files.config,
        record=files.record,
        fingerprint=fingerprint,
        original=files.original,
        known_sha256=known_sha256,
        reload_pending=files.reload_pending,
    )
    if not isinstance(live, LiveFile) or not live.regular or live.record_current:
        return live
    if live.content is None and live.sha256 == known_sha256:
        return dataclasses.replace(live, content=known_content)
    if live.content is not None and live.complete:
        _read_this_run[key] = (live.sha256, live.content)
    return live


# --------------------------------------------------------------------------
# Operations


@operation()
def prometheus_job(
    config_path: str,
    job: dict[str, Any],
    targets_file: str,
    promtool: str,
    service: str,
    endpoint: MetricsEndpoint,
    reload_timeout_s: int,
    rule_file: str | None = None,
    reload_for_rules: bool = False,
) -> Commands:
    """Guarantees prometheus.yml holds `job` (and lists `rule_file` under rule_files), every
    other byte of the file as it was.

    The deploy's job is the one named like `job` or any job reading `targets_file` (so a
    renamed job moves). A file the deploy already wrote or checked for this very job is
    not read again (its SHA-256 is recorded in the deploy's state directory). A change is
    spliced in, checked with promtool and put in place as the module docstring says; the
    first change keeps the file as `<config>.scaphandre-original`, later ones rotate
    `<config>.scaphandre-backup.1..3`. Prometheus is reloaded after a change, when
    `reload_for_rules` (the rules file changed under a config that lists it), or when an
    earlier reload was never confirmed; the operation succeeds only once Prometheus itself
    reports a successful reload after the signal (within `reload_timeout_s`, read from its
    own /metrics at `endpoint`).
    """
    files = config_files(config_path)
    fingerprint = edit_fingerprint(job, rule_file, targets_file)
    live = _config_file_fact(files, fingerprint)
    if isinstance(live, dict):
        yield failure_command(_dangling_link_problem(config_path, live))
        return
    problem = _read_problem(config_path, live)
    if problem:
        yield failure_command(problem)
        return
    reload_pending = live is not None and live.reload_pending
    # Owed even when prometheus.yml stays as it is: the rules changed, or an earlier reload
    # was never confirmed.
    due_reload = (
        _reload_command(
            files,
            rule_file if reload_for_rules and rule_file else config_path,
            service,
            endpoint,
            reload_timeout_s,
        )
        if reload_for_rules or reload_pending
        else None
    )
    if live is not None and live.record_current:
        host.noop(
            f"{config_path} already holds the {job['job_name']} job (unchanged since the deploy wrote it)"
        )
        if due_reload is not None:
            yield due_reload
        return
    # The editor and its YAML library load only here, when the file may need a change: a
    # rerun answered by the record above skips the cost.
    from tasks.prometheus.config_file import with_job

    content = None if live is None else live.content
    try:
        wanted = with_job(content, job, rule_file, targets_file)
    except PrometheusConfigError as unusable:
        # This server only: the others go on, and this file is not touched.
        yield failure_command(f"{config_path}: {unusable}")
        return
    if live is not None and live.content is not None and wanted == live.content:
        yield _record_command(
            files, live.sha256, fingerprint
        )  # checked once, not again until it changes
        if due_reload is not None:
            yield due_reload
        return
    yield from _upload(wanted, files.spool)
    yield StringCommand(
        _replace_script(
            config_path,
            files.spool,
            promtool,
            "config",
            after_check=_backup_lines(files),
            after_move=_record_lines(files, hashlib.sha256(wanted).hexdigest(), fingerprint),
        )
    )
    yield _reload_command(files, config_path, service, endpoint, reload_timeout_s)


@operation()
def prometheus_job_absent(
    config_path: str,
    job_name: str,
    targets_file: str,
    promtool: str,
    service: str,
    endpoint: MetricsEndpoint,
    reload_timeout_s: int,
    rule_file: str | None = None,
) -> Commands:
    """Guarantees prometheus.yml has none of the deploy's job (named `job_name` or reading
    `targets_file`) and does not list `rule_file`, every other byte kept; checked, backed
    up and reloaded (and the reload confirmed) like a change made by prometheus_job, the
    deploy's state for the file then gone. Nothing is restored: when the
    original from before the first deploy is still there, a warning says where.

    A file that cannot be edited safely (not YAML, not UTF-8, two jobs the deploy could
    own, rule_files not a list ...) fails this server with what to fix, untouched.
    """
    files = config_files(config_path)
    live = _config_file_fact(files, "")
    if isinstance(live, dict):
        yield failure_command(_dangling_link_problem(config_path, live))
        return
    problem = _read_problem(config_path, live)
    if problem:
        yield failure_command(problem)
        return
    if live is None:
        host.noop(f"{config_path} does not exist")
        return
    if live.original_exists:
        logger.warning(
            f"{host.print_prefix}{config_path} as it was before the deploy first changed it is kept "
            f"as {files.original}; nothing was restored from it"
        )
    from tasks.prometheus.config_file import without_job  # loaded when there is a file to edit

    try:
        wanted = without_job(live.content, job_name, targets_file, rule_file)
    except PrometheusConfigError as unusable:
        yield failure_command(f"{config_path}: {unusable}")
        return
    if wanted is None or wanted == live.content:  # None only for no file, which is no content
        if live.record_exists:
            yield _forget_record_command(files)
        if live.reload_pending:
            yield _reload_command(files, config_path, service, endpoint, reload_timeout_s)
        if not live.record_exists and not live.reload_pending:
            host.noop(f"{config_path} has no {job_name} job")
        return
    yield from _upload(wanted, files.spool)
    yield StringCommand(
        _replace_script(
            config_path,
            files.spool,
            promtool,
            "config",
            after_check=_backup_lines(files),
            after_move=[],
        )
    )
    yield _forget_record_command(files)
    yield _reload_command(files, config_path, service, endpoint, reload_timeout_s)


@operation()
def prometheus_rules(rules_path: str, rules_text: str, promtool: str) -> Commands:
    """Writes `rules_path` with `rules_text`, checked with `promtool check rules` first, the
    way prometheus.yml is replaced (a link stays a link, the owner and mode stay). The
    caller decides when it is needed; prometheus_job reloads Prometheus for it."""
    spool = _rules_spool(rules_path)
    yield from _upload(rules_text.encode(), spool)
    yield StringCommand(
        _replace_script(rules_path, spool, promtool, "rules", after_check=[], after_move=[])
    )
