"""Operations of the RAPL step that pyinfra does not ship."""

from __future__ import annotations

import shlex

from pyinfra.api import StringCommand, operation

from tasks.rapl.facts import RAPL_ZONE
from tasks.text_file import Commands


@operation()
def rapl_exposed(failure_message: str) -> Commands:
    """Guarantees RAPL is exposed under /sys/class/powercap, or fails the host with `failure_message`.

    Planned only where RAPL was not exposed when the run began, after the modules are loaded:
    the check is made on the host when it runs."""
    yield StringCommand(
        f"test -e {RAPL_ZONE} || {{ echo {shlex.quote(failure_message)} >&2; exit 1; }}"
    )
