"""OpenNebula's host pool as the deploy sees it: one entry per host, indexed by name.

Plain data, no I/O: filled by the API client (client.py), read by matching.py.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

# Host STATE numbers as oned defines them (include/Host.h, share/doc/xsd/host.xsd).
HOST_STATE_NAMES: dict[int, str] = {
    0: "INIT",
    1: "MONITORING_MONITORED",
    2: "MONITORED",
    3: "ERROR",
    4: "DISABLED",
    5: "MONITORING_ERROR",
    6: "MONITORING_INIT",
    7: "MONITORING_DISABLED",
    8: "OFFLINE",
}


class OpenNebulaError(Exception):
    """Operator-facing, one-line error naming the endpoint/host and what to fix."""


@dataclass(frozen=True)
class OneHost:
    """One entry of OpenNebula's HOST_POOL, reduced to what the deploy needs."""

    id: int
    name: str
    hostname: str | None
    im_mad: str
    state: int
    state_name: str
    # Single-valued TEMPLATE attributes, e.g. (("HOSTNAME", "kvm1"), ("SSH_PORT", "22")).
    template: tuple[tuple[str, str], ...] = field(default=(), compare=False)
    # The OpenNebula cluster the host belongs to (carbon intensity per cluster).
    cluster_id: int | None = field(default=None, compare=False)
    cluster: str | None = field(default=None, compare=False)

    def template_value(self, key: str) -> str | None:
        return dict(self.template).get(key)


# By kind of comparison ("exact", "lower", "short", "fqdn_label"): the hosts under each name.
NameIndex = dict[str, dict[str, list[OneHost]]]


class HostPool(list[OneHost]):
    """The host pool, with name indexes built on first use.

    Matching every inventory host against a plain list scans the whole pool per
    host (quadratic in the cloud's size); with the indexes each lookup is a
    dictionary hit. The indexes answer exactly what the _same_* predicates do.
    """

    # Built on first use (instance attributes then), kept with the pool's own attributes.
    _lowered_names: dict[str, str] | None = None
    _name_indexes: dict[str, NameIndex] | None = None

    def lowered_names(self) -> dict[str, str]:
        """Lower-cased NAME -> NAME (the first host's, for names differing in case only), built once."""
        if self._lowered_names is None:
            by_lower: dict[str, str] = {}
            for host in self:
                by_lower.setdefault(host.name.lower(), host.name)
            self._lowered_names = by_lower
        return self._lowered_names

    def name_index(self, label: str, key: Callable[[OneHost], str | None]) -> NameIndex:
        """The hosts by the name `key` gives (`label` says which: NAME, TEMPLATE/HOSTNAME):
        as written, lower-cased, by short name and by first DNS label; built once per label."""
        if self._name_indexes is None:
            self._name_indexes = {}
        if label not in self._name_indexes:
            self._name_indexes[label] = _build_index(self, key)
        return self._name_indexes[label]


def _build_index(pool: Sequence[OneHost], key: Callable[[OneHost], str | None]) -> NameIndex:
    index: NameIndex = {"exact": {}, "lower": {}, "short": {}, "fqdn_label": {}}
    for host in pool:
        value = key(host)
        if not value:
            continue
        index["exact"].setdefault(value, []).append(host)
        lowered = value.lower()
        index["lower"].setdefault(lowered, []).append(host)
        if is_ip(value):
            continue
        if "." in lowered:
            index["fqdn_label"].setdefault(lowered.split(".", 1)[0], []).append(host)
        else:
            index["short"].setdefault(lowered, []).append(host)
    return index


def is_ip(text: str) -> bool:
    """True for an IPv4 or IPv6 address (which have no short form)."""
    if ":" not in text and not text[:1].isdigit():
        return False  # neither an IPv6 address (it has a colon) nor IPv4 (it starts with a digit): no exception to pay
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
