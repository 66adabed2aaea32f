"""The one fact read from every hypervisor and Prometheus server: a single shell command
that prints, section by section, what the deploy's steps decide on.

Each section is the command of the fact it stands in for (or the same reading written for
a path only the host knows), so parse.py reads it with that fact's own parser. Sections
that cost a process or two and are rarely needed are printed only when the record (read
first, under the host's lock) does not already answer them; what parse.py does not find
is read again by the step that needs it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass

from pyinfra.api import FactBase

from tasks.docker_engine.facts import DockerEngineInstalled
from tasks.docker_engine.vm_traffic import COLLECT_COMMAND
from tasks.energy_sync.facts import EnergySyncFrontend
from tasks.energy_sync.plan import SCRIPT_DIR, TIMER_UNIT
from tasks.host_state.parse import SECTION_MARK, HostFound, parse_host_state
from tasks.install_record.lock import LockRequest, try_lock_and_read_record
from tasks.prometheus import operations as prometheus_operations
from tasks.prometheus.facts import PrometheusServer
from tasks.rapl.facts import RaplProbe
from tasks.rapl.plan import MODULES_LOAD_FILE
from tasks.scaphandre.facts import RegistryLoginState

DOCKER_UNIT = "docker.service"


@dataclass(frozen=True)
class HypervisorQuery:
    """What the hypervisor steps need to know beyond fixed paths: the exporter's container and
    image, whether the image must be looked at even when the record lists it (it is loaded
    from an archive when missing), and the registry login to check (None: no login)."""

    container: str
    image: str
    image_always: bool = False
    registry: str | None = None
    registry_marker: str | None = None


@dataclass(frozen=True)
class PrometheusQuery:
    """What the Prometheus steps need to know: how PrometheusServer finds the server, the
    targets and rules files (None: beside prometheus.yml, as the layout places them; rules
    None when not shipped), the energy sync's files and credentials file (when it is on)."""

    candidates: tuple[tuple[str, str], ...]
    binaries: tuple[str, ...]
    promtools: tuple[str, ...]
    config_file: str | None = None
    service: str | None = None
    targets_file: str | None = None
    rules: bool = True
    rules_file: str | None = None
    energy_sync_files: tuple[str, ...] = ()
    energy_sync_credentials: str | None = None


def _section(name: str) -> str:
    return f"echo {shlex.quote(SECTION_MARK + name)}"


def _unit_lines(unit: str) -> str:
    """`systemctl show` of `unit` as pyinfra's SystemdStatus and SystemdEnabled read it."""
    return (
        "if command -v systemctl >/dev/null 2>&1; then systemctl show --all --property Id "
        f"--property SubState --property UnitFileState {shlex.quote(unit)} 2>/dev/null; fi"
    )


def _in_record(text: str) -> str:
    """A shell test: the record file ($record, set by the record's section) holds `text` as a
    JSON string (a hint only: the steps decide from the record itself, and read what a wrong
    hint left out)."""
    return f'grep -qF -- {shlex.quote(json.dumps(text))} "$record" 2>/dev/null'


def hypervisor_lines(query: HypervisorQuery) -> list[str]:
    """The hypervisor's sections: RAPL, the modules-load file, the Docker engine, and the
    exporter's container, image, registry login and VM-traffic firewall where they matter."""
    modules_load = shlex.quote(MODULES_LOAD_FILE)
    container, image = shlex.quote(query.container), shlex.quote(query.image)
    image_wanted = "true" if query.image_always else f"! {_in_record(query.image)}"
    lines = [
        _section("rapl"),
        f"( {RaplProbe().command()} )",
        _section("modules_load"),
        (
            f'( f={modules_load}; if [ -L "$f" ]; then echo state=other; '
            'elif [ -f "$f" ]; then echo state=file; stat --printf \'mode=%a\\n\' -- "$f"; '
            'd=$(sha256sum < "$f") && echo "sha256=${d%% *}"; '
            'elif [ -e "$f" ]; then echo state=other; else echo state=absent; fi )'
        ),
        _section("engine"),
        DockerEngineInstalled().command(),
        "if command -v dockerd >/dev/null 2>&1; then",
        f"  {_section('engine_unit')}; {_unit_lines(DOCKER_UNIT)}",
        "  if command -v docker >/dev/null 2>&1; then",
        f"    {_section('container')}; docker container inspect {container} 2>/dev/null || true",
        (
            f"    if {image_wanted}; then {_section('image')}; "
            f"docker image inspect {image} 2>/dev/null || true; fi"
        ),
        "  fi",
        # An engine the deploy did not install: whether its firewall stops VM traffic.
        f"  if ! {_in_record('engine')}; then {_section('vm_traffic')}; ( {COLLECT_COMMAND} ); fi",
        "fi",
    ]
    if query.registry and query.registry_marker:
        login = RegistryLoginState().command(query.registry, query.registry_marker)
        lines += [_section("registry"), f"( {login} )"]
    return lines


# What is at one path, as FilesAt reports it, under the path itself (base64) rather than an
# index, with the owner, group and mode of a file: $1 the path, $2 "1" to print its bytes.
_FOUND_FILE = r"""found_file() {
  printf 'file='; printf '%s' "$1" | base64 -w 0; echo
  if [ -L "$1" ]; then echo link=1; fi
  if [ ! -e "$1" ] && [ ! -L "$1" ]; then echo state=absent
  elif [ ! -f "$1" ]; then echo state=other
  else
    echo state=file; d=$(sha256sum < "$1") && echo "sha256=${d%% *}"
    stat -L --printf 'owner=%U\ngroup=%G\nmode=%a\n' -- "$1"
    printf 'head='; head -n 3 -- "$1" | base64 -w 0; echo
    if [ "$2" = 1 ]; then printf 'content='; base64 -w 0 < "$1"; echo; fi
  fi
}"""

# prometheus.yml as PrometheusConfigFile would judge it, without its bytes: the deploy's
# record of it and its reload marker are named by the first 16 hex digits of the SHA-256
# of its path (tasks/prometheus/operations.py, config_files).
_CONFIG_FILE = r"""printf 'path='; printf '%%s' "$config" | base64 -w 0; echo
key=$(printf '%%s' "$config" | sha256sum | cut -c1-16)
if [ ! -e "$config" ]; then
  if [ -L "$config" ]; then echo state=dangling; else echo state=absent; fi
elif [ ! -f "$config" ]; then echo state=other
else echo state=file; d=$(sha256sum < "$config") && echo "sha256=${d%%%% *}"; fi
r=%(state_dir)s/$key.record
if [ -f "$r" ]; then printf 'record='; head -n 1 -- "$r" | base64 -w 0; echo; fi
if [ -e %(state_dir)s/"$key".reload-pending ]; then echo reload_pending=1; fi"""


def _path_or_beside_config(path: str | None, name: str) -> str:
    """A path for the shell: the setting's, or `name` in prometheus.yml's directory ($dir)."""
    return shlex.quote(path) if path else f'"$dir"/{shlex.quote(name)}'


def prometheus_lines(query: PrometheusQuery) -> list[str]:
    """The Prometheus server's sections: the server (PrometheusServer), every file the deploy
    writes here, prometheus.yml as its record knows it, and the energy sync's state."""
    server = PrometheusServer().command(
        candidates=query.candidates,
        binaries=query.binaries,
        promtools=query.promtools,
        config_file=query.config_file,
        service=query.service,
    )
    files = [f"found_file {_path_or_beside_config(query.targets_file, 'scaphandre_targets.yml')} 1"]
    if query.rules:
        rules = _path_or_beside_config(query.rules_file, "scaphandre_rules.yml")
        files.append(f"found_file {rules} 0")
    files += [f"found_file {shlex.quote(path)} 0" for path in query.energy_sync_files]
    lines = [
        "(",
        _section("prometheus_server"),
        server,
        'if [ -n "$config" ]; then',
        'dir=$(dirname -- "$config")',
        _FOUND_FILE,
        _section("prometheus_files"),
        *files,
        _section("prometheus_config"),
        _CONFIG_FILE % {"state_dir": shlex.quote(prometheus_operations.PROMETHEUS_STATE_DIR)},
        "fi",
    ]
    if query.energy_sync_credentials is not None:
        script_dir = shlex.quote(SCRIPT_DIR)
        lines += [
            _section("energy_frontend"),
            f"( {EnergySyncFrontend().command(query.energy_sync_credentials)} )",
            _section("energy_timer"),
            _unit_lines(TIMER_UNIT),
            _section("energy_script_dir"),
            (
                f"if [ -d {script_dir} ] && [ ! -L {script_dir} ]; then "
                f"stat --printf 'owner=%U\\ngroup=%G\\nmode=%a\\n' -- {script_dir}; fi"
            ),
        ]
    return [*lines, ")"]


class HostState(FactBase[HostFound]):
    """Everything a run decides on for this host, in one round trip: the install record,
    read after trying to take the host's lock (`lock`; None: no lock, for --dry; see
    tasks/install_record/lock.py), then, under that lock, the hypervisor's state
    (`hypervisor`) and the Prometheus server's (`prometheus`) when the host takes them.
    Returns a parse.HostFound."""

    def command(
        self,
        lock: LockRequest | None = None,
        hypervisor: HypervisorQuery | None = None,
        prometheus: PrometheusQuery | None = None,
    ) -> str:
        lines = [_section("record"), try_lock_and_read_record(lock)]
        if hypervisor is not None:
            lines += hypervisor_lines(hypervisor)
        if prometheus is not None:
            lines += prometheus_lines(prometheus)
        return "\n".join([*lines, "true"])

    def process(self, output: list[str]) -> HostFound:
        return parse_host_state(output, TIMER_UNIT)
