"""/etc/docker/daemon.json for an engine the deploy installs, as plain functions of its text.

A hypervisor's VMs sit on Linux bridges, often with IP forwarding off and bridge
netfilter on. At its defaults a Docker engine turns IP forwarding on and, because
it did so itself, sets the iptables FORWARD policy to DROP; it also creates the
docker0 bridge and writes its own NAT and filter rules. With bridge netfilter on,
that DROP policy stops the traffic between VMs on a bridge. The Scaphandre
container needs none of it (it runs on the host network), so an engine the
deploy installs gets, before its first start:

* "iptables": false   -- no iptables rules, chains or FORWARD policy from Docker;
* "ip6tables": false  -- the same for IPv6 (on by default since Docker 27; a key
  every engine knows since 20.10, the oldest any supported distribution installs:
  Debian 12's docker.io 20.10.24);
* "ip-forward": false -- Docker leaves net.ipv4.ip_forward and IPv6 forwarding alone;
* "bridge": "none"    -- no docker0 bridge (containers then need --network host
  or a network of their own).

Nothing here touches pyinfra: the Docker engine step reads the file and writes
what these functions return; remove.py gives the file back as it was, or, when the
operator changed it since, takes only the same keys away again.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

DAEMON_JSON = "/etc/docker/daemon.json"

# Written before the engine's first start; see the module docstring for why each.
ENGINE_NETWORK_SETTINGS: dict[str, Any] = {
    "iptables": False,
    "ip6tables": False,
    "ip-forward": False,
    "bridge": "none",
}


class DaemonConfigError(ValueError):
    """The existing daemon.json cannot be merged; the message names the file, why and the fix."""


def parse_daemon_json(content: bytes | None, path: str = DAEMON_JSON) -> dict[str, Any] | None:
    """The settings object of daemon.json from its bytes, None when the file does not
    exist. An empty file holds no settings. Raises DaemonConfigError when it is not a JSON
    object (or not UTF-8), which dockerd would refuse too."""
    if content is None:
        return None
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise DaemonConfigError(
            f"{path} is not UTF-8 text: fix it or move it aside, then rerun; the deploy left it untouched "
            "and installed no Docker engine"
        ) from None
    if not text.strip():
        return {}
    try:
        settings = json.loads(text)
    except json.JSONDecodeError as error:
        raise DaemonConfigError(
            f"{path} is not valid JSON ({error.msg} at line {error.lineno} column {error.colno}): "
            "fix it or move it aside, then rerun; the deploy left it untouched and installed no Docker engine"
        ) from None
    if not isinstance(settings, dict):
        raise DaemonConfigError(
            f"{path} holds a JSON {type(settings).__name__}, not an object of settings: "
            "fix it or move it aside, then rerun; the deploy left it untouched and installed no Docker engine"
        )
    return settings


def with_engine_network_settings(existing: dict[str, Any] | None) -> dict[str, Any]:
    """`existing` settings (None: no file) with ENGINE_NETWORK_SETTINGS set, every other
    key kept in its place; ours come last when they were not there."""
    return {**(existing or {}), **ENGINE_NETWORK_SETTINGS}


def previous_values(existing: dict[str, Any] | None) -> dict[str, Any]:
    """The values `existing` held for the keys the deploy sets (absent keys are left out)."""
    return {key: existing[key] for key in ENGINE_NETWORK_SETTINGS if existing and key in existing}


def without_engine_network_settings(
    current: dict[str, Any], set_by_deploy: dict[str, Any], previous: dict[str, Any]
) -> dict[str, Any]:
    """`current` with the keys the deploy set taken away again: a key still holding the value
    the deploy gave it gets its previous value back (or goes, when it had none); a key the
    operator changed since is theirs and stays as it is."""
    restored = dict(current)
    for key, value in set_by_deploy.items():
        if key not in restored or restored[key] != value:
            continue
        if key in previous:
            restored[key] = previous[key]
        else:
            del restored[key]
    return restored


def render_daemon_json(settings: dict[str, Any]) -> str:
    """The file's text: indented JSON, keys in their order, ending with a newline."""
    return json.dumps(settings, indent=2) + "\n"


@dataclass(frozen=True)
class GivenBack:
    """What remove.py does with daemon.json: 'keep' it, 'write' `content`, or 'delete' it;
    with a note for the operator when their edits decided it."""

    action: str
    content: bytes | None = None
    note: str | None = None


def given_back(
    current: bytes,
    link: bool,
    set_by_deploy: dict[str, Any],
    previous: dict[str, Any],
    previous_file: bytes | None,
    had_file: bool | None,
    written_sha256: str | None,
    path: str = DAEMON_JSON,
) -> GivenBack:
    """daemon.json (`current`, a symbolic link when `link`) with the deploy's settings taken
    away again.

    Still exactly what the deploy wrote: the file as it was before, byte for byte
    (`previous_file`), or no file when there was none (`had_file` False; a link is never
    deleted, its target gets "{}"). Still exactly what was there before: nothing to do.
    Otherwise (changed since, or an earlier version recorded only the keys, `had_file`
    None): only the deploy's keys that still hold its values go, each back to its previous
    value, every edit of the operator kept; the note says so."""
    if (
        had_file is not None
        and written_sha256
        and hashlib.sha256(current).hexdigest() == written_sha256
    ):
        if had_file:
            return GivenBack("write", previous_file)
        return GivenBack("write", b"{}\n") if link else GivenBack("delete")
    if had_file and current == previous_file:
        return GivenBack("keep")
    try:
        settings = parse_daemon_json(current, path) or {}
    except DaemonConfigError as error:
        return GivenBack("keep", note=f"{path} left as it is: {error}")
    restored = without_engine_network_settings(settings, set_by_deploy, previous)
    note = None
    if had_file is not None:
        note = (
            f"{path} changed since the deploy wrote it: only the deploy's settings that still hold its values "
            "were taken out (your edits kept, the file re-written as indented JSON)"
        )
    if restored == settings:
        return GivenBack(
            "keep",
            note=f"{path} changed since the deploy wrote it and holds none of its settings: "
            "left as it is"
            if had_file is not None
            else None,
        )
    if not restored and not had_file and not link:
        return GivenBack("delete", note=note)
    return GivenBack("write", render_daemon_json(restored).encode(), note)
