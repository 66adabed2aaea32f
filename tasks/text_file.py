"""Writing files on a host: a small file the deploy owns, written whole in one step; and a
file that may be the operator's (their daemon.json, prometheus.yml, a rules file),
replaced in place keeping its owner, its mode and its symbolic link.

A file replaced in place is read as bytes with its stat (LiveFile, FileBytes) and
written the way `replace_script` says: the new bytes travel into the deploy's root-only
state directory, are copied into a file made with mktemp beside the file actually
replaced (a link's target, so the link stays a link), which takes that file's owner
and mode (0644 for a new file) before anything reads it, and is renamed over it; on
any failure the live file is untouched and nothing is left behind.
"""

from __future__ import annotations

import base64
import hashlib
import posixpath
import shlex
from collections.abc import Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from io import BytesIO, StringIO
from typing import Any

from pyinfra import host
from pyinfra.api import FactBase, FileUploadCommand, StringCommand, operation
from pyinfra.api.command import PyinfraCommand
from pyinfra.facts.files import FileContents

from tasks.host_failure import failure_command

# What an operation function yields: the commands pyinfra runs, in order.
Commands = Generator[PyinfraCommand, None, None]

# Root-only: the deploy's records and the bytes on their way into a file it replaces.
STATE_DIR = "/var/lib/scaphandre-opennebula"


@operation()
def text_file(path: str, text: str, mode: str = "644", directory_mode: str = "755") -> Commands:
    """Guarantees `path` holds exactly `text` with `mode` (its directory created with
    `directory_mode` when missing).

    The text is uploaded beside the file and moved over it, so a reader never sees
    half a file; the SELinux label is then reset where SELinux is in use (an upload
    through a temporary file would otherwise keep the label of /tmp, and a service
    such as dockerd could not read it).
    """
    current = host.get_fact(FileContents, path=path)
    if current is not None and "\n".join(current) == text.rstrip("\n"):
        host.noop(f"{path} is up to date")
        return
    yield from whole_file_commands(path, text, mode, directory_mode)


def whole_file_commands(
    path: str, text: str, mode: str, directory_mode: str, directory_exists: bool = False
) -> Iterator[PyinfraCommand]:
    """The commands writing `text` whole to `path` (see text_file); the directory is
    created when missing unless the caller knows it exists."""
    staged = f"{path}.scaphandre-new"
    quoted, quoted_staged = shlex.quote(path), shlex.quote(staged)
    quoted_directory = shlex.quote(posixpath.dirname(path))
    if not directory_exists:  # an existing directory keeps its mode: only a missing one is created
        yield StringCommand(
            f"[ -d {quoted_directory} ] || install -d -m {mode_digits(directory_mode)} {quoted_directory}"
        )
    yield FileUploadCommand(StringIO(text), staged)
    yield StringCommand(
        f"chmod {mode_digits(mode)} {quoted_staged} && mv -f {quoted_staged} {quoted} && "
        f"{{ ! command -v restorecon >/dev/null 2>&1 || restorecon {quoted}; }}"
    )


def mode_digits(mode: str) -> str:
    """An octal file mode such as '600', refused when it is anything else (it goes into a shell line)."""
    if not (mode.isdigit() and len(mode) in (3, 4) and set(mode) <= set("01234567")):
        raise ValueError(f"{mode!r} is not an octal file mode")
    return mode


# --------------------------------------------------------------------------- reading a file as bytes


@dataclass(frozen=True)
class LiveFile:
    """A file the deploy replaces, as read on the host.

    `content` is None when the reader had no need of the bytes (see PrometheusConfigFile).
    `complete` is False when the bytes received do not have the SHA-256 the host computed
    (a file that changed while it was read).
    """

    link: bool  # the path is a symbolic link (the target is what gets replaced)
    target: str  # the path with every link resolved
    regular: bool  # a regular file (through the link); False for a directory, a device ...
    uid: int
    gid: int
    mode: str  # octal, as stat prints it
    sha256: str
    content: bytes | None
    record_current: bool = False
    record_exists: bool = False
    original_exists: bool = False
    reload_pending: bool = (
        False  # an earlier reload for this file was never confirmed by Prometheus
    )

    @property
    def complete(self) -> bool:
        return self.content is None or hashlib.sha256(self.content).hexdigest() == self.sha256


def live_file_lines(path: str) -> list[str]:
    """Shell printing what LiveFile holds about `path` up to its SHA-256 (`$p` and `$sha` set):
    `absent=1` or `dangling=` (base64 link text) end the output there."""
    return [
        f"p={shlex.quote(path)}",
        (
            'if [ ! -e "$p" ]; then if [ -L "$p" ]; then printf \'dangling=\'; '
            'readlink -- "$p" | base64 -w 0; echo; else echo absent=1; fi; exit 0; fi'
        ),
        'if [ -L "$p" ]; then echo link=1; else echo link=0; fi',
        "printf 'target='; readlink -f -- \"$p\" | tr -d '\\n' | base64 -w 0; echo",
        'if [ ! -f "$p" ]; then echo regular=0; exit 0; fi',
        "stat -L --printf 'uid=%u\\ngid=%g\\nmode=%a\\n' -- \"$p\"",
        'sha=$(sha256sum < "$p"); sha=${sha%% *}; echo "sha256=$sha"',
    ]


def parse_live_file(output: Iterable[str]) -> LiveFile | dict[str, Any] | None:
    """What live_file_lines (and `content:` then the base64 bytes) printed: None when nothing
    is at the path, {'dangling': target} for a link to nothing, else a LiveFile."""
    fields: dict[str, str] = {}
    lines = list(output)
    content_lines: list[str] | None = None
    for position, line in enumerate(lines):
        if line == "content:":
            content_lines = lines[position + 1 :]
            break
        key, _, value = line.partition("=")
        fields[key] = value.strip()
    if "absent" in fields:
        return None
    if "dangling" in fields:
        return {
            "dangling": base64.b64decode(fields["dangling"]).decode("utf-8", "replace").rstrip("\n")
        }
    target = base64.b64decode(fields.get("target", "")).decode("utf-8", "surrogateescape")
    return LiveFile(
        link=fields.get("link") == "1",
        target=target,
        regular=fields.get("regular") != "0",
        uid=int(fields.get("uid") or -1),
        gid=int(fields.get("gid") or -1),
        mode=fields.get("mode", ""),
        sha256=fields.get("sha256", ""),
        content=None if content_lines is None else base64.b64decode("".join(content_lines)),
        record_current=fields.get("record") == "current",
        record_exists=fields.get("record_exists") == "1",
        original_exists=fields.get("original") == "1",
        reload_pending=fields.get("reload_pending") == "1",
    )


class FileBytes(FactBase[LiveFile | dict[str, Any] | None]):
    """A file as bytes with its stat, in one round trip: None when nothing is at `path`,
    {'dangling': target} for a symbolic link to nothing, else a LiveFile with its content
    (base64 on the way, so every byte arrives)."""

    def command(self, path: str) -> str:
        return "\n".join([*live_file_lines(path), "echo content:", 'base64 < "$p"'])

    def process(self, output: list[str]) -> LiveFile | dict[str, Any] | None:
        return parse_live_file(output)


def unusable_file_problem(
    path: str, live: LiveFile | dict[str, Any] | None, setting_hint: str
) -> str | None:
    """Why a file read with FileBytes cannot be replaced in place, or None."""
    if isinstance(live, dict):
        return (
            f"{path} is a symbolic link to {live['dangling']}, which does not exist: {setting_hint}"
        )
    if live is not None and not live.regular:
        return f"{path} is not a regular file: {setting_hint}"
    if live is not None and not live.complete:
        return f"{path} changed while it was being read; it is untouched: run again"
    return None


# --------------------------------------------------------------------------- replacing a file in place


def spool_path(path: str, kind: str = "upload", directory: str | None = None) -> str:
    """Where the new bytes of `path` wait, in a root-only directory of the deploy."""
    return f"{directory or STATE_DIR}/{hashlib.sha256(path.encode()).hexdigest()[:16]}.{kind}"


def upload_commands(
    content: bytes, spool: str, private_dirs: tuple[str, ...] | None = None
) -> Iterator[PyinfraCommand]:
    """The bytes into the deploy's root-only directory holding `spool`; it and
    `private_dirs` (the deploy's state directory by default) are made 0700."""
    directory = posixpath.dirname(spool)
    private = " ".join(
        shlex.quote(path) for path in dict.fromkeys([*(private_dirs or (STATE_DIR,)), directory])
    )
    yield StringCommand(f"umask 077 && mkdir -p {shlex.quote(directory)} && chmod 0700 {private}")
    yield FileUploadCommand(BytesIO(content), spool)


def replace_script(
    live: str,
    spool: str,
    before_move: Sequence[str] = (),
    after_move: Sequence[str] = (),
    relabel: bool = False,
) -> str:
    """Shell that puts the spooled bytes in place of `live`.

    The new file is made with mktemp in the directory of the file actually replaced (a
    link's target: the link stays a link), takes that file's owner and mode (0644 for a
    new file), then `before_move` runs (a check that may `fail "…"`; `$staged` is the new
    file, `$target` the one it replaces, a `$check` it sets is cleaned up on failure), and
    it is renamed over the target; `relabel` resets its SELinux label where SELinux is in
    use. On any failure before the rename the live file is untouched and nothing is left.
    """
    q = shlex.quote
    return "\n".join(
        [
            f"live={q(live)}; spool={q(spool)}; staged=''; check=''",
            (
                'fail() { rm -f -- "$spool"; if [ -n "$staged" ]; then rm -f -- "$staged"; fi; '
                'if [ -n "$check" ] && [ "$check" != "$staged" ]; then rm -f -- "$check"; fi; '
                "printf '%s\\n' \"$1\" >&2; exit 1; }"
            ),
            'target=$(readlink -f -- "$live") || fail "cannot resolve $live; the live file is untouched"',
            'dir=$(dirname -- "$target")',
            (
                'staged=$(mktemp -- "$dir/.scaphandre-staged.XXXXXX") '
                '|| fail "cannot create a file in $dir; the live file is untouched"'
            ),
            'cat -- "$spool" > "$staged" || fail "cannot write $staged; the live file is untouched"',
            (
                'if [ -e "$target" ]; then chown --reference="$target" -- "$staged" '
                '&& chmod --reference="$target" -- "$staged"; '
                'else chmod 0644 -- "$staged"; fi '
                '|| fail "cannot give $staged the owner and mode of $target; the live file is untouched"'
            ),
            *before_move,
            'mv -f -- "$staged" "$target" || fail "cannot move the new file over $target; the live file is untouched"',
            "staged=''",
            'rm -f -- "$spool"',
            *(
                ['{ ! command -v restorecon >/dev/null 2>&1 || restorecon -- "$target"; }']
                if relabel
                else []
            ),
            *after_move,
        ]
    )


def in_place_script(path: str, spool: str, new: bool) -> str:
    """replace_script for file_in_place: a new file's directory is made (0755) when missing."""
    directory = shlex.quote(posixpath.dirname(path))
    make_directory = f"[ -d {directory} ] || install -d -m 755 -- {directory}\n" if new else ""
    return make_directory + replace_script(path, spool, relabel=True)


@operation()
def file_in_place(
    path: str, content: bytes, setting_hint: str = "fix it or move it aside"
) -> Commands:
    """Guarantees `path` holds exactly `content`, replaced in place: a symbolic link stays a
    link (the file it points to is written), the file keeps its owner and mode (a new one
    is root's, 0644, its directory made 0755 when missing), its SELinux label is reset. A
    link to nothing or a path that is not a regular file fails the host naming it, untouched.
    """
    live = host.get_fact(FileBytes, path=path)
    problem = unusable_file_problem(path, live, setting_hint)
    if problem:
        yield failure_command(problem)
        return
    if isinstance(live, LiveFile) and live.content == content:
        host.noop(f"{path} is up to date")
        return
    spool = spool_path(path)
    yield from upload_commands(content, spool)
    yield StringCommand(in_place_script(path, spool, new=live is None))


@operation()
def file_absent_unless_link(path: str) -> Commands:
    """Guarantees a regular file at `path` is gone; a symbolic link there is the operator's
    and stays (with what it points to)."""
    live = host.get_fact(FileBytes, path=path)
    if live is None:
        host.noop(f"{path} does not exist")
        return
    if isinstance(live, dict) or live.link:
        host.noop(f"{path} is a symbolic link: left as it is")
        return
    yield StringCommand(f"rm -f -- {shlex.quote(path)}")
