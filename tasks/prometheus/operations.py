"""Operations of the Prometheus step, written the way pyinfra's own are: read facts,
yield commands only when the state differs, say why when nothing changes.

Every file Prometheus reads is replaced the same way: the new bytes go to a root-only
spool of the deploy, are copied into a file made with mktemp beside the live one (so
root-only from its first byte) that then takes the live file's owner and mode, are
checked with promtool as root, and only then renamed over the live file, or over the
file a symbolic link points to, which stays a link. Prometheus is reloaded, never
restarted. Every path and name reaches the shell quoted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shlex
from collections.abc import Iterator
from dataclasses import dataclass

from pyinfra import host, logger
from pyinfra.api import StringCommand, operation

from tasks.host_failure import failure_command
from tasks.text_file import replace_script, upload_commands
from tasks.prometheus.edit_request import PrometheusConfigError, edit_fingerprint
from tasks.prometheus.facts import LiveFile, PrometheusConfigFile

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
    first), and, in the deploy's state directory, its upload spool and its record."""

    config: str
    original: str
    backups: tuple[str, ...]
    spool: str
    record: str


def config_files(config_path: str) -> ConfigFiles:
    key = hashlib.sha256(config_path.encode()).hexdigest()[:16]
    return ConfigFiles(
        config=config_path,
        original=config_path + ORIGINAL_SUFFIX,
        backups=tuple(f"{config_path}{BACKUP_SUFFIX}{number}" for number in range(1, BACKUPS_KEPT + 1)),
        spool=f"{PROMETHEUS_STATE_DIR}/{key}.upload",
        record=f"{PROMETHEUS_STATE_DIR}/{key}.record",
    )


def _rules_spool(rules_path: str) -> str:
    return f"{PROMETHEUS_STATE_DIR}/{hashlib.sha256(rules_path.encode()).hexdigest()[:16]}.rules.upload"


# --------------------------------------------------------------------------
# Shell


def _q(value: str) -> str:
    return shlex.quote(value)


def _upload(content: bytes, spool: str) -> Iterator:
    """The bytes into the deploy's root-only state directory."""
    yield from upload_commands(content, spool, (STATE_DIR, PROMETHEUS_STATE_DIR))


def _backup_lines(files: ConfigFiles) -> list[str]:
    """Shell keeping the file about to be replaced: as the original the first time (never
    overwritten afterwards), else as the newest of the rotated backups."""
    newest = files.backups[0]
    rotate = [
        f'if [ -e {_q(src)} ]; then mv -f -- {_q(src)} {_q(dst)} || fail "cannot rotate the backups of $live; the live file is untouched"; fi'
        for src, dst in reversed(list(zip(files.backups, files.backups[1:])))
    ]
    return [
        f"original={_q(files.original)}",
        'if [ -e "$target" ]; then',
        '  if [ ! -e "$original" ]; then cp -p -- "$target" "$original" || fail "cannot save the original as $original; the live file is untouched"',
        "  else",
        *("    " + line for line in rotate),
        f'    cp -p -- "$target" {_q(newest)} || fail "cannot back up $live; the live file is untouched"',
        "  fi",
        "fi",
    ]


def _replace_script(live: str, spool: str, promtool: str, kind: str, after_check: list[str], after_move: list[str]) -> str:
    """Shell that puts the spooled bytes in place of `live` (tasks/text_file.replace_script:
    a link stays a link, the owner and mode stay) only if `promtool check <kind>` passes.

    The new file already has the owner and mode of the one it replaces when promtool reads
    it. A config is checked through a path in the live path's directory, since Prometheus
    reads relative paths from there. On any failure the live file is untouched and nothing
    is left behind.
    """
    check = [
        f"promtool={_q(promtool)}",
        'check=$staged',
        'live_dir=$(cd -- "$(dirname -- "$live")" && pwd -P) || fail "cannot enter the directory of $live; the live file is untouched"',
        f'if [ {_q(kind)} = config ] && [ "$live_dir" != "$dir" ]; then',
        '  check="$live_dir/.scaphandre-check.$$"; rm -f -- "$check"',
        '  ln -s -- "$staged" "$check" || fail "cannot link $check; the live file is untouched"',
        "fi",
        f'out=$("$promtool" check {kind} "$check" 2>&1) || fail "promtool rejected the new $live; the live file is untouched: $out"',
        'if [ "$check" != "$staged" ]; then rm -f -- "$check"; fi; check=\'\'',
    ]
    return replace_script(live, spool, before_move=[*check, *after_check], after_move=after_move)


def _record_lines(files: ConfigFiles, sha256: str, fingerprint: str) -> list[str]:
    record = _q(files.record)
    return [f"{{ printf '%s\\n' {_q(f'{sha256} {fingerprint}')} > {record}.new && mv -f -- {record}.new {record}; }} "
            "|| { printf '%s\\n' \"the new $live is in place, but the deploy's record of it could not be written\" >&2; "
            "exit 1; }"]


def _record_command(files: ConfigFiles, sha256: str, fingerprint: str) -> StringCommand:
    return StringCommand(f"live={_q(files.config)}; umask 077 && mkdir -p {_q(PROMETHEUS_STATE_DIR)} && "
                         + _record_lines(files, sha256, fingerprint)[0])


def _forget_record_command(files: ConfigFiles) -> StringCommand:
    return StringCommand(f"rm -f -- {_q(files.record)} {_q(files.spool)} && "
                         f"rmdir -- {_q(PROMETHEUS_STATE_DIR)} {_q(STATE_DIR)} 2>/dev/null || true")


def _reload_command(changed_path: str, service: str) -> StringCommand:
    """SIGHUP to Prometheus' main process (OpenNebula's unit has no ExecReload); fails when it is not running."""
    return StringCommand(
        f"unit={_q(service)}; changed={_q(changed_path)}; "
        'if systemctl is-active --quiet "$unit"; then systemctl kill --kill-whom=main --signal=HUP "$unit"; '
        "else printf '%s\\n' \"Prometheus service $unit is not running, so it was not reloaded; "
        'the new $changed passed promtool and is used when it starts" >&2; exit 1; fi'
    )


# --------------------------------------------------------------------------
# Reading the live file


def _read_problem(path: str, live: LiveFile | dict | None) -> str | None:
    """Why the file read from the server cannot be used, or None."""
    if isinstance(live, dict):
        return (f"{path} is a symbolic link to {live['dangling']}, which does not exist: point the link at "
                "the configuration Prometheus reads, or set prometheus_config_file")
    if live is not None and not live.regular:
        return f"{path} is not a regular file: set prometheus_config_file to the file Prometheus reads"
    if live is not None and not live.complete:
        return f"{path} changed while it was being read; the live file is untouched: run the deploy again"
    return None


# The bytes of each prometheus.yml read in this run, by (host, path): pyinfra runs an
# operation once to plan and again to execute, and a large file need not travel twice.
_read_this_run: dict[tuple[str, str], tuple[str, bytes]] = {}


def _config_file_fact(files: ConfigFiles, fingerprint: str) -> LiveFile | dict | None:
    """The live file; its content read at most once per run while it does not change."""
    key = (host.name, files.config)
    known_sha256, known_content = _read_this_run.get(key, ("", b""))
    live = host.get_fact(PrometheusConfigFile, path=files.config, record=files.record, fingerprint=fingerprint,
                         original=files.original, known_sha256=known_sha256)
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
    job: dict,
    targets_file: str,
    promtool: str,
    service: str,
    rule_file: str | None = None,
    reload_for_rules: bool = False,
):
    """Guarantees prometheus.yml holds `job` (and lists `rule_file` under rule_files), every
    other byte of the file as it was.

    The deploy's job is the one named like `job` or any job reading `targets_file` (so a
    renamed job moves). A file the deploy already wrote or checked for this very job is
    not read again (its SHA-256 is recorded in the deploy's state directory). A change is
    spliced in, checked with promtool and put in place as the module docstring says; the
    first change keeps the file as `<config>.scaphandre-original`, later ones rotate
    `<config>.scaphandre-backup.1..3`. Prometheus is reloaded after a change, or when
    `reload_for_rules` (the rules file changed under a config that lists it).
    """
    files = config_files(config_path)
    fingerprint = edit_fingerprint(job, rule_file, targets_file)
    live = _config_file_fact(files, fingerprint)
    problem = _read_problem(config_path, live)
    if problem:
        yield failure_command(problem)
        return
    if live is not None and live.record_current:
        host.noop(f"{config_path} already holds the {job['job_name']} job (unchanged since the deploy wrote it)")
        if reload_for_rules:
            yield _reload_command(rule_file or config_path, service)
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
    if content is not None and wanted == content:
        yield _record_command(files, live.sha256, fingerprint)  # checked once, not again until it changes
        if reload_for_rules:
            yield _reload_command(rule_file or config_path, service)
        return
    yield from _upload(wanted, files.spool)
    yield StringCommand(_replace_script(
        config_path, files.spool, promtool, "config",
        after_check=_backup_lines(files),
        after_move=_record_lines(files, hashlib.sha256(wanted).hexdigest(), fingerprint),
    ))
    yield _reload_command(config_path, service)


@operation()
def prometheus_job_absent(
    config_path: str,
    job_name: str,
    targets_file: str,
    promtool: str,
    service: str,
    rule_file: str | None = None,
):
    """Guarantees prometheus.yml has none of the deploy's job (named `job_name` or reading
    `targets_file`) and does not list `rule_file`, every other byte kept; checked, backed
    up and reloaded like a change made by prometheus_job. Nothing is restored: when the
    original from before the first deploy is still there, a warning says where.

    A file that cannot be edited safely (not YAML, not UTF-8, two jobs the deploy could
    own, rule_files not a list ...) fails this server with what to fix, untouched.
    """
    files = config_files(config_path)
    live = _config_file_fact(files, "")
    problem = _read_problem(config_path, live)
    if problem:
        yield failure_command(problem)
        return
    if live is None:
        host.noop(f"{config_path} does not exist")
        return
    if live.original_exists:
        logger.warning(f"{host.print_prefix}{config_path} as it was before the deploy first changed it is kept "
                       f"as {files.original}; nothing was restored from it")
    from tasks.prometheus.config_file import without_job  # loaded when there is a file to edit

    try:
        wanted = without_job(live.content, job_name, targets_file, rule_file)
    except PrometheusConfigError as unusable:
        yield failure_command(f"{config_path}: {unusable}")
        return
    if wanted == live.content:
        if live.record_exists:
            yield _forget_record_command(files)
        else:
            host.noop(f"{config_path} has no {job_name} job")
        return
    yield from _upload(wanted, files.spool)
    yield StringCommand(_replace_script(config_path, files.spool, promtool, "config",
                                        after_check=_backup_lines(files), after_move=[]))
    yield _forget_record_command(files)
    yield _reload_command(config_path, service)


@operation()
def prometheus_rules(rules_path: str, rules_text: str, promtool: str):
    """Writes `rules_path` with `rules_text`, checked with `promtool check rules` first, the
    way prometheus.yml is replaced (a link stays a link, the owner and mode stay). The
    caller decides when it is needed; prometheus_job reloads Prometheus for it."""
    spool = _rules_spool(rules_path)
    yield from _upload(rules_text.encode(), spool)
    yield StringCommand(_replace_script(rules_path, spool, promtool, "rules", after_check=[], after_move=[]))
