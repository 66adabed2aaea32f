"""Energy back into OpenNebula (opt-in): a timer on a Prometheus server that writes each
host's and VM's power and 24 h energy into their OpenNebula templates.

The job itself is files/opennebula/scaphandre_energy_sync.py with its systemd units and
config (files/opennebula/*.j2). plan.py says where they go and who runs them, facts.py
reads the server; the steps below install and remove them.
"""

from __future__ import annotations

from collections.abc import Callable
from io import StringIO
from typing import TYPE_CHECKING, Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.api.operation import OperationMeta
from pyinfra.facts.systemd import SystemdStatus
from pyinfra.operations import files, python, server, systemd

from tasks.energy_sync.facts import EnergySyncFrontend, EnergySyncInstalled
from tasks.energy_sync.plan import (
    CONFIG_DIR,
    CONFIG_PATH,
    SCRIPT_DIR,
    SCRIPT_DIR_MODE,
    SCRIPT_PATH,
    SERVICE_PATH,
    SERVICE_UNIT,
    TIMER_PATH,
    TIMER_UNIT,
    energy_sync_paths,
    file_owners,
    frontend_problems,
    installed_as_wanted,
    removal_command,
    rendered_files,
    service_account,
    status_line,
    trial_run_command,
)
from tasks.host_failure import fail_host
from tasks.install_record import InstallLedger, remove_recorded_files
from tasks.install_record.facts import FoundFile
from tasks.install_record.record import sha256_of
from tasks.settings import Settings

if TYPE_CHECKING:  # tasks.host_state reads this package's facts
    from tasks.host_state.parse import EnergySyncFound


def any_changed(*operations: OperationMeta) -> Callable[[], bool]:
    """An `_if` condition: true when any of `operations` changed its host as it ran (pyinfra's
    helper of that name is undocumented; OperationMeta.did_change is its public API)."""
    return lambda: any(operation.did_change() for operation in operations)


def _show_status(what: str, run: OperationMeta) -> None:
    """Prints the status line a finished run of the script printed, for this host."""
    line = status_line(run.stdout_lines) or "no status line (see the operation's output)"
    logger.info(f"{host.print_prefix}{what}: {line}")


@deploy("Energy back into OpenNebula")
def install_energy_sync(
    settings: Settings,
    ledger: InstallLedger,
    found: dict[str, FoundFile],
    state: EnergySyncFound | None = None,
) -> None:
    """Guarantees, when `energy_sync` is on, that this Prometheus server runs the energy
    sync every `energy_sync_interval_s` as oneadmin (root where there is none): the script,
    its config (root:oneadmin 0640, which names the credentials file, never its content),
    the service and timer units, systemd reloaded only when a unit changed, and the timer
    enabled and running. Each file is recorded as the deploy's before it is written
    (`found`: what is at its path now, already checked to be the deploy's).

    Before anything is written the host fails, saying what to fix, when the service user
    cannot read the credentials file or there is no Python 3.6+. After any change, and
    whenever the timer is not running yet, the script runs once with --dry-run as the
    service user and its status line is shown; if that trial fails (Prometheus or oned
    unusable) the host fails with the script's own message and the timer is not started.

    `state` is what the host's one read said of the sync (tasks/host_state; None: not
    reported, read here): every file, its directory and the timer already as wanted plans
    nothing. With `energy_sync` off this reads nothing and plans nothing.
    """
    if not settings.energy_sync:
        return
    frontend = (
        state.frontend
        if state is not None
        else host.get_fact(EnergySyncFrontend, credentials_file=settings.energy_sync_one_auth_file)
    )
    problems = frontend_problems(frontend, settings)
    if problems:
        fail_host(name="Check what the energy sync needs", reason="; ".join(problems))
        return
    account = service_account(frontend)
    texts = rendered_files(settings, account, frontend["python"])
    if state is not None and installed_as_wanted(
        found,
        texts,
        account,
        frontend,
        state.script_dir,
        state.timer_active and state.timer_enabled,
    ):
        host.noop(f"the energy sync's files are as wanted and {TIMER_UNIT} runs")
        return
    changing = {
        path: sha256_of(text.encode())
        for path, text in texts.items()
        if found.get(path, FoundFile("absent")).sha256 != sha256_of(text.encode())
    }
    ledger.write(
        "Record the energy sync's files the deploy is about to write",
        ledger.record.intending_files(changing),
    )

    owners = file_owners(account)

    def put(name: str, path: str) -> OperationMeta:
        user, group, mode = owners[path]
        return files.put(
            name=name,
            src=StringIO(texts[path]),
            dest=path,
            user=user,
            group=group,
            mode=mode,
            create_remote_dir=False,
        )

    files.directory(
        name="Directory for the energy sync script",
        path=SCRIPT_DIR,
        user="root",
        group="root",
        mode=SCRIPT_DIR_MODE,
    )
    script = put("Install the energy sync script", SCRIPT_PATH)
    if frontend.get("config_dir") != "yes":
        files.directory(
            name=f"Create {CONFIG_DIR}",
            path=CONFIG_DIR,
            user="root",
            group=account.group,
            mode=account.config_dir_mode,
        )
    config = put(f"Write the energy sync's config {CONFIG_PATH}", CONFIG_PATH)
    service = put(f"Install {SERVICE_UNIT}", SERVICE_PATH)
    timer = put(f"Install {TIMER_UNIT}", TIMER_PATH)
    ledger.write(
        "Confirm in the record the energy sync's files the deploy wrote",
        ledger.record.with_files_confirmed(list(changing)),
    )
    systemd.daemon_reload(
        name="Reload systemd for the energy sync's units", _if=any_changed(service, timer)
    )

    # Tried after any change, and before the timer is started: a running timer means a run
    # that passed before (or a timer started by hand), a stopped one may be a failed trial.
    timer_running = host.get_fact(SystemdStatus, services=[TIMER_UNIT]).get(TIMER_UNIT, False)
    when: dict[str, Any] = (
        {"_if": any_changed(script, config, service, timer)} if timer_running else {}
    )
    trial = server.shell(
        name=f"Try the energy sync once (--dry-run, as {account.user})",
        commands=[trial_run_command(settings, account, frontend["python"])],
        **when,
    )
    python.call(
        name="Show the trial run's status line",
        function=_show_status,
        what="energy sync trial run",
        run=trial,
        _if=trial.did_change,
    )

    # A running timer keeps the period it started with: restarted when its unit changes.
    systemd.service(
        name=f"Enable and start {TIMER_UNIT}",
        service=TIMER_UNIT,
        running=True,
        enabled=True,
        restarted=timer.will_change,
    )


@deploy("Remove the energy sync")
def remove_energy_sync(settings: Settings, ledger: InstallLedger) -> None:
    """Guarantees the energy sync the deploy installed is gone from this server, and its
    attributes from OpenNebula; only what the record lists is touched.

    In this order: the timer stopped and disabled (and a run in progress stopped) when its
    units are the deploy's, the attributes deleted from every host and VM by the script
    itself (--remove-attributes, as the service user, while the deploy's script and config
    are still there), then each of its files that still holds what the deploy wrote (a
    file changed since stays, and the host says so; systemd reloaded for the units). If
    OpenNebula refuses or cannot be reached, the host fails with the script's message and
    the files stay, so a rerun of remove.py can finish. Nothing is planned where nothing of
    the sync is recorded.
    """
    paths = [managed.path for managed in energy_sync_paths(settings, always=True)]
    recorded = {path for path in paths if path in ledger.record.files}
    found = host.get_fact(EnergySyncInstalled)
    installed = found["installed"] & recorded
    if not recorded:
        unlisted = found["installed"]
        # Files of the sync the record does not list: an earlier version's, or the operator's.
        if unlisted:
            remove_recorded_files(ledger=ledger, paths=sorted(unlisted))
        else:
            host.noop("the energy sync is not installed")
        return
    if installed & {SERVICE_PATH, TIMER_PATH}:
        systemd.service(
            name=f"Stop and disable {TIMER_UNIT}", service=TIMER_UNIT, running=False, enabled=False
        )
        # Unconditionally, after the timer stopped: a run the timer started meanwhile must not
        # write behind the removal (systemd reports a oneshot in progress as not running).
        server.shell(
            name=f"Stop a run of {SERVICE_UNIT} that may be in progress",
            commands=[f"systemctl stop {SERVICE_UNIT}"],
        )
    if {SCRIPT_PATH, CONFIG_PATH} <= installed:
        if not found.get("python"):
            fail_host(
                name="Remove the energy sync's attributes from OpenNebula",
                reason="cannot remove the SCAPHANDRE_* attributes from OpenNebula: no Python 3.6 or later "
                "on this server to run the energy sync; install python3 and rerun remove.py",
            )
            return
        account = service_account(found)
        removal = server.shell(
            name=f"Remove the SCAPHANDRE_* attributes from OpenNebula (as {account.user})",
            commands=[removal_command(account, found["python"])],
        )
        python.call(
            name="Show the removal's status line",
            function=_show_status,
            what="energy sync attributes removed",
            run=removal,
            _if=removal.did_change,
        )
    else:
        logger.warning(
            f"{host.print_prefix}the energy sync's script or config is missing, so its SCAPHANDRE_* "
            "attributes were not removed from OpenNebula (onehost update / onevm update can)"
        )
    remove_recorded_files(ledger=ledger, paths=paths)
    if installed & {SERVICE_PATH, TIMER_PATH}:
        systemd.daemon_reload(name="Reload systemd without the energy sync's units")
        server.shell(
            name="Forget the energy sync's last result",
            commands=[f"systemctl reset-failed {SERVICE_UNIT} {TIMER_UNIT} 2>/dev/null || true"],
        )
    server.shell(
        name="Remove the energy sync script's directory when it is empty",
        commands=[f"rmdir -- {SCRIPT_DIR} 2>/dev/null || true"],
    )
