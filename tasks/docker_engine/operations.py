"""Operations of the Docker engine step that pyinfra does not ship."""

from __future__ import annotations

import shlex

from pyinfra import host
from pyinfra.api import StringCommand, operation
from pyinfra.facts.systemd import SystemdStatus

from tasks.text_file import Commands


@operation()
def docker_engine_active(unit: str = "docker.service", journal_lines: int = 15) -> Commands:
    """Guarantees the Docker engine `unit` is active, or fails the host showing the last
    lines of its journal and what to do: an engine that will not start is named as such,
    not left to surface later as a container error."""
    if host.get_fact(SystemdStatus, services=[unit]).get(unit):
        host.noop(f"{unit} is active")
        return
    quoted = shlex.quote(unit)
    script = (
        f"systemctl is-active --quiet {quoted} && exit 0; "
        f"echo 'The Docker engine ({unit}) is present but does not start; last lines of its journal:' >&2; "
        f"journalctl -u {quoted} -n {int(journal_lines)} --no-pager -o cat >&2 "
        f"|| systemctl status --no-pager {quoted} >&2; "
        "echo 'Fix: correct the cause above (often /etc/docker/daemon.json or the storage driver), "
        f"check that `systemctl start {unit}` succeeds, then rerun the deploy' >&2; exit 1"
    )
    yield StringCommand("bash", "-c", shlex.quote(script))
