"""TEST DOUBLE of OpenNebula's own Prometheus exporter (opennebula-exporter, shipped with
opennebula-prometheus on the frontend, port 9925), for the test beds only.

It serves on /metrics the exporter's gauges that the deploy's attribution rules read, with the
real exporter's names and labels (OpenNebula's src/oneprometheus/opennebula-exporter: its VM
and host collectors, namespace "opennebula"), computed from the same host and VM dicts the
OpenNebula API simulator (tests/doubles/one_api_simulator.py) serves, the way the collectors
compute them from the pools:

  per VM, label one_vm_id:      opennebula_vm_cpu_vcpus (TEMPLATE/VCPU, 1 when absent),
                                opennebula_vm_cpu_ratio (TEMPLATE/CPU),
                                opennebula_vm_mem_total_bytes (TEMPLATE/MEMORY MB x 1024 x 1024),
                                opennebula_vm_host_id (the last history record's HID, else -1),
                                opennebula_vm_state (STATE)
  per host, label one_host_id:  opennebula_host_cpu_total_ratio (HOST_SHARE/TOTAL_CPU),
                                opennebula_host_mem_total_bytes (HOST_SHARE/TOTAL_MEM KB x 1024),
                                opennebula_host_state (STATE)

The product never talks to it: Prometheus scrapes it, as it scrapes the real exporter.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from tests.doubles.one_api_simulator import template_value, vm_template

_HELP = {
    "opennebula_vm_cpu_vcpus": "Total number of virtual CPUs",
    "opennebula_vm_cpu_ratio": "Total CPU capacity requested by the VM",
    "opennebula_vm_mem_total_bytes": "Total memory capacity",
    "opennebula_vm_host_id": "Host ID where the VM is allocated",
    "opennebula_vm_state": "VM state 0:init 1:pending 2:hold 3:active 4:stopped 5:suspended 6:done 8:poweroff "
    "9:undeployed 10:clonning",
    "opennebula_host_cpu_total_ratio": "Total CPU capacity",
    "opennebula_host_mem_total_bytes": "Total memory capacity",
    "opennebula_host_state": "Host state 0:init 2:monitored 3:error 4:disabled 8:offline",
}


def _vm_values(vm: dict) -> dict[str, float]:
    template = vm_template(vm)
    vcpus = template_value(template, "VCPU")
    history = vm.get("history") or (
        [{"host_id": vm["host_id"]}] if vm.get("host_id") is not None else []
    )
    return {
        "opennebula_vm_cpu_vcpus": int(vcpus) if vcpus else 1,
        "opennebula_vm_cpu_ratio": float(template_value(template, "CPU")),
        "opennebula_vm_mem_total_bytes": int(template_value(template, "MEMORY")) * 1024 * 1024,
        "opennebula_vm_host_id": int(history[-1]["host_id"]) if history else -1,
        "opennebula_vm_state": int(vm.get("state", 3)),
    }


def _host_values(host: dict) -> dict[str, float]:
    return {
        "opennebula_host_cpu_total_ratio": int(host.get("total_cpu", 800)),
        "opennebula_host_mem_total_bytes": int(host.get("total_mem_kb", 16 * 1024 * 1024)) * 1024,
        "opennebula_host_state": int(host.get("state", 2)),
    }


def render_metrics(hosts: list[dict], vms: list[dict]) -> str:
    """The exposition text: one family per metric, one sample per VM or host."""
    samples: dict[str, list[str]] = {name: [] for name in _HELP}
    for vm in vms:
        for name, value in _vm_values(vm).items():
            samples[name].append(f'{name}{{one_vm_id="{int(vm["id"])}"}} {value}')
    for host in hosts:
        for name, value in _host_values(host).items():
            samples[name].append(f'{name}{{one_host_id="{int(host["id"])}"}} {value}')
    lines = []
    for name, help_text in _HELP.items():
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge", *samples[name]]
    return "\n".join(lines) + "\n"


class OpenNebulaExporterDouble:
    """Serves render_metrics(hosts, vms) on http://BIND:PORT/metrics in a daemon thread."""

    def __init__(self, hosts: list[dict], vms: list[dict], bind: str = "127.0.0.1", port: int = 0):
        self.hosts, self.vms = hosts, vms
        self._bind, self._port = bind, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.address = ""

    def start(self) -> OpenNebulaExporterDouble:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = render_metrics(double.hosts, double.vms).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format, *args) -> None:  # noqa: A002 - quiet
                pass

        self._server = ThreadingHTTPServer((self._bind, self._port), Handler)
        host, port = self._server.server_address[:2]
        self.address = f"{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="opennebula-exporter-double",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> OpenNebulaExporterDouble:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
