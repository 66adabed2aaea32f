"""The end-to-end test bed: simulated KVM hypervisors and a Prometheus server host.

Each host is a Docker container booting systemd as PID 1, reachable over SSH on
a 127.0.0.1 port with a key the bed generates, on a network of its own where
the other hosts reach it by its inventory name (hv1, hv2, ..., prom1). See
tests/testbed/README.md for what is simulated and why.

    bed = TestBed("sotb-dev", Path(".testbed/sotb-dev"))
    bed.build_images()   # cached
    bed.up()             # fresh containers, waits until they boot
    bed.exec("hv1", "modprobe", "intel_rapl_msr")
    bed.network_state("hv1")["ipv4_forward"]   # 0: a bridged KVM node routes nothing
    bed.down()

Variants: ``TestBed(..., preinstalled_docker=("hv3",))`` gives hv3 a Docker engine
its operator installed at Docker's defaults; ``prometheus_kind="opennebula"`` or
``"prometheus3"`` shapes prom1 like an OpenNebula frontend's Prometheus or a server
upgraded to Prometheus 3; ``extra_prometheus={"prom3": ("prometheus3", PORT)}`` adds
more Prometheus servers.

Docker objects: containers ``<prefix>-<host>`` and network ``<prefix>-net``,
all labelled ``sotb.bed=<prefix>``; ``down()`` removes exactly those.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

from tests.testbed import host_network, images

LOG = logging.getLogger("sotb.bed")

BED_LABEL = "sotb.bed"
PROMETHEUS_NAME = "prom1"
MAX_HYPERVISORS = 50  # hypervisor ssh ports are base..base+49, the Prometheus host's base+50
QEMU_SYSTEM = "/usr/bin/qemu-system-x86_64"
QEMU_KVM_ONE = "/usr/bin/qemu-kvm-one"

BOOT_TIMEOUT_S = 120
SSH_TIMEOUT_S = 60
PROMETHEUS_READY_TIMEOUT_S = 90
EXEC_TIMEOUT_S = 300
STOP_TIMEOUT_S = 20
PING_TIMEOUT_S = 20

# The simulated guests' network on every hypervisor (testbed-vm-network.service).
VM_NAMESPACES = ("vmA", "vmB")
VM_ADDRESSES = ("169.254.99.1", "169.254.99.2")
VM_BRIDGE = "br0"

# What a systemd test host needs in this sandbox (see tests/testbed/README.md):
# --privileged fails here for lack of CAP_SYS_RESOURCE, /sys/class is a tmpfs
# that the simulated RAPL tree lives in, systempaths=unconfined lets inner
# containers mount the host's /proc.
SYSTEMD_HOST_FLAGS = (
    "--cap-add",
    "ALL",
    "--cap-drop",
    "SYS_RESOURCE",
    "--security-opt",
    "seccomp=unconfined",
    "--security-opt",
    "apparmor=unconfined",
    "--security-opt",
    "systempaths=unconfined",
    "--cgroupns=host",
    "-v",
    "/sys/fs/cgroup:/sys/fs/cgroup:rw",
    "--tmpfs",
    "/run",
    "--tmpfs",
    "/run/lock",
    "--tmpfs",
    "/sys/class:rw",
    # systemd halts on SIGRTMIN+3 and ignores docker's default SIGTERM.
    "--stop-signal",
    "SIGRTMIN+3",
)


@dataclass(frozen=True)
class PrometheusKind:
    """How one kind of Prometheus server host is laid out (what a deploy must find)."""

    image_variant: str
    service: str  # the systemd unit that runs Prometheus
    config_file: str
    binary: str  # the binary that unit runs
    promtool: str  # the promtool of the same version
    reloads_with_systemctl: bool  # False: the unit has no ExecReload (SIGHUP instead)


PROMETHEUS_KINDS = {
    # Debian's prometheus package (2.42), as installed.
    "debian": PrometheusKind(
        "prometheus",
        "prometheus",
        "/etc/prometheus/prometheus.yml",
        "/usr/bin/prometheus",
        "/usr/bin/promtool",
        True,
    ),
    # OpenNebula's opennebula-prometheus: its unit, config and oneadmin-owned data;
    # OpenNebula installs prometheus and promtool in /usr/bin.
    "opennebula": PrometheusKind(
        "prometheus-opennebula",
        "opennebula-prometheus",
        "/etc/one/prometheus/prometheus.yml",
        "/usr/bin/prometheus",
        "/usr/bin/promtool",
        False,
    ),
    # Debian's 2.42 package installed, its service running 3.5 from /usr/local/bin.
    "prometheus3": PrometheusKind(
        "prometheus3",
        "prometheus",
        "/etc/prometheus/prometheus.yml",
        "/usr/local/bin/prometheus",
        "/usr/local/bin/promtool",
        True,
    ),
}
HYPERVISOR_VARIANT = "hypervisor"
PREINSTALLED_DOCKER_VARIANT = "hypervisor-docker"


class TestBedError(RuntimeError):
    """The bed could not reach the state asked for; the message says which host and why."""


class BedCommandError(subprocess.CalledProcessError):
    """A command in a test host failed; str() includes the end of its output."""

    def __str__(self) -> str:
        tail = ((self.stdout or "") + (self.stderr or "")).strip()[-2000:]
        return f"{super().__str__()}\n{tail}"


@dataclass(frozen=True)
class SimulatedVm:
    """A simulated OpenNebula guest: a QEMU stand-in process on a hypervisor."""

    vm_id: int
    program: str  # QEMU_SYSTEM or QEMU_KVM_ONE

    @property
    def name(self) -> str:
        """OpenNebula's guest name, `one-<ID>`."""
        return f"one-{self.vm_id}"

    @property
    def cmdline(self) -> str:
        """Scaphandre's `cmdline` label for it: argv joined with no separator."""
        return f"{self.program}-nameguest={self.name},debug-threads=on-machinepc"

    @property
    def gets_vmname(self) -> bool:
        """True when Scaphandre's --qemu labels it `vmname` (only `qemu-system` command lines)."""
        return "qemu-system" in self.program


@dataclass
class HostInfo:
    """One host of the bed, as a test or an inventory needs it."""

    name: str
    role: str  # "hypervisor" or "prometheus"
    ssh_port: int
    container: str
    vms: list[SimulatedVm] = field(default_factory=list)
    api_port: int | None = None  # a Prometheus host's API, published on 127.0.0.1
    image_variant: str = ""  # "hypervisor", "hypervisor-docker", "prometheus", ...
    prometheus_kind: str | None = None  # a key of PROMETHEUS_KINDS, on Prometheus hosts

    @property
    def preinstalled_docker(self) -> bool:
        """True on a hypervisor whose operator installed Docker's engine before any deploy."""
        return self.image_variant == PREINSTALLED_DOCKER_VARIANT

    @property
    def prometheus(self) -> PrometheusKind | None:
        """Where Prometheus lives on this host (None on hypervisors)."""
        return PROMETHEUS_KINDS[self.prometheus_kind] if self.prometheus_kind else None

    @property
    def vm_ids(self) -> list[int]:
        """OpenNebula IDs of the VMs this host runs."""
        return [vm.vm_id for vm in self.vms]


def default_port_base(prefix: str) -> int:
    """A port block (base..base+59) derived from the prefix, so beds rarely collide."""
    return 20000 + (zlib.crc32(prefix.encode()) % 600) * 60


def bed_settings_from_env(
    prefix: str, ssh_port_base: int | None = None, prometheus_api_port: int | None = None
) -> dict:
    """TestBed keyword arguments (prefix, ssh_port_base, prometheus_api_port) for a test
    module's bed, each overridable by SOTB_BED_PREFIX, SOTB_BED_SSH_PORT_BASE and
    SOTB_BED_PROMETHEUS_PORT, so two checkouts can run the same module side by side; by
    default moved by SOTB_BED_SUFFIX and SOTB_PORT_OFFSET as the end-to-end beds are."""

    def port(variable: str, default: int | None) -> int | None:
        value = os.environ.get(variable)
        if value is None:
            return default
        if not value.isdigit():
            raise ValueError(f"{variable}={value!r} is not a port number; unset it or give one")
        return int(value)

    def moved(default: int | None) -> int | None:
        return None if default is None else bed_port(default)

    return {
        "prefix": os.environ.get("SOTB_BED_PREFIX", bed_prefix(prefix)),
        "ssh_port_base": port("SOTB_BED_SSH_PORT_BASE", moved(ssh_port_base)),
        "prometheus_api_port": port("SOTB_BED_PROMETHEUS_PORT", moved(prometheus_api_port)),
    }


def bed_prefix(prefix: str) -> str:
    """A bed's Docker name prefix; SOTB_BED_SUFFIX sets another one for each checkout that
    runs the bed tests on the same machine at the same time."""
    return prefix + os.environ.get("SOTB_BED_SUFFIX", "")


def bed_port(port: int) -> int:
    """A loopback port of a bed, moved by SOTB_PORT_OFFSET for the same reason."""
    return port + int(os.environ.get("SOTB_PORT_OFFSET", "0"))


def port_is_free(port: int) -> bool:
    """True when nothing listens on 127.0.0.1:port and it can be bound."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ssh_banner_ok(port: int) -> bool:
    """True when an SSH server answers its banner on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            return conn.recv(64).startswith(b"SSH-")
    except OSError:
        return False


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run the docker CLI (text mode); raise BedCommandError when check is set and it fails."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and proc.returncode != 0:
        raise BedCommandError(proc.returncode, ["docker", *args], proc.stdout, proc.stderr)
    return proc


def _remove_network(network_id: str, timeout_s: float = 30) -> None:
    """`docker network rm`, retried while the engine still detaches the endpoints of containers
    just removed ("has active endpoints" for a moment after `docker rm -f`)."""
    deadline = time.monotonic() + timeout_s
    while True:
        proc = docker("network", "rm", network_id, check=False)
        if proc.returncode == 0:
            return
        if "active endpoints" not in proc.stderr or time.monotonic() > deadline:
            raise BedCommandError(
                proc.returncode, ["docker", "network", "rm", network_id], proc.stdout, proc.stderr
            )
        time.sleep(0.5)


class TestBed:
    """A set of simulated hosts; methods guarantee the state their docstring names."""

    __test__ = False  # not a pytest test class, despite the name

    def __init__(
        self,
        prefix: str = "sotb-dev",
        state_dir: Path | None = None,
        hypervisors: Sequence[str] = ("hv1", "hv2", "hv3"),
        ssh_port_base: int | None = None,
        prometheus_api_port: int | None = None,
        build_dir: Path | None = None,
        preinstalled_docker: Sequence[str] = (),
        prometheus_kind: str = "debian",
        extra_prometheus: Mapping[str, tuple[str, int]] | None = None,
    ) -> None:
        """Plan a bed (nothing starts before up()).

        preinstalled_docker: hypervisors whose operator installed Docker's engine at its
        defaults before any deploy; prometheus_kind: the kind of prom1 (a key of
        PROMETHEUS_KINDS); extra_prometheus: more Prometheus servers started with the
        bed, name -> (kind, API port on 127.0.0.1).
        """
        if not prefix.startswith("sotb-"):
            raise ValueError("a bed prefix must start with 'sotb-' (Docker names are shared)")
        unknown = sorted(set(preinstalled_docker) - set(hypervisors))
        if unknown:
            raise ValueError(
                f"preinstalled_docker names {', '.join(unknown)}, which are not "
                "among the bed's hypervisors; list them in hypervisors too"
            )
        self.prefix = prefix
        self.state_dir = Path(state_dir or images.REPO_ROOT / ".testbed" / prefix).resolve()
        self.build_dir = Path(build_dir or images.DEFAULT_BUILD_DIR)
        base = default_port_base(prefix)
        self.ssh_port_base = ssh_port_base if ssh_port_base is not None else base + 1
        self.prometheus_api_port = prometheus_api_port if prometheus_api_port is not None else base
        self.network = f"{prefix}-net"
        self.prometheus_name = PROMETHEUS_NAME
        self.hypervisor_image: str | None = None
        self.prometheus_image: str | None = None
        self.images: dict[str, str] = {}  # image variant -> tag, filled by build_images()
        self.build_timings: dict[str, float] = {}
        self.hosts: dict[str, HostInfo] = {}
        for name in hypervisors:
            self._plan_hypervisor(name, preinstalled_docker=name in preinstalled_docker)
        self._plan_prometheus(PROMETHEUS_NAME, self.prometheus_api_port, prometheus_kind)
        for name, (kind, api_port) in (extra_prometheus or {}).items():
            self._plan_prometheus(name, api_port, kind)

    # ---------------------------------------------------------------- paths
    @property
    def ssh_key(self) -> Path:
        """Private key (ed25519) that logs in as root on every host."""
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        """known_hosts for every host's 127.0.0.1 port (written by up())."""
        return self.state_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        """An ssh_config with a Host entry per host (`ssh -F FILE hv1`), written by up()."""
        return self.state_dir / "ssh_config"

    @property
    def prometheus_url(self) -> str:
        """Prometheus' HTTP API as published on this machine."""
        return f"http://127.0.0.1:{self.prometheus_api_port}"

    def prometheus_url_of(self, name: str) -> str:
        """The HTTP API of one Prometheus host of the bed, as published on this machine."""
        return f"http://127.0.0.1:{self.hosts[name].api_port}"

    @property
    def prometheus_servers(self) -> list[str]:
        """Prometheus host names, prom1 first."""
        return [h.name for h in self.hosts.values() if h.role == "prometheus"]

    @property
    def hypervisors(self) -> list[str]:
        """Hypervisor names in the order they were added."""
        return [h.name for h in self.hosts.values() if h.role == "hypervisor"]

    def vm_ids(self, host: str) -> list[int]:
        """OpenNebula IDs of the simulated VMs on a hypervisor."""
        return self.hosts[host].vm_ids

    # ------------------------------------------------------------ lifecycle
    def build_images(self) -> None:
        """Guarantee the images every planned host needs exist for the current sources
        (cached by content hash); variants nobody plans are not built."""
        self.hypervisor_image, self.prometheus_image, timings = images.build_all(self.build_dir)
        self.build_timings = timings.seconds
        self.images = {
            HYPERVISOR_VARIANT: self.hypervisor_image,
            PROMETHEUS_KINDS["debian"].image_variant: self.prometheus_image,
        }
        for host in self.hosts.values():
            self._ensure_image(host.image_variant)

    def _ensure_image(self, variant: str) -> str:
        """The tag of an image variant, built (cached) when this bed has not got it yet."""
        if self.hypervisor_image is None:
            self.build_images()
        if variant not in self.images:
            parents = {"hypervisor": self.hypervisor_image, "prometheus": self.prometheus_image}
            self.images[variant], seconds = images.build_variant(variant, parents, self.build_dir)
            self.build_timings[variant] = seconds
        return self.images[variant]

    def up(self, reuse: bool = False) -> None:
        """Guarantee the network and every planned host run, booted, with sshd answering.

        Without reuse, containers left by an earlier run of this prefix are removed
        first, so every test run starts from freshly booted hosts.
        """
        if self.hypervisor_image is None:
            self.build_images()
        self._ensure_ssh_key()
        if not reuse:
            self.down()
        self._ensure_network()
        started = [host for host in self.hosts.values() if self._ensure_container(host)]
        self._wait_ready(started, allow_degraded=False)
        self._write_client_files()

    def add_hypervisor(self, name: str, preinstalled_docker: bool = False) -> HostInfo:
        """Guarantee one more hypervisor runs (booted, sshd answering); return its info."""
        if name in self.hosts:
            raise TestBedError(f"{name} is already a host of bed {self.prefix}")
        host = self._plan_hypervisor(name, preinstalled_docker)
        self._ensure_image(host.image_variant)
        self._ensure_container(host)
        self._wait_ready([host], allow_degraded=False)
        self._write_client_files()
        return host

    def add_prometheus(self, name: str, api_port: int, kind: str = "debian") -> HostInfo:
        """Guarantee one more Prometheus server of `kind` (a key of PROMETHEUS_KINDS) runs
        (booted, API ready) with its API on 127.0.0.1:api_port; SSH ports follow prom1's
        (ssh_port_base + 50 + n)."""
        host = self._plan_prometheus(name, api_port, kind)
        self._ensure_image(host.image_variant)
        self._ensure_container(host)
        self._wait_ready([host], allow_degraded=False)
        self._write_client_files()
        return host

    def restart_host(self, name: str) -> None:
        """`docker restart` a host (a reboot: /run and /sys/class are empty again); wait for it."""
        host = self.hosts[name]
        docker("restart", "-t", str(STOP_TIMEOUT_S), host.container, timeout=STOP_TIMEOUT_S + 60)
        self._wait_ready([host], allow_degraded=True)

    def stop_host(self, name: str) -> None:
        """Power a host off (container stopped, kept); start_host() brings it back."""
        docker(
            "stop",
            "-t",
            str(STOP_TIMEOUT_S),
            self.hosts[name].container,
            timeout=STOP_TIMEOUT_S + 60,
        )

    def start_host(self, name: str) -> None:
        """Power a stopped host on again and wait until it has booted."""
        docker("start", self.hosts[name].container)
        self._wait_ready([self.hosts[name]], allow_degraded=True)

    def down(self) -> None:
        """Guarantee no container or network of this bed's prefix remains (others untouched)."""
        listed = docker("ps", "-aq", "--filter", f"label={BED_LABEL}={self.prefix}")
        ids = listed.stdout.split()
        if ids:
            docker("rm", "-f", "-v", *ids, timeout=180)
        networks = docker("network", "ls", "-q", "--filter", f"label={BED_LABEL}={self.prefix}")
        for network_id in networks.stdout.split():
            _remove_network(network_id)

    # ------------------------------------------------------------- commands
    def exec(
        self,
        host: str,
        *cmd: str,
        check: bool = True,
        input: str | None = None,  # noqa: A002 - named as subprocess.run's
        timeout: float = EXEC_TIMEOUT_S,
    ) -> subprocess.CompletedProcess:
        """Run cmd as root in a host (docker exec); BedCommandError when check and it fails."""
        args = [
            "docker",
            "exec",
            *(["-i"] if input is not None else []),
            self.hosts[host].container,
            *cmd,
        ]
        proc = subprocess.run(
            args, capture_output=True, text=True, input=input, timeout=timeout, check=False
        )
        if check and proc.returncode != 0:
            raise BedCommandError(proc.returncode, list(cmd), proc.stdout, proc.stderr)
        return proc

    def ssh(
        self, host: str, command: str, check: bool = True, timeout: float = EXEC_TIMEOUT_S
    ) -> subprocess.CompletedProcess:
        """Run a shell command on a host through real SSH with the bed's key, as pyinfra would."""
        args = [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            str(self.ssh_key),
            "-p",
            str(self.hosts[host].ssh_port),
            "-o",
            "BatchMode=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "ConnectTimeout=10",
            "root@127.0.0.1",
            command,
        ]
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
        if check and proc.returncode != 0:
            raise BedCommandError(proc.returncode, [command], proc.stdout, proc.stderr)
        return proc

    def network_state(self, host: str) -> dict:
        """A hypervisor's VM-networking state, what a deploy must leave unchanged:

        ``ipv4_forward``, ``ipv6_forward_all`` (ints), ``iptables_forward_policy``,
        ``ip6tables_forward_policy``, ``policies`` ({tool: {table: {chain: policy}}}),
        ``rules`` ({tool: {table: [lines]}}: filter and nat rules in `iptables -S`
        form that are not Docker's own; see tests/testbed/host_network.py for which
        are), ``bridges`` (sorted names) and ``bridge_nf`` ({sysctl name: int}).
        Raises TestBedError when the host cannot be read.
        """
        proc = self.exec(host, "sh", "-c", host_network.COLLECT_SCRIPT, check=False, timeout=60)
        try:
            return host_network.parse_network_state(proc.stdout)
        except host_network.NetworkStateError as exc:
            raise TestBedError(
                f"network state of {host}: {exc}; stderr: {proc.stderr.strip()[-500:]}"
            ) from None

    def vms_reach_each_other(self, host: str) -> bool:
        """True when guest vmA pings guest vmB across br0 on `host` (at most ~3 s).

        Raises TestBedError when the guests' network is missing, so a False always
        means packets were sent and dropped, never that there was nothing to ping.
        """
        source, target = VM_NAMESPACES[0], VM_ADDRESSES[1]
        script = (
            f"for vm in {' '.join(VM_NAMESPACES)}; do "
            '[ -e /run/netns/$vm ] || { echo "no network namespace $vm"; exit 3; }; done; '
            f"ip link show {VM_BRIDGE} >/dev/null || exit 3; "
            f"exec ip netns exec {source} ping -n -q -c 2 -i 0.3 -W 2 {target}"
        )
        proc = self.exec(host, "sh", "-c", script, check=False, timeout=PING_TIMEOUT_S)
        if proc.returncode == 0:
            return True
        if proc.returncode == 1:
            return False
        raise TestBedError(
            f"the simulated VM network of {host} is not there "
            f"(testbed-vm-network.service): {(proc.stdout + proc.stderr).strip()[-500:]}"
        )

    def pyinfra_host_data(self, name: str) -> dict:
        """pyinfra SSH host data for a host (keys of pyinfra's SSH connector)."""
        return {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.hosts[name].ssh_port,
            "ssh_user": "root",
            "ssh_key": str(self.ssh_key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_strict_host_key_checking": "yes",
        }

    def status(self) -> list[dict]:
        """Every container of this prefix: name, host, state, image."""
        proc = docker(
            "ps",
            "-a",
            "--filter",
            f"label={BED_LABEL}={self.prefix}",
            "--format",
            '{{.Names}}\t{{.Label "sotb.host"}}\t{{.State}}\t{{.Status}}\t{{.Image}}',
        )
        rows = []
        for line in proc.stdout.splitlines():
            container, host, state, status, image = line.split("\t")
            rows.append(
                {
                    "container": container,
                    "host": host,
                    "state": state,
                    "status": status,
                    "image": image,
                    "ssh_port": self.hosts[host].ssh_port if host in self.hosts else None,
                }
            )
        order = list(self.hosts)
        return sorted(rows, key=lambda r: order.index(r["host"]) if r["host"] in order else 99)

    def disk_usage(self) -> dict[str, str]:
        """Each container's writable-layer size as Docker reports it (e.g. '310MB')."""
        proc = docker(
            "ps",
            "-a",
            "-s",
            "--filter",
            f"label={BED_LABEL}={self.prefix}",
            "--format",
            '{{.Label "sotb.host"}}\t{{.Size}}',
            timeout=300,
        )
        return dict(line.split("\t", 1) for line in proc.stdout.splitlines())

    # ------------------------------------------------------------- internals
    def _container(self, name: str) -> str:
        return f"{self.prefix}-{name}"

    def _plan_hypervisor(self, name: str, preinstalled_docker: bool = False) -> HostInfo:
        """Add a hypervisor to the plan: its ssh port and two VMs with IDs unique in the bed."""
        index = len([h for h in self.hosts.values() if h.role == "hypervisor"])
        if index >= MAX_HYPERVISORS:
            raise TestBedError(f"a bed holds at most {MAX_HYPERVISORS} hypervisors")
        first_vm = 100 * (index + 1)
        host = HostInfo(
            name,
            "hypervisor",
            self.ssh_port_base + index,
            self._container(name),
            [SimulatedVm(first_vm + 1, QEMU_SYSTEM), SimulatedVm(first_vm + 2, QEMU_KVM_ONE)],
            image_variant=(
                PREINSTALLED_DOCKER_VARIANT if preinstalled_docker else HYPERVISOR_VARIANT
            ),
        )
        self.hosts[name] = host
        return host

    def _plan_prometheus(self, name: str, api_port: int, kind: str) -> HostInfo:
        """Add a Prometheus server of `kind` to the plan; SSH port ssh_port_base + 50 + n."""
        if name in self.hosts:
            raise TestBedError(f"{name} is already a host of bed {self.prefix}")
        if kind not in PROMETHEUS_KINDS:
            raise TestBedError(
                f"unknown Prometheus kind {kind!r} for {name}; "
                f"choose one of {', '.join(PROMETHEUS_KINDS)}"
            )
        index = len(self.prometheus_servers)
        if index >= 10:
            raise TestBedError("a bed holds at most 10 Prometheus servers")
        taken = {h.api_port: h.name for h in self.hosts.values() if h.api_port is not None}
        if api_port in taken:
            raise TestBedError(
                f"API port {api_port} for {name} is already {taken[api_port]}'s; "
                "give each Prometheus server its own port"
            )
        host = HostInfo(
            name,
            "prometheus",
            self.ssh_port_base + MAX_HYPERVISORS + index,
            self._container(name),
            api_port=api_port,
            image_variant=PROMETHEUS_KINDS[kind].image_variant,
            prometheus_kind=kind,
        )
        self.hosts[name] = host
        return host

    def _ensure_ssh_key(self) -> None:
        """Guarantee the bed's key pair and the authorized_keys file hosts mount."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.ssh_key.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"{self.prefix}-test-bed",
                    "-f",
                    str(self.ssh_key),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        authorized = self.state_dir / "authorized_keys"
        shutil.copyfile(self.ssh_key.with_suffix(".pub"), authorized)
        authorized.chmod(0o600)

    def _ensure_network(self) -> None:
        """Guarantee the bed's own bridge network exists."""
        if docker("network", "inspect", self.network, check=False).returncode != 0:
            docker("network", "create", "--label", f"{BED_LABEL}={self.prefix}", self.network)

    def _host_files(self, host: HostInfo) -> Path:
        """Write the per-host files the container mounts; return their directory."""
        directory = self.state_dir / "hosts" / host.name
        directory.mkdir(parents=True, exist_ok=True)
        lines = [f"{vm.vm_id} {vm.program}" for vm in host.vms]
        (directory / "vms").write_text(
            "# VM ID, program (written by the test bed)\n" + "".join(line + "\n" for line in lines)
        )
        return directory

    def _ensure_container(self, host: HostInfo) -> bool:
        """Guarantee the host's container runs; True when it was (re)started now."""
        state = docker("inspect", "-f", "{{.State.Status}}", host.container, check=False)
        if state.returncode == 0:
            if state.stdout.strip() == "running":
                return False
            docker("start", host.container)
            return True
        for port in self._published_ports(host):
            if not port_is_free(port):
                raise TestBedError(
                    f"127.0.0.1:{port} (for {host.name}) is already in use; "
                    "choose another ssh_port_base/prometheus_api_port"
                )
        docker("run", *self._run_args(host), timeout=120)
        return True

    def _published_ports(self, host: HostInfo) -> list[int]:
        ports = [host.ssh_port]
        if host.role == "prometheus":
            ports.append(host.api_port)
        return ports

    def _run_args(self, host: HostInfo) -> list[str]:
        """`docker run` arguments for a host."""
        files = self._host_files(host)
        args = [
            "-d",
            "--name",
            host.container,
            "--hostname",
            host.name,
            "--network",
            self.network,
            "--network-alias",
            host.name,
            "--label",
            f"{BED_LABEL}={self.prefix}",
            "--label",
            f"sotb.host={host.name}",
            "--label",
            f"sotb.role={host.role}",
            *SYSTEMD_HOST_FLAGS,
            "-v",
            f"{self.state_dir / 'authorized_keys'}:/root/.ssh/authorized_keys:ro",
            "-p",
            f"127.0.0.1:{host.ssh_port}:22",
        ]
        if host.role == "hypervisor":
            args += ["-v", f"{files / 'vms'}:/etc/testbed/vms:ro"]
        else:
            args += ["-p", f"127.0.0.1:{host.api_port}:9090"]
        return [*args, self._ensure_image(host.image_variant), "/sbin/init"]

    def _wait_ready(self, hosts: list[HostInfo], allow_degraded: bool) -> None:
        """Wait (bounded) until each host's systemd has booted, sshd answers and, on the
        Prometheus host, Prometheus is ready."""
        for host in hosts:
            self._wait_booted(host, allow_degraded)
        for host in hosts:
            self._wait_for(
                partial(ssh_banner_ok, host.ssh_port),
                SSH_TIMEOUT_S,
                f"sshd of {host.name} on 127.0.0.1:{host.ssh_port}",
            )
            if host.role == "prometheus":
                url = self.prometheus_url_of(host.name)
                self._wait_for(
                    partial(self._prometheus_ready, url),
                    PROMETHEUS_READY_TIMEOUT_S,
                    f"Prometheus API at {url}",
                )

    def _wait_booted(self, host: HostInfo, allow_degraded: bool) -> None:
        """Wait until `systemctl is-system-running` settles; fail with the failed units."""
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        state = "unknown"
        while time.monotonic() < deadline:
            proc = self.exec(host.name, "systemctl", "is-system-running", check=False, timeout=30)
            state = proc.stdout.strip()
            if state == "running" or (state == "degraded" and allow_degraded):
                return
            if state == "degraded":
                failed = self.exec(
                    host.name, "systemctl", "--failed", "--no-legend", check=False
                ).stdout
                raise TestBedError(f"{host.name} booted degraded; failed units:\n{failed}")
            time.sleep(1)
        raise TestBedError(
            f"{host.name} did not finish booting in {BOOT_TIMEOUT_S} s "
            f"(systemd state: {state or 'no answer'})"
        )

    @staticmethod
    def _wait_for(check, timeout_s: float, what: str) -> None:
        """Poll check() until true; TestBedError naming `what` after timeout_s."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if check():
                return
            time.sleep(0.5)
        raise TestBedError(f"{what} did not answer within {timeout_s} s")

    @staticmethod
    def _prometheus_ready(url: str) -> bool:
        try:
            with urllib.request.urlopen(url + "/-/ready", timeout=3) as reply:
                return reply.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def _write_client_files(self) -> None:
        """Write known_hosts, ssh_config and bed.json for humans, pyinfra and other tools."""
        keys = self.exec(
            self.prometheus_name, "sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub", timeout=30
        ).stdout.split("\n")
        known, config = [], []
        for host in self.hosts.values():
            # Every host comes from the same base image, hence has the same host keys.
            known += [
                f"[127.0.0.1]:{host.ssh_port} {' '.join(key.split()[:2])}"
                for key in keys
                if key.strip()
            ]
            config.append(
                f"Host {host.name}\n  HostName 127.0.0.1\n  Port {host.ssh_port}\n"
                f"  User root\n  IdentityFile {self.ssh_key}\n"
                f"  UserKnownHostsFile {self.known_hosts}\n  IdentitiesOnly yes\n"
            )
        self.known_hosts.write_text("\n".join(known) + "\n")
        self.ssh_config.write_text("\n".join(config))
        description = {
            "prefix": self.prefix,
            "network": self.network,
            "prometheus_url": self.prometheus_url,
            "ssh_key": str(self.ssh_key),
            "known_hosts": str(self.known_hosts),
            "hosts": {
                name: {**asdict(host), "vm_ids": host.vm_ids} for name, host in self.hosts.items()
            },
        }
        (self.state_dir / "bed.json").write_text(json.dumps(description, indent=2) + "\n")
