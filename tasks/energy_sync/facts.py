"""What the energy sync step reads on a Prometheus server, one round trip each."""

from __future__ import annotations

import shlex
from collections.abc import Iterable
from typing import Any

from pyinfra.api import FactBase

from tasks.energy_sync.plan import (
    CONFIG_DIR,
    CONFIG_PATH,
    PREFERRED_USER,
    SCRIPT_PATH,
    SERVICE_PATH,
    TIMER_PATH,
)

# The service account: OpenNebula's oneadmin where it exists, else root; and its primary group.
_ACCOUNT = (
    f"if id -u {PREFERRED_USER} >/dev/null 2>&1; then user={PREFERRED_USER}; group=$(id -gn {PREFERRED_USER}); "
    "else user=root; group=root; fi; "
    'echo "user=$user"; echo "group=$group"'
)
# The first Python 3.6+ among python3 on PATH, Debian's and RHEL 8's platform Python.
_PYTHON = (
    "python=''; "
    "for candidate in $(command -v python3) /usr/bin/python3 /usr/libexec/platform-python; do "
    'if [ -x "$candidate" ] && "$candidate" -c \'import sys; sys.exit(sys.version_info < (3, 6))\' 2>/dev/null; '
    'then python=$candidate; break; fi; done; echo "python=$python"'
)


def key_values(lines: Iterable[str]) -> dict[str, str]:
    """The `key=value` lines a shell reading printed, as a dict (other lines ignored)."""
    found: dict[str, str] = {}
    for line in lines:
        key, separator, value = line.partition("=")
        if separator:
            found[key.strip()] = value.strip()
    return found


class EnergySyncFrontend(FactBase[dict[str, str]]):
    """Whether this server can run the sync: the service account (`user`, `group`), the
    Python it would run (`python`, '' when there is no 3.6+), whether that account can read
    the credentials file (`credentials`: readable, unreadable or missing; tested as the
    account itself, not as root) and whether /etc/one exists (`config_dir`: yes or no)."""

    def command(self, credentials_file: str) -> str:
        quoted = shlex.quote(credentials_file)
        credentials = (
            f"if [ ! -e {quoted} ]; then echo credentials=missing; "
            f'elif [ "$user" = root ]; then if [ -r {quoted} ]; then echo credentials=readable; '
            "else echo credentials=unreadable; fi; "
            f'elif runuser -u "$user" -- test -r {quoted}; then echo credentials=readable; '
            "else echo credentials=unreadable; fi"
        )
        config_dir = f"if [ -d {shlex.quote(CONFIG_DIR)} ]; then echo config_dir=yes; else echo config_dir=no; fi"
        return "; ".join((_ACCOUNT, _PYTHON, credentials, config_dir))

    def process(self, output: list[str]) -> dict[str, str]:
        return key_values(output)


class EnergySyncInstalled(FactBase[dict[str, Any]]):
    """What of the sync is on this server: `installed` (the set of its files present: the
    service and timer units, the script, the config), with the account (`user`, `group`)
    and `python` it would run as now (the same rule the deploy used)."""

    def command(self) -> str:
        present = "; ".join(
            f"if [ -e {shlex.quote(path)} ]; then echo installed={shlex.quote(path)}; fi"
            for path in (SERVICE_PATH, TIMER_PATH, SCRIPT_PATH, CONFIG_PATH)
        )
        return "; ".join((_ACCOUNT, _PYTHON, present))

    def process(self, output: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {"installed": set()}
        for line in output:
            key, separator, value = line.partition("=")
            if not separator:
                continue
            if key == "installed":
                found["installed"].add(value.strip())
            else:
                found[key] = value.strip()
        return found
