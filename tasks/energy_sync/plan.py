"""What the energy sync looks like on a Prometheus server: its files, who runs it, the
commands that try it and take its attributes away, and what stops it from running.

Plain logic: no pyinfra state. facts.py reads the server, __init__.py makes it so.
"""

from __future__ import annotations

import posixpath
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tasks.install_record.ownership import ManagedPath
from tasks.install_record.record import sha256_of
from tasks.settings import Settings

if TYPE_CHECKING:
    from tasks.install_record.facts import FoundFile

SOURCES = Path(__file__).resolve().parents[2] / "files" / "opennebula"
SCRIPT_SOURCE = SOURCES / "scaphandre_energy_sync.py"
SERVICE_TEMPLATE = SOURCES / "scaphandre-energy-sync.service.j2"
TIMER_TEMPLATE = SOURCES / "scaphandre-energy-sync.timer.j2"
CONFIG_TEMPLATE = SOURCES / "scaphandre-energy-sync.conf.j2"

SCRIPT_DIR = "/usr/local/lib/scaphandre-energy-sync"
SCRIPT_DIR_MODE = "755"
SCRIPT_PATH = posixpath.join(SCRIPT_DIR, SCRIPT_SOURCE.name)
CONFIG_DIR = "/etc/one"
CONFIG_PATH = posixpath.join(CONFIG_DIR, "scaphandre-energy-sync.conf")
UNIT_DIR = "/etc/systemd/system"
SERVICE_UNIT = "scaphandre-energy-sync.service"
TIMER_UNIT = "scaphandre-energy-sync.timer"
SERVICE_PATH = posixpath.join(UNIT_DIR, SERVICE_UNIT)
TIMER_PATH = posixpath.join(UNIT_DIR, TIMER_UNIT)

# OpenNebula's own account on a frontend; the sync runs as root where there is none.
PREFERRED_USER = "oneadmin"
# Taking the attributes away is one update per object carrying them: linear in the size of
# the cloud, so bounded generously, but bounded.
REMOVAL_TIMEOUT_S = 900
KILL_GRACE_S = 5


@dataclass(frozen=True)
class ServiceAccount:
    """Who runs the sync, and how its config file is owned so that only that account (and
    root) can read which credentials file it uses."""

    user: str
    group: str

    @property
    def config_mode(self) -> str:
        return "600" if self.user == "root" else "640"

    @property
    def config_dir_mode(self) -> str:
        """Mode of /etc/one when the deploy has to create it (OpenNebula's own: 0750 root:oneadmin)."""
        return "755" if self.user == "root" else "750"


# Fixed paths: a file of the operator's at one of them can only be moved away.
_ELSEWHERE = (
    "the energy sync's files have fixed paths (its script, config, service and timer units): move "
    "that file away, or set energy_sync to False on this server"
)


def energy_sync_paths(settings: Settings, always: bool = False) -> list[ManagedPath]:
    """The files the energy sync writes on a Prometheus server, when it is on (or `always`)."""
    if not (settings.energy_sync or always):
        return []
    return [
        ManagedPath(path, _ELSEWHERE)
        for path in (SCRIPT_PATH, CONFIG_PATH, SERVICE_PATH, TIMER_PATH)
    ]


def rendered_files(settings: Settings, account: ServiceAccount, python: str) -> dict[str, str]:
    """Path -> the exact text the deploy writes there (templates rendered as pyinfra renders them)."""
    from pyinfra.api.util import get_template

    units = unit_variables(settings, account, python)
    return {
        SCRIPT_PATH: SCRIPT_SOURCE.read_text(),
        CONFIG_PATH: get_template(str(CONFIG_TEMPLATE)).render(config_variables(settings)),
        SERVICE_PATH: get_template(str(SERVICE_TEMPLATE)).render(units),
        TIMER_PATH: get_template(str(TIMER_TEMPLATE)).render(units),
    }


def service_account(found: Mapping[str, Any]) -> ServiceAccount:
    """The account facts.py found ("user" and its primary "group"), root when none."""
    user = found.get("user") or "root"
    return ServiceAccount(user=user, group=found.get("group") or user)


def frontend_problems(found: Mapping[str, Any], settings: Settings) -> list[str]:
    """Why the sync cannot run on this server as found (empty: it can), each with the fix."""
    problems = []
    if not found.get("python"):
        problems.append(
            "the energy sync needs Python 3.6 or later on this server and found none "
            "(python3 missing or too old): install python3, or set energy_sync to False"
        )
    account = service_account(found)
    credentials = settings.energy_sync_one_auth_file
    state = found.get("credentials")
    if state == "missing":
        problems.append(
            f"energy_sync_one_auth_file {credentials} does not exist on this server: it must hold "
            f"OpenNebula's user:password (OpenNebula's own file for {account.user}), readable by "
            f"{account.user}; the deploy never copies credentials there"
        )
    elif state != "readable":
        problems.append(
            f"energy_sync_one_auth_file {credentials} is not readable by {account.user}, the user "
            f"the energy sync runs as: give {account.user} read access (e.g. chown "
            f"{account.user} and chmod 600) or point energy_sync_one_auth_file at a file it can read"
        )
    return problems


def file_owners(account: ServiceAccount) -> dict[str, tuple[str, str, str]]:
    """Path -> (owner, group, octal mode) each file of the sync is written with."""
    return {
        SCRIPT_PATH: ("root", "root", "755"),
        CONFIG_PATH: ("root", account.group, account.config_mode),
        SERVICE_PATH: ("root", "root", "644"),
        TIMER_PATH: ("root", "root", "644"),
    }


def _same_mode(found: str | None, wanted: str) -> bool:
    return found is not None and found.isdigit() and int(found) == int(wanted)


def installed_as_wanted(
    found: Mapping[str, FoundFile],
    texts: Mapping[str, str],
    account: ServiceAccount,
    frontend: Mapping[str, str],
    script_dir: Mapping[str, str] | None,
    timer_running: bool | None,
) -> bool:
    """Whether the sync is installed exactly as the deploy would install it, so that none of
    its steps has anything to do: each file (`found`: path -> FoundFile, with owner, group and
    mode) a regular file holding its text with its owner, group and mode, the script's
    directory root's with mode 0755, /etc/one there, and the timer running and enabled (so
    no trial run is due either)."""
    if not timer_running or frontend.get("config_dir") != "yes" or not script_dir:
        return False
    if (script_dir.get("owner"), script_dir.get("group")) != ("root", "root") or not _same_mode(
        script_dir.get("mode"), SCRIPT_DIR_MODE
    ):
        return False
    for path, text in texts.items():
        here = found.get(path)
        owner, group, mode = file_owners(account)[path]
        if (
            here is None
            or here.state != "file"
            or here.link
            or here.sha256 != sha256_of(text.encode())
            or (here.owner, here.group) != (owner, group)
            or not _same_mode(here.mode, mode)
        ):
            return False
    return True


def unit_variables(settings: Settings, account: ServiceAccount, python: str) -> dict[str, Any]:
    """What the service and timer templates are rendered with."""
    return {
        "service_user": account.user,
        "python": python,
        "script_path": SCRIPT_PATH,
        "config_path": CONFIG_PATH,
        "interval_s": settings.energy_sync_interval_s,
    }


def config_variables(settings: Settings) -> dict[str, Any]:
    """What the config template is rendered with: paths and endpoints, never a credential."""
    return {
        "prometheus_url": settings.energy_sync_prometheus_url,
        "one_xmlrpc": settings.energy_sync_one_xmlrpc,
        "one_auth_file": settings.energy_sync_one_auth_file,
        "interval_s": settings.energy_sync_interval_s,
        "max_age_s": settings.energy_sync_max_age_s,
        "host_max_power_w": settings.energy_sync_host_max_power_w,
        "vm_max_power_w": settings.energy_sync_vm_max_power_w,
        "threshold_percent": settings.energy_sync_threshold_percent,
        "threshold_watts": settings.energy_sync_threshold_watts,
        "threshold_kwh": settings.energy_sync_threshold_kwh,
        "refresh_s": settings.energy_sync_refresh_s,
        "timeout_s": settings.energy_sync_timeout_s,
    }


def _as_service_user(account: ServiceAccount, python: str, *arguments: str) -> str:
    """The script with `arguments`, run as the service account (runuser drops root's rights
    the way systemd's User= does; no shell, so nothing is expanded)."""
    script = [python, SCRIPT_PATH, "--config", CONFIG_PATH, *arguments]
    if account.user != "root":
        script = ["runuser", "-u", account.user, "--", *script]
    return " ".join(shlex.quote(part) for part in script)


def _bounded_run(command: str, limit_s: int, what: str, failure_advice: str) -> str:
    """`command` under `timeout`. Its output goes to stdout when it succeeds; when it fails
    or overruns, to stderr after one line saying what this was and before the advice (the
    script names what failed and never prints the credentials)."""
    limit_s = int(limit_s)
    overran = shlex.quote(f"{what} did not finish within {limit_s} s:")
    failed = shlex.quote(f"{what} failed:")
    return (
        f"out=$(timeout --kill-after={KILL_GRACE_S} {limit_s} {command} 2>&1); status=$?; "
        'if [ $status -eq 0 ]; then printf "%s\\n" "$out"; exit 0; fi; '
        f"{{ if [ $status -eq 124 ] || [ $status -eq 137 ]; then echo {overran}; else echo {failed}; fi; "
        f'printf "%s\\n" "$out"; echo {shlex.quote(failure_advice)}; }} >&2; exit 1'
    )


def trial_run_limit_s(settings: Settings) -> int:
    """A trial never outlasts a timer run: the service's TimeoutStartSec is the interval."""
    return settings.energy_sync_interval_s


def trial_run_command(settings: Settings, account: ServiceAccount, python: str) -> str:
    """One `--dry-run` of the installed sync as its service user: everything is read, nothing
    is written. Fails (stderr naming the cause) when Prometheus or oned cannot be used."""
    return _bounded_run(
        _as_service_user(account, python, "--dry-run"),
        trial_run_limit_s(settings),
        "the trial run of the energy sync (--dry-run)",
        "fix the cause above (energy_sync_prometheus_url, energy_sync_one_xmlrpc, the credentials in "
        "energy_sync_one_auth_file) and rerun the deploy; the timer is not started until a trial run passes",
    )


def removal_command(account: ServiceAccount, python: str) -> str:
    """`--remove-attributes` as the service user: the sync deletes its attributes from every
    host and VM carrying them, and nothing else."""
    return _bounded_run(
        _as_service_user(account, python, "--remove-attributes"),
        REMOVAL_TIMEOUT_S,
        "removing the SCAPHANDRE_* attributes from OpenNebula",
        "the energy sync was left installed (its timer stopped) so that a rerun of remove.py can finish "
        "once OpenNebula answers",
    )


def status_line(output_lines: list[str]) -> str | None:
    """The script's summary line ("status: ...") among its output, if any."""
    for line in reversed(output_lines):
        if line.startswith("status:"):
            return line
    return None
