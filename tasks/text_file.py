"""Writing a small file the deploy computed, whole and in one step."""

from __future__ import annotations

import posixpath
import shlex
from io import StringIO

from pyinfra import host
from pyinfra.api import FileUploadCommand, StringCommand, operation
from pyinfra.facts.files import FileContents


@operation()
def text_file(path: str, text: str, mode: str = "644", directory_mode: str = "755"):
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
    directory = posixpath.dirname(path)
    staged = f"{path}.scaphandre-new"
    quoted, quoted_staged = shlex.quote(path), shlex.quote(staged)
    quoted_directory = shlex.quote(directory)
    # An existing directory keeps its mode: only a missing one is created.
    yield StringCommand(f"[ -d {quoted_directory} ] || install -d -m {mode_digits(directory_mode)} {quoted_directory}")
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
