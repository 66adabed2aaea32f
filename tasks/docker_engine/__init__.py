"""The Docker engine: installed only where none is present, configured before its first
start to leave the host's networking alone, enabled and running; an engine that was
there before is the operator's and is never reconfigured, restarted or removed.

plan.py chooses packages and repository per distribution, daemon_config.py what goes
into daemon.json, vm_traffic.py whether an engine's firewall stops VM traffic;
facts.py and operations.py read and check the host.
"""

from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api import deploy
from pyinfra.facts.deb import DebPackages
from pyinfra.facts.files import File, FileContents
from pyinfra.facts.rpm import RpmPackages
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import apt, dnf, files, systemd

from tasks.docker_engine.daemon_config import (
    DAEMON_JSON,
    ENGINE_NETWORK_SETTINGS,
    DaemonConfigError,
    parse_daemon_json,
    previous_values,
    render_daemon_json,
    with_engine_network_settings,
    without_engine_network_settings,
)
from tasks.docker_engine.facts import DockerEngineInstalled, VmTrafficFirewall
from tasks.docker_engine.operations import docker_engine_active
from tasks.docker_engine.plan import APT_KEYRING, DockerInstallPlan, docker_install_plan
from tasks.docker_engine.vm_traffic import docker_blocks_vm_traffic
from tasks.host_failure import UnsupportedHostError, fail_host
from tasks.install_record import InstallLedger
from tasks.install_record.record import DaemonJsonChange
from tasks.settings import Settings
from tasks.text_file import text_file


def _add_repository(plan: DockerInstallPlan) -> None:
    if plan.package_manager == "apt":
        files.directory(name="Create the apt keyring directory", path="/etc/apt/keyrings", mode="755")
        files.download(name="Download Docker's repository key", src=plan.gpg_key_url, dest=APT_KEYRING)
        apt.repo(name="Add Docker's apt repository", src=plan.repository, filename="docker")
    else:
        dnf.repo(
            name="Add Docker's dnf repository",
            src="docker-ce",
            baseurl=plan.repository,
            description="Docker CE",
            gpgkey=plan.gpg_key_url,
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


def _configure_before_first_start(ledger: InstallLedger) -> bool:
    """Plans daemon.json with the engine network settings merged into what is there, and its
    record; False (host failed, nothing written) when the existing file is not a JSON object."""
    try:
        existing = parse_daemon_json(host.get_fact(FileContents, path=DAEMON_JSON))
    except DaemonConfigError as error:
        fail_host(name=f"Read {DAEMON_JSON}", reason=str(error))
        return False
    text_file(
        name="Configure the Docker engine to leave host networking alone (daemon.json)",
        path=DAEMON_JSON,
        text=render_daemon_json(with_engine_network_settings(existing)),
    )
    change = DaemonJsonChange(dict(ENGINE_NETWORK_SETTINGS), previous_values(existing))
    ledger.write("Record the daemon.json settings the deploy made", ledger.record.with_daemon_json(change))
    return True


def _install(settings: Settings, ledger: InstallLedger) -> bool:
    """Plans the engine's installation, each part recorded once it exists; False when the host
    cannot get an engine (failed, with the reason)."""
    plan = _plan(settings)
    if plan is None:
        return False
    # Before the packages: Debian's and Ubuntu's (and docker-ce's .deb) installation starts the
    # engine at once, and that first start must already find these settings.
    if not _configure_before_first_start(ledger):
        return False
    if plan.repository:
        new_files = [path for path in plan.repository_files if not host.get_fact(File, path=path)]
        _add_repository(plan)
        ledger.write("Record Docker's repository files", ledger.record.with_repository_files(new_files))
    before = _already_installed(plan)
    _install_packages(plan)
    ledger.write(
        "Record the Docker engine packages the deploy installed",
        ledger.record.with_engine(plan.package_manager, [p for p in plan.packages if p not in before]),
    )
    return True


def _plan(settings: Settings) -> DockerInstallPlan | None:
    """How this host gets an engine; None (host failed, naming the cause) when it cannot."""
    try:
        return docker_install_plan(
            host.get_fact(LinuxDistribution), settings.docker_install_source, settings.docker_ce_repo_url
        )
    except UnsupportedHostError as error:
        fail_host(name="Check the OS can get a Docker engine", reason=str(error))
        return None


def _warn_when_it_blocks_vm_traffic() -> None:
    """Names, as a warning on this host, an operator's engine whose firewall drops VM traffic."""
    problem = docker_blocks_vm_traffic(host.get_fact(VmTrafficFirewall))
    if problem:
        logger.warning(
            f"{host.print_prefix}warning: the Docker engine here was not installed by this deploy and is left as "
            f"it is, but {problem}"
        )


@deploy("Docker engine")
def ensure_docker_engine(settings: Settings, ledger: InstallLedger) -> None:
    """Guarantees a Docker engine is installed, enabled at boot and running.

    Where none is (no dockerd: docker-ce, docker.io and moby all count) it is installed
    with daemon.json written first, so the engine never changes IP forwarding, the
    firewall or the bridges; what it installs goes into the ledger. An engine that was
    there before is the operator's: its daemon.json is not read or written and it is not
    restarted, only started when stopped; when its firewall stops VM traffic the host
    gets a warning naming cause and fix. An engine that cannot start fails the host with
    its journal's last lines.
    """
    if host.get_fact(DockerEngineInstalled):
        if not ledger.record.installed_engine:
            _warn_when_it_blocks_vm_traffic()
    elif not _install(settings, ledger):
        return

    # A failed start is reported by the next operation, with the engine's own journal and the fix,
    # rather than by systemctl's "see journalctl -xe".
    start = systemd.service(
        name="Enable and start Docker", service="docker.service", running=True, enabled=True, _ignore_errors=True
    )
    # Only after a start or enable was attempted: an engine found running needs no second look.
    docker_engine_active(
        name="Check the Docker engine runs",
        unit="docker.service",
        _if=lambda: start.did_change() or start.did_error(),
    )


def _restore_daemon_json(change: DaemonJsonChange) -> None:
    """Plans daemon.json without the keys the deploy set (previous values back); the file goes
    when nothing else is left in it. An operator's edit to one of those keys is kept."""
    try:
        current = parse_daemon_json(host.get_fact(FileContents, path=DAEMON_JSON))
    except DaemonConfigError as error:
        logger.warning(f"{host.print_prefix}warning: {DAEMON_JSON} left as it is: {error}")
        return
    if current is None:
        return
    restored = without_engine_network_settings(current, change.settings, change.previous)
    if not restored:
        files.file(name=f"Remove {DAEMON_JSON} (it held only the deploy's settings)", path=DAEMON_JSON, present=False)
    elif restored != current:
        text_file(name=f"Take the deploy's settings out of {DAEMON_JSON}", path=DAEMON_JSON,
                  text=render_daemon_json(restored))


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
            dnf.packages(name="Remove the Docker engine", packages=list(record.engine_packages), present=False)
        else:
            apt.packages(name="Remove the Docker engine", packages=list(record.engine_packages), present=False)
    # Also after a deploy that stopped before the engine was installed: what it wrote goes.
    if record.daemon_json:
        _restore_daemon_json(record.daemon_json)
    for path in record.repository_files:
        files.file(name=f"Remove {path}", path=path, present=False)
    ledger.write("Forget the Docker engine in the record", record.without_engine())
