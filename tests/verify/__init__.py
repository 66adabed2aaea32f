"""Inventory -> testinfra hosts, for the post-deploy verification suite.

The suite checks the hosts a deploy touched, so it reads the inventory exactly
as the pyinfra CLI does (``pyinfra_cli.inventory.make_inventory``, which also
applies ``group_data/`` from the current directory): the same hosts, groups,
SSH settings and defaults the deploy used.

Importing ``pyinfra_cli`` monkey-patches the whole interpreter for gevent, which
would change how paramiko, threads and signals behave in the pytest process. The
inventory is therefore read in a short-lived child interpreter that prints it as
JSON; everything else here is plain functions of that JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.scaphandre.spec import exporter_address
from tasks.settings import Settings, SettingsError

REPO_ROOT = Path(__file__).resolve().parents[2]

HYPERVISORS_GROUP = "hypervisors"
PROMETHEUS_GROUP = "prometheus"

# pyinfra's values meaning "do not check the server's host key".
_NO_HOST_KEY_CHECK = {"off", "no", "false", "0"}
INVENTORY_LOAD_TIMEOUT_S = 60
SSH_CONNECT_TIMEOUT_S = 10
SSH_CONFIG_NAME = "verify_ssh_config"


class InventoryLoadError(Exception):
    """The inventory could not be read; the message says which file and why."""


@dataclass(frozen=True)
class InventoryHost:
    """One host of the inventory as the deploy saw it: name, groups and merged data."""

    name: str
    groups: tuple[str, ...]
    # Host data may hold SSH passwords: never shown in a repr or a test id.
    data: dict[str, Any] = field(repr=False, compare=False)


@dataclass(frozen=True)
class VerifyHost:
    """An inventory host plus how testinfra reaches it.

    ``hostspec`` and ``backend_kwargs`` go to ``testinfra.get_host(hostspec, **backend_kwargs)``.
    """

    name: str
    groups: tuple[str, ...]
    hostspec: str = field(repr=False)
    backend_kwargs: dict[str, Any] = field(repr=False, compare=False)
    data: dict[str, Any] = field(repr=False, compare=False)

    def in_group(self, group: str) -> bool:
        return group in self.groups


# --------------------------------------------------------------------------- reading


def _dump_inventory(inventory_path: str) -> None:
    """Child side: print the inventory (name, groups, data of each host) as JSON on stdout.

    Runs in its own interpreter because pyinfra_cli patches the stdlib for gevent.
    The current directory is the caller's, so group_data/ is found as the CLI finds it.
    """
    import logging

    logging.disable(logging.WARNING)  # pyinfra's "alpha" notices would only be noise
    from pyinfra.api import State
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    # The CLI sets a State before loading: pyinfra's file executor records into it.
    ctx_state.set(State(check_for_changes=False))
    try:
        inventory = make_inventory(inventory_path, cwd=os.getcwd())
    # Any error of the inventory file's own code: pyinfra wraps it; show the original, in one line.
    except Exception as error:  # noqa: BLE001
        cause = getattr(error, "exception", error)
        where = getattr(error, "filename", inventory_path)
        sys.stderr.write(f"{where}: {type(cause).__name__}: {cause}\n")
        sys.exit(1)
    hosts = [
        {
            "name": host.name,
            "groups": [str(group) for group in host.groups],
            "data": host.data.dict(),
        }
        for host in inventory
    ]
    # default=str: Path objects and the like become the strings pyinfra would use anyway.
    json.dump(hosts, sys.stdout, default=str)


def read_inventory(inventory_path: str, *, cwd: str | None = None) -> list[InventoryHost]:
    """Every host of the inventory file with its groups and merged host data.

    ``cwd`` (default: the current directory) plays the role of the directory the
    pyinfra CLI is run from: its group_data/ applies. Raises InventoryLoadError
    naming the file when it is missing or pyinfra cannot load it.
    """
    workdir = Path(cwd or os.getcwd())
    path = Path(inventory_path)
    if not (workdir / path).is_file():
        raise InventoryLoadError(f"inventory file {inventory_path} not found (looked in {workdir})")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), str(workdir), env.get("PYTHONPATH")])
    )
    code = "import sys; from tests.verify import _dump_inventory; _dump_inventory(sys.argv[1])"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=INVENTORY_LOAD_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InventoryLoadError(
            f"loading inventory {inventory_path} took more than {INVENTORY_LOAD_TIMEOUT_S} s"
        ) from None
    if done.returncode != 0:
        last_line = (done.stderr.strip().splitlines() or ["no error text"])[-1]
        raise InventoryLoadError(f"pyinfra could not load inventory {inventory_path}: {last_line}")
    try:
        listed = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise InventoryLoadError(
            f"inventory {inventory_path} did not load as a host list"
        ) from None
    return [InventoryHost(item["name"], tuple(item["groups"]), item["data"]) for item in listed]


# --------------------------------------------------------------------------- testinfra


def _ssh_host_port(hostname: str, port: int) -> str:
    # An IPv6 literal needs brackets, or its colons read as the port separator.
    shown = f"[{hostname}]" if ":" in hostname else hostname
    return f"{shown}:{port}"


def skips_host_key_check(data: dict[str, Any]) -> bool:
    """True when the host data tells pyinfra not to check the SSH host key."""
    strict = str(data.get("ssh_strict_host_key_checking") or "").strip().lower()
    return strict in _NO_HOST_KEY_CHECK


def write_ssh_config(directory: Path) -> Path:
    """An ssh_config that accepts any host key and remembers none, for hosts that ask for that.

    testinfra's paramiko backend reads StrictHostKeyChecking from such a file
    (and otherwise accepts unknown keys with a warning); UserKnownHostsFile is
    there for any reader that honours it, as pyinfra's ssh_known_hosts_file does.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / SSH_CONFIG_NAME
    path.write_text("Host *\n    StrictHostKeyChecking no\n    UserKnownHostsFile /dev/null\n")
    return path


def to_verify_host(host: InventoryHost, ssh_config_dir: Path) -> VerifyHost:
    """How testinfra reaches this host, from the same data keys pyinfra's connectors use.

    ``@local`` -> local backend; ``@docker/ID`` -> docker backend; anything else is
    SSH through paramiko: ssh_hostname (default: the inventory name), ssh_port
    (22), ssh_user (paramiko's default: the local user), ssh_key, ssh_password,
    ssh_config_file, ssh_strict_host_key_checking, and ``_sudo`` for the commands.
    """
    data = host.data
    kwargs: dict[str, Any] = {}
    if data.get("_sudo"):
        kwargs["sudo"] = True
        if data.get("_sudo_user"):
            kwargs["sudo_user"] = str(data["_sudo_user"])
    if host.name == "@local":
        return VerifyHost(host.name, host.groups, "local://", kwargs, data)
    if host.name.startswith("@docker/"):
        return VerifyHost(
            host.name, host.groups, f"docker://{host.name.split('/', 1)[1]}", kwargs, data
        )
    if host.name.startswith("@"):
        raise InventoryLoadError(
            f"host {host.name}: the verification suite reaches hosts over SSH, @local or @docker only"
        )

    hostname = str(data.get("ssh_hostname") or host.name)
    port = int(data.get("ssh_port") or 22)
    credentials = ""
    if data.get("ssh_user"):
        credentials = urllib.parse.quote(str(data["ssh_user"]), safe="")
        if data.get("ssh_password"):
            credentials += ":" + urllib.parse.quote(str(data["ssh_password"]), safe="")
        credentials += "@"
    hostspec = f"paramiko://{credentials}{_ssh_host_port(hostname, port)}"

    kwargs["timeout"] = SSH_CONNECT_TIMEOUT_S
    if data.get("ssh_key"):
        kwargs["ssh_identity_file"] = os.path.expanduser(str(data["ssh_key"]))
    if skips_host_key_check(data):
        kwargs["ssh_config"] = str(write_ssh_config(ssh_config_dir))
    elif data.get("ssh_config_file"):
        kwargs["ssh_config"] = os.path.expanduser(str(data["ssh_config_file"]))
    return VerifyHost(host.name, host.groups, hostspec, kwargs, data)


def load_verify_hosts(
    inventory_path: str, *, ssh_config_dir: Path, cwd: str | None = None
) -> list[VerifyHost]:
    """Every inventory host with its testinfra connection, in inventory order."""
    return [
        to_verify_host(host, ssh_config_dir) for host in read_inventory(inventory_path, cwd=cwd)
    ]


# --------------------------------------------------------------------------- expectations


def settings_of(host: VerifyHost | InventoryHost) -> Settings:
    """The host's settings as the deploy checks them; the test fails naming a bad key."""
    try:
        return Settings.from_data(host.data)
    except SettingsError as error:
        raise AssertionError(f"{host.name}: {error}") from None


def scrape_address(hypervisor: VerifyHost) -> str:
    """host:port Prometheus scrapes for this hypervisor, as the deploy writes it."""
    return exporter_address(settings_of(hypervisor), hypervisor.name)


def http_get_command(url: str, *, timeout_s: int = 10) -> str:
    """A shell command printing the body of an HTTP GET of ``url`` on a host, exit status 0 on success.

    curl when the host has it, else python3, else bash's /dev/tcp (plain http only;
    the reply's headers are then stripped). Bounded by ``timeout`` in every case.
    """
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or "localhost"
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    path = (parsed.path or "/") + (f"?{parsed.query}" if parsed.query else "")
    quoted = _shell_quote(url)
    python = (
        "import sys, urllib.request; "
        f"sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout={timeout_s}).read().decode())"
    )
    raw_request = f"GET {path} HTTP/1.0\\r\\nHost: {host}\\r\\n\\r\\n"
    # Status line checked like curl -f does; then headers (up to the blank line) dropped.
    bash_tcp = (
        f"exec 3<>/dev/tcp/{host}/{port} && printf '{raw_request}' >&3 && read -r status <&3 && "
        'case "$status" in "HTTP/"*" 2"??" "*) ;; *) echo "HTTP status: $status" >&2; exit 22;; esac && '
        "sed '1,/^\\r\\{0,1\\}$/d' <&3"
    )
    return (
        "if command -v curl >/dev/null 2>&1; then "
        f"timeout {timeout_s + 5} curl -fsS --max-time {timeout_s} {quoted}; "
        "elif command -v python3 >/dev/null 2>&1; then "
        f"timeout {timeout_s + 5} python3 -c {_shell_quote(python)} {quoted}; "
        f"else timeout {timeout_s + 5} bash -c {_shell_quote(bash_tcp)}; fi"
    )


def _shell_quote(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


# --------------------------------------------------------------------------- on a host


@dataclass
class Node:
    """One inventory host under test: its inventory name, merged host data and testinfra host."""

    name: str
    data: dict[str, Any] = field(repr=False)
    host: Any = field(repr=False)  # testinfra.host.Host

    @property
    def settings(self) -> Settings:
        """Its settings, read and checked as the deploy reads them."""
        return settings_of(self)


def fetch_url(node: Node, url: str) -> tuple[bool, str]:
    """(True, body) of an HTTP GET run on the node itself, or (False, what went wrong)."""
    result = node.host.run(http_get_command(url))
    if result.rc != 0:
        return False, (
            result.stderr.strip() or result.stdout.strip() or f"exit status {result.rc}"
        )[-500:]
    return True, result.stdout
