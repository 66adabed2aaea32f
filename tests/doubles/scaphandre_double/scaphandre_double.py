"""TEST DOUBLE of the Scaphandre 1.0.2 power agent (hubblo-org), for the test bed only.

It answers the same command line as the real `scaphandre` binary's Prometheus
exporter and serves the same metric names, computed from the (simulated) RAPL
powercap tree and /proc the container is given:

    scaphandre-test-double [--no-header] [-v...] prometheus [--qemu] [--containers]
                           [-a|--address ADDR] [-p|--port PORT]

Like the real exporter it fails when it cannot work (RAPL not exposed under
/sys/class/powercap, the host's /proc not mounted, --containers without the
Docker socket, port taken, unknown argument), with one clear line on stderr
and a non-zero exit status, and it replies WITHOUT a Content-Type header.

Only the stdlib is used, and every module is imported at the top so that the
image build can copy exactly the modules this file needs.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import ipaddress
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = "1.0.2"
PROG = "scaphandre"
POWERCAP_ROOT = os.environ.get("SCAPHANDRE_DOUBLE_POWERCAP_ROOT", "/sys/class/powercap")
PROC_ROOT = os.environ.get("SCAPHANDRE_DOUBLE_PROC_ROOT", "/proc")
DOCKER_SOCKET = os.environ.get("SCAPHANDRE_DOUBLE_DOCKER_SOCKET", "/var/run/docker.sock")
SAMPLE_PERIOD_S = 2.0  # how often the background sampler reads the counters
MIN_WINDOW_S = 1.1  # shortest time between the two readings a power value comes from
SOCKET_DIR_RE = re.compile(r"^intel-rapl:(\d+)$")
DOMAIN_DIR_RE = re.compile(r"^intel-rapl:(\d+):(\d+)$")
GUEST_NAME_RE = re.compile(r"guest=([^,\s]+),")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartupError(Exception):
    """The exporter cannot run in this environment; the message says what to fix."""


# ---------------------------------------------------------------------------
# Pure helpers (unit-tested without a container)
# ---------------------------------------------------------------------------


def energy_delta_uj(previous: int, current: int, max_range_uj: int) -> int:
    """Energy spent between two readings of a RAPL counter that wraps at max_range_uj."""
    if current >= previous:
        return current - previous
    return current + (max_range_uj - previous)


def power_microwatts(previous: int, current: int, max_range_uj: int, seconds: float) -> float:
    """Average power in microwatts between two counter readings taken `seconds` apart."""
    if seconds <= 0:
        return 0.0
    return energy_delta_uj(previous, current, max_range_uj) / seconds


def render_cmdline(raw: bytes) -> str:
    """Scaphandre's `cmdline` label: the argv elements joined with NO separator."""
    return "".join(part.decode(errors="replace") for part in raw.split(b"\0") if part)


def qemu_vm_name(cmdline: str) -> str | None:
    """The `vmname` Scaphandre's --qemu derives: NAME of `guest=NAME,`, only for qemu-system."""
    if "qemu-system" not in cmdline:
        return None
    match = GUEST_NAME_RE.search(cmdline)
    return match.group(1) if match else None


def escape_label(value: str) -> str:
    """A label value escaped for the Prometheus text format."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_labels(labels: dict[str, str]) -> str:
    """`{k="v",...}` or an empty string when there are no labels."""
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(v)}"' for k, v in labels.items()) + "}"


def version_value(version: str = VERSION) -> float:
    """scaph_self_version's value, built as Scaphandre does: MAJOR.PATCHMINOR as a float."""
    major, minor, patch = version.split(".")[:3]
    return float(f"{major}.{patch}{minor}")


# ---------------------------------------------------------------------------
# Reading the (simulated) hardware and processes
# ---------------------------------------------------------------------------


@dataclass
class Zone:
    """One RAPL zone: a socket (package) or a domain inside it."""

    path: str
    socket_id: str
    name: str
    max_range_uj: int


def read_int(path: str) -> int:
    """An integer sysfs/procfs value."""
    with open(path) as handle:
        return int(handle.read().strip())


def read_text(path: str) -> str:
    """A stripped sysfs value."""
    with open(path) as handle:
        return handle.read().strip()


def discover_zones(root: str = POWERCAP_ROOT) -> tuple[list[Zone], list[Zone]]:
    """(sockets, domains) found under the powercap root."""
    sockets, domains = [], []
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if not os.path.exists(os.path.join(path, "energy_uj")):
            continue
        if match := SOCKET_DIR_RE.match(entry):
            sockets.append(
                Zone(
                    path,
                    match.group(1),
                    read_text(os.path.join(path, "name")),
                    read_int(os.path.join(path, "max_energy_range_uj")),
                )
            )
        elif match := DOMAIN_DIR_RE.match(entry):
            domains.append(
                Zone(
                    path,
                    match.group(1),
                    read_text(os.path.join(path, "name")),
                    read_int(os.path.join(path, "max_energy_range_uj")),
                )
            )
    return sockets, domains


def read_total_cpu_ticks(proc_root: str = PROC_ROOT) -> int:
    """All CPU time on the host so far, in clock ticks (first line of /proc/stat)."""
    with open(os.path.join(proc_root, "stat")) as handle:
        fields = handle.readline().split()[1:]
    return sum(int(value) for value in fields[:8])


def read_process_ticks(pid: str, proc_root: str = PROC_ROOT) -> int | None:
    """utime+stime of a process in clock ticks, or None when it is gone."""
    try:
        with open(os.path.join(proc_root, pid, "stat")) as handle:
            stat = handle.read()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def read_process_identity(pid: str, proc_root: str = PROC_ROOT) -> tuple[str, str] | None:
    """(exe, cmdline label) of a process, or None for kernel threads and vanished ones."""
    try:
        with open(os.path.join(proc_root, pid, "cmdline"), "rb") as handle:
            raw = handle.read()
    except OSError:
        return None
    if not raw:
        return None
    try:
        exe = os.readlink(os.path.join(proc_root, pid, "exe"))
    except OSError:
        exe = raw.split(b"\0")[0].decode(errors="replace")
    return exe, render_cmdline(raw)


def list_pids(proc_root: str = PROC_ROOT) -> list[str]:
    """Numeric entries of /proc."""
    return [entry for entry in os.listdir(proc_root) if entry.isdigit()]


@dataclass
class Sample:
    """One reading of every counter, with the monotonic time it was taken."""

    taken_at: float
    zone_uj: dict[str, int]
    cpu_ticks: int
    process_ticks: dict[str, int]


def take_sample(zones: list[Zone], proc_root: str = PROC_ROOT) -> Sample:
    """Read every zone counter and the CPU time of the host and each process."""
    zone_uj = {zone.path: read_int(os.path.join(zone.path, "energy_uj")) for zone in zones}
    process_ticks = {}
    for pid in list_pids(proc_root):
        ticks = read_process_ticks(pid, proc_root)
        if ticks is not None:
            process_ticks[pid] = ticks
    return Sample(time.monotonic(), zone_uj, read_total_cpu_ticks(proc_root), process_ticks)


# ---------------------------------------------------------------------------
# The exporter
# ---------------------------------------------------------------------------


class Exporter:
    """Keeps the last two samples and renders Scaphandre's metrics from them."""

    def __init__(
        self,
        qemu: bool,
        containers: bool,
        powercap_root: str = POWERCAP_ROOT,
        proc_root: str = PROC_ROOT,
    ) -> None:
        self.qemu = qemu
        self.containers = containers
        self.proc_root = proc_root
        self.sockets, self.domains = discover_zones(powercap_root)
        self.zones = self.sockets + self.domains
        self.lock = threading.Lock()
        self.previous: Sample | None = None
        self.current = take_sample(self.zones, proc_root)

    def sample(self) -> None:
        """Shift in a new sample (called by the background sampler and on demand)."""
        new = take_sample(self.zones, self.proc_root)
        with self.lock:
            self.previous, self.current = self.current, new

    def ensure_two_samples(self) -> None:
        """Guarantee a power value can be computed (first scrape right after start)."""
        if self.previous is None:
            # A window of at least MIN_WINDOW_S, so a counter that moves in steps moves.
            time.sleep(max(0.0, MIN_WINDOW_S - (time.monotonic() - self.current.taken_at)))
            self.sample()

    def zone_power(self, zone: Zone) -> float:
        """Average power of a zone between the last two samples, microwatts."""
        assert self.previous is not None
        return power_microwatts(
            self.previous.zone_uj[zone.path],
            self.current.zone_uj[zone.path],
            zone.max_range_uj,
            self.current.taken_at - self.previous.taken_at,
        )

    def render(self) -> str:
        """The /metrics body."""
        self.ensure_two_samples()
        with self.lock:
            return "".join(self._render_locked())

    def _render_locked(self):
        """Yield the exposition text, metric family by metric family."""
        host_power = sum(self.zone_power(zone) for zone in self.sockets)
        host_energy = sum(self.current.zone_uj[zone.path] for zone in self.sockets)
        yield from family(
            "scaph_self_version",
            "gauge",
            "Version number of scaphandre represented as a float.",
            [({}, version_value())],
        )
        yield from family(
            "scaph_host_power_microwatts",
            "gauge",
            "Power measurement on the whole host, in microwatts",
            [({}, round(host_power))],
        )
        yield from family(
            "scaph_host_energy_microjoules",
            "counter",
            "Raw extracted energy consumption counter for the host, in microjoules",
            [({}, host_energy)],
        )
        yield from family(
            "scaph_socket_power_microwatts",
            "gauge",
            "Power measurement relative to a CPU socket, in microwatts",
            [({"socket_id": z.socket_id}, round(self.zone_power(z))) for z in self.sockets],
        )
        yield from family(
            "scaph_domain_power_microwatts",
            "gauge",
            "Power measurement relative to a RAPL Domain, in microwatts",
            [
                ({"domain_name": z.name, "socket_id": z.socket_id}, round(self.zone_power(z)))
                for z in self.domains
            ],
        )
        yield from family(
            "scaph_process_power_consumption_microwatts",
            "gauge",
            "Power consumption due to the process, measured on at the topology "
            "level, in microwatts",
            self._process_samples(host_power),
        )

    def _process_samples(self, host_power: float) -> list[tuple[dict[str, str], float]]:
        """One sample per live process: host power times its share of CPU time."""
        cpu_delta = max(self.current.cpu_ticks - self.previous.cpu_ticks, 1)
        samples = []
        for pid, ticks in sorted(self.current.process_ticks.items(), key=lambda kv: int(kv[0])):
            identity = read_process_identity(pid, self.proc_root)
            if identity is None:
                continue
            exe, cmdline = identity
            used = ticks - self.previous.process_ticks.get(pid, ticks)
            labels = {"exe": exe, "pid": pid, "cmdline": cmdline}
            if self.qemu and (vmname := qemu_vm_name(cmdline)):
                labels["vmname"] = vmname
            samples.append((labels, round(host_power * max(used, 0) / cpu_delta)))
        return samples


def family(name: str, kind: str, help_text: str, samples) -> list[str]:
    """The HELP/TYPE header and sample lines of one metric family."""
    lines = [f"# HELP {name} {help_text}\n", f"# TYPE {name} {kind}\n"]
    lines += [f"{name}{format_labels(labels)} {value}\n" for labels, value in samples]
    return lines


def make_handler(exporter: Exporter):
    """A request handler class serving /metrics from exporter."""

    class MetricsHandler(BaseHTTPRequestHandler):
        server_version = "scaphandre-test-double/" + VERSION

        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/metrics":
                body = b"Not found. Metrics are served at /metrics\n"
                self.send_response(404)
            else:
                body = exporter.render().encode()
                self.send_response(200)
            # Deliberately no Content-Type header: real Scaphandre sends none.
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt: str, *args) -> None:
            pass  # a scrape every few seconds would flood the container log

    return MetricsHandler


# ---------------------------------------------------------------------------
# Start-up checks: fail like a broken real deployment would, loudly
# ---------------------------------------------------------------------------


def check_powercap(root: str = POWERCAP_ROOT) -> None:
    """RAPL must be exposed: intel-rapl:0 under the powercap class."""
    if not os.path.isdir(os.path.join(root, "intel-rapl:0")):
        raise StartupError(
            f"{root}/intel-rapl:0 not found: RAPL is not exposed (load intel_rapl_common and "
            f"intel_rapl_msr on the host, and mount -v {root}:{root})"
        )


def check_host_proc(proc_root: str = PROC_ROOT) -> None:
    """The host's /proc must be mounted, else only this container's processes are visible."""
    try:
        visible_self = int(os.readlink(os.path.join(proc_root, "self")))
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read {proc_root}/self: {exc}") from exc
    init_comm = ""
    with contextlib.suppress(OSError):
        init_comm = read_text(os.path.join(proc_root, "1", "comm"))
    own_namespace_only = visible_self == 1 or (
        visible_self == os.getpid() and init_comm in ("docker-init", "tini")
    )
    if own_namespace_only:
        raise StartupError(
            f"{proc_root} shows only this container's processes: mount the host's /proc "
            "(-v /proc:/proc) to measure host processes and VMs"
        )


def check_docker_socket(path: str = DOCKER_SOCKET) -> None:
    """--containers needs the Docker socket to name containers."""
    if not os.path.exists(path):
        raise StartupError(
            f"--containers needs the Docker socket, but {path} does not exist "
            "(mount -v /var/run/docker.sock:/var/run/docker.sock)"
        )


class IPv6HTTPServer(ThreadingHTTPServer):
    """The HTTP server on an IPv6 address; like Scaphandre's (Rust's std listener) it leaves
    IPV6_V6ONLY to the kernel's default, so `::` also takes IPv4 on a default host."""

    address_family = socket.AF_INET6


def bind_server(address: str, port: int, exporter: Exporter) -> ThreadingHTTPServer:
    """The HTTP server bound to address:port (IPv4 or IPv6), or a StartupError saying the port is taken."""
    server_class = (
        IPv6HTTPServer if ipaddress.ip_address(address).version == 6 else ThreadingHTTPServer
    )
    try:
        return server_class((address, port), make_handler(exporter))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise StartupError(f"port {port} on {address} is already in use") from exc
        raise StartupError(f"cannot listen on {address}:{port}: {exc.strerror}") from exc


def ip_address_argument(text: str) -> str:
    """-a/--address: an IP address literal, refused like clap refuses an unparseable IpAddr."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address syntax: {text!r}") from None


def port_argument(text: str) -> int:
    """-p/--port: 0-65535, as Scaphandre's u16."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Scaphandre's CLI subset; unknown arguments exit 2 with a usage line (as clap does)."""
    parser = argparse.ArgumentParser(
        prog=PROG, description="TEST DOUBLE of Scaphandre " + VERSION + " (test bed only)"
    )
    parser.add_argument("--version", "-V", action="version", version=f"{PROG} {VERSION}")
    parser.add_argument("--no-header", action="store_true")
    parser.add_argument("-v", action="count", default=0, dest="verbosity")
    sub = parser.add_subparsers(dest="exporter", required=True, metavar="EXPORTER")
    prom = sub.add_parser("prometheus", help="Prometheus exporter")
    # As Scaphandre 1.0 parses them: an IPv4 or IPv6 address (no brackets, no host name), a u16 port.
    prom.add_argument("-a", "--address", type=ip_address_argument, default="0.0.0.0")
    prom.add_argument("-p", "--port", type=port_argument, default=8080)
    prom.add_argument("--qemu", action="store_true")
    prom.add_argument("--containers", action="store_true")
    return parser.parse_args(argv)


def sampler_loop(exporter: Exporter, stop: threading.Event) -> None:
    """Refresh the samples every SAMPLE_PERIOD_S until stopped."""
    while not stop.wait(SAMPLE_PERIOD_S):
        try:
            exporter.sample()
        except OSError as exc:  # RAPL tree removed under us: report, keep serving the last data
            print(f"{PROG}: warning: sampling failed: {exc}", file=sys.stderr, flush=True)


def raise_keyboard_interrupt(signum: int, frame) -> None:
    """SIGTERM handler: stop serving the same way Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the exporter; 1 with a clear stderr line when it cannot start."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        check_powercap()
        check_host_proc()
        if args.containers:
            check_docker_socket()
        exporter = Exporter(qemu=args.qemu, containers=args.containers)
        server = bind_server(args.address, args.port, exporter)
    except StartupError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr, flush=True)
        return 1
    if not args.no_header:
        shown = f"[{args.address}]" if ":" in args.address else args.address
        print(
            f"scaphandre {VERSION} TEST DOUBLE: prometheus exporter on "
            f"{shown}:{args.port}/metrics (qemu={args.qemu}, "
            f"containers={args.containers}, sockets={len(exporter.sockets)})",
            flush=True,
        )
    # As PID 1 of its container the process would ignore SIGTERM: make `docker stop` quick.
    signal.signal(signal.SIGTERM, raise_keyboard_interrupt)
    stop = threading.Event()
    threading.Thread(target=sampler_loop, args=(exporter, stop), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
    return 0


if __name__ == "__main__":
    socket.setdefaulttimeout(30)
    sys.exit(main())
