"""TEST DOUBLE: a small simulator of OpenNebula's XML-RPC API (oned), for tests and the demo.

OpenNebula cannot be installed on the test machine, so this serves the two calls the product
needs, `one.hostpool.info` and `one.host.info`, with HOST_POOL / HOST XML shaped like
OpenNebula 6.x/7.x replies (the fields pyone's generated bindings read), and oned's reply
envelope `[success, body_or_message, error_code, ...]` including its authentication failure.
It is never used by the product code.

Fault modes (constructor `mode=` or `sim.set_mode`):
  ok       normal answers
  garbage  HTTP 200 with a body that is not XML-RPC at all
  html     HTTP 200 with an HTML page (what pointing ONE_XMLRPC at a web UI gives)
  hang     sleep `hang_s` seconds (bounded) before answering, to exercise client timeouts
  http500  HTTP 500 Internal Server Error

Simulator-only XML-RPC methods (never part of OpenNebula's API, hence the `sim.` prefix):
  sim.calls() -> {method: count}   sim.reset() -> True   sim.set_mode(mode) -> True

Process mode (for the end-to-end test bed and the demo):
  python -m tests.doubles.one_api_simulator --port 26330 --hosts FILE.yml \
      --user oneadmin --password-file F
FILE.yml is a list of hosts (or {"hosts": [...]}) like
  {"id": 3, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2}
and is re-read whenever its mtime changes (write it atomically: temp file + rename).
It prints one line "listening on URL" when ready and never prints the password.
"""

from __future__ import annotations

import argparse
import collections
import os
import signal
import socketserver
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable
from xml.sax.saxutils import escape
from xmlrpc.server import SimpleXMLRPCRequestHandler, SimpleXMLRPCServer

MODES = ("ok", "garbage", "html", "hang", "http500")
MAX_HANG_S = 30.0  # "hang" is bounded so a forgotten simulator thread always ends

# oned's error codes (include/Request.h)
AUTHENTICATION = 0x0100
AUTHORIZATION = 0x0200
NO_EXISTS = 0x0400
ACTION = 0x0800
XML_RPC_API = 0x1000
INTERNAL = 0x2000


# --------------------------------------------------------------------------- XML


def _cdata(value: Any) -> str:
    """Wrap a template value in CDATA the way oned writes TEMPLATE attributes."""
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _text(tag: str, value: Any) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _host_share_xml(host: dict) -> str:
    """HOST_SHARE as oned 6.x/7.x writes it (capacity in KB and CPU percent)."""
    total_mem = int(host.get("total_mem_kb", 16 * 1024 * 1024))
    total_cpu = int(host.get("total_cpu", 800))
    running = len(host.get("vms", []))
    cores = "".join(
        f"<CORE><CPUS><![CDATA[{2 * i}:-1,{2 * i + 1}:-1]]></CPUS><DEDICATED><![CDATA[NO]]>"
        f"</DEDICATED><FREE><![CDATA[2]]></FREE><ID><![CDATA[{i}]]></ID></CORE>"
        for i in range(total_cpu // 200))
    numa = (f"<NODE>{cores}<HUGEPAGE><PAGES><![CDATA[0]]></PAGES><SIZE><![CDATA[2048]]>"
            f"</SIZE><USAGE><![CDATA[0]]></USAGE></HUGEPAGE><MEMORY><DISTANCE><![CDATA[0]]>"
            f"</DISTANCE><TOTAL><![CDATA[{total_mem}]]></TOTAL><USAGE><![CDATA[0]]></USAGE>"
            f"</MEMORY><NODE_ID><![CDATA[0]]></NODE_ID></NODE>")
    return (
        "<HOST_SHARE>"
        f"<MEM_USAGE>0</MEM_USAGE><CPU_USAGE>0</CPU_USAGE>"
        f"<TOTAL_MEM>{total_mem}</TOTAL_MEM><TOTAL_CPU>{total_cpu}</TOTAL_CPU>"
        f"<MAX_MEM>{total_mem}</MAX_MEM><MAX_CPU>{total_cpu}</MAX_CPU>"
        f"<RUNNING_VMS>{running}</RUNNING_VMS><VMS_THREAD>1</VMS_THREAD>"
        "<DATASTORES><DISK_USAGE>0</DISK_USAGE><FREE_DISK>400000</FREE_DISK>"
        "<MAX_DISK>500000</MAX_DISK><USED_DISK>100000</USED_DISK></DATASTORES>"
        f"<PCI_DEVICES/><NUMA_NODES>{numa}</NUMA_NODES>"
        "</HOST_SHARE>")


def _template_xml(host: dict) -> str:
    """TEMPLATE: what the monitor probes report; HOSTNAME only once the host was monitored."""
    im_mad = host.get("im_mad", "kvm")
    attrs: dict[str, Any] = {
        "ARCH": "x86_64",
        "CPUSPEED": "2400",
        "HYPERVISOR": im_mad,
        "IM_MAD": im_mad,
        "MODELNAME": "Intel(R) Xeon(R) CPU (simulated)",
        "RESERVED_CPU": "",
        "RESERVED_MEM": "",
        "VERSION": "6.10.0",
        "VM_MAD": host.get("vm_mad", im_mad),
    }
    if host.get("hostname"):
        attrs["HOSTNAME"] = host["hostname"]
    attrs.update(host.get("template", {}))
    elements = []
    for key, value in sorted(attrs.items()):
        # a list stands for a repeated attribute (e.g. two HOSTNAME lines in the template)
        for item in value if isinstance(value, list) else [value]:
            elements.append(f"<{key}>{_cdata(item)}</{key}>")
    return "<TEMPLATE>" + "".join(elements) + "</TEMPLATE>"


def _monitoring_xml(host: dict) -> str:
    """The last monitoring record, included in pool replies since OpenNebula 5.12."""
    if int(host.get("state", 2)) == 0:  # INIT: never monitored yet
        return "<MONITORING/>"
    return (
        f"<MONITORING><TIMESTAMP>{int(time.time())}</TIMESTAMP><ID>{int(host['id'])}</ID>"
        "<CAPACITY><FREE_CPU>780</FREE_CPU><FREE_MEMORY>15000000</FREE_MEMORY>"
        "<USED_CPU>20</USED_CPU><USED_MEMORY>1777216</USED_MEMORY></CAPACITY>"
        "<SYSTEM><NETRX>123456</NETRX><NETTX>654321</NETTX></SYSTEM></MONITORING>")


def host_xml(host: dict) -> str:
    """Return one <HOST> element shaped like oned's (element order as in host.xsd)."""
    im_mad = host.get("im_mad", "kvm")
    state = int(host.get("state", 2))
    vms = "".join(f"<ID>{int(vm)}</ID>" for vm in host.get("vms", []))
    return (
        "<HOST>"
        + _text("ID", int(host["id"])) + _text("NAME", host["name"])
        + _text("STATE", state) + _text("PREV_STATE", int(host.get("prev_state", state)))
        + f"<IM_MAD>{_cdata(im_mad)}</IM_MAD><VM_MAD>{_cdata(host.get('vm_mad', im_mad))}</VM_MAD>"
        + _text("CLUSTER_ID", int(host.get("cluster_id", 0)))
        + _text("CLUSTER", host.get("cluster", "default"))
        + _host_share_xml(host) + f"<VMS>{vms}</VMS>"
        + _template_xml(host) + _monitoring_xml(host)
        + "</HOST>")


def host_pool_xml(hosts: list[dict]) -> str:
    """Return the HOST_POOL document one.hostpool.info answers (no namespace, like oned)."""
    return "<HOST_POOL>" + "".join(host_xml(host) for host in hosts) + "</HOST_POOL>"


def validate_hosts(hosts: Any) -> list[dict]:
    """Return the host list, or raise ValueError naming what is wrong with it."""
    if isinstance(hosts, dict) and "hosts" in hosts:
        hosts = hosts["hosts"]
    if hosts is None:
        return []
    if not isinstance(hosts, list):
        raise ValueError("hosts must be a list of {id, name, ...} mappings")
    for index, host in enumerate(hosts):
        if not isinstance(host, dict) or "id" not in host or "name" not in host:
            raise ValueError(f"host #{index} needs at least 'id' and 'name'")
        int(host["id"])
    return [dict(host) for host in hosts]


# --------------------------------------------------------------------------- server


class _Server(socketserver.ThreadingMixIn, SimpleXMLRPCServer):
    """Threaded so a hanging answer never blocks other clients or shutdown."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True


class _Handler(SimpleXMLRPCRequestHandler):
    rpc_paths = ("/RPC2", "/")

    def do_POST(self):  # noqa: N802 (http.server naming)
        simulator: OneApiSimulator = self.server.simulator  # type: ignore[attr-defined]
        mode = simulator.mode
        if mode == "hang":
            time.sleep(min(simulator.hang_s, MAX_HANG_S))
        elif mode in ("garbage", "html", "http500"):
            self._drain_body()
            self._send_fault_mode(mode)
            return
        super().do_POST()

    def _drain_body(self) -> None:
        length = int(self.headers.get("content-length", 0) or 0)
        if length:
            self.rfile.read(length)

    def _send_fault_mode(self, mode: str) -> None:
        if mode == "http500":
            status, ctype, body = 500, "text/plain", b"Internal Server Error\n"
        elif mode == "html":
            status, ctype = 200, "text/html"
            body = b"<!DOCTYPE html><html><head><title>Login</title></head><body>web UI</body></html>"
        else:
            status, ctype, body = 200, "text/plain", b"this is not XML-RPC, just some bytes\n"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - quiet: tests read stdout
        pass


class OneApiSimulator:
    """TEST DOUBLE of OpenNebula's XML-RPC API, served on a loopback port in a thread.

    Usable as a context manager. `calls` counts oned methods answered (not `sim.*`).
    """

    def __init__(self, hosts: list[dict] | None = None, *, user: str = "oneadmin",
                 password: str = "sim-password", bind: str = "127.0.0.1", port: int = 0,
                 delay_s: float = 0.0, mode: str = "ok", hang_s: float = 5.0,
                 hosts_file: str | os.PathLike | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self._hosts = validate_hosts(hosts or [])
        self._session = f"{user}:{password}"
        self._bind, self._port = bind, port
        self.delay_s, self.mode, self.hang_s = delay_s, mode, hang_s
        self._hosts_file = Path(hosts_file) if hosts_file else None
        self._hosts_file_stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle

    def start(self) -> "OneApiSimulator":
        """Bind, start serving in a daemon thread, and set `url`."""
        self._reload_hosts_file()
        server = _Server((self._bind, self._port), requestHandler=_Handler,
                         logRequests=False, allow_none=True)
        server.simulator = self  # type: ignore[attr-defined]
        self._register(server)
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}/RPC2"
        self._thread = threading.Thread(target=server.serve_forever, name="one-api-sim",
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port (bounded: handler threads are daemons)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def serve_forever(self) -> None:
        """Process mode: serve in the calling thread until interrupted."""
        assert self._thread is not None, "call start() first"
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> "OneApiSimulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- state

    def set_hosts(self, hosts: list[dict]) -> None:
        """Replace the host pool while running (e.g. "add a hypervisor")."""
        validated = validate_hosts(hosts)
        with self._lock:
            self._hosts = validated

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        self.mode = mode

    def hosts(self) -> list[dict]:
        self._reload_hosts_file()
        with self._lock:
            return list(self._hosts)

    def _reload_hosts_file(self) -> None:
        """Re-read the YAML hosts file when its mtime/size changed; keep the old pool on errors."""
        if self._hosts_file is None:
            return
        try:
            stat = self._hosts_file.stat()
        except OSError as error:
            print(f"one_api_simulator: cannot stat {self._hosts_file}: {error.strerror}",
                  file=sys.stderr, flush=True)
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._hosts_file_stamp:
            return
        try:
            import yaml
            hosts = validate_hosts(yaml.safe_load(self._hosts_file.read_text()))
        except Exception as error:  # noqa: BLE001 - a half-written file must not kill the API
            print(f"one_api_simulator: keeping the previous hosts, {self._hosts_file} "
                  f"is invalid: {error}", file=sys.stderr, flush=True)
            return
        with self._lock:
            self._hosts = hosts
            self._hosts_file_stamp = stamp

    # -- XML-RPC methods

    def _register(self, server: _Server) -> None:
        server.register_function(self._counted("one.hostpool.info", self._hostpool_info),
                                 "one.hostpool.info")
        server.register_function(self._counted("one.host.info", self._host_info), "one.host.info")
        server.register_function(lambda: dict(self.calls), "sim.calls")
        server.register_function(self._reset, "sim.reset")
        server.register_function(self._set_mode_rpc, "sim.set_mode")

    def _counted(self, name: str, method: Callable) -> Callable:
        def wrapper(*params):
            with self._lock:
                self.calls[name] += 1
            if self.delay_s:
                time.sleep(min(self.delay_s, MAX_HANG_S))
            return method(*params)
        return wrapper

    def _authenticated(self, session: Any) -> bool:
        return isinstance(session, str) and session == self._session

    @staticmethod
    def _failure(method: str, message: str, code: int) -> list:
        # oned's failure envelope: [false, "[method] message", code, resource id, replication index]
        return [False, f"[{method}] {message}", code, -1, 0]

    def _hostpool_info(self, session=None, *_ignored) -> list:
        if not self._authenticated(session):
            return self._failure("one.hostpool.info",
                                 "User couldn't be authenticated, aborting call.", AUTHENTICATION)
        return [True, host_pool_xml(self.hosts()), 0, -1, 0]

    def _host_info(self, session=None, host_id=None, *_ignored) -> list:
        if not self._authenticated(session):
            return self._failure("one.host.info",
                                 "User couldn't be authenticated, aborting call.", AUTHENTICATION)
        for host in self.hosts():
            if isinstance(host_id, int) and int(host["id"]) == host_id:
                return [True, host_xml(host), 0, host_id, 0]
        return self._failure("one.host.info", f"Error getting host [{host_id}].", NO_EXISTS)

    def _reset(self) -> bool:
        with self._lock:
            self.calls.clear()
        return True

    def _set_mode_rpc(self, mode: str) -> bool:
        self.set_mode(mode)
        return True


# --------------------------------------------------------------------------- process mode


def _read_password(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.readline().strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="TEST DOUBLE: OpenNebula XML-RPC API simulator (one.hostpool.info, one.host.info)")
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=26330)
    parser.add_argument("--hosts", required=True, help="YAML list of hosts, re-read on change")
    parser.add_argument("--user", default="oneadmin")
    parser.add_argument("--password-file", required=True)
    parser.add_argument("--mode", choices=MODES, default="ok")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)

    simulator = OneApiSimulator(user=args.user, password=_read_password(args.password_file),
                                bind=args.bind, port=args.port, delay_s=args.delay,
                                mode=args.mode, hosts_file=args.hosts)
    # SIGTERM (kill PID) ends the process cleanly, like Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    simulator.start()
    print(f"listening on {simulator.url}", flush=True)
    try:
        simulator.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
