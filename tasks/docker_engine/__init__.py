"""The Docker engine: installed only where none is present, configured before its first
start to leave the host's networking alone, enabled and running; an engine that was
there before is the operator's and is never reconfigured, restarted or removed.

plan.py chooses packages and repository per distribution, daemon_config.py what goes
into daemon.json, vm_traffic.py whether an engine's firewall stops VM traffic;
facts.py and operations.py read and check the host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, dnf, files, systemd

from tasks.docker_engine.daemon_config import (
    DAEMON_JSON,
    ENGINE_NETWORK_SETTINGS,
    DaemonConfigError,
    given_back,
    parse_daemon_json,
    render_daemon_json,
    with_engine_network_settings,
)
from tasks.docker_engine.facts import DockerEngineInstalled, VmTrafficFirewall
from tasks.docker_engine.operations import docker_engine_active
from tasks.docker_engine.plan import APT_KEYRING, DockerInstallPlan, docker_install_plan
from tasks.docker_engine.vm_traffic import docker_blocks_vm_traffic
from tasks.host_failure import UnsupportedHostError, fail_host
from tasks.install_record import InstallLedger
from tasks.install_record.record import DaemonJsonEntry, PackageManager
from tasks.settings import Settings
from tasks.text_file import (
    FileBytes,
    LiveFile,
    file_absent_unless_link,
    file_in_place,
    unusable_file_problem,
)

if TYPE_CHECKING:  # tasks.host_state reads this package's facts
    from tasks.host_state import HypervisorFound

DAEMON_JSON_ELSEWHERE = "point the link at a file, or move it aside, then rerun"


def _add_repository(package_manager: PackageManager, repository: str, gpg_key_url: str) -> None:
    if package_manager == "apt":
        files.directory(
            name="Create the apt keyring directory", path="/etc/apt/keyrings", mode="755"
        )
        files.download(name="Download Docker's repository key", src=gpg_key_url, dest=APT_KEYRING)
        apt.repo(name="Add Docker's apt repository", src=repository, filename="docker")
    else:
        dnf.repo(
            name="Add Docker's dnf repository",
            src="docker-ce",
            baseurl=repository,
            description="Docker CE",
            gpgkey=gpg_key_url,
        )


def _install_packages(plan: DockerInstallPlan) -> None:
    if plan.package_manager == "apt":
        apt.packages(
            name="Install the Docker engine",
            packages=plan.packages,
            update=True,
            cache_time=3600,
            no_recommends=plan.repository is None,
        )
    else:
        dnf.packages(name="Install the Docker engine", packages=plan.packages)


def _already_installed(plan: DockerInstallPlan) -> set[str]:
    """Packages of the plan the host had before this run (they are not the deploy's to remove)."""
    installed = host.get_fact(DebPackages if plan.package_manager == "apt" else RpmPackages) or {}
    return {package for package in plan.packages if package in installed}


def _daemon_json_now() -> tuple[LiveFile | None, dict[str, Any] | None] | None:
    """daemon.json as it is (the file, its settings); None (host failed, nothing written)
    when it cannot be merged: not a JSON object, not UTF-8, a link to nothing, not a file."""
    live = host.get_fact(FileBytes, path=DAEMON_JSON)
    try:
        problem = unusable_file_problem(DAEMON_JSON, live, DAEMON_JSON_ELSEWHERE)
        if problem:
            raise DaemonConfigError(problem)
        # Not a dict (a link to nothing) here: that is a problem above.
        file = live if isinstance(live, LiveFile) else None
        return file, parse_daemon_json(None if file is None else file.content)
    except DaemonConfigError as error:
        fail_host(name=f"Read {DAEMON_JSON}", reason=str(error))
        return None


def _install(settings: Settings, ledger: InstallLedger) -> bool:
    """Plans the engine's installation, recorded first as an intent (daemon.json as it was,
    the repository files and packages that were absent) and confirmed once it is done; False
    when the host cannot get an engine (failed, with the reason)."""
    plan = _plan(settings)
    if plan is None:
        return False
    found = _daemon_json_now()
    if found is None:
        return False
    live, existing = found
    wanted = render_daemon_json(with_engine_network_settings(existing)).encode()
    new_files = (
        [path for path in plan.repository_files if not host.get_fact(File, path=path)]
        if plan.repository
        else []
    )
    before = _already_installed(plan)
    # Before anything changes: a run cut anywhere below leaves this, and the next run (or
    # remove.py) knows what was the operator's.
    ledger.write(
        "Record what the deploy is about to install (daemon.json as it was, the packages absent)",
        ledger.record.intending_daemon_json(
            ENGINE_NETWORK_SETTINGS, existing, None if live is None else live.content, wanted
        )
        .with_repository_files(new_files)
        .intending_engine(plan.package_manager, [p for p in plan.packages if p not in before]),
    )
    # Before the packages: Debian's and Ubuntu's (and docker-ce's .deb) installation starts the
    # engine at once, and that first start must already find these settings.
    file_in_place(
        name="Configure the Docker engine to leave host networking alone (daemon.json)",
        path=DAEMON_JSON,
        content=wanted,
        setting_hint=DAEMON_JSON_ELSEWHERE,
    )
    # Docker's repository and its key are planned together (tasks/docker_engine/plan.py).
    if plan.repository and plan.gpg_key_url:
        _add_repository(plan.package_manager, plan.repository, plan.gpg_key_url)
    _install_packages(plan)
    ledger.write(
        "Confirm in the record what the deploy installed", ledger.record.with_engine_confirmed()
    )
    return True


def _plan(settings: Settings) -> DockerInstallPlan | None:
    """How this host gets an engine; None (host failed, naming the cause) when it cannot."""
    try:
        return docker_install_plan(
            host.get_fact(LinuxDistribution),
            settings.docker_install_source,
            settings.docker_ce_repo_url,
        )
    except UnsupportedHostError as error:
        fail_host(name="Check the OS can get a Docker engine", reason=str(error))
        return None


def _warn_when_it_blocks_vm_traffic(found: HypervisorFound) -> None:
    """Names, as a warning on this host, an operator's engine whose firewall drops VM traffic."""
    firewall = found.vm_traffic
    if firewall is None:  # not reported by the host's one read
        firewall = host.get_fact(VmTrafficFirewall)
    problem = docker_blocks_vm_traffic(firewall)
    if problem:
        logger.warning(
            f"{host.print_prefix}warning: the Docker engine here was not installed by this deploy and is left as "
            f"it is, but {problem}"
        )


@deploy("Docker engine")
def ensure_docker_engine(settings: Settings, ledger: InstallLedger, found: HypervisorFound) -> None:
    """Guarantees a Docker engine is installed, enabled at boot and running.

    Where none is (no dockerd: docker-ce, docker.io and moby all count) it is installed
    with daemon.json written first, so the engine never changes IP forwarding, the
    firewall or the bridges; what it installs goes into the ledger. An engine that was
    there before is the operator's: its daemon.json is not read or written and it is not
    restarted, only started when stopped; when its firewall stops VM traffic the host
    gets a warning naming cause and fix. An engine that cannot start fails the host with
    its journal's last lines.

    Decided from `found` (tasks/host_state): an engine installed, enabled and running
    plans nothing.
    """
    installed = found.engine_installed
    if installed is None:  # not reported by the host's one read
        installed = host.get_fact(DockerEngineInstalled)
    if installed:
        if not ledger.record.installed_engine:
            _warn_when_it_blocks_vm_traffic(found)
        elif not ledger.record.engine_confirmed:  # a run stopped between installing and confirming
            ledger.write(
                "Confirm in the record what the deploy installed",
                ledger.record.with_engine_confirmed(),
            )
        if found.engine_active and found.engine_enabled:
            host.noop("docker.service is enabled and running")
            return
    elif not _install(settings, ledger):
        return

    # A failed start is reported by the next operation, with the engine's own journal and the fix,
    # rather than by systemctl's "see journalctl -xe".
    start = systemd.service(
        name="Enable and start Docker",
        service="docker.service",
        running=True,
        enabled=True,
        _ignore_errors=True,
    )
    # Only after a start or enable was attempted: an engine found running needs no second look.
    docker_engine_active(
        name="Check the Docker engine runs",
        unit="docker.service",
        _if=lambda: start.did_change() or start.did_error(),
    )


def _give_back_daemon_json(entry: DaemonJsonEntry) -> None:
    """Plans daemon.json as it was before the deploy, when it is still what the deploy wrote:
    the same bytes (a link stays a link, the file its owner and mode), or no file when there
    was none; otherwise only the deploy's keys that still hold its values go, the operator's
    edits kept, and the host says so."""
    live = host.get_fact(FileBytes, path=DAEMON_JSON)
    problem = unusable_file_problem(DAEMON_JSON, live, "left as it is")
    # A dict (a link to nothing) always has a problem, and FileBytes reads the bytes of any
    # regular file.
    if not isinstance(live, LiveFile) or live.content is None or problem:
        if problem:
            logger.warning(f"{host.print_prefix}warning: {problem}")
        return
    previous = entry.previous_file
    decision = given_back(
        live.content,
        live.link,
        entry.settings,
        entry.previous,
        None if previous is None else previous.content,
        None if previous is None else previous.present,
        entry.written_sha256,
    )
    if decision.note:
        logger.warning(f"{host.print_prefix}warning: {decision.note}")
    if decision.action == "delete":
        file_absent_unless_link(
            name=f"Remove {DAEMON_JSON} (there was none before the deploy)", path=DAEMON_JSON
        )
    # "write" always comes with the bytes to write (given_back).
    elif (
        decision.action == "write"
        and decision.content is not None
        and decision.content != live.content
    ):
        file_in_place(
            name=f"Give {DAEMON_JSON} back as it was before the deploy",
            path=DAEMON_JSON,
            content=decision.content,
            setting_hint="left as it is",
        )


@deploy("Remove the Docker engine")
def remove_docker_engine(ledger: InstallLedger) -> None:
    """Guarantees the Docker engine the deploy installed is gone with what came with it: its
    packages, the deploy's keys in daemon.json (the operator's values back) and Docker's
    repository files it added. An engine that was there before the deploy stays, and the
    host says so. The engine's data (/var/lib/docker) and the dependencies the package
    manager pulled in are left to the operator."""
    record = ledger.record
    engine_present = host.get_fact(DockerEngineInstalled)
    if engine_present and not record.installed_engine:
        logger.warning(
            f"{host.print_prefix}the Docker engine here was not installed by this deploy: it stays "
            "(remove_docker_engine removes only an engine the deploy installed)"
        )
        return
    if engine_present:
        if record.package_manager == "dnf":
            dnf.packages(
                name="Remove the Docker engine",
                packages=list(record.engine_packages),
                present=False,
            )
        else:
            apt.packages(
                name="Remove the Docker engine",
                packages=list(record.engine_packages),
                present=False,
            )
    # Also after a deploy that stopped before the engine was installed: what it wrote goes.
    if record.daemon_json:
        _give_back_daemon_json(record.daemon_json)
    for path in record.repository_files:
        files.file(name=f"Remove {path}", path=path, present=False)
    ledger.write("Forget the Docker engine in the record", record.without_engine())
