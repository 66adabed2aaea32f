"""Which OpenNebula host an inventory host is: plain logic over the host pool.

Used by the deploy and by the verification suite alike, so both see the same
answer. No I/O: what must be read from a node (its hostname, its monitor
database names) is asked for through a callback.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher

from tasks.opennebula.pool import HostPool, OneHost, OpenNebulaError, is_ip


@dataclass(frozen=True)
class HostQuery:
    """What the inventory says about one hypervisor when looking it up in the pool."""

    inventory_name: str
    one_host_id: int | None = None
    one_host_name: str | None = None


class HostMatchError(OpenNebulaError):
    """No OpenNebula host, or more than one, matches an inventory host."""

    def __init__(
        self,
        message: str,
        *,
        inventory_name: str | None = None,
        candidates: Sequence[OneHost] = (),
        closest_names: Sequence[str] = (),
    ):
        # One line whatever the names hold: a newline in a NAME would split the operator's message.
        super().__init__("".join(c if c.isprintable() else repr(c)[1:-1] for c in message))
        self.inventory_name = inventory_name
        self.candidates = tuple(candidates)
        self.closest_names = tuple(closest_names)


def match_host(
    pool: Sequence[OneHost],
    *,
    inventory_name: str,
    one_host_id: int | str | None = None,
    one_host_name: str | None = None,
    node_hostname: str | None = None,
) -> OneHost:
    """Return the one OpenNebula host that this inventory host is, or raise HostMatchError.

    Order: one_host_id, one_host_name, inventory name vs NAME, node's hostname vs
    TEMPLATE/HOSTNAME. Each name level tries exact, case-insensitive, then
    short-vs-FQDN; two candidates at one level is an error, never a guess.
    """
    found = _match_levels(pool, inventory_name, one_host_id, one_host_name, node_hostname)
    if found is None:
        raise _no_match(pool, inventory_name, node_hostname)
    return found


def _match_levels(
    pool: Sequence[OneHost],
    inventory_name: str,
    one_host_id: int | str | None,
    one_host_name: str | None,
    node_hostname: str | None,
) -> OneHost | None:
    """match_host without the costly "closest names" of a miss: None when nothing matches."""
    if one_host_id is not None and one_host_id != "":
        return _match_by_id(pool, inventory_name, one_host_id)
    if one_host_name:
        return _match_by_name(pool, inventory_name, one_host_name)
    levels = [("NAME", inventory_name, lambda host: host.name)]
    if node_hostname:
        levels.append(("TEMPLATE/HOSTNAME", node_hostname, lambda host: host.hostname))
    for label, wanted, key in levels:
        for same in (_same_exact, _same_ignoring_case, _same_short_vs_fqdn):
            found = _candidates(pool, label, key, same, wanted)
            if len(found) == 1:
                return found[0]
            if found:
                raise _ambiguous(inventory_name, label, wanted, found)
    return None


def resolve_hypervisor(
    pool: Sequence[OneHost], query: HostQuery, node_hostname: Callable[[str], str | None]
) -> OneHost:
    """The OpenNebula host behind one inventory host, asking the node only when needed.

    Explicit settings and names first; then the inventory name against
    TEMPLATE/HOSTNAME (inventory names are often the node's own hostname, and
    this works for hosts outside the run); only then the node's own `uname -n`,
    from `node_hostname(inventory_name)` (None when the node cannot be asked).
    Raises HostMatchError naming the closest OpenNebula names.
    """
    name = query.inventory_name
    found = _match_levels(pool, name, query.one_host_id, query.one_host_name, None)
    if found is None:
        found = _match_levels(pool, name, None, None, name)
    hostname = None
    if found is None:
        hostname = node_hostname(name)
        if hostname:
            found = _match_levels(pool, name, None, None, hostname)
    if found is None:
        raise _no_match(pool, name, hostname or name)
    return found


def resolve_hypervisors(
    pool: Sequence[OneHost],
    queries: Sequence[HostQuery],
    node_hostname: Callable[[str], str | None] = lambda name: None,
) -> tuple[dict[str, OneHost], dict[str, HostMatchError]]:
    """Every inventory hypervisor's OpenNebula host; one host's failure never stops the others.

    Two inventory hosts resolving to the same OpenNebula host would give two scrape
    targets the same host_id label, so those two (only) are reported as errors.
    """
    matches: dict[str, OneHost] = {}
    errors: dict[str, HostMatchError] = {}
    for query in queries:
        try:
            matches[query.inventory_name] = resolve_hypervisor(pool, query, node_hostname)
        except HostMatchError as error:
            errors[query.inventory_name] = error
    for inventory_name, shared in _shared_matches(matches).items():
        del matches[inventory_name]
        errors[inventory_name] = shared
    return matches, errors


def _shared_matches(matches: Mapping[str, OneHost]) -> dict[str, HostMatchError]:
    """Return an error for every inventory host that shares its OpenNebula host with another."""
    by_id: dict[int, list[str]] = {}
    for inventory_name, host in matches.items():
        by_id.setdefault(host.id, []).append(inventory_name)
    errors = {}
    for names in by_id.values():
        if len(names) < 2:
            continue
        host = matches[names[0]]
        for inventory_name in names:
            errors[inventory_name] = HostMatchError(
                f"inventory hosts {', '.join(sorted(names))} all match OpenNebula host "
                f"{_describe(host)}: set one_host_id in the host data of the ones that are "
                "different machines, or remove the duplicate from the inventory",
                inventory_name=inventory_name,
                candidates=[host],
            )
    return errors


def _match_by_id(pool: Sequence[OneHost], inventory_name: str, one_host_id: int | str) -> OneHost:
    """Return the pool entry with this ID, or explain that OpenNebula has none."""
    try:
        wanted = int(one_host_id)
    except (TypeError, ValueError):
        raise HostMatchError(
            f"inventory host '{inventory_name}': one_host_id is {one_host_id!r}, not a number: "
            "set one_host_id to the ID shown by `onehost list`",
            inventory_name=inventory_name,
        ) from None
    for host in pool:
        if host.id == wanted:
            return host
    known = ", ".join(_describe(host) for host in sorted(pool, key=lambda h: h.id)[:10])
    raise HostMatchError(
        f"inventory host '{inventory_name}': one_host_id {wanted} is not an OpenNebula host "
        f"(known: {known or 'none'}): fix one_host_id in its host data",
        inventory_name=inventory_name,
    )


def _match_by_name(pool: Sequence[OneHost], inventory_name: str, one_host_name: str) -> OneHost:
    """Return the pool entry whose NAME is exactly one_host_name, or explain."""
    found = [host for host in pool if host.name == one_host_name]
    if len(found) == 1:
        return found[0]
    if found:
        raise _ambiguous(inventory_name, "NAME", one_host_name, found)
    closest = _closest_names(pool, one_host_name)
    raise HostMatchError(
        f"inventory host '{inventory_name}': one_host_name '{one_host_name}' is not an "
        f"OpenNebula host NAME{_closest_hint(closest, pool)}: fix one_host_name "
        "(or set one_host_id) in its host data",
        inventory_name=inventory_name,
        closest_names=closest,
    )


def _candidates(
    pool: Sequence[OneHost],
    label: str,
    key: Callable[[OneHost], str | None],
    same: Callable[[str, str], bool],
    wanted: str,
) -> list[OneHost]:
    """The pool entries whose `key` is the `same` as wanted, through HostPool's indexes when it has them."""
    if not isinstance(pool, HostPool):
        return [host for host in pool if (value := key(host)) and same(wanted, value)]
    index = pool.name_index(label, key)
    if same is _same_exact:
        return list(index["exact"].get(wanted, []))
    if same is _same_ignoring_case:
        return list(index["lower"].get(wanted.lower(), []))
    if is_ip(wanted):
        return []
    wanted_l = wanted.lower()
    if "." in wanted_l:
        return list(index["short"].get(wanted_l.split(".", 1)[0], []))
    return list(index["fqdn_label"].get(wanted_l, []))


def _same_exact(wanted: str, candidate: str) -> bool:
    return wanted == candidate


def _same_ignoring_case(wanted: str, candidate: str) -> bool:
    # DNS names are case-insensitive; admins register hosts either way.
    return wanted.lower() == candidate.lower()


def _same_short_vs_fqdn(wanted: str, candidate: str) -> bool:
    """True when exactly one side is a short name equal to the other's first DNS label.

    Two different FQDNs (hv1.a vs hv1.b) are different machines, and IP addresses
    have no "short" form, so neither matches here.
    """
    wanted_l, candidate_l = wanted.lower(), candidate.lower()
    if "." in wanted_l and "." not in candidate_l:
        same = wanted_l.split(".", 1)[0] == candidate_l
    elif "." in candidate_l and "." not in wanted_l:
        same = candidate_l.split(".", 1)[0] == wanted_l
    else:
        return False
    # Only names that line up pay for the IP check (it raises for every non-IP name).
    return same and not is_ip(wanted) and not is_ip(candidate)


def _describe(host: OneHost) -> str:
    return f"{host.name} (ID {host.id})"


def _ambiguous(
    inventory_name: str, label: str, wanted: str, found: Sequence[OneHost]
) -> HostMatchError:
    listed = ", ".join(_describe(host) for host in sorted(found, key=lambda h: h.id))
    return HostMatchError(
        f"inventory host '{inventory_name}' is ambiguous: '{wanted}' matches the "
        f"{label} of several OpenNebula hosts: {listed}; set one_host_id in its host data",
        inventory_name=inventory_name,
        candidates=found,
    )


def _no_match(
    pool: Sequence[OneHost], inventory_name: str, node_hostname: str | None
) -> HostMatchError:
    closest = _closest_names(pool, inventory_name)
    tried = f"NAME '{inventory_name}'"
    if node_hostname:
        tried += f" nor TEMPLATE/HOSTNAME '{node_hostname}'"
    return HostMatchError(
        f"inventory host '{inventory_name}' is not known to OpenNebula (no host matches by "
        f"{tried}){_closest_hint(closest, pool)}: register it with `onehost create`, or set "
        "one_host_id / one_host_name in its host data",
        inventory_name=inventory_name,
        closest_names=closest,
    )


def _closest_names(pool: Sequence[OneHost], wanted: str, limit: int = 3) -> list[str]:
    """Return up to `limit` pool NAMEs most similar to `wanted` (case-insensitive)."""
    by_lower = pool.lowered_names() if isinstance(pool, HostPool) else _lowered_names(pool)
    return [by_lower[name] for name in close_matches(wanted.lower(), by_lower, limit, 0.4)]


def _lowered_names(pool: Sequence[OneHost]) -> dict[str, str]:
    by_lower: dict[str, str] = {}
    for host in pool:
        by_lower.setdefault(host.name.lower(), host.name)
    return by_lower


def close_matches(
    word: str, candidates: Iterable[str], n: int = 3, cutoff: float = 0.6
) -> list[str]:
    """Exactly difflib.get_close_matches(word, candidates, n, cutoff), for distinct candidates,
    without its full similarity ratio for every candidate.

    difflib keeps the n best (ratio, candidate) pairs among those whose ratio reaches the
    cutoff. Its quick_ratio (shared characters) is an upper bound of ratio, computed
    for every candidate; the candidates are then taken by decreasing bound, and the costly
    ratio only while a candidate could still enter the best n ((bound, candidate) not
    below the n-th best (ratio, candidate) found so far, as difflib breaks ties by name).
    In a pool whose names follow one pattern, where nearly every name passes difflib's own
    quick checks, this computes a handful of ratios instead of one per host.
    """
    if n <= 0:
        raise ValueError(f"n must be > 0: {n!r}")
    matcher = SequenceMatcher()
    matcher.set_seq2(word)
    bounded = []
    for candidate in candidates:
        matcher.set_seq1(candidate)
        if matcher.real_quick_ratio() >= cutoff:
            bound = matcher.quick_ratio()
            if bound >= cutoff:
                bounded.append((bound, candidate))
    bounded.sort(reverse=True)
    best: list[tuple[float, str]] = []  # a min-heap of the n largest (ratio, candidate)
    for bound, candidate in bounded:
        # (ratio, candidate) <= (bound, candidate), and later pairs are smaller still: once
        # this pair is below the n-th best, nothing left can enter (ties go to the larger name).
        if len(best) == n and (bound, candidate) < best[0]:
            break
        matcher.set_seq1(candidate)
        score = matcher.ratio()
        if score >= cutoff:
            if len(best) < n:
                heapq.heappush(best, (score, candidate))
            elif (score, candidate) > best[0]:
                heapq.heapreplace(best, (score, candidate))
    return [candidate for _, candidate in sorted(best, reverse=True)]


def _closest_hint(closest: Sequence[str], pool: Sequence[OneHost]) -> str:
    if closest:
        return "; closest OpenNebula names: " + ", ".join(closest)
    if not pool:
        return "; OpenNebula has no hosts at all"
    return f"; no similar name among OpenNebula's {len(pool)} hosts"


_MONITOR_DB = re.compile(r"^status_[A-Za-z0-9]+_(\d+)\.db$")


def monitor_db_host_id(file_names: Iterable[str]) -> int | None:
    """Return the host ID encoded in OpenNebula's monitor DB name on the node, if unique.

    Names come from /var/tmp/one/im/ (e.g. "status_kvm_12.db" -> 12); sqlite side files
    (-journal, -wal) and unrelated names are ignored. Several IDs -> HostMatchError.
    """
    ids = set()
    for name in file_names:
        found = _MONITOR_DB.match(os.path.basename(name.strip()))
        if found:
            ids.add(int(found.group(1)))
    if not ids:
        return None
    if len(ids) > 1:
        listed = ", ".join(str(host_id) for host_id in sorted(ids))
        raise HostMatchError(
            f"/var/tmp/one/im/ on this host holds monitor databases of several OpenNebula "
            f"host IDs ({listed}), probably left over from an earlier registration: "
            "set one_host_id in its host data"
        )
    return ids.pop()


def resolve_from_monitor_dbs(
    queries: Sequence[HostQuery],
    monitor_db_names: Callable[[str], list[str] | None],
) -> tuple[dict[str, OneHost], dict[str, HostMatchError]]:
    """Every hypervisor's host ID without the API: from one_host_id, else from the monitor
    database OpenNebula keeps on the node (`monitor_db_names(inventory_name)` lists
    /var/tmp/one/im/, None when the node cannot be asked)."""
    matches: dict[str, OneHost] = {}
    errors: dict[str, HostMatchError] = {}
    for query in queries:
        name = query.inventory_name
        try:
            host_id = query.one_host_id
            if host_id is None:
                names = monitor_db_names(name)
                if names is None:
                    raise HostMatchError(
                        f"{name}: OpenNebula API unreachable and host not in this run",
                        inventory_name=name,
                    )
                host_id = monitor_db_host_id(names)
            if host_id is None:
                raise HostMatchError(
                    f"{name}: OpenNebula API unreachable and no /var/tmp/one/im/status_kvm_<ID>.db "
                    "on the host; set one_host_id or fix the API access",
                    inventory_name=name,
                )
        except HostMatchError as error:
            errors[name] = error
            continue
        matches[name] = OneHost(
            id=host_id, name=name, hostname=None, im_mad="kvm", state=-1, state_name="UNKNOWN"
        )
    for inventory_name, shared in _shared_matches(matches).items():
        del matches[inventory_name]
        errors[inventory_name] = shared
    return matches, errors
