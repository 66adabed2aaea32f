"""One view of the cloud per run: every hypervisor of the inventory, which OpenNebula
host it is, and where Prometheus scrapes it.

Worked out once, beside the run's single `one.hostpool.info` call, and handed to
the hypervisor steps (is this host known?), the Prometheus step and the snippet
(which targets, with which labels). Hypervisors outside this run's --limit are in
it too: they are matched by settings and names, never asked over SSH.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from pyinfra import logger
from pyinfra.facts.server import Hostname

from tasks import groups
from tasks.accounting.carbon import Intensity, host_intensity
from tasks.opennebula import OpenNebulaLookupError, host_pool
from tasks.opennebula.facts import OpenNebulaMonitorIds
from tasks.opennebula.matching import HostQuery, resolve_from_monitor_dbs, resolve_hypervisors
from tasks.opennebula.pool import OneHost
from tasks.preflight import settings_of
from tasks.prometheus.targets import ScrapeTarget, assemble_targets
from tasks.run_memo import once_per_run
from tasks.scaphandre.spec import exporter_address
from tasks.settings import Settings, SettingsError

if TYPE_CHECKING:
    from pyinfra.api.facts import FactBase
    from pyinfra.api.inventory import Inventory

Fact = TypeVar("Fact")


@dataclass(frozen=True)
class Hypervisor:
    """One hypervisor of the inventory as the run sees it."""

    name: str
    address: str | None  # host:port Prometheus scrapes; None when its settings are unusable
    one_host: OneHost | None
    problem: str | None  # why it cannot be deployed or labelled, for the operator
    carbon_intensity: Intensity | None = (
        None  # gCO2e/kWh or a series' selector (tasks.accounting.carbon)
    )

    @property
    def target(self) -> ScrapeTarget | None:
        if self.one_host is None or self.address is None:
            return None
        return ScrapeTarget(
            address=self.address, one_host_id=self.one_host.id, host_name=self.one_host.name
        )


@dataclass(frozen=True)
class CloudView:
    hypervisors: tuple[Hypervisor, ...]

    def get(self, name: str) -> Hypervisor:
        """The hypervisor named `name` (KeyError for another): a dictionary hit, since every
        host of the run asks for itself (a scan each would grow with the square of the cloud)."""
        return self._by_name[name]

    @functools.cached_property
    def _by_name(self) -> dict[str, Hypervisor]:
        by_name: dict[str, Hypervisor] = {}
        for hypervisor in self.hypervisors:
            by_name.setdefault(hypervisor.name, hypervisor)  # the first, as a scan would find
        return by_name

    def scrape_targets(
        self, previous: Callable[[], list[ScrapeTarget]]
    ) -> tuple[list[ScrapeTarget], list[str]]:
        """Every hypervisor as a scrape target, and one warning per hypervisor left out.

        A hypervisor whose OpenNebula ID is unknown this run keeps the entry the
        targets file already had for its address (`previous()`, read only then).
        """
        resolved = {h.name: h.target for h in self.hypervisors if h.target is not None}
        unresolved = {
            h.name: h.address
            for h in self.hypervisors
            if h.target is None and h.address is not None
        }
        targets, warnings = assemble_targets(resolved, unresolved, previous() if unresolved else [])
        unusable = [
            f"{h.name} left out of the scrape targets: {h.problem}"
            for h in self.hypervisors
            if h.address is None
        ]
        return targets, warnings + unusable

    def carbon_intensities(self) -> dict[int, Intensity]:
        """{OpenNebula host ID: carbon intensity} of every hypervisor known this run that has one."""
        return {
            h.one_host.id: h.carbon_intensity
            for h in self.hypervisors
            if h.one_host is not None and h.carbon_intensity is not None
        }


def build_view(
    names: Sequence[str],
    settings: dict[str, Settings | SettingsError],
    pool: list[OneHost] | None,
    node_hostname: Callable[[str], str | None],
    monitor_db_names: Callable[[str], list[str] | None],
) -> CloudView:
    """The view from plain inputs: each hypervisor's settings (or why they are unusable),
    the pool (None: API down and the monitor-database fallback allowed) and how to ask a
    node for its hostname or monitor databases (None when it is not in this run)."""
    usable = {name: value for name, value in settings.items() if isinstance(value, Settings)}
    queries = [
        HostQuery(name, usable[name].one_host_id, usable[name].one_host_name)
        for name in names
        if name in usable
    ]
    if pool is None:
        matches, errors = resolve_from_monitor_dbs(queries, monitor_db_names)
    else:
        matches, errors = resolve_hypervisors(pool, queries, node_hostname)
    hypervisors = []
    for name in names:
        value = settings[name]
        if not isinstance(value, Settings):
            hypervisors.append(Hypervisor(name, None, None, f"its settings are unusable ({value})"))
            continue
        address = exporter_address(value, name)
        one_host = matches.get(name)
        problem = str(errors[name]) if name in errors else None
        intensity = (
            None
            if one_host is None
            else host_intensity(
                value.carbon_intensity,
                value.carbon_intensity_clusters,
                one_host.cluster,
                one_host.cluster_id,
            )
        )
        hypervisor = Hypervisor(name, address, one_host, problem, intensity)
        try:
            hypervisor.target  # noqa: B018 - an OpenNebula host without NAME cannot be labelled
        except ValueError as unlabelled:
            hypervisor = Hypervisor(name, address, None, str(unlabelled))
        hypervisors.append(hypervisor)
    return CloudView(tuple(_without_shared_addresses(hypervisors)))


def _without_shared_addresses(hypervisors: list[Hypervisor]) -> list[Hypervisor]:
    """Two hypervisors scraped at one address would be one target: both are refused."""
    by_address: dict[str, list[str]] = {}
    for hypervisor in hypervisors:
        if hypervisor.address is not None:
            by_address.setdefault(hypervisor.address, []).append(hypervisor.name)
    checked = []
    for hypervisor in hypervisors:
        sharing = by_address.get(hypervisor.address, []) if hypervisor.address is not None else []
        if len(sharing) > 1:
            checked.append(
                Hypervisor(
                    hypervisor.name,
                    None,
                    None,
                    f"inventory hosts {', '.join(sharing)} are all scraped at "
                    f"{hypervisor.address}: give each its own scaphandre_scrape_host or "
                    "scaphandre_port",
                )
            )
        else:
            checked.append(hypervisor)
    return checked


def _asked_on(
    active: set[str],
    name: str,
    inventory: Inventory,
    fact: type[FactBase[Fact]],
    **kwargs: Any,
) -> Fact | None:
    """A fact of a hypervisor taking part in this run; None for the others or when it fails."""
    if name not in active:
        return None
    try:
        return inventory.get_host(name).get_fact(fact, **kwargs)
    # Whatever a node's failure raises (connection, authentication, the fact's command): that
    # node is reported by its own deploy, not here.
    except Exception:  # noqa: BLE001
        return None


@once_per_run
def _warn_fallback(error: OpenNebulaLookupError) -> None:
    logger.warning(
        f"--> {error}; one_monitor_db_fallback is on: each hypervisor's ID is read from "
        "/var/tmp/one/im/status_kvm_<ID>.db on the node instead"
    )


@once_per_run
def cloud_view(inventory: Inventory) -> CloudView:
    """The run's view of every hypervisor, from one `one.hostpool.info` call.

    Raises OpenNebulaLookupError (stopping the run before any host changes) when the
    API cannot be used, unless it cannot be reached at all and one_monitor_db_fallback
    allows reading the IDs on the nodes.
    """
    names = [hypervisor.name for hypervisor in groups.hypervisors(inventory)]
    settings: dict[str, Settings | SettingsError] = {}
    for name in names:
        try:
            settings[name] = settings_of(name, inventory)
        except SettingsError as error:
            settings[name] = error
    usable = [value for value in settings.values() if isinstance(value, Settings)]
    pool = None
    if usable:
        first = usable[0]
        try:
            pool = host_pool(
                first.one_xmlrpc,
                first.one_auth_file,
                first.one_xmlrpc_timeout,
                first.one_xmlrpc_ca_file,
            )
        except OpenNebulaLookupError as error:
            # Only an API that cannot be reached is worked around: wrong credentials or an
            # endpoint that is not oned's would otherwise go unnoticed run after run.
            if not (first.one_monitor_db_fallback and error.api_unreachable):
                raise
            _warn_fallback(error)
    active = {host.name for host in inventory.get_active_hosts()}
    return build_view(
        names,
        settings,
        pool,
        node_hostname=lambda name: _asked_on(active, name, inventory, Hostname),
        monitor_db_names=lambda name: _asked_on(active, name, inventory, OpenNebulaMonitorIds),
    )
