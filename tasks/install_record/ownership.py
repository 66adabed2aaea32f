"""Whose is a file found where the deploy writes one on a Prometheus server (the targets
and rules files, the energy sync's script, units and config)? Plain functions.

The deploy's if its record lists the path. A file the record does not list is the
operator's and the deploy refuses to touch it, failing that server before anything is
changed, unless an earlier version of the deploy wrote it: every file the deploy ever
wrote there carries its own line near the top (MARKERS: the managed-file header of the
targets, rules, config and unit files, the first docstring line of the energy sync
script), and a server deployed before the record listed files has them with no entry.
Those are adopted into the record: they told the operator that changes made there are
overwritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.install_record.facts import FoundFile
from tasks.install_record.record import RECORD_FILE, InstallRecord

MARKERS = (
    "# Managed by the Scaphandre-on-OpenNebula deploy (pyinfra)",
    '"""scaphandre-energy-sync: write each host\'s and VM\'s power into OpenNebula.',
)


@dataclass(frozen=True)
class ManagedPath:
    """A path the deploy writes, and how the operator makes it write elsewhere instead."""

    path: str
    elsewhere: str


@dataclass
class Claim:
    """The outcome for a set of paths: files adopted (path -> SHA-256) and why others are refused."""

    adopted: dict[str, str] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)


def written_by_the_deploy(found: FoundFile) -> bool:
    """Whether a file carries the line every version of the deploy writes near its top."""
    return any(marker in found.head for marker in MARKERS)


def claim(
    paths: list[ManagedPath],
    found: dict[str, FoundFile],
    record: InstallRecord,
    expected: dict[str, str] | None = None,
) -> Claim:
    """Which of the files at `paths` the deploy may write: listed in the record, absent, or
    adopted (written by an earlier version: its header, or exactly the bytes whose SHA-256
    `expected` gives for that path, what this run would write there); every other one is
    refused with a message naming it and the setting that chooses another path."""
    outcome = Claim()
    for managed in paths:
        here = found.get(managed.path, FoundFile("absent"))
        if here.state == "absent" or managed.path in record.files:
            continue
        exact = bool(here.sha256) and here.sha256 == (expected or {}).get(managed.path)
        if here.state == "file" and here.sha256 and (written_by_the_deploy(here) or exact):
            outcome.adopted[managed.path] = here.sha256
            continue
        what = "a file" if here.state == "file" else "something that is not a regular file"
        outcome.refused.append(
            f"{managed.path} is {what} the deploy did not write (its record {RECORD_FILE} does not list it): "
            f"it is left as it is and nothing was changed on this server; {managed.elsewhere}"
        )
    return outcome


def removal(path: str, found: FoundFile, record: InstallRecord) -> tuple[bool, str | None]:
    """Whether remove.py deletes `path`, and a warning when it leaves a file the deploy wrote.

    Deleted: a regular file the record lists that still holds what the deploy wrote.
    Kept, with a warning: a listed file changed since (it is the operator's now), and a
    file carrying the deploy's header that the record does not list (an earlier version
    wrote it). Kept silently: anything else (the operator's, or already gone)."""
    entry = record.files.get(path)
    if found.state == "absent":
        return False, None
    if entry is not None:
        if found.state == "file" and entry.holds(found.sha256):
            if found.link:
                return False, (
                    f"{path} is a symbolic link (yours): it stays, with the file it points to, which "
                    "holds what the deploy wrote; delete them by hand if they are not needed"
                )
            return True, None
        return False, (
            f"{path} stays: it changed since the deploy wrote it (it is not what the record "
            f"{RECORD_FILE} says the deploy wrote), so it is yours now; delete it by hand if it is not needed"
        )
    if found.state == "file" and written_by_the_deploy(found):
        return False, (
            f"{path} stays: it carries the deploy's header but the record {RECORD_FILE} does not list "
            "it (an earlier version wrote it): run the deploy once (it adopts such files), then remove.py, "
            "or delete it by hand"
        )
    return False, None
