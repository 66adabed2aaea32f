"""Operations pyinfra does not ship, written the way pyinfra's own are: read facts,
yield commands only when the state differs, say why when nothing changes."""

from __future__ import annotations

import hashlib
import posixpath
import shlex
from io import StringIO

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, FunctionCommand, StringCommand, operation
from pyinfra.facts.docker import DockerContainer, DockerImage
from pyinfra.facts.files import FileContents, Sha256File
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import docker

from tasks.facts import ListeningTcpSockets, RaplExposed
from tasks.hypervisor_plan import (
    ScaphandreSpec,
    container_drift,
    port_listeners,
    port_taken_message,
    publishes_port,
)
from tasks.prometheus_config import (
    PrometheusConfigError,
    config_needs_update,
    foreign_job_conflict,
    merge_job,
    remove_job,
    rule_files_in_config,
    without_rule_file,
)


def _log_failure(state, host, reason: str) -> bool:
    host.log_styled(reason, fg="red", log_func=logger.error)
    return False


@operation(is_idempotent=False)
def fail_host(reason: str):
    """Stops this host's deploy with `reason`, before any later operation touches it.

    Used for problems found while planning (unknown to OpenNebula, unsupported OS, ...):
    the other hosts carry on.
    """
    yield FunctionCommand(_log_failure, (reason,), {})


@operation()
def rapl_exposed(failure_message: str):
    """Guarantees RAPL is exposed under /sys/class/powercap, or fails the host with `failure_message`."""
    if host.get_fact(RaplExposed):
        host.noop("RAPL is exposed under /sys/class/powercap")
        return
    # Checked again on the host when it runs: the modules may have been loaded by an earlier operation.
    yield StringCommand(
        f"test -e /sys/class/powercap/intel-rapl:0 || {{ echo {shlex.quote(failure_message)} >&2; exit 1; }}"
    )


@operation()
def docker_engine_active(unit: str = "docker.service", journal_lines: int = 15):
    """Guarantees the Docker engine `unit` is active, or fails the host showing the last
    lines of its journal and what to do: an engine that will not start is named as such,
    not left to surface later as a container error."""
    if host.get_fact(SystemdStatus, services=[unit]).get(unit):
        host.noop(f"{unit} is active")
        return
    quoted = shlex.quote(unit)
    script = (
        f"systemctl is-active --quiet {quoted} && exit 0; "
        f"echo 'The Docker engine ({unit}) is present but does not start; last lines of its journal:' >&2; "
        f"journalctl -u {quoted} -n {int(journal_lines)} --no-pager -o cat >&2 "
        f"|| systemctl status --no-pager {quoted} >&2; "
        "echo 'Fix: correct the cause above (often /etc/docker/daemon.json or the storage driver), "
        f"check that `systemctl start {unit}` succeeds, then rerun the deploy' >&2; exit 1"
    )
    yield StringCommand("bash", "-c", shlex.quote(script))


def _metrics_wait_command(spec: ScaphandreSpec, timeout_s: int) -> StringCommand:
    address, port = spec.metrics_probe_address, spec.port
    probe = (
        f"exec 3<>/dev/tcp/{address}/{port} && "
        "printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && grep -q '^scaph_' <&3"
    )
    script = (
        f"for attempt in $(seq 1 {timeout_s}); do "
        f"if ( {probe} ) 2>/dev/null; then exit 0; fi; sleep 1; done; "
        f"echo 'Scaphandre /metrics on {address}:{port} did not answer within {timeout_s}s; "
        f"last log lines of container {spec.name}:' >&2; "
        f"docker logs --tail 20 {shlex.quote(spec.name)} >&2; exit 1"
    )
    return StringCommand("bash", "-c", shlex.quote(script))


@operation()
def scaphandre_container(spec: ScaphandreSpec, metrics_timeout_s: int = 60):
    """Guarantees the Scaphandre container runs exactly as `spec` says and serves /metrics.

    It is recreated when image, command line, mounts, port, privileges, restart
    policy or any other setting differ, and left alone otherwise. After any
    change the operation waits (bounded) until /metrics answers, and shows the
    container's last log lines when it does not.
    """
    existing = host.get_fact(DockerContainer, object_id=spec.name)
    current = existing[0] if existing else None
    drift = container_drift(current, spec)
    if current and not drift and (current.get("State") or {}).get("Status") == "running":
        host.noop(f"container {spec.name} runs {spec.image} as specified")
        return

    commands = list(
        docker.container._inner(
            container=spec.name,
            image=spec.image,
            command=" ".join(shlex.quote(arg) for arg in spec.command),
            ports=[spec.port_binding],
            volumes=spec.volumes,
            labels=spec.labels,
            restart_policy=spec.restart_policy,
            privileged=spec.privileged,
            extra_args=spec.security_args + spec.extra_args,
            force=bool(drift),
            present=True,
            start=True,
        )
    )
    if not commands:
        host.noop(f"container {spec.name} runs {spec.image} as specified")
        return
    # Checked before anything is removed: a taken port must not cost a working container.
    if not publishes_port(current, spec.port):
        listeners = port_listeners(host.get_fact(ListeningTcpSockets), spec.port, spec.listen_address)
        if listeners:
            yield FunctionCommand(_log_failure, (port_taken_message(spec.port, listeners, spec.name),), {})
            return
    if drift:
        logger.info(f"{host.print_prefix}recreating container {spec.name}: {', '.join(drift)} changed")
    yield from commands
    yield _metrics_wait_command(spec, metrics_timeout_s)


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
            yield FunctionCommand(_log_failure, (f"{config_path}: {conflict}",), {})
            return
        merged = merge_job(current, job, rule_file)
    except PrometheusConfigError as unusable:
        # This server only: the others go on, and this file is not touched.
        yield FunctionCommand(_log_failure, (f"{config_path}: {unusable}",), {})
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


@operation()
def image_from_archive(image: str, archive: str):
    """Guarantees `image` is in this host's Docker engine, loaded from a local `docker save`
    archive when it is missing (sites whose hypervisors reach no registry).

    The archive is uploaded to /var/tmp, loaded and removed again; a host that already
    has the image gets nothing, so the archive crosses the network once.
    """
    if host.get_fact(DockerImage, object_id=image):
        host.noop(f"image {image} is already loaded")
        return
    remote = f"/var/tmp/scaphandre-image-{posixpath.basename(archive)}"
    quoted = shlex.quote(remote)
    yield FileUploadCommand(archive, remote)
    yield StringCommand(
        f"docker load -i {quoted} >/dev/null; loaded=$?; rm -f {quoted}; "
        f"[ $loaded -eq 0 ] && docker image inspect {shlex.quote(image)} >/dev/null 2>&1 || "
        f"{{ echo {shlex.quote(f'the archive {archive} does not hold {image} (or docker load failed): check scaphandre_image_archive and scaphandre_image')} >&2; exit 1; }}"
    )
