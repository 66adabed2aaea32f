"""Prometheus: the scrape job on every server of the `prometheus` group, or a snippet to paste.

targets.py renders the file_sd targets file, job.py the scrape job, config_file.py
edits prometheus.yml (edit_request.py: what is asked of it, enough for a rerun),
rules.py adapts the shipped rules; facts.py finds the server, operations.py writes
each file only after promtool accepts it and reloads Prometheus until the server
itself confirms the new configuration (reload.py judges what it reports). The targets
and rules files are the deploy's only if its install record lists them
(tasks/install_record).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.operations import files, python

from tasks import groups
from tasks.accounting.carbon import intensity_rules
from tasks.energy_sync.plan import energy_sync_paths
from tasks.host_failure import fail_host
from tasks.install_record import InstallLedger, claim_files, files_at, remove_recorded_files
from tasks.install_record.facts import FoundFile
from tasks.install_record.ownership import ManagedPath
from tasks.install_record.record import sha256_of
from tasks.prometheus.edit_request import edit_fingerprint
from tasks.prometheus.facts import PrometheusServer
from tasks.prometheus.job import (
    prometheus_version,
    scaphandre_job,
    scrape_job_snippet,
    shard_relabel_configs,
)
from tasks.prometheus.operations import prometheus_job, prometheus_job_absent, prometheus_rules
from tasks.prometheus.reload import TIMEOUT_SETTING, MetricsEndpoint, metrics_endpoint
from tasks.prometheus.rules import render_rules
from tasks.prometheus.targets import ScrapeTarget, parse_targets_file, render_targets_file
from tasks.run_memo import once_per_run
from tasks.settings import Settings

if TYPE_CHECKING:  # tasks.cloud uses this package's targets, tasks.host_state its facts
    from pyinfra.api import Inventory

    from tasks.cloud import CloudView
    from tasks.host_state.parse import ConfigFileFound, EnergySyncFound, PrometheusFound

RULES_FILE = Path(__file__).resolve().parents[2] / "files" / "prometheus" / "scaphandre_rules.yml"


@dataclass(frozen=True)
class PrometheusLayout:
    """Where one server's Prometheus keeps what the deploy touches, the Prometheus (binary,
    version, promtool) that its service runs, and where it serves its own /metrics."""

    config_file: str
    service: str
    binary: str
    promtool: str
    version: tuple[int, int, int]
    targets_file: str
    rules_file: str
    metrics: MetricsEndpoint


def _locate_prometheus(
    settings: Settings, found: dict[str, Any] | None = None
) -> PrometheusLayout | None:
    """This server's config file and service, and the binary that service runs with its
    version and promtool (`found`: what PrometheusServer reported, read here when not
    given); None (and the host failed with what to set) when one of them cannot be found."""
    if found is None:
        found = host.get_fact(
            PrometheusServer,
            candidates=[tuple(pair) for pair in settings.prometheus_candidates],
            binaries=list(settings.prometheus_binaries),
            promtools=list(settings.promtool_binaries),
            config_file=settings.prometheus_config_file,
            service=settings.prometheus_service,
        )
    config_file = settings.prometheus_config_file or found["config"]
    service = settings.prometheus_service or found["service"]
    binary = found["binary"]
    unit_binary = found.get("unit_binary", "")
    if not config_file or not service:
        fail_host(
            name="Find Prometheus",
            reason="no Prometheus config found (looked for "
            + ", ".join(path for path, _ in settings.prometheus_candidates)
            + "); set prometheus_config_file and prometheus_service for this host",
        )
        return None
    if not binary:
        fail_host(
            name="Find the Prometheus binary",
            reason=(
                f"the unit of {service} names no Prometheus binary that answers --version"
                + (f" ({unit_binary})" if unit_binary else "")
                + " and none of prometheus_binaries exists: list the binary the service runs in prometheus_binaries"
            ),
        )
        return None
    if found.get("binary_source") == "list" and unit_binary:
        logger.warning(
            f"{host.print_prefix}{service} runs {unit_binary}, which does not answer --version "
            f"as Prometheus: using {binary} (from prometheus_binaries) for the version"
        )
    if not found["promtool"]:
        fail_host(
            name="Find promtool",
            reason=(
                f"promtool not found beside {binary} nor in promtool_binaries: "
                "install it or list it in promtool_binaries"
            ),
        )
        return None
    try:
        version = prometheus_version(found["version"])
    except ValueError as error:
        fail_host(
            name="Find the Prometheus version",
            reason=f"{error} ({binary}); list the binary in prometheus_binaries",
        )
        return None
    try:
        metrics = metrics_endpoint(found.get("main_args", ()), found.get("unit_args", ()))
    except ValueError as error:
        if settings.prometheus_reload_timeout_s:
            fail_host(
                name="Find where Prometheus serves its metrics",
                reason=(
                    f"{error} (the command line of {service}), so a reload cannot be confirmed: "
                    f"set {TIMEOUT_SETTING} to 0 to reload it without confirmation"
                ),
            )
            return None
        metrics = metrics_endpoint((), ())  # not read: nothing is confirmed
    config_dir = posixpath.dirname(config_file)
    return PrometheusLayout(
        config_file=config_file,
        service=service,
        binary=binary,
        promtool=found["promtool"],
        version=version,
        targets_file=settings.prometheus_targets_file
        or posixpath.join(config_dir, "scaphandre_targets.yml"),
        rules_file=settings.prometheus_rules_file
        or posixpath.join(config_dir, "scaphandre_rules.yml"),
        metrics=metrics,
    )


def _shard(settings: Settings, inventory: Inventory) -> tuple[int, int] | None:
    """(this server's index, number of servers) when the hypervisors are sharded, else None."""
    if settings.prometheus_scrape_mode == "replicate":
        return None
    servers = [server.name for server in groups.prometheus_servers(inventory)]
    return servers.index(host.name), len(servers)


def _targets_text(cloud: CloudView, targets_file: str, found: FoundFile) -> str | None:
    """The targets file listing every hypervisor (None: the host failed, two old entries clash)."""

    def previous_targets() -> list[ScrapeTarget]:
        try:
            return parse_targets_file((found.content or b"").decode("utf-8", "replace"))
        except ValueError:
            return []  # rewritten from what is known now

    targets, warnings = cloud.scrape_targets(previous_targets)
    for warning in warnings:
        logger.warning(f"{host.print_prefix}{warning}")
    try:
        return render_targets_file(targets, json_only=targets_file.endswith(".json"))
    except ValueError as clash:  # two old entries of the file claiming one address or ID
        fail_host(name="Write the Scaphandre scrape targets", reason=str(clash))
        return None


@dataclass(frozen=True)
class ClaimedServer:
    """This server's Prometheus, what is at each path the deploy writes here (all checked to
    be the deploy's), what the deploy wants in its targets and rules files, and what the
    host's one read said of prometheus.yml and of the energy sync (None: not reported)."""

    layout: PrometheusLayout
    found: dict[str, FoundFile]
    wanted: dict[str, bytes]
    config: ConfigFileFound | None = None
    energy_sync: EnergySyncFound | None = None


def _managed_paths(settings: Settings, server: PrometheusLayout) -> list[ManagedPath]:
    """The files the deploy writes on this server (the energy sync's too, when it is on)."""
    paths = [
        ManagedPath(
            server.targets_file,
            "set prometheus_targets_file to another path, or move the file away",
        )
    ]
    if settings.prometheus_rules:
        paths.append(
            ManagedPath(
                server.rules_file,
                "set prometheus_rules_file to another path (or prometheus_rules "
                "to False), or move the file away",
            )
        )
    return paths + energy_sync_paths(settings)


def _found_at(
    state: PrometheusFound | None, paths: list[str], targets_file: str
) -> dict[str, FoundFile]:
    """What is at each of `paths` (the targets file's bytes too), from the host's one read when
    it covered them all (the paths it worked out on the host are the layout's), else read now."""
    found = state.files_at(paths, with_content=[targets_file]) if state is not None else None
    return found if found is not None else files_at(paths, with_content=[targets_file])


def prometheus_server(
    settings: Settings,
    cloud: CloudView,
    ledger: InstallLedger,
    state: PrometheusFound | None = None,
) -> ClaimedServer | None:
    """This server's Prometheus, every file the deploy writes here checked to be its own
    before anything is written; None when the server failed (no Prometheus found, or a file
    at one of the deploy's paths that is the operator's: named, with the setting to change).
    Decided from `state`, the host's one read (tasks/host_state); what it did not cover (all
    of it when None) is looked at here."""
    # pyinfra declares every @deploy call to return an OperationMeta; it returns what the
    # function itself returns.
    return cast(
        "ClaimedServer | None",
        _claimed_server(settings=settings, cloud=cloud, ledger=ledger, state=state),
    )


@deploy("Prometheus server")
def _claimed_server(
    settings: Settings,
    cloud: CloudView,
    ledger: InstallLedger,
    state: PrometheusFound | None,
) -> ClaimedServer | None:
    layout = _locate_prometheus(settings, state.server if state is not None else None)
    if layout is None:
        return None
    paths = _managed_paths(settings, layout)
    found = _found_at(state, [managed.path for managed in paths], layout.targets_file)
    targets_text = _targets_text(cloud, layout.targets_file, found[layout.targets_file])
    if targets_text is None:
        return None
    wanted = {layout.targets_file: targets_text.encode()}
    if settings.prometheus_rules:
        carbon_rules = intensity_rules(
            cloud.carbon_intensities(), settings.carbon_intensity_max_age
        )
        wanted[layout.rules_file] = render_rules(
            RULES_FILE.read_text(),
            settings.prometheus_job_name,
            settings.accounting_size_basis,
            carbon_rules,
        ).encode()
    expected = {path: sha256_of(content) for path, content in wanted.items()}
    if not claim_files(ledger, paths, found, expected):
        return None
    if state is None:
        return ClaimedServer(layout, found, wanted)
    return ClaimedServer(
        layout, found, wanted, state.config_at(layout.config_file), state.energy_sync
    )


@deploy("Prometheus scrape job")
def configure_prometheus(
    settings: Settings, inventory: Inventory, server: ClaimedServer, ledger: InstallLedger
) -> None:
    """Guarantees this Prometheus server scrapes every hypervisor of the inventory: the
    file_sd targets file lists them with their OpenNebula IDs (Prometheus rereads it by
    itself), the rules file holds the shipped rules, and prometheus.yml holds the job
    (checked with promtool, the original kept, reloaded only when it or the rules changed,
    and Prometheus itself reporting the new configuration loaded). The targets and rules
    files are recorded as the deploy's before they are written, and confirmed after."""
    layout, found, wanted = server.layout, server.found, server.wanted
    job = scaphandre_job(
        targets_file=layout.targets_file,
        prometheus_version=layout.version,
        job_name=settings.prometheus_job_name,
        scrape_interval=settings.prometheus_scrape_interval,
    )
    shard = _shard(settings, inventory)
    if shard is not None:
        job["relabel_configs"] = shard_relabel_configs(*shard)
    changing = {
        path: sha256_of(content)
        for path, content in wanted.items()
        if found[path].sha256 != sha256_of(content)
    }
    ledger.write(
        "Record the files the deploy is about to write", ledger.record.intending_files(changing)
    )
    if layout.targets_file in changing:
        files.put(
            name="Write the Scaphandre scrape targets",
            src=StringIO(wanted[layout.targets_file].decode()),
            dest=layout.targets_file,
            mode="644",
        )
    else:
        host.noop(f"{layout.targets_file} already lists every hypervisor")
    # Before the config names it, so promtool checks the config with the rules in place.
    if layout.rules_file in changing:
        prometheus_rules(
            name=f"Write the Scaphandre recording and alerting rules to {layout.rules_file}",
            rules_path=layout.rules_file,
            rules_text=wanted[layout.rules_file].decode(),
            promtool=layout.promtool,
        )
    elif settings.prometheus_rules:
        host.noop(f"{layout.rules_file} already holds the rules")
    ledger.write(
        "Confirm in the record the files the deploy wrote",
        ledger.record.with_files_confirmed(list(changing)),
    )
    rule_file = layout.rules_file if settings.prometheus_rules else None
    reload_for_rules = layout.rules_file in changing
    fingerprint = edit_fingerprint(job, rule_file, layout.targets_file)
    if (
        server.config
        and not reload_for_rules
        and server.config.unchanged_since_recorded(fingerprint)
    ):
        host.noop(
            f"{layout.config_file} already holds the {job['job_name']} job "
            "(unchanged since the deploy wrote it)"
        )
        return
    prometheus_job(
        name=f"Add the {settings.prometheus_job_name} job to {layout.config_file}",
        config_path=layout.config_file,
        job=job,
        targets_file=layout.targets_file,
        promtool=layout.promtool,
        service=layout.service,
        endpoint=layout.metrics,
        reload_timeout_s=settings.prometheus_reload_timeout_s,
        rule_file=rule_file,
        reload_for_rules=reload_for_rules,
    )


@deploy("Remove the Prometheus scrape job")
def remove_prometheus_job(settings: Settings, ledger: InstallLedger) -> None:
    """Guarantees this Prometheus server no longer has the deploy's job (named
    prometheus_job_name or reading the targets file) and its rules entry (the change
    checked, backed up and reloaded like any other, nothing restored), nor the files the
    deploy wrote here: each file its record lists goes, unless it changed since (it is the
    operator's then, and the host says so); the energy sync's are remove_energy_sync's."""
    layout = _locate_prometheus(settings)
    if layout is None:
        return
    prometheus_job_absent(
        name=f"Remove the {settings.prometheus_job_name} job from {layout.config_file}",
        config_path=layout.config_file,
        job_name=settings.prometheus_job_name,
        targets_file=layout.targets_file,
        promtool=layout.promtool,
        service=layout.service,
        endpoint=layout.metrics,
        reload_timeout_s=settings.prometheus_reload_timeout_s,
        rule_file=layout.rules_file,
    )
    energy_sync_files = {managed.path for managed in energy_sync_paths(settings, always=True)}
    listed = [path for path in ledger.record.files if path not in energy_sync_files]
    remove_recorded_files(
        ledger=ledger,
        paths=[
            *listed,
            *(path for path in (layout.targets_file, layout.rules_file) if path not in listed),
        ],
    )


def _write_snippet(path: Path, text: str) -> None:
    path.write_text(text)
    logger.info(
        f"--> No `prometheus` host in the inventory: paste the job from {path} into prometheus.yml"
    )


@once_per_run
def _snippet(
    cloud: CloudView, job_name: str, scrape_interval: str | None, major_version: int
) -> str:
    """The job with inline targets, worked out once per run."""
    job = scaphandre_job(
        targets_file="unused",  # the snippet lists its targets inline
        prometheus_version=(major_version, 0, 0),
        job_name=job_name,
        scrape_interval=scrape_interval,
    )
    targets, warnings = cloud.scrape_targets(previous=list)
    for warning in warnings:
        logger.warning(f"--> {warning}")
    return scrape_job_snippet(job, targets)


@deploy("Prometheus job to paste")
def write_job_snippet(settings: Settings, cloud: CloudView) -> None:
    """With no Prometheus host, writes the job with static targets on the machine running
    pyinfra, once per run and only when its content changed."""
    text = _snippet(
        cloud,
        settings.prometheus_job_name,
        settings.prometheus_scrape_interval,
        settings.prometheus_snippet_major_version,
    )
    path = Path(settings.prometheus_snippet_file).resolve()
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
