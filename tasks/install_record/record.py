"""What the deploy installed on a hypervisor, kept on the host so remove.py takes away
exactly that and nothing the operator had before.

The record is one small JSON file the deploy owns (RECORD_FILE, root-only). Each
entry is added by the operation that follows the thing it records, so a run that
stops half-way records only what exists; entries are never dropped by a deploy, so
a rerun still knows the engine was installed by it. Plain data and functions: the
steps read the file through a fact and write what these return.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

RECORD_DIR = "/var/lib/scaphandre-opennebula"
RECORD_FILE = f"{RECORD_DIR}/installed.json"
FORMAT = 1


class InstallRecordError(ValueError):
    """The record file cannot be read; the message names it and what to do."""


@dataclass(frozen=True)
class DaemonJsonChange:
    """The keys the deploy set in daemon.json and the values they had before (keys that were
    absent are not listed there)."""

    settings: dict[str, Any] = field(default_factory=dict)
    previous: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class InstallRecord:
    """Everything the deploy brought to one host (empty: nothing, or the file is absent)."""

    package_manager: str | None = None  # "apt" or "dnf", with engine_packages
    engine_packages: tuple[str, ...] = ()  # the Docker engine packages the deploy installed
    daemon_json: DaemonJsonChange | None = None
    repository_files: tuple[str, ...] = ()  # Docker's package repository files the deploy added
    images: tuple[str, ...] = ()  # exporter images the deploy pulled or loaded

    @property
    def empty(self) -> bool:
        return self == InstallRecord()

    @property
    def installed_engine(self) -> bool:
        """True when the Docker engine on the host is the one the deploy installed."""
        return bool(self.engine_packages)

    # ------------------------------------------------------------ additions (deploy)
    def with_engine(self, package_manager: str, packages: list[str]) -> "InstallRecord":
        kept = tuple(dict.fromkeys([*self.engine_packages, *packages]))
        return replace(self, package_manager=package_manager, engine_packages=kept)

    def with_daemon_json(self, change: DaemonJsonChange) -> "InstallRecord":
        """The daemon.json change recorded; a key recorded by an earlier run keeps the value it
        had before that run (a rerun must not take the deploy's own value for the operator's)."""
        earlier = self.daemon_json or DaemonJsonChange()
        previous = {**change.previous, **earlier.previous}
        for key in earlier.settings:
            if key not in earlier.previous:
                previous.pop(key, None)
        return replace(self, daemon_json=DaemonJsonChange({**change.settings, **earlier.settings}, previous))

    def with_repository_files(self, paths: list[str]) -> "InstallRecord":
        return replace(self, repository_files=tuple(dict.fromkeys([*self.repository_files, *paths])))

    def with_image(self, image: str) -> "InstallRecord":
        return replace(self, images=tuple(dict.fromkeys([*self.images, image])))

    # ------------------------------------------------------------ removals (remove.py)
    def without_engine(self) -> "InstallRecord":
        return replace(self, package_manager=None, engine_packages=(), daemon_json=None, repository_files=())

    def without_images(self, images: list[str]) -> "InstallRecord":
        return replace(self, images=tuple(image for image in self.images if image not in images))

    # ------------------------------------------------------------ the file
    def to_json(self) -> str:
        data: dict[str, Any] = {"format": FORMAT}
        if self.engine_packages:
            data["engine"] = {"package_manager": self.package_manager, "packages": list(self.engine_packages)}
        if self.daemon_json:
            data["daemon_json"] = {"settings": self.daemon_json.settings, "previous": self.daemon_json.previous}
        if self.repository_files:
            data["repository_files"] = list(self.repository_files)
        if self.images:
            data["images"] = list(self.images)
        return json.dumps(data, indent=2) + "\n"


def parse_install_record(lines: list[str] | None, path: str = RECORD_FILE) -> InstallRecord:
    """The record from the file's lines (pyinfra's FileContents fact); empty when it is absent.
    Raises InstallRecordError when it is not a record this deploy wrote."""
    if lines is None or not "".join(lines).strip():
        return InstallRecord()
    try:
        data = json.loads("\n".join(lines))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"format {data.get('format') if isinstance(data, dict) else None!r}, not {FORMAT}")
        engine = data.get("engine") or {}
        daemon = data.get("daemon_json")
        return InstallRecord(
            package_manager=engine.get("package_manager"),
            engine_packages=tuple(engine.get("packages") or ()),
            daemon_json=DaemonJsonChange(dict(daemon["settings"]), dict(daemon.get("previous") or {}))
            if daemon else None,
            repository_files=tuple(data.get("repository_files") or ()),
            images=tuple(data.get("images") or ()),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise InstallRecordError(
            f"{path} (the deploy's record of what it installed here) cannot be read ({error}): "
            "restore it, or delete it to have the deploy treat the Docker engine and image as the operator's"
        ) from None
