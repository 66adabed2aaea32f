"""The `hypervisors` group built from OpenNebula's host pool (optional).

In inventory.py:

    from tasks.opennebula.discovery import opennebula_hypervisors
    hypervisors = opennebula_hypervisors()

Every KVM host OpenNebula knows becomes an inventory host named after its NAME,
with its ID set (no matching needed); hosts that are disabled, offline or in error,
and non-KVM hosts, are skipped with a line saying so. Adding a hypervisor to
OpenNebula is then enough for the next run to deploy it. The pool fetched here is
the one deploy.py uses: still one API call per run.
"""

from __future__ import annotations

import runpy
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tasks.opennebula.pool import OneHost

# OpenNebula host states whose hosts cannot take a deploy now.
SKIPPED_STATES = {"ERROR", "DISABLED", "MONITORING_ERROR", "MONITORING_DISABLED", "OFFLINE"}

DISCOVERY_KEYS = (
    "discovery_ssh_address",
    "discovery_ssh_port",
    "discovery_ssh_user",
    "discovery_scrape_host",
    "discovery_host_data",
)


class DiscoveryError(ValueError):
    """A connection pattern cannot be filled for a host; the message names both."""


def _fill(pattern: str, host: OneHost, setting: str) -> str:
    fields = {
        "name": host.name,
        "hostname": host.hostname or host.name,
        "id": host.id,
        "template": dict(host.template),
    }
    try:
        return str(pattern).format(**fields)
    except (KeyError, IndexError, AttributeError) as missing:
        raise DiscoveryError(
            f"{setting} {pattern!r} cannot be filled for OpenNebula host {host.name} (ID {host.id}): "
            f"it has no {missing}; use {{name}}, {{hostname}}, {{id}} or {{template[ATTRIBUTE]}}"
        ) from None


def _unbracketed(address: str) -> str:
    """`[2001:db8::10]` -> `2001:db8::10`; any other address or name as it is."""
    return address[1:-1] if address.startswith("[") and address.endswith("]") else address


def discovered_hypervisors(
    pool: Sequence[OneHost], settings: Mapping[str, Any]
) -> tuple[list[tuple[str, dict[str, Any]]], list[str]]:
    """Inventory entries for the usable KVM hosts of the pool, and one line per skipped host.

    One host's data never stops the others: a host without NAME, a NAME already taken,
    or a host a pattern cannot be filled for is skipped with a line saying why. Only when
    a pattern fails for every host it is a setting to fix, and DiscoveryError is raised.
    """
    entries, skipped, pattern_errors = [], [], []
    taken: dict[str, int] = {}
    for host in sorted(pool, key=lambda h: h.id):
        if host.im_mad.lower() != "kvm":
            skipped.append(f"{host.name} (ID {host.id}) skipped: {host.im_mad} host, not KVM")
            continue
        if host.state_name in SKIPPED_STATES:
            skipped.append(
                f"{host.name} (ID {host.id}) skipped: {host.state_name.lower()} in OpenNebula"
            )
            continue
        if not host.name.strip():
            skipped.append(
                f"host ID {host.id} skipped: it has no NAME in OpenNebula (give it one with `onehost rename`)"
            )
            continue
        if host.name in taken:
            skipped.append(
                f"{host.name} (ID {host.id}) skipped: host ID {taken[host.name]} has the same NAME"
            )
            continue
        try:
            data = _host_data(host, settings)
        except DiscoveryError as error:
            pattern_errors.append(error)
            skipped.append(f"{host.name} (ID {host.id}) skipped: {error}")
            continue
        taken[host.name] = host.id
        entries.append((host.name, data))
    if pattern_errors and not entries:
        raise pattern_errors[0]
    return entries, skipped


def _host_data(host: OneHost, settings: Mapping[str, Any]) -> dict[str, Any]:
    """One discovered host's data; DiscoveryError when a pattern cannot be filled for it."""
    data = dict(settings.get("discovery_host_data") or {})
    data["one_host_id"] = host.id
    # An IPv6 address may come bracketed from a template; SSH wants it bare, and the scrape
    # target is bracketed again where host and port are joined.
    data["ssh_hostname"] = _unbracketed(
        _fill(settings.get("discovery_ssh_address") or "{name}", host, "discovery_ssh_address")
    )
    data["scaphandre_scrape_host"] = _unbracketed(
        _fill(settings.get("discovery_scrape_host") or "{name}", host, "discovery_scrape_host")
    )
    if settings.get("discovery_ssh_port"):
        port = _fill(settings["discovery_ssh_port"], host, "discovery_ssh_port")
        if not port.isdigit():
            raise DiscoveryError(
                f"discovery_ssh_port gives {port!r} for {host.name}, not a port number"
            )
        data["ssh_port"] = int(port)
    if settings.get("discovery_ssh_user"):
        data["ssh_user"] = settings["discovery_ssh_user"]
    return data


def _group_data_settings() -> dict[str, Any]:
    """Settings as pyinfra will see them for the group: group_data/all.py, then hypervisors.py."""
    settings: dict[str, Any] = {}
    for name in ("all.py", "hypervisors.py"):
        path = Path.cwd() / "group_data" / name
        if path.exists():
            settings.update(
                {k: v for k, v in runpy.run_path(str(path)).items() if not k.startswith("_")}
            )
    return settings


def opennebula_hypervisors(**overrides: Any) -> list[tuple[str, dict[str, Any]]]:
    """The `hypervisors` group from OpenNebula, for inventory.py.

    Settings come from group_data (all.py, hypervisors.py) with `overrides` on top:
    the OpenNebula ones (one_xmlrpc, one_auth_file, ...) and the discovery patterns.
    """
    from tasks.opennebula import host_pool  # imports pyinfra; kept out of the pure part above

    settings = _group_data_settings() | overrides
    pool = host_pool(
        settings.get("one_xmlrpc"),
        settings.get("one_auth_file"),
        settings.get("one_xmlrpc_timeout"),
        settings.get("one_xmlrpc_ca_file"),
    )
    entries, skipped = discovered_hypervisors(pool, settings)
    for line in skipped:
        print(f"--> OpenNebula discovery: {line}", file=sys.stderr)
    return entries
