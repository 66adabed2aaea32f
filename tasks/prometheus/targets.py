"""The file_sd targets file: one entry per hypervisor of the whole inventory.

Labels: ``host_id`` (the label of the original hand-run scripts), ``one_host_id``
(the label of OpenNebula's own Prometheus integration) and ``host_name`` (the
OpenNebula host NAME). Plain logic: text and values in, text and values out.

The file is written as JSON, one entry per line, under a comment header: JSON is YAML
too, so Prometheus reads it under its .yml name as before (and a .json name without the
header), and the standard library writes and reads it at C speed, where PyYAML builds
every node in Python (about a second each way for 10,000 hypervisors). A file in the
YAML layout of earlier versions is still read, and rewritten as JSON on the next run.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from tasks.prometheus.owned_yaml import load

TARGETS_FILE_HEADER = (
    "# Managed by the Scaphandre-on-OpenNebula deploy (pyinfra): one entry per\n"
    "# hypervisor of the inventory. Changes made here are overwritten on the next run.\n"
)


@dataclass(frozen=True)
class ScrapeTarget:
    """One hypervisor as Prometheus should scrape it."""

    address: str  # "hv1.example.com:8080" (host:port)
    one_host_id: int
    host_name: str  # the OpenNebula host NAME

    def __post_init__(self) -> None:
        if (
            not isinstance(self.address, str)
            or not self.address
            or re.search(r"[\s/]", self.address)
        ):
            raise ValueError(
                f"scrape address {self.address!r} of host {self.host_name!r} is not a host:port"
            )
        if (
            isinstance(self.one_host_id, bool)
            or not isinstance(self.one_host_id, int)
            or self.one_host_id < 0
        ):
            raise ValueError(
                f"OpenNebula host ID {self.one_host_id!r} of host {self.host_name!r} "
                "is not a non-negative integer"
            )
        if not isinstance(self.host_name, str) or not self.host_name.strip():
            raise ValueError(f"host at {self.address!r} has an empty host name")

    def labels(self) -> dict[str, str]:
        """Target labels, all strings as Prometheus requires."""
        host_id = str(self.one_host_id)
        return {"host_id": host_id, "one_host_id": host_id, "host_name": self.host_name}

    def describe(self) -> str:
        return f"{self.host_name} (OpenNebula ID {self.one_host_id}, {self.address})"


def _check_unique(targets: list[ScrapeTarget]) -> None:
    """Refuse two hypervisors sharing an address or an OpenNebula host ID."""
    by_address: dict[str, ScrapeTarget] = {}
    by_id: dict[int, ScrapeTarget] = {}
    for target in targets:
        seen = by_address.get(target.address)
        if seen is not None and seen != target:
            raise ValueError(
                f"hosts {seen.describe()} and {target.describe()} have the same scrape "
                f"address {target.address!r}; give each hypervisor its own address"
            )
        seen = by_id.get(target.one_host_id)
        if seen is not None and seen != target:
            raise ValueError(
                f"hosts {seen.describe()} and {target.describe()} map to the same "
                f"OpenNebula host ID {target.one_host_id}; check one_host_id / one_host_name"
            )
        by_address[target.address] = target
        by_id[target.one_host_id] = target


def _sorted_unique(targets: Iterable[ScrapeTarget]) -> list[ScrapeTarget]:
    """Targets sorted by (one_host_id, address), exact repeats dropped, clashes refused."""
    listed = list(targets)
    for target in listed:
        if not isinstance(target, ScrapeTarget):
            raise TypeError(f"expected ScrapeTarget, got {target!r}")
    _check_unique(listed)
    return sorted(set(listed), key=lambda t: (t.one_host_id, t.address))


def targets_file_entries(targets: Iterable[ScrapeTarget]) -> list[dict[str, Any]]:
    """file_sd entries, one per hypervisor, in a stable order.

    Each entry is ``{"targets": [address], "labels": {host_id, one_host_id,
    host_name}}`` with string label values. Two different hosts with the same
    address or the same OpenNebula ID raise ValueError naming both.
    """
    return [{"targets": [t.address], "labels": t.labels()} for t in _sorted_unique(targets)]


# Characters JSON leaves as they are but YAML reads otherwise: C1 controls and DEL (YAML
# refuses them unescaped), NEL, LINE and PARAGRAPH SEPARATOR (line breaks to YAML, folded
# into a space inside a quoted string), the byte order mark, and lone surrogates (which no
# UTF-8 file can hold). Escaped as \uXXXX, which JSON and YAML read alike.
_YAML_SENSITIVE = re.compile("[\x7f-\x9f\u2028\u2029\ufeff\ud800-\udfff]")


def _json_line(entry: dict[str, Any]) -> str:
    text = json.dumps(entry, ensure_ascii=False)
    if _YAML_SENSITIVE.search(text):
        text = _YAML_SENSITIVE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)
    return text


def render_targets_file(targets: Iterable[ScrapeTarget], json_only: bool = False) -> str:
    """The targets file text: a managed-file header, then the file_sd list as JSON, one
    entry per line (YAML and JSON at once). `json_only` leaves the header out, for a
    targets file named *.json, which Prometheus reads as JSON (no comments)."""
    entries = targets_file_entries(targets)
    body = (
        "[\n" + ",\n".join(_json_line(entry) for entry in entries) + "\n]\n" if entries else "[]\n"
    )
    return body if json_only else TARGETS_FILE_HEADER + body


def _target_from_entry(address: Any, labels: Any, position: int) -> ScrapeTarget:
    where = f"entry {position} of the targets file"
    if not isinstance(labels, dict):
        raise ValueError(f"{where} has no 'labels' mapping")
    raw_id = labels.get("one_host_id", labels.get("host_id"))
    try:
        one_host_id = int(str(raw_id))
    except ValueError:
        raise ValueError(f"{where} has no integer one_host_id label (found {raw_id!r})") from None
    host_name = labels.get("host_name")
    if not isinstance(host_name, str):
        raise ValueError(f"{where} has no host_name label")
    if not isinstance(address, str):
        raise ValueError(f"{where} has a target that is not a string: {address!r}")
    return ScrapeTarget(address=address, one_host_id=one_host_id, host_name=host_name)


# The comment lines and blank lines the file starts with (JSON has no comments).
_LEADING_COMMENTS = re.compile(r"(?:[ \t]*(?:#[^\n]*)?\n)*")


def _load_entries(text: str) -> Any:
    """The file's content: as JSON after its header (what render_targets_file writes), else
    as YAML (what earlier versions wrote, or a file edited by hand)."""
    leading = _LEADING_COMMENTS.match(text)  # always matches, if only the empty string
    body = text[leading.end() :] if leading else text
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        return load(text)
    except yaml.YAMLError as error:
        raise ValueError(f"targets file is not valid YAML: {error}") from None


def parse_targets_file(text: str | None) -> list[ScrapeTarget]:
    """Read back a targets file written by render_targets_file, or by an earlier version
    (YAML).

    Used to keep the entries of hypervisors outside a ``--limit`` run. Missing,
    empty or comment-only text gives ``[]``; anything that is not a list of
    file_sd entries with our labels raises ValueError.
    """
    if text is None or not text.strip():
        return []
    entries = _load_entries(text)
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValueError("targets file is not a list of file_sd entries")
    found: list[ScrapeTarget] = []
    for position, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict) or not isinstance(entry.get("targets"), list):
            raise ValueError(f"entry {position} of the targets file has no 'targets' list")
        for address in entry["targets"]:
            found.append(_target_from_entry(address, entry.get("labels"), position))
    return found


def assemble_targets(
    resolved: Mapping[str, ScrapeTarget],
    unresolved: Mapping[str, str],
    previous: Sequence[ScrapeTarget],
) -> tuple[list[ScrapeTarget], list[str]]:
    """The targets to write, and one warning per hypervisor left out.

    `resolved` maps inventory names to targets whose OpenNebula ID is known.
    `unresolved` maps the other inventory names to their scrape address
    (host:port); such a host keeps the entry the targets file already had for
    that address, so a --limit run never drops a host it could not look up.
    """
    targets = list(resolved.values())
    # An old entry whose address or ID now belongs to a resolved hypervisor is out of date.
    taken_addresses = {target.address for target in targets}
    taken_ids = {target.one_host_id for target in targets}
    previous_by_address = {
        target.address: target
        for target in previous
        if target.address not in taken_addresses and target.one_host_id not in taken_ids
    }
    warnings = []
    for name, address in sorted(unresolved.items()):
        kept = previous_by_address.get(address)
        if kept is not None:
            targets.append(kept)
        else:
            warnings.append(
                f"{name} ({address}) left out of the scrape targets: its OpenNebula ID is unknown; "
                "set one_host_id for it or include it in the run"
            )
    return targets, warnings
