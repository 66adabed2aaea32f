"""Each hypervisor's OpenNebula host ID, from one `one.hostpool.info` call per run.

pyinfra runs deploy.py once per host, concurrently; the pool is fetched by the
first host that asks and shared with the rest. The matching itself is plain
logic in tasks/opennebula.py.
"""

from __future__ import annotations

import threading
from weakref import WeakKeyDictionary
from dataclasses import asdict, dataclass

from pyinfra.api.exceptions import NoGroupError, PyinfraError
from pyinfra.api.host import Host
from pyinfra.facts.server import Hostname

from tasks.facts import OpenNebulaMonitorIds
from tasks.opennebula import (
    HostMatchError,
    HostQuery,
    OneHost,
    OpenNebulaError,
    fetch_host_pool,
    match_host,
    monitor_db_host_id,
    resolve_endpoint,
)

HYPERVISORS_GROUP = "hypervisors"
PROMETHEUS_GROUP = "prometheus"
GRAFANA_GROUP = "grafana"


class OpenNebulaLookupError(PyinfraError):
    """Stops the whole run before any host changes: without IDs no target can be labelled."""


@dataclass
class _PoolCache:
    pool: list[OneHost] | None = None
    error: OpenNebulaError | None = None
    fetched: bool = False


_cache = _PoolCache()
# Under the pyinfra CLI gevent patches threading, so this serialises the greenlets.
_cache_lock = threading.Lock()


def host_pool(data) -> list[OneHost] | None:
    """The OpenNebula host pool, fetched once per run.

    None when the API failed and `one_monitor_db_fallback` allows reading IDs on
    the nodes instead; otherwise an API failure stops the run with one line naming
    the endpoint and the fix.
    """
    with _cache_lock:
        if not _cache.fetched:
            _cache.fetched = True
            try:
                endpoint = resolve_endpoint(
                    one_xmlrpc=data.get("one_xmlrpc"),
                    one_auth_file=data.get("one_auth_file"),
                    timeout=data.get("one_xmlrpc_timeout"),
                )
                _cache.pool = fetch_host_pool(endpoint)
            except OpenNebulaError as error:
                _cache.error = error
    if _cache.error is not None:
        if data.get("one_monitor_db_fallback"):
            return None
        raise OpenNebulaLookupError(str(_cache.error))
    return _cache.pool


def _query(hypervisor: Host, node_hostname: str | None = None) -> HostQuery:
    explicit_id = hypervisor.data.get("one_host_id")
    return HostQuery(
        inventory_name=hypervisor.name,
        one_host_id=int(explicit_id) if explicit_id is not None else None,
        one_host_name=hypervisor.data.get("one_host_name"),
        node_hostname=node_hostname,
    )


# A hypervisor is resolved by its own deploy and again for the Prometheus targets:
# remember each answer (for this run's pool) so no fact is read twice.
_resolved: WeakKeyDictionary = WeakKeyDictionary()


def resolve_one_host(hypervisor: Host, pool: list[OneHost] | None, *, may_read_facts: bool) -> OneHost:
    """The OpenNebula host behind one inventory host, worked out once per run (see _resolve)."""
    cached = _resolved.get(hypervisor)
    if cached is not None and cached[0] is pool:
        return cached[1]
    found = _resolve(hypervisor, pool, may_read_facts=may_read_facts)
    _resolved[hypervisor] = (pool, found)
    return found


def _resolve(hypervisor: Host, pool: list[OneHost] | None, *, may_read_facts: bool) -> OneHost:
    """The OpenNebula host behind one inventory host.

    Names and explicit settings are tried first, then the inventory name against
    TEMPLATE/HOSTNAME; the node's own hostname (one fact, so one SSH round trip)
    only when none of them match. Without a pool
    (API down, fallback allowed) the ID comes from the node's monitor database.
    Raises HostMatchError naming the closest OpenNebula names.
    """
    if pool is None:
        if not may_read_facts:
            raise HostMatchError(f"{hypervisor.name}: OpenNebula API unreachable and host not in this run")
        host_id = monitor_db_host_id(hypervisor.get_fact(OpenNebulaMonitorIds))
        if host_id is None:
            raise HostMatchError(
                f"{hypervisor.name}: OpenNebula API unreachable and no /var/tmp/one/im/status_kvm_<ID>.db "
                "on the host; set one_host_id or fix the API access"
            )
        return OneHost(id=host_id, name=hypervisor.name, hostname=None, im_mad="kvm", state=-1, state_name="UNKNOWN")
    try:
        return match_host(pool, **asdict(_query(hypervisor)))
    except HostMatchError:
        if _query(hypervisor).one_host_id is not None:
            raise
    # Inventory names are often the node's own hostname: try TEMPLATE/HOSTNAME with it
    # before asking the node, which also works for hosts outside this run's --limit.
    try:
        return match_host(pool, **asdict(_query(hypervisor, hypervisor.name)))
    except HostMatchError:
        if not may_read_facts:
            raise
    return match_host(pool, **asdict(_query(hypervisor, hypervisor.get_fact(Hostname))))


def scrape_host(hypervisor: Host) -> str:
    return hypervisor.data.get("scaphandre_scrape_host") or hypervisor.name


def hypervisors(inventory) -> list[Host]:
    """Every hypervisor of the inventory, also those outside this run's --limit."""
    try:
        return list(inventory.get_group(HYPERVISORS_GROUP))
    except NoGroupError:
        return []


def prometheus_hosts(inventory) -> list[Host]:
    try:
        return list(inventory.get_group(PROMETHEUS_GROUP))
    except NoGroupError:
        return []
