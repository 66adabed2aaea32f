"""The deploy's settings: one typed model, the only place where each setting's type,
default, accepted values and description are written.

How the settings reach a host. pyinfra's host data carries them: group_data/all.py
calls `defaults_into(globals())`, which gives every setting of this model its default
in that file's namespace (a setting the file assigns itself keeps the operator's value),
so `host.data.<setting>` holds a value for every setting on every host, and an operator
overrides a default where pyinfra's convention puts it: group_data/all.py (every host),
group_data/<group>.py or a group's data in inventory.py, or a host's data. all.py restates
no default. This works with pyinfra 3.10's group data loader, which executes each
group_data/*.py and keeps every top-level name except dunder names and names bound by an
import statement: the setting names that `defaults_into` writes become group data, the
imported `_defaults_into` does not (its leading underscore also keeps it out of readers
that run the file with runpy, such as inventory-time discovery and the unit tests).

How they are checked. `Settings.from_data(host data)` validates every value once, at
each host's first step (tasks/preflight.py, also the verification suite and remove.py):
a bad value fails that host with one line per setting, naming it, the value, what the
setting accepts and where to fix it; every later step reads a typed, frozen object.
Booleans and numbers are strict (the string "yes", 1 for True, "60" for 60 or 1.5 for a
whole number are refused). Pydantic's own error text is never shown: each type carries
`Accepts`, what it takes in an operator's words, and a refusal reads `is <value>, not
<that>`; the special rules are validators raising ValueError with their own sentence,
and the rules across settings are the model validator `_consistent`.

docs/settings.md is generated from this model (`python -m tasks.settings_doc >
docs/settings.md`, checked by a unit test), as is its JSON schema (`python -m
tasks.settings_doc --json-schema`).

Plain logic: no pyinfra state, so the deploy, remove.py and the verification suite read
settings the same way. Importing this module builds the model once (pydantic compiles
its validator); validating a host's settings is then a call into pydantic-core.
"""

import copy
import difflib
import ipaddress
import posixpath
import re
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar, get_args

from annotated_types import Ge, GroupedMetadata, Gt, Le
from pydantic import (
    AfterValidator,
    AllowInfNan,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    Strict,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic.config import JsonDict

from tasks import compat

# Prefixes of this deploy's keys: other host data (ssh_*, _sudo ...) belongs to pyinfra.
SETTING_PREFIXES = (
    "scaphandre_",
    "rapl_",
    "docker_",
    "remove_",
    "one_",
    "discovery_",
    "prometheus_",
    "promtool_",
    "grafana_",
    "energy_",
    "accounting_",
    "carbon_",
    "host_lock_",
)

FIX_IT_WHERE = "fix it in the host's or group's data"


class SettingsError(ValueError):
    """One or more settings are unusable; each problem names its key and the fix."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- what a type accepts


@dataclass(frozen=True)
class Accepts:
    """Annotation metadata: what a setting of this type accepts, in an operator's words.

    A value refused by pydantic's own checks of the type (its kind, range, pattern or
    choices) is reported as `is <value>, not <phrase>`, or `is <value>, <refusal>` when a
    refusal is given; docs/settings.md lists the phrase. Pydantic ignores this metadata.
    """

    phrase: str
    refusal: str | None = None

    def refused(self, value: Any) -> str:
        return f"is {value!r}, {self.refusal or 'not ' + self.phrase}"


def _number_text(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _blank_is_unset(value: Any) -> Any:
    return None if value is None or value == "" else value


Kind = TypeVar("Kind")
# `Kind`, or None for unset; an empty string also means unset.
UnsetOr = Annotated[Kind | None, BeforeValidator(_blank_is_unset)]


@dataclass(frozen=True)
class WholeNumber(GroupedMetadata):
    """Annotation metadata of an int setting: a whole number from `lowest` to `highest`."""

    lowest: int
    highest: int

    def __iter__(self) -> Iterator[object]:
        yield Strict()
        yield Ge(self.lowest)
        yield Le(self.highest)
        yield Accepts(
            f"a whole number from {_number_text(self.lowest)} to {_number_text(self.highest)}"
        )


def _as_written(value: Any, check: ValidatorFunctionWrapHandler) -> Any:
    """A whole number stays whole once checked as a number: the files rendered from it read
    `5000`, as the operator wrote it, not `5000.0`."""
    checked = check(value)
    return value if type(value) is int else checked


@dataclass(frozen=True)
class Number(GroupedMetadata):
    """Annotation metadata of a float setting: a finite number from `lowest` to `highest`,
    kept whole when written whole."""

    lowest: float
    highest: float

    def __iter__(self) -> Iterator[object]:
        yield Strict()
        yield Ge(self.lowest)
        yield Le(self.highest)
        yield AllowInfNan(False)
        yield Accepts(f"a number from {_number_text(self.lowest)} to {_number_text(self.highest)}")
        yield WrapValidator(_as_written)


def one_of(choices: Any, refusal: str | None = None) -> Accepts:
    """What a setting of type `choices` (a Literal[...]) accepts, its values named."""
    values = get_args(choices)
    if all(isinstance(value, str) for value in values):
        phrase = "one of " + ", ".join(repr(value) for value in values)
    else:
        phrase = " or ".join(repr(value) for value in values)
    return Accepts(phrase, refusal)


@dataclass(frozen=True)
class Matching(GroupedMetadata):
    """Annotation metadata of a str setting: a string matching `pattern` (anchor it:
    pydantic searches, as re.search does)."""

    pattern: str
    phrase: str
    refusal: str | None = None

    def __iter__(self) -> Iterator[object]:
        yield Strict()
        yield StringConstraints(pattern=self.pattern)
        yield Accepts(self.phrase, self.refusal)


@dataclass(frozen=True)
class ListOf(GroupedMetadata):
    """Annotation metadata of a tuple setting: a list (or tuple) of items, read as a tuple.
    `shape` names what a value that is no list at all should have been (a bare string is
    refused rather than iterated character by character); `one_item_hint` shows how to
    write a list of one such value."""

    phrase: str
    shape: str
    one_item_hint: bool = False

    def __iter__(self) -> Iterator[object]:
        yield Accepts(self.phrase)
        yield BeforeValidator(self._a_list)

    def _a_list(self, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return value
        hint = f" (write [{value!r}] for one item)" if self.one_item_hint else ""
        raise ValueError(f"is {value!r}, not {self.shape}{hint}")


Flag = Annotated[bool, Strict(), Accepts("True or False")]
Text = Annotated[str, Matching(r"\S", "a non-empty string")]
AbsolutePath = Annotated[str, Matching(r"^/", "an absolute path")]
Port = Annotated[int, Strict(), Ge(1), Le(65535), Accepts("a TCP port number (1-65535)")]
PositiveWholeNumber = Annotated[int, Strict(), Gt(0), Accepts("a whole number above 0")]
HttpUrl = Annotated[str, Matching(r"^https?://[^/\s]+", "an http(s) URL")]
# Prometheus' duration syntax (model.ParseDuration), e.g. 15s, 1m30s, 500ms.
Duration = Annotated[
    str,
    Strict(),
    StringConstraints(
        min_length=1,
        pattern=r"^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?"
        r"([0-9]+s)?([0-9]+ms)?$",
    ),
    Accepts("a Prometheus duration such as '15s' or '1m'"),
]
TextList = Annotated[
    tuple[Annotated[str, Strict(), StringConstraints(min_length=1)], ...],
    ListOf("a list of non-empty strings", shape="a list of strings", one_item_hint=True),
]
# Written one per line into /etc/modules-load.d: a newline or a path would be another entry.
ModuleNames = Annotated[
    tuple[Annotated[str, Matching(r"^[A-Za-z0-9_-]+$", "a kernel module name")], ...],
    ListOf(
        "a list of kernel module names (letters, digits, '_', '-')",
        shape="a list of strings",
        one_item_hint=True,
    ),
]
# Docker's own rule for container names.
ContainerName = Annotated[
    str,
    Matching(
        r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$", "a Docker container name (letters, digits, '_', '.', '-')"
    ),
]
# Also written into PromQL selectors of the rules file: kept to a safe alphabet.
JobName = Annotated[
    str,
    Matching(
        r"^[A-Za-z0-9_.-]+$",
        "a name of letters, digits, '_', '.' and '-'",
        refusal="which is not allowed: use letters, digits, '_', '.' and '-' only",
    ),
]
RestartPolicies = Literal["unless-stopped", "always"]
RestartPolicy = Annotated[
    RestartPolicies,
    one_of(
        RestartPolicies,
        refusal="which would not survive a reboot: use 'unless-stopped' or 'always'",
    ),
]
DockerInstallSource = Literal["distro", "docker-ce"]
ScrapeMode = Literal["replicate", "shard"]
PrometheusMajorVersion = Literal[2, 3]
SizeBasis = Literal["vcpu", "cpu", "memory"]
HostData = Annotated[dict[Any, Any], Accepts("a dict of host data")]


# --------------------------------------------------------------------------- the special rules
# Each takes a value of the right type and returns the typed one, or raises ValueError with
# the whole refusal (`is ..., ...`); the caller adds the key and where to fix it.


def _pinned_image(image: str) -> str:
    try:
        reference = compat.parse_image_reference(image)
    except ValueError as error:
        raise ValueError(f"is {image!r}, not an image reference ({error})") from None
    if reference.digest is None and reference.tag == "latest":  # no tag means 'latest' to Docker
        raise ValueError(
            f"is {image!r}: give a pinned tag (e.g. hubblo/scaphandre:1.0.2), never 'latest'"
        )
    return image


def _listen_address(address: str) -> str:
    try:
        ipaddress.ip_address(address.strip("[]"))
    except ValueError:
        raise ValueError(
            f"is {address!r}, not an IP address (0.0.0.0 listens on every address)"
        ) from None
    return address.strip("[]")


def _scrape_host(host: str) -> str:
    if re.search(r"[\s/@]", host) or host.count(":") == 1:
        raise ValueError(
            f"is {host!r}, not a host name or address (no port, scheme, path or spaces)"
        )
    return host


def _digits_as_number(value: Any) -> Any:
    """An ID written as a string of digits ('12') is that number."""
    return int(value) if isinstance(value, str) and re.fullmatch(r"\s*[0-9]+\s*", value) else value


def _single_line(text: str) -> str:
    """Text that goes into a line of a file the deploy renders: no control characters and
    no blanks at either end (an INI reader would drop them, or a newline add a key)."""
    if text != text.strip() or any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"is {text!r}: no control characters or surrounding blanks")
    return text


def _endpoint_url(url: str) -> str:
    """An http(s) URL with a host and no credentials in it (they belong in a credentials
    file). The refusal never repeats a URL holding credentials."""
    parsed = urllib.parse.urlsplit(_single_line(url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
        raise ValueError(f"is {url!r}, not an http(s) URL")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError(
            "holds credentials: give the URL without user:password@ "
            "(OpenNebula's credentials go in energy_sync_one_auth_file)"
        )
    return url


def _repository_url(url: str) -> str:
    """Docker's package repository (or a mirror): an http(s) URL with a host and no
    credentials. A user or token written into it would reach the download command's line,
    pyinfra's output and the world-readable .list/.repo file; each package manager has its
    own place for them, readable by root only."""
    parsed = urllib.parse.urlsplit(_single_line(url))
    if parsed.scheme not in ("http", "https") or not parsed.hostname or " " in url:
        raise ValueError(f"is {url!r}, not an http(s) URL")
    if parsed.username is not None or parsed.password is not None or "@" in parsed.netloc:
        raise ValueError(
            "holds credentials (user:token@): give the URL without them and let the package manager "
            "authenticate: for apt, a file in /etc/apt/auth.conf.d/ (machine HOST login USER password TOKEN, "
            "mode 0600); for dnf, the repository's username= and password= options (in "
            "/etc/yum.repos.d/docker-ce.repo, made readable by root only)"
        )
    return url


# Where the energy sync service cannot see a file: its unit has ProtectHome=yes (/home, /root,
# /run/user) and PrivateTmp=yes (its own empty /tmp and /var/tmp).
_HIDDEN_FROM_THE_SYNC = ("/home", "/root", "/run/user", "/tmp", "/var/tmp")


def _file_the_sync_can_see(path: str) -> str:
    _single_line(path)
    if not posixpath.isabs(path):
        raise ValueError(f"is {path!r}, not an absolute path")
    normal = posixpath.normpath(path)
    for hidden in _HIDDEN_FROM_THE_SYNC:
        if normal == hidden or normal.startswith(hidden + "/"):
            raise ValueError(
                f"is {path!r}, under {hidden}, which the energy sync service does not see "
                "(ProtectHome/PrivateTmp): keep the credentials file elsewhere, e.g. "
                "/var/lib/one/.one/one_auth"
            )
    return path


# A Prometheus instant-vector selector: a metric name and optional label matchers.
_SERIES_SELECTOR = re.compile(
    r"^[A-Za-z_:][A-Za-z0-9_:]*"
    r'(\{\s*([A-Za-z_][A-Za-z0-9_]*\s*(=|!=|=~|!~)\s*"([^"\\\n]|\\.)*"\s*(,\s*|(?=\})))*\})?$'
)
# Above the dirtiest grids' figures (coal, about 1000 gCO2e/kWh), with room to spare.
MAX_CARBON_INTENSITY = 5000


def _carbon_intensity(value: Any) -> float | str:
    """gCO2e/kWh: a number, or the selector of a Prometheus series holding it."""
    if isinstance(value, bool):
        raise ValueError(f"is {value!r}, not a number of gCO2e/kWh or a Prometheus series name")
    if isinstance(value, (int, float)):
        if not 0 <= value <= MAX_CARBON_INTENSITY:
            raise ValueError(
                f"is {value!r}, not a number of gCO2e/kWh from 0 to {MAX_CARBON_INTENSITY}"
            )
        return float(value)
    if isinstance(value, str) and _SERIES_SELECTOR.match(value.strip()):
        return value.strip()
    raise ValueError(
        f"is {value!r}, neither a number of gCO2e/kWh nor a Prometheus series such as "
        "'grid_intensity' or 'grid_intensity{zone=\"FR\"}'"
    )


def _intensity_per_cluster(value: Any) -> dict[int | str, float | str]:
    """{cluster NAME or ID: intensity}."""
    if not isinstance(value, Mapping):
        raise ValueError(f"is {value!r}, not a dict")
    checked: dict[int | str, float | str] = {}
    for cluster, intensity in value.items():
        if isinstance(cluster, bool) or not (
            (isinstance(cluster, int) and cluster >= 0)
            or (isinstance(cluster, str) and cluster.strip())
        ):
            raise ValueError(f"has the key {cluster!r}, not an OpenNebula cluster NAME or ID")
        try:
            checked[cluster] = _carbon_intensity(intensity)
        except ValueError as error:
            raise ValueError(f"for cluster {cluster!r} {error}") from None
    return checked


def _a_pair(item: Any) -> Any:
    if isinstance(item, (list, tuple)) and len(item) == 2:
        return item
    raise ValueError(f"has {item!r}, not a (config path, service name) pair with an absolute path")


PinnedImage = Annotated[
    Text,
    AfterValidator(_pinned_image),
    Accepts("an image reference with a pinned tag or a digest, never 'latest'"),
]
ListenAddress = Annotated[
    Text, AfterValidator(_listen_address), Accepts("an IPv4 or IPv6 address, bracketed or not")
]
ScrapeHost = Annotated[
    Text,
    AfterValidator(_scrape_host),
    Accepts("a host name or address (no port, scheme, path or spaces)"),
]
OneHostId = Annotated[
    int,
    Strict(),
    Ge(0),
    Accepts("an OpenNebula host ID (the number `onehost list` shows)"),
    BeforeValidator(_digits_as_number),
]
PrometheusCandidates = Annotated[
    tuple[Annotated[tuple[AbsolutePath, Text], BeforeValidator(_a_pair)], ...],
    ListOf(
        "a list of (config path, service name) pairs, each with an absolute path",
        shape="a list of (config path, service name) pairs",
    ),
]
EndpointUrl = Annotated[
    Text, AfterValidator(_endpoint_url), Accepts("an http(s) URL without credentials")
]
RepositoryUrl = Annotated[
    Text, AfterValidator(_repository_url), Accepts("an http(s) URL without credentials")
]
FileTheSyncCanSee = Annotated[
    Text,
    AfterValidator(_file_the_sync_can_see),
    Accepts("an absolute path outside /home, /root, /run/user, /tmp and /var/tmp"),
]
CarbonIntensity = Annotated[
    float | str,
    PlainValidator(
        _carbon_intensity,
        json_schema_input_type=Annotated[float, Ge(0), Le(MAX_CARBON_INTENSITY)] | str,
    ),
    Accepts(
        f"gCO2e/kWh: a number from 0 to {MAX_CARBON_INTENSITY}, or a Prometheus series selector "
        "such as 'grid_intensity{zone=\"FR\"}'"
    ),
]
IntensityPerCluster = Annotated[
    dict[int | str, float | str],
    PlainValidator(
        _intensity_per_cluster,
        json_schema_input_type=dict[str, Annotated[float, Ge(0), Le(MAX_CARBON_INTENSITY)] | str],
    ),
    Accepts(
        "a dict of OpenNebula cluster NAME (a string) or ID (a number) to a carbon intensity as above"
    ),
]
# Checked where they are used, with OpenNebula's own environment variables or pyinfra's own rules.
Seconds = Annotated[Any, Accepts("a number of seconds above 0 (checked when the API is called)")]
PortPattern = Annotated[
    Any, Accepts("a port number, or a pattern giving one such as '{template[SSH_PORT]}'")
]


# --------------------------------------------------------------------------- the settings


@dataclass(frozen=True)
class Section:
    """A component's settings, as docs/settings.md groups them."""

    title: str
    intro: str = ""

    def __call__(self, default: Any, description: str, *, unset: str | None = None) -> Any:
        """A setting of this section: its default, a one-line description and, for a
        setting that may be None, what None means."""
        extra: JsonDict = {"section": self.title}
        if unset:
            extra["unset"] = unset
        return Field(default=default, description=description, json_schema_extra=extra)


SCAPHANDRE = Section("Scaphandre, on hypervisors")
RAPL = Section("RAPL, on hypervisors")
DOCKER = Section("Docker engine, on hypervisors")
HOST_LOCK = Section("One run at a time per host (hypervisors and Prometheus servers)")
OPENNEBULA = Section(
    "OpenNebula",
    "Read on the machine running pyinfra, never sent to a host. The endpoint settings are checked "
    "when the API is called, together with OpenNebula's own environment variables.",
)
DISCOVERY = Section(
    "Discovery",
    "Used by `hypervisors = opennebula_hypervisors()` in inventory.py (off by default). The patterns "
    "are filled per OpenNebula host with `{name}`, `{hostname}`, `{id}` or `{template[ATTRIBUTE]}`.",
)
PROMETHEUS = Section("Prometheus, on the `prometheus` group")
ACCOUNTING = Section(
    "Energy accounting",
    "The attribution and emissions rules on `prometheus` hosts and the report (energy_report.py).",
)
GRAFANA = Section("Grafana, on the `grafana` group (optional)")
ENERGY_SYNC = Section(
    "Energy back into OpenNebula, on the `prometheus` group (off by default)",
    "A timer on the Prometheus server writes each host's and VM's power and 24 h energy into their "
    "OpenNebula templates (`SCAPHANDRE_POWER_W`, ...) for `SCHED_RANK` and `SCHED_REQUIREMENTS`: "
    "see docs/energy-sync.md. Turn it on in one Prometheus server's data: each enabled server writes.",
)
SECTIONS = (
    SCAPHANDRE,
    RAPL,
    DOCKER,
    HOST_LOCK,
    OPENNEBULA,
    DISCOVERY,
    PROMETHEUS,
    ACCOUNTING,
    GRAFANA,
    ENERGY_SYNC,
)


class Settings(BaseModel):
    """Every setting of the deploy for one host, typed, with its default and description."""

    model_config = ConfigDict(frozen=True, extra="ignore", hide_input_in_errors=True)

    scaphandre_image: PinnedImage = SCAPHANDRE(
        "hubblo/scaphandre:1.0.2",
        "Exporter image. Pinned: a moving tag would recreate every container whenever upstream pushes",
    )
    scaphandre_container_name: ContainerName = SCAPHANDRE("scaphandre", "Container name")
    scaphandre_port: Port = SCAPHANDRE(
        8080, "TCP port Scaphandre listens on, on the hypervisor (its `-p`)"
    )
    scaphandre_listen_address: ListenAddress = SCAPHANDRE(
        "0.0.0.0", "Address Scaphandre listens on (its `-a`; IPv4 or IPv6, `::` for both)"
    )
    scaphandre_qemu: Flag = SCAPHANDRE(True, "`--qemu`: per-VM power")
    scaphandre_containers: Flag = SCAPHANDRE(
        True, "`--containers`: per-container power; mounts the Docker socket"
    )
    scaphandre_privileged: Flag = SCAPHANDRE(
        True,
        "Upstream's choice: AppArmor/SELinux otherwise deny the RAPL counters and ptrace. `False`: "
        "`SYS_PTRACE`, `apparmor=unconfined` and `label=disable` instead of `--privileged`",
    )
    scaphandre_restart_policy: RestartPolicy = SCAPHANDRE(
        "unless-stopped", "Docker restart policy; both accepted ones survive a reboot"
    )
    scaphandre_extra_docker_args: TextList = SCAPHANDRE(
        (), "Extra `docker container create` arguments"
    )
    scaphandre_image_archive: UnsetOr[Text] = SCAPHANDRE(
        None,
        "Sites whose hypervisors reach no registry: a `docker save` archive of `scaphandre_image` on the "
        "machine running pyinfra, uploaded and loaded only where the image is missing",
        unset="the image is pulled",
    )
    scaphandre_registry_username: UnsetOr[Text] = SCAPHANDRE(
        None,
        "A private registry (named in `scaphandre_image`) that needs a login: the user for `docker login` "
        "(set with `scaphandre_registry_password_file`)",
        unset="no login",
    )
    scaphandre_registry_password_file: UnsetOr[Text] = SCAPHANDRE(
        None,
        "File on the machine running pyinfra holding that user's password, given to `docker login` on the "
        "host through its standard input",
        unset="no login",
    )
    scaphandre_metrics_timeout_s: PositiveWholeNumber = SCAPHANDRE(
        60, "Seconds to wait for `/metrics` to answer after a change"
    )
    scaphandre_scrape_host: UnsetOr[ScrapeHost] = SCAPHANDRE(
        None,
        "Address Prometheus scrapes the host at (an IPv6 address is bracketed in the target)",
        unset="the host's inventory name",
    )

    rapl_modules: UnsetOr[ModuleNames] = RAPL(
        None,
        "Kernel modules that expose RAPL, persisted in /etc/modules-load.d, overriding the choice",
        unset="chosen from the CPU vendor and the kernel version",
    )

    docker_install_source: Annotated[DockerInstallSource, one_of(DockerInstallSource)] = DOCKER(
        "distro",
        "Debian and Ubuntu hosts without an engine: `distro` (docker.io) or `docker-ce` (Docker's "
        "repository); the RHEL family always gets docker-ce",
    )
    docker_ce_repo_url: UnsetOr[RepositoryUrl] = DOCKER(
        "https://download.docker.com/linux",
        "Base URL of Docker's package repository (the one of Docker's install guides), or your mirror's: each "
        "distribution's directory (`/debian`, `/ubuntu`, `/rhel`, ...) is added per host. Used for `docker-ce` and "
        "on the RHEL family. No credentials in it (refused): apt reads them from a file in "
        "`/etc/apt/auth.conf.d/`, dnf from the repository's `username`/`password` options",
        unset="a host that needs it (`docker-ce`, the RHEL family) fails, asking for it",
    )
    remove_docker_engine: Flag = DOCKER(
        False,
        "`remove.py` only: also remove the Docker engine, if the deploy installed it (other containers "
        "may need it)",
    )

    host_lock_timeout_s: Annotated[int, WholeNumber(1, 86400)] = HOST_LOCK(
        60,
        "How long a run that finds another run changing the same host waits for it, in seconds, before it "
        "fails that host, naming the lock and who holds it",
    )

    one_xmlrpc: UnsetOr[Text] = OPENNEBULA(
        None,
        "OpenNebula XML-RPC endpoint",
        unset="`$ONE_XMLRPC`, else `http://localhost:2633/RPC2`",
    )
    one_auth_file: UnsetOr[Text] = OPENNEBULA(
        None,
        "File holding `user:password`",
        unset="`$ONE_AUTH`, else `~/.one/one_auth`, else `/var/lib/one/.one/one_auth`",
    )
    one_xmlrpc_timeout: Seconds = OPENNEBULA(
        None,
        "Seconds for the whole API call: connecting, sending and reading the whole reply",
        unset="`$ONE_XMLRPC_TIMEOUT`, else 30",
    )
    one_xmlrpc_ca_file: UnsetOr[Text] = OPENNEBULA(
        None,
        "`https` endpoints: PEM file of the CA that signed oned's certificate",
        unset="`$REQUESTS_CA_BUNDLE`, else the bundle of Python's `requests`",
    )
    one_host_id: OneHostId | None = OPENNEBULA(
        None, "Per host: this OpenNebula host ID, no matching", unset="matched by name"
    )
    one_host_name: UnsetOr[Text] = OPENNEBULA(
        None,
        "Per host: the OpenNebula host NAME to match, when it differs from the inventory name",
        unset="the inventory name (short or FQDN), then the host's own hostname",
    )
    one_monitor_db_fallback: Flag = OPENNEBULA(
        False,
        "If the API cannot be reached at all (never for refused credentials), read the IDs from "
        "`/var/tmp/one/im/status_kvm_<ID>.db` on the nodes",
    )

    discovery_ssh_address: Text = DISCOVERY("{name}", "Address to SSH to")
    discovery_ssh_port: PortPattern = DISCOVERY(
        None, "SSH port pattern, e.g. `{template[SSH_PORT]}`", unset="pyinfra's (22)"
    )
    discovery_ssh_user: UnsetOr[Text] = DISCOVERY(None, "SSH user", unset="pyinfra's")
    discovery_scrape_host: Text = DISCOVERY("{name}", "Address Prometheus scrapes")
    discovery_host_data: HostData = DISCOVERY(
        {}, "Extra data for every discovered host (`ssh_key`, ...)"
    )

    prometheus_job_name: JobName = PROMETHEUS(
        "scaphandre", "Job name in `prometheus.yml` (also in the selectors of the rules)"
    )
    prometheus_scrape_interval: UnsetOr[Duration] = PROMETHEUS(
        None, "The job's `scrape_interval`", unset="the server's global `scrape_interval`"
    )
    prometheus_scrape_mode: Annotated[ScrapeMode, one_of(ScrapeMode)] = PROMETHEUS(
        "replicate",
        "With several `prometheus` hosts: `replicate` (each scrapes every hypervisor) or `shard` "
        "(each its share, by Prometheus' hashmod on the target address)",
    )
    prometheus_candidates: PrometheusCandidates = PROMETHEUS(
        (
            ("/etc/one/prometheus/prometheus.yml", "opennebula-prometheus"),
            ("/etc/prometheus/prometheus.yml", "prometheus"),
        ),
        "`(config file, service)` pairs: OpenNebula's, then Debian's; the first existing config wins, with the "
        "service that reads it",
    )
    prometheus_config_file: UnsetOr[AbsolutePath] = PROMETHEUS(
        None,
        "`prometheus.yml` path, skipping detection (set with `prometheus_service`)",
        unset="detected from `prometheus_candidates`",
    )
    prometheus_service: UnsetOr[Text] = PROMETHEUS(
        None, "systemd unit to reload (set with `prometheus_config_file`)", unset="detected"
    )
    prometheus_targets_file: UnsetOr[AbsolutePath] = PROMETHEUS(
        None,
        "file_sd targets file (`.yml`, `.yaml` or `.json`; a `.json` one gets no comment header)",
        unset="`scaphandre_targets.yml` beside `prometheus.yml`",
    )
    prometheus_binaries: TextList = PROMETHEUS(
        ("/usr/bin/prometheus", "/usr/local/bin/prometheus"),
        "Only when the service's unit names no binary answering `--version` as Prometheus (no systemd, a "
        "wrapper script): where to read the version from, first existing wins",
    )
    promtool_binaries: TextList = PROMETHEUS(
        ("/usr/bin/promtool", "/usr/local/bin/promtool"),
        "Only when no promtool stands beside the binary the service runs: the promtool that checks the files, "
        "first existing wins",
    )
    prometheus_api_url: HttpUrl = PROMETHEUS(
        "http://localhost:9090",
        "Where the verification suite asks Prometheus, from the Prometheus host",
    )
    prometheus_snippet_file: Text = PROMETHEUS(
        "scaphandre-prometheus-job.yml",
        "Without a `prometheus` host: where the job to paste is written, on the machine running pyinfra",
    )
    prometheus_snippet_major_version: Annotated[
        PrometheusMajorVersion, one_of(PrometheusMajorVersion)
    ] = PROMETHEUS(
        2, "Without a `prometheus` host: `3` adds the `fallback_scrape_protocol` Prometheus 3 needs"
    )
    prometheus_reload_timeout_s: Annotated[int, WholeNumber(0, 3600)] = PROMETHEUS(
        60,
        "Seconds to wait, after a reload, for Prometheus itself to report the new configuration loaded (its "
        "reload metrics, read on the server); `0` reloads without confirming",
    )
    prometheus_rules: Flag = PROMETHEUS(
        True,
        "Ship the recording and alerting rules (files/prometheus/scaphandre_rules.yml) and list them under "
        "`rule_files`",
    )
    prometheus_rules_file: UnsetOr[AbsolutePath] = PROMETHEUS(
        None, "Where the rules go", unset="`scaphandre_rules.yml` beside `prometheus.yml`"
    )

    accounting_size_basis: Annotated[SizeBasis, one_of(SizeBasis)] = ACCOUNTING(
        "vcpu",
        "`prometheus` hosts: what a VM's share of its host's constant power is proportional to, from "
        "OpenNebula's exporter: `vcpu` (VCPU), `cpu` (CPU) or `memory` (MEMORY)",
    )
    carbon_intensity: CarbonIntensity | None = ACCOUNTING(
        None,
        "Hypervisors (host or group data): gCO2e/kWh of the host's power: a number, or a Prometheus series "
        'you have (e.g. `grid_intensity{zone="FR"}`, an hourly feed)',
        unset="the cluster's `carbon_intensity_clusters`, else no emissions for that host (nothing about carbon "
        "is recorded or shown)",
    )
    carbon_intensity_clusters: IntensityPerCluster = ACCOUNTING(
        {},
        "The same per OpenNebula cluster (its NAME, or its ID as a number), for hypervisors whose "
        '`carbon_intensity` is None, e.g. `{"paris": 56, 104: \'grid_intensity{zone="DE"}\'}`',
    )
    carbon_intensity_max_age: Duration = ACCOUNTING(
        "90m", "`prometheus` hosts: how long a value of an intensity series counts after its sample"
    )

    grafana_provisioning_dir: AbsolutePath = GRAFANA(
        "/etc/grafana/provisioning/dashboards", "Where the dashboard provider goes"
    )
    grafana_dashboards_dir: AbsolutePath = GRAFANA(
        "/var/lib/grafana/dashboards/opennebula", "Where the dashboard JSON goes"
    )
    grafana_dashboard_folder: Text = GRAFANA(
        "OpenNebula", "Grafana folder the dashboard appears in"
    )
    grafana_service: Text = GRAFANA(
        "grafana-server", "Restarted (if it runs) only when the provider file is new or changed"
    )

    energy_sync: Flag = ENERGY_SYNC(
        False,
        "Write power and energy into OpenNebula's templates from this Prometheus server; turn it on for "
        "one server (needs `prometheus_rules`)",
    )
    # Under a minute a window may hold no sample of a rule evaluated once a minute.
    energy_sync_interval_s: Annotated[int, WholeNumber(60, 86400)] = ENERGY_SYNC(
        300, "The timer's period and the power averaging window, in seconds"
    )
    # At least twice the interval (checked with it below); at most two days.
    energy_sync_max_age_s: Annotated[int, WholeNumber(120, 172800)] = ENERGY_SYNC(
        900,
        "Remove an object's values once Prometheus has had no power sample of it for this many seconds (the "
        "scheduler cannot tell an old value from a current one); at least twice the interval",
    )
    # 9999 W at most: SCAPHANDRE_SCORE (100000 - 10 x power) stays above 0 up to there. The
    # defaults: RAPL counts CPU packages and their memory, 4000 W for 8 sockets of today's
    # largest (500 W) CPUs; a VM spread over 4 of them, 2000 W. A RAPL counter overflow gives
    # Scaphandre figures like 1e20 W.
    energy_sync_host_max_power_w: Annotated[float, Number(1, 9999)] = ENERGY_SYNC(
        5000, "Refuse a host power above this (or below 0): not written, the host's values removed"
    )
    energy_sync_vm_max_power_w: Annotated[float, Number(1, 9999)] = ENERGY_SYNC(
        2000, "Refuse a VM power above this (or below 0); at most the host's ceiling"
    )
    energy_sync_prometheus_url: EndpointUrl = ENERGY_SYNC(
        "http://127.0.0.1:9090", "Prometheus' API as seen from that server"
    )
    energy_sync_one_xmlrpc: EndpointUrl = ENERGY_SYNC(
        "http://localhost:2633/RPC2",
        "oned's XML-RPC endpoint as seen from that server (`one_xmlrpc` is the control machine's)",
    )
    energy_sync_one_auth_file: FileTheSyncCanSee = ENERGY_SYNC(
        "/var/lib/one/.one/one_auth",
        "File on that server holding `user:password`, readable by the service user; never copied there by the "
        "deploy",
    )
    energy_sync_threshold_percent: Annotated[float, Number(0, 100)] = ENERGY_SYNC(
        2,
        "Rewrite a value only when it moved by more than the larger of the absolute threshold and this "
        "percentage of the stored value",
    )
    energy_sync_threshold_watts: Annotated[float, Number(0, 1e6)] = ENERGY_SYNC(
        1, "Absolute threshold for power"
    )
    energy_sync_threshold_kwh: Annotated[float, Number(0, 1e6)] = ENERGY_SYNC(
        0.01, "Absolute threshold for 24 h energy"
    )
    energy_sync_refresh_s: Annotated[int, WholeNumber(0, 10**7)] = ENERGY_SYNC(
        3600,
        "Rewrite unchanged values once their sample time is this many seconds old (0: every run)",
    )
    energy_sync_timeout_s: Annotated[float, Number(1, 3600)] = ENERGY_SYNC(
        30, "Give up on Prometheus or oned after this many seconds"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        problems = _inconsistencies(self)
        if problems:
            raise SettingsError(problems)
        return self

    @classmethod
    def keys(cls) -> list[str]:
        return list(cls.model_fields)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> "Settings":
        """The settings in `data` (pyinfra's merged host data), every value checked.

        Raises SettingsError listing every unusable key, each with what is wrong and
        where to fix it; a key missing altogether means group_data/all.py was not read.
        """
        names = cls.model_fields
        given = {name: data[name] for name in names if name in data}
        missing = [name for name in names if name not in given]
        try:
            settings = cls.model_validate(given)
        except ValidationError as invalid:
            raise SettingsError(_problems(invalid, given, missing)) from None
        if missing:
            raise SettingsError(_problems(None, given, missing))
        return settings


def _inconsistencies(settings: Settings) -> list[str]:
    """Problems that only show in a combination of settings."""
    problems = []
    if bool(settings.prometheus_config_file) != bool(settings.prometheus_service):
        problems.append(
            "settings prometheus_config_file and prometheus_service go together: set both or neither"
        )
    if bool(settings.scaphandre_registry_username) != bool(
        settings.scaphandre_registry_password_file
    ):
        problems.append(
            "settings scaphandre_registry_username and scaphandre_registry_password_file go together: "
            "set both or neither"
        )
    interval_s, max_age_s = settings.energy_sync_interval_s, settings.energy_sync_max_age_s
    if max_age_s < 2 * interval_s:
        problems.append(
            f"setting energy_sync_max_age_s is {max_age_s}, less than twice energy_sync_interval_s "
            f"({interval_s}): one run finding no sample would already remove the values; set it to "
            f"{2 * interval_s} or more"
        )
    if settings.energy_sync_vm_max_power_w > settings.energy_sync_host_max_power_w:
        problems.append(
            f"setting energy_sync_vm_max_power_w ({settings.energy_sync_vm_max_power_w:g}) is above "
            f"energy_sync_host_max_power_w ({settings.energy_sync_host_max_power_w:g}): a VM's power is "
            "a share of its host's; lower it or raise the host's"
        )
    if settings.energy_sync and not settings.prometheus_rules:
        problems.append(
            "setting energy_sync needs prometheus_rules: the sync reads the recording rules "
            "(one_host:power_watts, ...); set prometheus_rules to True or energy_sync to False"
        )
    return problems


def _problems(
    invalid: ValidationError | None, given: Mapping[str, Any], missing: list[str]
) -> list[str]:
    """One line per unusable setting, in the model's order, in an operator's words: the
    refusal of a special rule as it was raised, any other by what the setting accepts.
    The settings that disagree with each other are named only once each is usable."""
    by_name = {
        name: f"setting {name} is missing: run pyinfra from the repository directory so that "
        "group_data/all.py is read"
        for name in missing
    }
    across: list[str] = []
    for error in invalid.errors() if invalid else ():
        cause = (error.get("ctx") or {}).get("error")
        if not error["loc"]:
            across.extend(cause.problems if isinstance(cause, SettingsError) else [str(cause)])
            continue
        name = str(error["loc"][0])
        if name in by_name:
            continue  # the first refusal of a value says it
        refusal = (
            str(cause) if error["type"] == "value_error" else accepted(name).refused(given[name])
        )
        by_name[name] = f"setting {name} {refusal}: {FIX_IT_WHERE}"
    return [by_name[name] for name in Settings.model_fields if name in by_name] + (
        [] if by_name else across
    )


def accepted(name: str) -> Accepts:
    """What setting `name` accepts: the outermost Accepts of its type."""
    field = Settings.model_fields[name]
    found = _outermost_accepts(field.metadata) or _accepts_within(field.annotation)
    if found is None:
        raise LookupError(f"setting {name} has no Accepts in its type")
    return found


def _outermost_accepts(metadata: Iterable[object]) -> Accepts | None:
    """The last Accepts of annotation metadata, looking into grouped metadata (WholeNumber, ...)."""
    flat = [
        part
        for item in metadata
        for part in (item if isinstance(item, GroupedMetadata) else (item,))
    ]
    return next((item for item in reversed(flat) if isinstance(item, Accepts)), None)


def _accepts_within(annotation: Any) -> Accepts | None:
    """The Accepts of an annotation, looking through Optional[...] and Annotated[...]."""
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:
        return _outermost_accepts(metadata) or _accepts_within(annotation.__origin__)
    for argument in getattr(annotation, "__args__", ()):
        found = _accepts_within(argument)
        if found is not None:
            return found
    return None


def defaults() -> dict[str, Any]:
    """Every setting's default, in the model's order; copies, so that host data may change them."""
    return {name: copy.deepcopy(field.default) for name, field in Settings.model_fields.items()}


def defaults_into(namespace: dict[str, Any]) -> None:
    """Gives every setting that `namespace` (a group data file's globals) does not assign its
    default: group_data/all.py's one line, so that an assignment there, above or below it, wins."""
    for name, value in defaults().items():
        namespace.setdefault(name, value)


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
