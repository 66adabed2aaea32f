"""Fixtures of the verification suite: one parametrised test per inventory host.

`pytest tests/verify --inventory inventory.py` (from the repository root) reads
the inventory as the pyinfra CLI does; every test asking for `hypervisor` runs
once per host of group `hypervisors` and every test asking for
`prometheus_server` once per host of group `prometheus`, with the inventory name
as the test id (`test_rapl_exposed[hv2]`).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import testinfra

from tasks.opennebula.client import fetch_host_pool, resolve_endpoint
from tasks.opennebula.matching import HostQuery, resolve_hypervisors
from tasks.opennebula.pool import OneHost, OpenNebulaError
from tasks.prometheus.job import shard_of
from tests.verify import (
    HYPERVISORS_GROUP,
    PROMETHEUS_GROUP,
    InventoryLoadError,
    Node,
    VerifyHost,
    fetch_url,
    load_verify_hosts,
    scrape_address,
    settings_of,
)

# A fresh deploy may not have been scraped yet: Prometheus gets this long to report targets up.
TARGETS_UP_WAIT_S = 30
TARGETS_POLL_INTERVAL_S = 2

_HOSTS_KEY = pytest.StashKey[list]()
_SSH_DIR_KEY = pytest.StashKey[str]()


# --------------------------------------------------------------------------- inventory


NO_INVENTORY = (
    "tests/verify checks deployed hosts: give the inventory, e.g. --inventory inventory.py"
)


def pytest_configure(config: pytest.Config) -> None:
    """Read the inventory before collecting: no --inventory, or one pyinfra cannot load,
    stops the run with one line saying so rather than an error per test file."""
    _verify_hosts(config)


def _verify_hosts(config: pytest.Config) -> list[VerifyHost]:
    """Every host of --inventory, loaded once per session; a bad inventory stops the run."""
    if _HOSTS_KEY not in config.stash:
        inventory = config.getoption("--inventory")
        if not inventory:
            raise pytest.UsageError(NO_INVENTORY)
        ssh_dir = tempfile.mkdtemp(prefix="verify-ssh-")
        config.stash[_SSH_DIR_KEY] = ssh_dir
        try:
            config.stash[_HOSTS_KEY] = load_verify_hosts(inventory, ssh_config_dir=Path(ssh_dir))
        except InventoryLoadError as error:
            shutil.rmtree(
                ssh_dir, ignore_errors=True
            )  # pytest_unconfigure may not run after a UsageError
            raise pytest.UsageError(str(error)) from None
    return config.stash[_HOSTS_KEY]


def pytest_unconfigure(config: pytest.Config) -> None:
    ssh_dir = config.stash.get(_SSH_DIR_KEY, None)
    if ssh_dir:
        shutil.rmtree(ssh_dir, ignore_errors=True)


def _members(config: pytest.Config, group: str) -> list[VerifyHost]:
    return [host for host in _verify_hosts(config) if host.in_group(group)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrise `prometheus_server` and `hypervisor` with the inventory's hosts, named by them.

    An empty group gives one visibly skipped test saying so, not a silent pass.
    """
    for fixture_name, group in (
        ("prometheus_server", PROMETHEUS_GROUP),
        ("hypervisor", HYPERVISORS_GROUP),
    ):
        if fixture_name not in metafunc.fixturenames:
            continue
        members = _members(metafunc.config, group)
        if members:
            metafunc.parametrize(
                fixture_name, members, ids=[m.name for m in members], indirect=True
            )
        else:
            reason = f"the inventory has no host in group `{group}`: nothing to verify there"
            metafunc.parametrize(
                fixture_name,
                [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                ids=[f"no-{group}"],
                indirect=True,
            )


def node_for(target: VerifyHost) -> Node:
    """The testinfra host of an inventory host (testinfra caches it, so one SSH connection each)."""
    return Node(
        target.name, target.data, testinfra.get_host(target.hostspec, **target.backend_kwargs)
    )


# Function-scoped so the tests run in file order (hypervisors first); testinfra
# caches hosts by spec, so each host still gets one SSH connection per session.
@pytest.fixture
def hypervisor(request) -> Node:
    """One host of group `hypervisors` (the test id names it)."""
    return node_for(request.param)


@pytest.fixture
def prometheus_server(request) -> Node:
    """One host of group `prometheus` (the test id names it)."""
    return node_for(request.param)


@pytest.fixture(scope="session")
def inventory_hypervisors(request) -> list[VerifyHost]:
    """Every hypervisor of the inventory, whatever the test is parametrised with."""
    return _members(request.config, HYPERVISORS_GROUP)


# --------------------------------------------------------------------------- OpenNebula


def _node_hostname(target: VerifyHost) -> str | None:
    """The hypervisor's own `uname -n`, or None when it cannot be asked."""
    try:
        result = node_for(target).host.run("uname -n")
    # However the host is unreachable: matching then fails with OpenNebula's own message.
    except Exception:  # noqa: BLE001
        return None
    if result.rc != 0:
        return None
    return result.stdout.strip() or None


@pytest.fixture(scope="session")
def opennebula_hosts(inventory_hypervisors) -> dict[str, OneHost | str]:
    """Inventory name -> its OpenNebula host, or the operator-facing reason it has none.

    One `one.hostpool.info` call for the whole session, with the endpoint and
    credentials settings (one_xmlrpc, one_auth_file, one_xmlrpc_timeout, one_xmlrpc_ca_file) the deploy used.
    """
    if not inventory_hypervisors:
        return {}
    settings = {target.name: settings_of(target) for target in inventory_hypervisors}
    first = next(iter(settings.values()))
    try:
        endpoint = resolve_endpoint(
            one_xmlrpc=first.one_xmlrpc,
            one_auth_file=first.one_auth_file,
            timeout=first.one_xmlrpc_timeout,
            ca_file=first.one_xmlrpc_ca_file,
        )
        pool = fetch_host_pool(endpoint)
    except OpenNebulaError as error:  # messages never hold the secret
        reason = f"cannot ask OpenNebula for the expected host IDs: {error}"
        return {target.name: reason for target in inventory_hypervisors}
    by_name = {target.name: target for target in inventory_hypervisors}
    queries = [
        HostQuery(name, value.one_host_id, value.one_host_name) for name, value in settings.items()
    ]
    # The deploy's own matching: names first, the node's `uname -n` only when they do not match.
    matches, errors = resolve_hypervisors(pool, queries, lambda name: _node_hostname(by_name[name]))
    return {**{name: str(error) for name, error in errors.items()}, **matches}


# --------------------------------------------------------------------------- Prometheus API


def _active_targets(node: Node, api_url: str, job_name: str) -> tuple[dict[str, dict], str | None]:
    """Scrape address -> Prometheus' activeTargets entry for the job, or an error text."""
    ok, body = fetch_url(node, f"{api_url.rstrip('/')}/api/v1/targets?state=active")
    if not ok:
        return {}, f"Prometheus API {api_url} did not answer on the host: {body}"
    try:
        active = json.loads(body)["data"]["activeTargets"]
    except (ValueError, KeyError, TypeError):
        return (
            {},
            f"Prometheus API {api_url} answered something that is not a targets list: {body[:200]!r}",
        )
    by_address = {}
    for entry in active:
        labels = entry.get("labels") or {}
        if entry.get("scrapePool", labels.get("job")) != job_name and labels.get("job") != job_name:
            continue
        address = (entry.get("discoveredLabels") or {}).get("__address__") or labels.get("instance")
        by_address[address] = entry
    return by_address, None


@dataclass
class TargetsReport:
    """What Prometheus' API said about the job's targets after the bounded wait."""

    by_address: dict[str, dict]
    error: str | None
    waited_s: float


@pytest.fixture(scope="session")
def _targets_reports() -> dict[str, TargetsReport]:
    """Per-session cache: each server's API is polled once, not once per hypervisor."""
    return {}


@pytest.fixture
def prometheus_targets(
    prometheus_server, inventory_hypervisors, prometheus_server_names, _targets_reports
) -> TargetsReport:
    """The job's active targets as Prometheus reports them, polled until every hypervisor
    it scrapes is up or TARGETS_UP_WAIT_S passed (a fresh deploy may not be scraped yet)."""
    if prometheus_server.name not in _targets_reports:
        _targets_reports[prometheus_server.name] = _poll_targets(
            prometheus_server, inventory_hypervisors, prometheus_server_names
        )
    return _targets_reports[prometheus_server.name]


def scraped_here(server: Node, address: str, servers: list[str]) -> bool:
    """Whether this server scrapes the address: all of them, or in shard mode its hashmod share."""
    if server.settings.prometheus_scrape_mode != "shard":
        return True
    return shard_of(address, len(servers)) == servers.index(server.name)


@pytest.fixture(scope="session")
def prometheus_server_names(request) -> list[str]:
    """The inventory's Prometheus servers, in inventory order (the shard order)."""
    return [host.name for host in _members(request.config, PROMETHEUS_GROUP)]


def _poll_targets(server: Node, hypervisors: list[VerifyHost], servers: list[str]) -> TargetsReport:
    api_url = server.settings.prometheus_api_url
    job_name = server.settings.prometheus_job_name
    wanted = {
        scrape_address(t) for t in hypervisors if scraped_here(server, scrape_address(t), servers)
    }
    started = time.monotonic()
    while True:
        by_address, error = _active_targets(server, api_url, job_name)
        all_up = not error and all(
            (by_address.get(address) or {}).get("health") == "up" for address in wanted
        )
        waited = time.monotonic() - started
        if all_up or waited >= TARGETS_UP_WAIT_S:
            return TargetsReport(by_address, error, waited)
        time.sleep(TARGETS_POLL_INTERVAL_S)


# --------------------------------------------------------------------------- time limit


@contextlib.contextmanager
def _time_limit(item: pytest.Item):
    """Fail the test instead of hanging when a host stops answering mid-command."""
    limit = int(item.config.getoption("--verify-timeout") or 0)
    if limit <= 0:
        yield
        return

    def expired(signum, frame):
        pytest.fail(
            f"{item.name}: no answer within {limit} s (host down, SSH or a command hanging)",
            pytrace=False,
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(limit)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    with _time_limit(item):
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    with _time_limit(item):
        yield
