"""The deploy's settings for one host, typed and checked in one place.

Defaults live only in group_data/all.py; pyinfra merges them with group and
host data. `Settings.from_data` turns that merged data into one typed object and
checks every value, so that a bad value fails its host at the start of the run,
naming the key, and no step further on has to guess or re-check.

Plain logic: no pyinfra state, so the deploy, remove.py and the verification
suite read settings the same way.
"""

from __future__ import annotations

import difflib
import ipaddress
import posixpath
import re
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from tasks import compat


# Prefixes of this deploy's keys: other host data (ssh_*, _sudo ...) belongs to pyinfra.
SETTING_PREFIXES = (
    "scaphandre_", "rapl_", "docker_", "remove_", "one_", "discovery_", "prometheus_", "promtool_", "grafana_",
    "energy_", "accounting_", "carbon_", "host_lock_",
)


class SettingsError(ValueError):
    """One or more settings are unusable; each problem names its key and the fix."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- value checks
# Each takes the raw value and returns the typed one, or raises ValueError saying what is
# wrong with it (the caller adds the key).


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"is {value!r}, not True or False")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"is {value!r}, not a non-empty string")
    return value


def _optional(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def optional(value: Any) -> Any:
        return None if value is None or value == "" else check(value)

    optional.__name__ = f"optional_{check.__name__}"
    return optional


def _unless_none(check: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Like _optional, but an empty string is a value to check (and refuse), not "unset"."""
    def unless_none(value: Any) -> Any:
        return None if value is None else check(value)

    return unless_none


def _one_of(*allowed: str) -> Callable[[Any], str]:
    def one_of(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"is {value!r}, not one of {', '.join(repr(a) for a in allowed)}")
        return value

    return one_of


def _positive_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"is {value!r}, not a whole number above 0")
    return value


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"is {value!r}, not a TCP port number (1-65535)")
    return value


def _string_list(value: Any) -> tuple[str, ...]:
    # A bare string would otherwise be iterated character by character.
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"is {value!r}, not a list of strings (write [{value!r}] for one item)")
    if not all(isinstance(item, str) and item for item in value):
        raise ValueError(f"is {value!r}: every item must be a non-empty string")
    return tuple(value)


_MODULE_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def _module_names(value: Any) -> tuple[str, ...]:
    # Written one per line into /etc/modules-load.d: a newline or a path would be another entry.
    modules = _string_list(value)
    for module in modules:
        if not _MODULE_NAME.match(module):
            raise ValueError(f"has {module!r}, not a kernel module name (letters, digits, '_', '-')")
    return modules


def _absolute_path(value: Any) -> str:
    path = _text(value)
    if not posixpath.isabs(path):
        raise ValueError(f"is {value!r}, not an absolute path")
    return path


# Prometheus' duration syntax (model.ParseDuration), e.g. 15s, 1m30s, 500ms.
_DURATION = re.compile(r"^(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")


def _duration(value: Any) -> str:
    if not isinstance(value, str) or not value or not _DURATION.match(value):
        raise ValueError(f"is {value!r}, not a Prometheus duration such as '15s' or '1m'")
    return value


def _pinned_image(value: Any) -> str:
    image = _text(value)
    try:
        reference = compat.parse_image_reference(image)
    except ValueError as error:
        raise ValueError(f"is {image!r}, not an image reference ({error})") from None
    if reference.digest is None and reference.tag == "latest":  # no tag means 'latest' to Docker
        raise ValueError(f"is {image!r}: give a pinned tag (e.g. hubblo/scaphandre:1.0.2), never 'latest'")
    return image


def _restart_policy(value: Any) -> str:
    if value not in ("always", "unless-stopped"):
        raise ValueError(f"is {value!r}, which would not survive a reboot: use 'unless-stopped' or 'always'")
    return value


def _matching(pattern: str, what: str) -> Callable[[Any], str]:
    compiled = re.compile(pattern)

    def matching(value: Any) -> str:
        if not isinstance(value, str) or not compiled.match(value):
            raise ValueError(f"is {value!r}, {what}")
        return value

    return matching


# Docker's own rule for container names.
_container_name = _matching(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$",
                            "not a Docker container name (letters, digits, '_', '.', '-')")
# Also written into PromQL selectors of the rules file: kept to a safe alphabet.
_job_name = _matching(r"^[A-Za-z0-9_.-]+$", "which is not allowed: use letters, digits, '_', '.' and '-' only")


def _listen_address(value: Any) -> str:
    address = _text(value)
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise ValueError(f"is {value!r}, not an IP address (0.0.0.0 listens on every address)") from None
    return address.strip("[]")


def _scrape_host(value: Any) -> str:
    host = _text(value)
    if re.search(r"[\s/@]", host) or host.count(":") == 1:
        raise ValueError(f"is {value!r}, not a host name or address (no port, scheme, path or spaces)")
    return host


def _one_host_id(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"is {value!r}, not an OpenNebula host ID")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise ValueError(f"is {value!r}, not an OpenNebula host ID (the number `onehost list` shows)")
    return value


def _prometheus_candidates(value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValueError(f"is {value!r}, not a list of (config path, service name) pairs")
    pairs = []
    for item in value:
        if (not isinstance(item, (list, tuple)) or len(item) != 2
                or not all(isinstance(part, str) and part for part in item) or not posixpath.isabs(item[0])):
            raise ValueError(f"has {item!r}, not a (config path, service name) pair with an absolute path")
        pairs.append((item[0], item[1]))
    return tuple(pairs)


def _major_version(value: Any) -> int:
    if value not in (2, 3):
        raise ValueError(f"is {value!r}, not 2 or 3")
    return value


def _http_url(value: Any) -> str:
    url = _text(value)
    if not re.match(r"^https?://[^/\s]+", url):
        raise ValueError(f"is {value!r}, not an http(s) URL")
    return url


def _between(lowest: float, highest: float, whole: bool = False) -> Callable[[Any], float]:
    """A number (a whole one when `whole`) from lowest to highest; booleans refused."""
    kind = "a whole number" if whole else "a number"

    def between(value: Any) -> float:
        types = (int,) if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, types) or not lowest <= value <= highest:
            raise ValueError(f"is {value!r}, not {kind} from {lowest:g} to {highest:g}")
        return value

    return between


def _single_line(value: Any) -> str:
    """Text that goes into a line of a file the deploy renders: no control characters and
    no blanks at either end (an INI reader would drop them, or a newline add a key)."""
    text = _text(value)
    if text != text.strip() or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"is {value!r}: no control characters or surrounding blanks")
    return text


def _endpoint_url(value: Any) -> str:
    """An http(s) URL with a host and no credentials in it (they belong in a credentials file)."""
    url = _single_line(value)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
        raise ValueError(f"is {value!r}, not an http(s) URL")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("holds credentials: give the URL without user:password@ "
                         "(OpenNebula's credentials go in energy_sync_one_auth_file)")
    return url


def _repository_url(value: Any) -> str:
    """Docker's package repository (or a mirror): an http(s) URL with a host and no
    credentials. A user or token written into it would reach the download command's line,
    pyinfra's output and the world-readable .list/.repo file; each package manager has its
    own place for them, readable by root only."""
    url = _single_line(value)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
        raise ValueError(f"is {value!r}, not an http(s) URL")
    if parsed.username is not None or parsed.password is not None or "@" in parsed.netloc:
        raise ValueError(
            "holds credentials (user:token@): give the URL without them and let the package manager "
            "authenticate: for apt, a file in /etc/apt/auth.conf.d/ (machine HOST login USER password TOKEN, "
            "mode 0600); for dnf, the repository's username= and password= options (in "
            "/etc/yum.repos.d/docker-ce.repo, made readable by root only)")
    return url


# Where the energy sync service cannot see a file: its unit has ProtectHome=yes (/home, /root,
# /run/user) and PrivateTmp=yes (its own empty /tmp and /var/tmp).
_HIDDEN_FROM_THE_SYNC = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")


def _file_the_sync_can_see(value: Any) -> str:
    path = _absolute_path(_single_line(value))
    normal = posixpath.normpath(path)
    for hidden in _HIDDEN_FROM_THE_SYNC:
        if normal == hidden or normal.startswith(hidden + "/"):
            raise ValueError(f"is {value!r}, under {hidden}, which the energy sync service does not see "
                             "(ProtectHome/PrivateTmp): keep the credentials file elsewhere, e.g. "
                             "/var/lib/one/.one/one_auth")
    return path


# A Prometheus instant-vector selector: a metric name and optional label matchers.
_SERIES_SELECTOR = re.compile(
    r'^[A-Za-z_:][A-Za-z0-9_:]*'
    r'(\{\s*([A-Za-z_][A-Za-z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\\n]|\\.)*"\s*(,\s*|(?=\})))*\})?$')
# Above the dirtiest grids' figures (coal, about 1000 gCO2e/kWh), with room to spare.
MAX_CARBON_INTENSITY = 5000


def _carbon_intensity(value: Any) -> float | str:
    """gCO2e/kWh: a number, or the selector of a Prometheus series holding it."""
    if isinstance(value, bool):
        raise ValueError(f"is {value!r}, not a number of gCO2e/kWh or a Prometheus series name")
    if isinstance(value, (int, float)):
        if not 0 <= value <= MAX_CARBON_INTENSITY:
            raise ValueError(f"is {value!r}, not a number of gCO2e/kWh from 0 to {MAX_CARBON_INTENSITY}")
        return float(value)
    if isinstance(value, str) and _SERIES_SELECTOR.match(value.strip()):
        return value.strip()
    raise ValueError(f"is {value!r}, neither a number of gCO2e/kWh nor a Prometheus series such as "
                     "'grid_intensity' or 'grid_intensity{zone=\"FR\"}'")


def _intensity_per_cluster(value: Any) -> dict[int | str, float | str]:
    """{cluster NAME or ID: intensity}."""
    clusters = _mapping(value)
    checked: dict[int | str, float | str] = {}
    for cluster, intensity in clusters.items():
        if isinstance(cluster, bool) or not (
                (isinstance(cluster, int) and cluster >= 0) or (isinstance(cluster, str) and cluster.strip())):
            raise ValueError(f"has the key {cluster!r}, not an OpenNebula cluster NAME or ID")
        try:
            checked[cluster] = _carbon_intensity(intensity)
        except ValueError as error:
            raise ValueError(f"for cluster {cluster!r} {error}") from None
    return checked


def _anything(value: Any) -> Any:
    return value


def _mapping(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise ValueError(f"is {value!r}, not a dict")
    return dict(value)


def _setting(check: Callable[[Any], Any]):
    return field(metadata={"check": check})


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Settings:
    """Every setting of the deploy for one host, typed. Defaults: group_data/all.py."""

    # Scaphandre, on hypervisors
    scaphandre_image: str = _setting(_pinned_image)
    scaphandre_container_name: str = _setting(_container_name)
    scaphandre_port: int = _setting(_port)
    scaphandre_listen_address: str = _setting(_listen_address)
    scaphandre_qemu: bool = _setting(_bool)
    scaphandre_containers: bool = _setting(_bool)
    scaphandre_privileged: bool = _setting(_bool)
    scaphandre_restart_policy: str = _setting(_restart_policy)
    scaphandre_extra_docker_args: tuple[str, ...] = _setting(_string_list)
    scaphandre_image_archive: str | None = _setting(_optional(_text))
    scaphandre_registry_username: str | None = _setting(_optional(_text))
    scaphandre_registry_password_file: str | None = _setting(_optional(_text))
    scaphandre_metrics_timeout_s: int = _setting(_positive_int)
    scaphandre_scrape_host: str | None = _setting(_optional(_scrape_host))
    # RAPL
    rapl_modules: tuple[str, ...] | None = _setting(_optional(_module_names))
    # Docker engine
    docker_install_source: str = _setting(_one_of("distro", "docker-ce"))
    docker_ce_repo_url: str | None = _setting(_optional(_repository_url))
    remove_docker_engine: bool = _setting(_bool)
    # One run at a time per host
    host_lock_timeout_s: int = _setting(_between(1, 86400, whole=True))
    # OpenNebula (read on the machine running pyinfra; the endpoint settings are checked
    # where they are used, with OpenNebula's own environment variables)
    one_xmlrpc: str | None = _setting(_optional(_text))
    one_auth_file: str | None = _setting(_optional(_text))
    one_xmlrpc_timeout: Any = _setting(_anything)
    one_xmlrpc_ca_file: str | None = _setting(_optional(_text))
    one_host_id: int | None = _setting(_unless_none(_one_host_id))
    one_host_name: str | None = _setting(_optional(_text))
    one_monitor_db_fallback: bool = _setting(_bool)
    # Discovery (read by inventory.py)
    discovery_ssh_address: str = _setting(_text)
    discovery_ssh_port: Any = _setting(_anything)
    discovery_ssh_user: str | None = _setting(_optional(_text))
    discovery_scrape_host: str = _setting(_text)
    discovery_host_data: dict = _setting(_mapping)
    # Prometheus servers
    prometheus_job_name: str = _setting(_job_name)
    prometheus_scrape_interval: str | None = _setting(_optional(_duration))
    prometheus_scrape_mode: str = _setting(_one_of("replicate", "shard"))
    prometheus_candidates: tuple[tuple[str, str], ...] = _setting(_prometheus_candidates)
    prometheus_config_file: str | None = _setting(_optional(_absolute_path))
    prometheus_service: str | None = _setting(_optional(_text))
    prometheus_targets_file: str | None = _setting(_optional(_absolute_path))
    prometheus_binaries: tuple[str, ...] = _setting(_string_list)
    promtool_binaries: tuple[str, ...] = _setting(_string_list)
    prometheus_api_url: str = _setting(_http_url)
    prometheus_snippet_file: str = _setting(_text)
    prometheus_snippet_major_version: int = _setting(_major_version)
    prometheus_reload_timeout_s: int = _setting(_between(0, 3600, whole=True))
    prometheus_rules: bool = _setting(_bool)
    prometheus_rules_file: str | None = _setting(_optional(_absolute_path))
    # Energy accounting
    accounting_size_basis: str = _setting(_one_of("vcpu", "cpu", "memory"))
    carbon_intensity: float | str | None = _setting(_unless_none(_carbon_intensity))
    carbon_intensity_clusters: dict = _setting(_intensity_per_cluster)
    carbon_intensity_max_age: str = _setting(_duration)
    # Grafana
    grafana_provisioning_dir: str = _setting(_absolute_path)
    grafana_dashboards_dir: str = _setting(_absolute_path)
    grafana_dashboard_folder: str = _setting(_text)
    grafana_service: str = _setting(_text)
    # Energy back into OpenNebula, on Prometheus servers
    energy_sync: bool = _setting(_bool)
    # Under a minute a window may hold no sample of a rule evaluated once a minute.
    energy_sync_interval_s: int = _setting(_between(60, 86400, whole=True))
    # At least twice the interval (checked with it below); at most two days.
    energy_sync_max_age_s: int = _setting(_between(120, 172800, whole=True))
    # 9999 W at most: SCAPHANDRE_SCORE (100000 - 10 x power) stays above 0 up to there.
    energy_sync_host_max_power_w: float = _setting(_between(1, 9999))
    energy_sync_vm_max_power_w: float = _setting(_between(1, 9999))
    energy_sync_prometheus_url: str = _setting(_endpoint_url)
    energy_sync_one_xmlrpc: str = _setting(_endpoint_url)
    energy_sync_one_auth_file: str = _setting(_file_the_sync_can_see)
    energy_sync_threshold_percent: float = _setting(_between(0, 100))
    energy_sync_threshold_watts: float = _setting(_between(0, 1e6))
    energy_sync_threshold_kwh: float = _setting(_between(0, 1e6))
    energy_sync_refresh_s: int = _setting(_between(0, 10**7, whole=True))
    energy_sync_timeout_s: float = _setting(_between(1, 3600))

    @classmethod
    def keys(cls) -> list[str]:
        return [item.name for item in fields(cls)]

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Settings":
        """The settings in `data` (pyinfra's merged host data), every value checked.

        Raises SettingsError listing every unusable key, each with what is wrong and
        where to fix it; a key missing altogether means group_data/all.py was not read.
        """
        values, problems = {}, []
        for item in fields(cls):
            if item.name not in data:
                problems.append(f"setting {item.name} is missing: run pyinfra from the repository directory "
                                "so that group_data/all.py is read")
                continue
            try:
                values[item.name] = item.metadata["check"](data[item.name])
            except ValueError as error:
                problems.append(f"setting {item.name} {error}: fix it in the host's or group's data")
        if not problems:
            problems = _inconsistencies(values)
        if problems:
            raise SettingsError(problems)
        return cls(**values)


def _inconsistencies(values: dict) -> list[str]:
    """Problems that only show in a combination of settings."""
    problems = []
    if bool(values["prometheus_config_file"]) != bool(values["prometheus_service"]):
        problems.append("settings prometheus_config_file and prometheus_service go together: set both or neither")
    if bool(values["scaphandre_registry_username"]) != bool(values["scaphandre_registry_password_file"]):
        problems.append("settings scaphandre_registry_username and scaphandre_registry_password_file go together: "
                        "set both or neither")
    interval_s, max_age_s = values["energy_sync_interval_s"], values["energy_sync_max_age_s"]
    if max_age_s < 2 * interval_s:
        problems.append(f"setting energy_sync_max_age_s is {max_age_s}, less than twice energy_sync_interval_s "
                        f"({interval_s}): one run finding no sample would already remove the values; set it to "
                        f"{2 * interval_s} or more")
    if values["energy_sync_vm_max_power_w"] > values["energy_sync_host_max_power_w"]:
        problems.append(f"setting energy_sync_vm_max_power_w ({values['energy_sync_vm_max_power_w']:g}) is above "
                        f"energy_sync_host_max_power_w ({values['energy_sync_host_max_power_w']:g}): a VM's power is "
                        "a share of its host's; lower it or raise the host's")
    if values["energy_sync"] and not values["prometheus_rules"]:
        problems.append("setting energy_sync needs prometheus_rules: the sync reads the recording rules "
                        "(one_host:power_watts, ...); set prometheus_rules to True or energy_sync to False")
    return problems


def unknown_keys(data: Mapping[str, Any]) -> list[str]:
    """One line per key that looks like one of ours but is not (a typo is otherwise ignored)."""
    known = Settings.keys()
    lines = []
    for key in sorted(data):
        if key.startswith(SETTING_PREFIXES) and key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            lines.append(f"unknown setting {key}{hint}: it is ignored")
    return lines
