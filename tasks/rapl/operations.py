"""Operations of the RAPL step that pyinfra does not ship."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation

from tasks.rapl.facts import RaplExposed


@operation()
def rapl_exposed(failure_message: str):
    """Guarantees RAPL is exposed under /sys/class/powercap, or fails the host with `failure_message`."""
    if host.get_fact(RaplExposed):
        host.noop("RAPL is exposed under /sys/class/powercap")
        return
    # Checked again on the host when it runs: the modules may have been loaded by an earlier operation.
    yield StringCommand(
        f"test -e /sys/class/powercap/intel-rapl:0 || {{ echo {shlex.quote(failure_message)} >&2; exit 1; }}"
    )
