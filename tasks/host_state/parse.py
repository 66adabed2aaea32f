"""What the one read of a host (facts.py) printed, as plain data: the output split into its
sections and each section parsed, with the parsers of the facts it stands in for.

A value the host did not report is None: the step that needs it then plans pyinfra's own
operation (or reads the fact) as it would without this read, so a section left out, or
one that cannot be read, costs a round trip and never a wrong decision.

Plain functions and data: no pyinfra state, no I/O; the unit tests give them captured
outputs.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyinfra.api.exceptions import FactProcessError
from pyinfra.facts.systemd import SystemdEnabled, SystemdStatus

from tasks.docker_engine.facts import DockerEngineInstalled
from tasks.docker_engine.vm_traffic import VmTrafficState, parse_vm_traffic_state
from tasks.energy_sync.facts import EnergySyncFrontend, key_values
from tasks.install_record.facts import FoundFile, InstallRecordFile, RecordRead, found_file
from tasks.prometheus.facts import PrometheusServer
from tasks.rapl.facts import RaplHost, RaplProbe
from tasks.scaphandre.facts import RegistryLoginState

# Never the start of a line any section prints (key=value, base64, JSON, iptables -S).
SECTION_MARK = "@@section "


def split_sections(lines: Iterable[str]) -> dict[str, list[str]]:
    """Section name -> its lines, in the order printed; lines before the first mark are dropped."""
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in lines:
        if line.startswith(SECTION_MARK):
            current = sections.setdefault(line[len(SECTION_MARK) :].strip(), [])
        elif current is not None:
            current.append(line)
    return sections


def _decoded(value: str) -> str:
    return base64.b64decode(value).decode("utf-8", "surrogateescape")


def _json(lines: Sequence[str]) -> list[Any] | None:
    """`docker … inspect` output as pyinfra's Docker facts read it; None when it is not JSON (an
    engine that did not answer)."""
    try:
        value = json.loads("".join(lines))
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _unit_state(lines: Sequence[str] | None, unit: str) -> tuple[bool | None, bool | None]:
    """(active, enabled) of `unit` from `systemctl show` output, as pyinfra's SystemdStatus and
    SystemdEnabled read it (a unit they do not list is neither); None when not reported."""
    if not lines:
        return None, None
    active = SystemdStatus().process(lines).get(unit)
    return bool(active), bool(SystemdEnabled().process(lines).get(unit))


# --------------------------------------------------------------------------- hypervisor


@dataclass(frozen=True)
class FileState:
    """A small file the deploy writes whole: 'absent', 'file' (a regular file, not a link) or
    'other' (a link, a directory ...), with a file's octal mode and SHA-256."""

    state: str
    mode: str | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class HypervisorFound:
    """What the hypervisor steps decide on. None: not reported (see the module docstring)."""

    rapl: RaplHost | None = None
    modules_load: FileState | None = None  # the RAPL modules-load file
    engine_installed: bool | None = None  # dockerd on the PATH
    engine_active: bool | None = None  # docker.service running, as pyinfra's SystemdStatus says
    engine_enabled: bool | None = None  # ... enabled, as SystemdEnabled says
    container: list[Any] | None = None  # `docker container inspect` of the exporter ([]: none)
    # `docker image inspect` of its image ([]: not there); read when the record does not list it
    image: list[Any] | None = None
    registry_login: dict[str, Any] | None = (
        None  # RegistryLoginState, when a registry login is configured
    )
    vm_traffic: VmTrafficState | None = None  # read when the engine is not recorded as the deploy's


def _file_state(lines: Sequence[str]) -> FileState | None:
    fields = key_values(lines)
    if "state" not in fields:
        return None
    return FileState(fields["state"], fields.get("mode"), fields.get("sha256"))


def _rapl(lines: Sequence[str] | None) -> RaplHost | None:
    """RaplProbe's reading; None when the section is missing or cut short (its kernel line,
    always printed, is not there)."""
    if lines is None or not any(line.startswith("kernel=") for line in lines):
        return None
    return RaplProbe().process(lines)


def parse_hypervisor(sections: dict[str, list[str]]) -> HypervisorFound:
    get = sections.get
    engine = get("engine")
    active, enabled = _unit_state(get("engine_unit"), "docker.service")
    return HypervisorFound(
        rapl=_rapl(get("rapl")),
        modules_load=_file_state(sections["modules_load"]) if "modules_load" in sections else None,
        engine_installed=DockerEngineInstalled().process(engine) if engine else None,
        engine_active=active,
        engine_enabled=enabled,
        container=_json(sections["container"]) if "container" in sections else None,
        image=_json(sections["image"]) if "image" in sections else None,
        registry_login=(
            RegistryLoginState().process(sections["registry"]) if "registry" in sections else None
        ),
        vm_traffic=(
            parse_vm_traffic_state(sections["vm_traffic"]) if "vm_traffic" in sections else None
        ),
    )


# --------------------------------------------------------------------------- Prometheus server


@dataclass(frozen=True)
class ConfigFileFound:
    """prometheus.yml as the one read saw it, without its bytes: 'absent', 'dangling' (a link
    to nothing), 'other' (not a regular file) or 'file' with its SHA-256; the first line of
    the deploy's record of it, and whether a reload of it is still unconfirmed."""

    path: str
    state: str
    sha256: str | None = None
    record_line: str | None = None
    reload_pending: bool = False

    def unchanged_since_recorded(self, fingerprint: str) -> bool:
        """True when the deploy wrote or checked this very file for the request `fingerprint`
        (tasks/prometheus/edit_request.py) and no reload is waiting: nothing to do."""
        return (
            self.state == "file"
            and bool(self.sha256)
            and bool(fingerprint)
            and not self.reload_pending
            and self.record_line == f"{self.sha256} {fingerprint}"
        )


@dataclass(frozen=True)
class EnergySyncFound:
    """What the energy sync's step decides on (its files are among PrometheusFound.files)."""

    frontend: dict[str, str]  # EnergySyncFrontend: account, python, credentials, config_dir
    timer_active: bool | None = None
    timer_enabled: bool | None = None
    script_dir: dict[str, str] | None = None  # owner, group, mode of a real directory, or None


@dataclass(frozen=True)
class PrometheusFound:
    """What the Prometheus steps decide on. `files`: each path the deploy writes here, by path."""

    server: dict[str, Any]
    files: dict[str, FoundFile] = field(default_factory=dict)
    config: ConfigFileFound | None = None
    energy_sync: EnergySyncFound | None = None

    def files_at(
        self, paths: Sequence[str], with_content: Sequence[str] = ()
    ) -> dict[str, FoundFile] | None:
        """What is at each of `paths` (with the bytes of those in `with_content` that are files),
        or None when the read did not cover them all."""
        found = {path: self.files[path] for path in paths if path in self.files}
        if len(found) != len(paths):
            return None
        if any(
            found[path].state == "file" and found[path].content is None for path in with_content
        ):
            return None
        return found

    def config_at(self, path: str) -> ConfigFileFound | None:
        return self.config if self.config is not None and self.config.path == path else None


def _files_by_path(lines: Sequence[str]) -> dict[str, FoundFile]:
    blocks: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in lines:
        key, _, value = line.partition("=")
        if key == "file":
            current = blocks.setdefault(_decoded(value.strip()), {})
        else:
            current[key] = value.strip()
    return {path: found_file(fields) for path, fields in blocks.items()}


def _config_file(lines: Sequence[str]) -> ConfigFileFound | None:
    fields = key_values(lines)
    if "path" not in fields or "state" not in fields:
        return None
    record = fields.get("record")
    record_line = None if record is None else _decoded(record)
    return ConfigFileFound(
        path=_decoded(fields["path"]),
        state=fields["state"],
        sha256=fields.get("sha256"),
        record_line=None if record_line is None else record_line.rstrip("\n"),
        reload_pending=fields.get("reload_pending") == "1",
    )


def parse_prometheus(sections: dict[str, list[str]], timer_unit: str) -> PrometheusFound | None:
    if "prometheus_server" not in sections:
        return None
    energy = None
    if "energy_frontend" in sections:
        active, enabled = _unit_state(sections.get("energy_timer"), timer_unit)
        script_dir = key_values(sections.get("energy_script_dir", []))
        energy = EnergySyncFound(
            frontend=EnergySyncFrontend().process(sections["energy_frontend"]),
            timer_active=active,
            timer_enabled=enabled,
            script_dir=script_dir or None,
        )
    return PrometheusFound(
        server=PrometheusServer().process(sections["prometheus_server"]),
        files=_files_by_path(sections.get("prometheus_files", [])),
        config=_config_file(sections.get("prometheus_config", [])),
        energy_sync=energy,
    )


# --------------------------------------------------------------------------- the host


@dataclass(frozen=True)
class HostFound:
    """Everything one read of a host reported: the install record (read under the host's
    lock), and what the hypervisor and Prometheus steps decide on (None for a part the host
    does not take)."""

    record: RecordRead
    hypervisor: HypervisorFound | None = None
    prometheus: PrometheusFound | None = None


def parse_host_state(lines: Iterable[str], timer_unit: str) -> HostFound:
    """The whole output of facts.HostState. Raises pyinfra's FactProcessError when it holds no
    record section (the read did not run as written): the host then fails, as for any fact
    that cannot be read."""
    sections = split_sections(lines)
    if "record" not in sections:
        raise FactProcessError("the host's state was read without its record section")
    return HostFound(
        record=InstallRecordFile().process(sections["record"]),
        hypervisor=parse_hypervisor(sections) if "rapl" in sections else None,
        prometheus=parse_prometheus(sections, timer_unit),
    )
