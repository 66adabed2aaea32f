"""What a deploy must have left on every Prometheus server.

Per server: the live prometheus.yml passes promtool, holds the scrape job reading
the targets file; per (server, hypervisor): the hypervisor is a target with the
IDs OpenNebula gives it, and Prometheus itself reports it up.
"""

from __future__ import annotations

import fnmatch
import posixpath

import pytest
import yaml

from tasks.opennebula.pool import OneHost
from tasks.prometheus.facts import PrometheusServer
from tests.verify import Node, VerifyHost, scrape_address
from tests.verify.conftest import TargetsReport, scraped_here


def job_name(server: Node) -> str:
    return server.settings.prometheus_job_name


def located(server: Node) -> dict:
    """Where the deploy finds this server's Prometheus (its own fact, run over this host's
    connection): config, service, the binary the service runs, its promtool and version."""
    fact = PrometheusServer()
    settings = server.settings
    command = fact.command(
        candidates=[tuple(pair) for pair in settings.prometheus_candidates],
        binaries=list(settings.prometheus_binaries),
        promtools=list(settings.promtool_binaries),
        config_file=settings.prometheus_config_file,
        service=settings.prometheus_service,
    )
    return fact.process(server.host.run(command).stdout.splitlines())


def config_path(server: Node) -> str:
    """The live prometheus.yml: prometheus_config_file, else the first existing candidate."""
    found = located(server)["config"]
    if found:
        return found
    candidates = [pair[0] for pair in server.settings.prometheus_candidates]
    pytest.fail(
        f"{server.name}: no Prometheus config found (looked for {', '.join(candidates)}); "
        "set prometheus_config_file for this host",
        pytrace=False,
    )


def targets_path(server: Node) -> str:
    """The file_sd targets file: prometheus_targets_file, else scaphandre_targets.yml beside prometheus.yml."""
    return server.settings.prometheus_targets_file or posixpath.join(
        posixpath.dirname(config_path(server)), "scaphandre_targets.yml"
    )


def read_yaml(server: Node, path: str, what: str):
    file = server.host.file(path)
    assert file.is_file, f"{server.name}: {what} {path} is missing"
    try:
        return yaml.safe_load(file.content_string)
    except yaml.YAMLError as error:
        pytest.fail(f"{server.name}: {what} {path} is not valid YAML: {error}", pytrace=False)


def scrape_job(server: Node) -> dict:
    """The managed job of the live prometheus.yml, or a failure saying it is absent."""
    path = config_path(server)
    config = read_yaml(server, path, "Prometheus config") or {}
    jobs = [job for job in config.get("scrape_configs") or [] if isinstance(job, dict)]
    found = [job for job in jobs if job.get("job_name") == job_name(server)]
    assert found, (
        f"{server.name}: {path} has no scrape job named {job_name(server)!r} "
        f"(jobs: {', '.join(str(job.get('job_name')) for job in jobs) or 'none'})"
    )
    return found[0]


def target_entries(server: Node) -> dict[str, dict]:
    """Scrape address -> labels, from the targets file as written on the server."""
    path = targets_path(server)
    entries = read_yaml(server, path, "targets file") or []
    assert isinstance(entries, list), (
        f"{server.name}: targets file {path} is not a list of file_sd entries"
    )
    by_address = {}
    for entry in entries:
        for address in (entry or {}).get("targets") or []:
            by_address[address] = (entry or {}).get("labels") or {}
    return by_address


def expected_one_host(hypervisor: VerifyHost, opennebula_hosts: dict) -> OneHost:
    found = opennebula_hosts.get(hypervisor.name)
    if not isinstance(found, OneHost):
        pytest.fail(f"{hypervisor.name}: {found}", pytrace=False)
    return found


def promtool(server: Node) -> str:
    """The promtool of the Prometheus the service runs (the one beside its binary, else
    the first of promtool_binaries), as the deploy chooses it."""
    found = located(server)["promtool"]
    if found:
        return found
    pytest.fail(
        f"{server.name}: promtool not found; install it or list it in promtool_binaries",
        pytrace=False,
    )


# --------------------------------------------------------------------------- per server


def test_config_valid(prometheus_server: Node):
    """promtool accepts the live prometheus.yml (and the targets files it reads)."""
    path = config_path(prometheus_server)
    check = prometheus_server.host.run(
        "timeout 60 %s check config %s", promtool(prometheus_server), path
    )
    assert check.rc == 0, (
        f"{prometheus_server.name}: promtool rejects {path}: {(check.stderr or check.stdout).strip()[-800:]}"
    )


def test_job_reads_targets_file(prometheus_server: Node):
    """The job discovers its targets from the file the deploy writes."""
    job = scrape_job(prometheus_server)
    wanted = targets_path(prometheus_server)
    patterns = [
        pattern
        for sd in job.get("file_sd_configs") or []
        for pattern in (sd or {}).get("files") or []
    ]
    assert any(fnmatch.fnmatch(wanted, pattern) for pattern in patterns), (
        f"{prometheus_server.name}: job {job_name(prometheus_server)!r} does not read {wanted} "
        f"(its file_sd_configs list {patterns or 'nothing'})"
    )


def test_no_stale_targets(prometheus_server: Node, inventory_hypervisors):
    """The targets file lists no host that left the inventory."""
    wanted = {scrape_address(target) for target in inventory_hypervisors}
    stale = sorted(set(target_entries(prometheus_server)) - wanted)
    assert not stale, (
        f"{prometheus_server.name}: {targets_path(prometheus_server)} lists {', '.join(stale)}, "
        "which no hypervisor of the inventory has; rerun the deploy"
    )


# --------------------------------------------------------------------------- per server and hypervisor


def _inventory_entry(hypervisor: Node, inventory_hypervisors) -> VerifyHost:
    return next(target for target in inventory_hypervisors if target.name == hypervisor.name)


def test_hypervisor_is_target(
    prometheus_server: Node, hypervisor: Node, inventory_hypervisors, opennebula_hosts
):
    """The hypervisor is in the targets file with the host IDs and NAME OpenNebula gives it."""
    target = _inventory_entry(hypervisor, inventory_hypervisors)
    address = scrape_address(target)
    where = f"{prometheus_server.name}: {targets_path(prometheus_server)}"
    labels = target_entries(prometheus_server).get(address)
    assert labels is not None, f"{where} has no target {address} for hypervisor {hypervisor.name}"
    one_host = expected_one_host(target, opennebula_hosts)
    for label in ("one_host_id", "host_id"):
        assert labels.get(label) == str(one_host.id), (
            f"{where}: target {address} has {label}={labels.get(label)!r}, "
            f"but OpenNebula knows {hypervisor.name} as host ID {one_host.id}"
        )
    assert labels.get("host_name") == one_host.name, (
        f"{where}: target {address} has host_name={labels.get('host_name')!r}, "
        f"but its OpenNebula host NAME is {one_host.name!r}"
    )


def test_prometheus_reports_target_up(
    prometheus_server: Node,
    hypervisor: Node,
    inventory_hypervisors,
    opennebula_hosts,
    prometheus_server_names,
    prometheus_targets: TargetsReport,
):
    """Prometheus' own API shows the hypervisor scraped successfully, with its OpenNebula ID
    (in shard mode: by the one server whose share it is, and by no other)."""
    assert prometheus_targets.error is None, f"{prometheus_server.name}: {prometheus_targets.error}"
    target = _inventory_entry(hypervisor, inventory_hypervisors)
    address = scrape_address(target)
    seen = prometheus_targets.by_address.get(address)
    if not scraped_here(prometheus_server, address, prometheus_server_names):
        assert seen is None, (
            f"{prometheus_server.name}: scrapes {hypervisor.name} ({address}), whose shard is another server's"
        )
        return
    assert seen is not None, (
        f"{prometheus_server.name}: Prometheus has no active target {address} ({hypervisor.name}) "
        f"in job {job_name(prometheus_server)!r} after {prometheus_targets.waited_s:.0f} s"
    )
    assert seen.get("health") == "up", (
        f"{prometheus_server.name}: Prometheus reports {hypervisor.name} ({address}) as {seen.get('health')!r} "
        f"after {prometheus_targets.waited_s:.0f} s: {seen.get('lastError') or 'no error given'}"
    )
    one_host = expected_one_host(target, opennebula_hosts)
    got_id = (seen.get("labels") or {}).get("one_host_id")
    assert got_id == str(one_host.id), (
        f"{prometheus_server.name}: Prometheus labels {hypervisor.name} one_host_id={got_id!r}, "
        f"OpenNebula says {one_host.id}"
    )
