"""The `scaphandre` scrape job on every Prometheus server, or a snippet to paste when there is none."""

from __future__ import annotations

import posixpath
import threading
from collections.abc import Callable
from io import StringIO
from pathlib import Path

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.host import Host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files, python

from tasks.facts import PrometheusServer
from tasks.host_ids import HostMatchError, hypervisors, prometheus_hosts, resolve_one_host, scrape_host
from tasks.operations import fail_host, prometheus_job, prometheus_job_absent, prometheus_rules
from tasks.prometheus_config import (
    ScrapeTarget,
    parse_targets_file,
    prometheus_version,
    render_targets_file,
    rules_for_job,
    scaphandre_job,
    scrape_job_snippet,
    shard_relabel_configs,
)
from tasks.scrape_targets import assemble_targets


RULES_FILE = Path(__file__).resolve().parents[1] / "files" / "prometheus" / "scaphandre_rules.yml"


def _scrape_address(hypervisor: Host) -> str:
    return f"{scrape_host(hypervisor)}:{hypervisor.data.get('scaphandre_port') or 8080}"


def inventory_targets(inventory, pool, previous: Callable[[], list[ScrapeTarget]]) -> list[ScrapeTarget]:
    """One target per hypervisor of the whole inventory.

    Hosts taking part in this run may be asked for their hostname; the others are
    matched by name or explicit ID, else keep their previous entry.
    """
    active = set(inventory.get_active_hosts())
    resolved: dict[str, ScrapeTarget] = {}
    unresolved: dict[str, str] = {}
    for hypervisor in hypervisors(inventory):
        address = _scrape_address(hypervisor)
        try:
            one_host = resolve_one_host(hypervisor, pool, may_read_facts=hypervisor in active)
        except HostMatchError:
            unresolved[hypervisor.name] = address
            continue
        resolved[hypervisor.name] = ScrapeTarget(address=address, one_host_id=one_host.id, host_name=one_host.name)
    # The previous targets file is parsed only when some hypervisor needs its old entry.
    targets, warnings = assemble_targets(resolved, unresolved, previous() if unresolved else [])
    for warning in warnings:
        logger.warning(f"{host.print_prefix}{warning}")
    return targets


def _job(targets_file: str, version: tuple[int, int, int], shard: tuple[int, int] | None) -> dict:
    job = scaphandre_job(
        targets_file=targets_file,
        prometheus_version=version,
        job_name=_job_name(),
        scrape_interval=host.data.get("prometheus_scrape_interval"),
    )
    if shard is not None:
        job["relabel_configs"] = shard_relabel_configs(*shard)
    return job


def _shard(inventory) -> tuple[int, int] | None:
    """(this server's index, number of servers) when the hypervisors are sharded, else None."""
    if (host.data.get("prometheus_scrape_mode") or "replicate") == "replicate":
        return None
    servers = [server.name for server in prometheus_hosts(inventory)]
    return servers.index(host.name), len(servers)


def _locate_prometheus() -> dict | None:
    """This server's config file, service, promtool and version; None (and the host failed
    with what to set) when one of them cannot be found."""
    found = host.get_fact(
        PrometheusServer,
        candidates=[tuple(pair) for pair in host.data.get("prometheus_candidates") or []],
        binaries=list(host.data.get("prometheus_binaries") or []),
        promtools=list(host.data.get("promtool_binaries") or []),
    )
    config_file = host.data.get("prometheus_config_file") or found["config"]
    service = host.data.get("prometheus_service") or found["service"]
    if not config_file or not service:
        fail_host(
            name="Find Prometheus",
            reason="no Prometheus config found (looked for "
            + ", ".join(path for path, _ in host.data.get("prometheus_candidates") or [])
            + "); set prometheus_config_file and prometheus_service for this host",
        )
        return None
    if not found["promtool"]:
        fail_host(name="Find promtool", reason="promtool not found: install it or list it in promtool_binaries")
        return None
    try:
        version = prometheus_version(found["version"])
    except ValueError as error:
        fail_host(name="Find the Prometheus version", reason=f"{error}; list the binary in prometheus_binaries")
        return None
    targets_file = host.data.get("prometheus_targets_file") or posixpath.join(
        posixpath.dirname(config_file), "scaphandre_targets.yml"
    )
    return {
        "config_file": config_file,
        "service": service,
        "promtool": found["promtool"],
        "version": version,
        "targets_file": targets_file,
    }


def _rules_file(server: dict) -> str:
    return host.data.get("prometheus_rules_file") or posixpath.join(
        posixpath.dirname(server["config_file"]), "scaphandre_rules.yml"
    )


def _job_name() -> str:
    return host.data.get("prometheus_job_name") or "scaphandre"


@deploy("Prometheus scrape job")
def configure_prometheus(inventory, pool) -> None:
    """Guarantees this Prometheus server scrapes every hypervisor of the inventory: the
    file_sd targets file lists them with their OpenNebula IDs, and prometheus.yml holds
    the job (checked with promtool, backed up, reloaded only when it changed)."""
    mode = host.data.get("prometheus_scrape_mode") or "replicate"
    if mode not in ("replicate", "shard"):
        fail_host(
            name="Check prometheus_scrape_mode",
            reason=f"prometheus_scrape_mode must be 'replicate' or 'shard', not {mode!r}",
        )
        return
    server = _locate_prometheus()
    if server is None:
        return
    previous_lines = host.get_fact(FileContents, path=server["targets_file"])

    def previous_targets() -> list[ScrapeTarget]:
        try:
            return parse_targets_file("\n".join(previous_lines or []))
        except ValueError:
            return []  # rewritten below from what is known now

    targets = inventory_targets(inventory, pool, previous_targets)

    try:
        job = _job(server["targets_file"], server["version"], _shard(inventory))
        targets_text = render_targets_file(targets)
    except ValueError as bad_input:  # a bad setting, or two hypervisors on one OpenNebula host
        fail_host(name="Build the scrape job", reason=str(bad_input))
        return
    # Prometheus watches file_sd files itself: a new hypervisor needs no reload.
    if previous_lines is not None and "\n".join(previous_lines) + "\n" == targets_text:
        host.noop(f"{server['targets_file']} already lists every hypervisor")  # already read: no second look
    else:
        files.put(
            name="Write the Scaphandre scrape targets",
            src=StringIO(targets_text),
            dest=server["targets_file"],
            mode="644",
        )
    rules_file = None
    if host.data.get("prometheus_rules", True):
        rules_file = _rules_file(server)
        try:
            rules_text = rules_for_job(RULES_FILE.read_text(), _job_name())
        except ValueError as error:
            fail_host(name="Prepare the Prometheus rules", reason=str(error))
            return
        # Before the config names it, so promtool checks the config with the rules in place.
        prometheus_rules(
            name=f"Write the Scaphandre recording and alerting rules to {rules_file}",
            rules_path=rules_file,
            rules_text=rules_text,
            config_path=server["config_file"],
            promtool=server["promtool"],
            service=server["service"],
        )
    prometheus_job(
        name=f"Add the {_job_name()} job to {server['config_file']}",
        config_path=server["config_file"],
        job=job,
        promtool=server["promtool"],
        service=server["service"],
        rule_file=rules_file,
    )


@deploy("Remove the Prometheus scrape job")
def remove_prometheus_job() -> None:
    """Guarantees this Prometheus server no longer has the job nor its targets file; the
    config change is checked, backed up and reloaded like any other."""
    server = _locate_prometheus()
    if server is None:
        return
    rules_file = _rules_file(server)
    prometheus_job_absent(
        name=f"Remove the {_job_name()} job from {server['config_file']}",
        config_path=server["config_file"],
        job_name=_job_name(),
        promtool=server["promtool"],
        service=server["service"],
        rule_file=rules_file,
    )
    files.file(name="Remove the Scaphandre scrape targets", path=server["targets_file"], present=False)
    files.file(name="Remove the Scaphandre rules", path=rules_file, present=False)


def _write_snippet(path: Path, text: str) -> None:
    path.write_text(text)
    logger.info(f"--> No `prometheus` host in the inventory: paste the job from {path} into prometheus.yml")


_snippet_lock = threading.Lock()
_snippet_text: list[str] = []  # the run's snippet, worked out by the first host that asks


def _snippet(inventory, pool) -> str:
    with _snippet_lock:
        if not _snippet_text:
            major = int(host.data.get("prometheus_snippet_major_version") or 2)
            job = scaphandre_job(
                targets_file="unused",  # the snippet lists its targets inline
                prometheus_version=(major, 0, 0),
                job_name=_job_name(),
                scrape_interval=host.data.get("prometheus_scrape_interval"),
            )
            _snippet_text.append(scrape_job_snippet(job, inventory_targets(inventory, pool, previous=list)))
    return _snippet_text[0]


def write_job_snippet(inventory, pool) -> None:
    """With no Prometheus host, write the job with static targets on the machine running
    pyinfra, once per run and only when its content changed."""
    text = _snippet(inventory, pool)
    path = Path(host.data.get("prometheus_snippet_file") or "scaphandre-prometheus-job.yml").resolve()
    if path.exists() and path.read_text() == text:
        host.noop(f"{path} already holds the job to paste")
        return
    python.call(
        name=f"Write the Prometheus job to paste ({path})",
        function=_write_snippet,
        path=path,
        text=text,
        _run_once=True,
    )
