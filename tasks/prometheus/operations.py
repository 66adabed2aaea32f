"""Operations of the Prometheus step, written the way pyinfra's own are: read facts,
yield commands only when the state differs, say why when nothing changes.

Every file that Prometheus reads is written beside the live one, checked with
promtool and only then moved in place; Prometheus is reloaded, never restarted.
"""

from __future__ import annotations

import hashlib
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import FileContents, Sha256File

from tasks.host_failure import failure_command
from tasks.prometheus.config_file import (
    PrometheusConfigError,
    config_needs_update,
    foreign_job_conflict,
    merge_job,
    remove_job,
    rule_files_in_config,
    without_rule_file,
)


def _staged_and_checked(live_path: str, text: str, promtool: str, kind: str):
    """Commands that write `text` beside `live_path` (as `<path>.scaphandre-new`) and run
    `promtool check <kind>` on it; on rejection the staged file is removed and the host
    fails with promtool's message, the live file untouched."""
    staged = shlex.quote(f"{live_path}.scaphandre-new")
    yield FileUploadCommand(StringIO(text), f"{live_path}.scaphandre-new")
    yield StringCommand(
        f"chmod 0644 {staged} && "
        f"{{ out=$({shlex.quote(promtool)} check {kind} {staged} 2>&1) || "
        f"{{ rm -f {staged}; echo \"promtool rejected the new {live_path}; "
        f"the live file is untouched: $out\" >&2; exit 1; }}; }}"
    )


def _replace_config(config_path: str, current: str | None, new_text: str, promtool: str, service: str):
    """Commands that put `new_text` in place of the live config only if promtool accepts it,
    keep the previous file as `<config>.bak`, and reload Prometheus with SIGHUP."""
    staged = f"{config_path}.scaphandre-new"
    quoted_live, quoted_staged = shlex.quote(config_path), shlex.quote(staged)
    yield from _staged_and_checked(config_path, new_text, promtool, "config")
    if current is not None:
        yield StringCommand(f"cp -p {quoted_live} {quoted_live}.bak")
        # Keep the owner and mode the operator (or the package) gave the live file.
        yield StringCommand(
            f"chown --reference={quoted_live} {quoted_staged} && chmod --reference={quoted_live} {quoted_staged}"
        )
    yield StringCommand(f"mv {quoted_staged} {quoted_live}")
    yield _reload_command(config_path, service)


def _reload_command(changed_path: str, service: str) -> StringCommand:
    """SIGHUP to Prometheus' main process (OpenNebula's unit has no ExecReload); fails when it is not running."""
    unit = shlex.quote(service)
    return StringCommand(
        f"if systemctl is-active --quiet {unit}; then systemctl kill --kill-whom=main --signal=HUP {unit}; "
        f"else echo 'Prometheus service {service} is not running, so it was not reloaded; "
        f"the new {changed_path} passed promtool and is used when it starts' >&2; exit 1; fi"
    )


@operation()
def prometheus_job(
    config_path: str,
    job: dict,
    promtool: str,
    service: str,
    rule_file: str | None = None,
):
    """Guarantees prometheus.yml holds `job` (and lists `rule_file` under rule_files)
    with every other job and setting kept.

    The merged file is written beside the live one, checked with promtool, and
    only then moved in place, after the live file is copied to `<config>.bak`;
    Prometheus is then reloaded (SIGHUP: OpenNebula's unit has no ExecReload), not
    restarted. Nothing is written or reloaded when the job is already there.
    """
    lines = host.get_fact(FileContents, path=config_path)
    current = "\n".join(lines) + "\n" if lines is not None else None
    try:
        if not config_needs_update(current, job, rule_file):
            host.noop(f"{config_path} already holds the {job['job_name']} job")
            return
        conflict = foreign_job_conflict(current, job)
        if conflict:
            yield failure_command(f"{config_path}: {conflict}")
            return
        merged = merge_job(current, job, rule_file)
    except PrometheusConfigError as unusable:
        # This server only: the others go on, and this file is not touched.
        yield failure_command(f"{config_path}: {unusable}")
        return

    yield from _replace_config(config_path, current, merged, promtool, service)


@operation()
def prometheus_job_absent(config_path: str, job_name: str, promtool: str, service: str, rule_file: str | None = None):
    """Guarantees prometheus.yml has no job named `job_name` and does not list `rule_file`,
    every other job and setting kept; checked, backed up and reloaded like a change made
    by prometheus_job."""
    lines = host.get_fact(FileContents, path=config_path)
    current = "\n".join(lines) + "\n" if lines is not None else None
    if current is None:
        host.noop(f"{config_path} does not exist")
        return
    wanted = remove_job(current, job_name)
    if rule_file:
        wanted = without_rule_file(wanted, rule_file)
    if wanted == current:
        host.noop(f"{config_path} has no {job_name} job")
        return
    yield from _replace_config(config_path, current, wanted, promtool, service)


def _config_lists(config_path: str, rules_path: str) -> bool:
    """True when the live prometheus.yml already lists rules_path under rule_files."""
    lines = host.get_fact(FileContents, path=config_path)
    if lines is None:
        return False
    try:
        return rules_path in rule_files_in_config("\n".join(lines) + "\n")
    except PrometheusConfigError:
        return False  # prometheus_job reports it


@operation()
def prometheus_rules(rules_path: str, rules_text: str, config_path: str, promtool: str, service: str):
    """Guarantees `rules_path` holds `rules_text`.

    The new file is written beside the live one and checked with `promtool check
    rules` before it replaces it. Prometheus is reloaded only when the file changed
    and the live prometheus.yml already lists it; otherwise prometheus_job, which
    adds it to rule_files, reloads. Nothing happens when the file is as wanted.
    """
    if host.get_fact(Sha256File, path=rules_path) == hashlib.sha256(rules_text.encode()).hexdigest():
        host.noop(f"{rules_path} already holds the rules")
        return
    yield from _staged_and_checked(rules_path, rules_text, promtool, "rules")
    yield StringCommand(f"mv {shlex.quote(rules_path + '.scaphandre-new')} {shlex.quote(rules_path)}")
    if _config_lists(config_path, rules_path):
        yield _reload_command(rules_path, service)
