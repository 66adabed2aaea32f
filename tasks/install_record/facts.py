"""What the record step reads on a host, one round trip each."""

from __future__ import annotations

import base64
import shlex
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from pyinfra.api import FactBase

from tasks.install_record.lock import Holder, LockRequest, decode, try_lock_and_read_record


@dataclass(frozen=True)
class RecordRead:
    """The record file as read, and the lock as the read found it.

    `digest` is the file's SHA-256, 'absent' or 'unusable' (something that is not a
    regular file); `lock` is 'held' (this run holds it now), 'busy' (another run does:
    `holder`), 'unsupported' (no process to tie it to) or 'off' (not asked for: --dry).
    `stale` is the description a holder that ended without releasing it left behind."""

    content: bytes | None = None
    digest: str = "absent"
    lock: str = "held"
    holder: Holder | None = None
    stale: Holder | None = None


class InstallRecordFile(FactBase[RecordRead]):
    """The install record with its digest, read after trying to take the host's lock
    (`lock`, None: no lock, for --dry); see tasks/install_record/lock.py."""

    @staticmethod
    def default() -> RecordRead:
        return RecordRead()

    def command(self, lock: LockRequest | None = None) -> str:
        return try_lock_and_read_record(lock)

    def process(self, output: list[str]) -> RecordRead:
        fields: dict[str, str] = {}
        lines = list(output)
        content = None
        for position, line in enumerate(lines):
            if line == "content:":
                content = base64.b64decode("".join(lines[position + 1 :]))
                break
            key, _, value = line.partition("=")
            fields[key] = value.strip()
        return RecordRead(
            content=content,
            digest=fields.get("record_sha256", "absent"),
            lock=fields.get("lock", "off"),
            holder=Holder.parse(decode(fields["holder"])) if "holder" in fields else None,
            stale=Holder.parse(decode(fields["stale"])) if "stale" in fields else None,
        )


@dataclass(frozen=True)
class FoundFile:
    """What is at one path: 'absent', 'file' (a regular file, through a link) or 'other';
    for a file its SHA-256, its first lines and, when asked for, its bytes."""

    state: str
    link: bool = False  # the path is a symbolic link (to a regular file when state is 'file')
    sha256: str | None = None
    head: str = ""
    content: bytes | None = None
    # Owner, group and octal mode of a file (through a link), when the reader asked for them.
    owner: str | None = None
    group: str | None = None
    mode: str | None = None


def found_file(fields: dict[str, str]) -> FoundFile:
    """A FoundFile from the key=value fields printed about one path (FilesAt's keys)."""
    return FoundFile(
        state=fields.get("state", "other"),
        link=fields.get("link") == "1",
        sha256=fields.get("sha256"),
        head=base64.b64decode(fields.get("head", "")).decode("utf-8", "replace"),
        content=base64.b64decode(fields["content"]) if "content" in fields else None,
        owner=fields.get("owner"),
        group=fields.get("group"),
        mode=fields.get("mode"),
    )


class FilesAt(FactBase[dict[int, FoundFile]]):
    """Each of `paths` as a FoundFile (by position), in one round trip; the bytes of those in `with_content`."""

    @staticmethod
    def default() -> dict[int, FoundFile]:
        return {}

    def command(self, paths: Sequence[str], with_content: Collection[str] = ()) -> str:
        lines = []
        for index, path in enumerate(paths):
            quoted = shlex.quote(path)
            content = (
                f"; printf 'content='; base64 -w 0 < {quoted}; echo" if path in with_content else ""
            )
            lines.append(
                f"echo 'path={index}'; if [ -L {quoted} ]; then echo link=1; fi; "
                f"if [ ! -e {quoted} ] && [ ! -L {quoted} ]; then echo state=absent; "
                f"elif [ ! -f {quoted} ]; then echo state=other; "
                f'else echo state=file; d=$(sha256sum < {quoted}) && echo "sha256=${{d%% *}}"; '
                f"printf 'head='; head -n 3 -- {quoted} | base64 -w 0; echo{content}; fi"
            )
        return "\n".join(lines) or "true"

    def process(self, output: list[str]) -> dict[int, FoundFile]:
        found: dict[int, dict[str, str]] = {}
        current: dict[str, str] = {}
        for line in output:
            key, _, value = line.partition("=")
            if key == "path":
                current = found.setdefault(int(value), {})
            else:
                current[key] = value.strip()
        return {index: found_file(fields) for index, fields in found.items()}
