"""The deploy's wait for /metrics, run as it runs on a hypervisor (bash), against the stand-in
exporter (test double) listening on IPv6 and IPv4 addresses of this machine's loopback."""

from __future__ import annotations

import subprocess
import threading
from contextlib import contextmanager

import pytest

from tasks.scaphandre import run_scaphandre
from tests.doubles.scaphandre_double import scaphandre_double as double
from tests.unit.pyinfra_harness import all_commands, on_hypervisor, planned_commands

ENGINE = {"DockerEngineInstalled": True, "DockerImage": [{"Id": "sha256:1"}], "DockerContainer": []}


@contextmanager
def exporter_on(address: str, tmp_path):
    """The double serving /metrics on address (a free port); yields the port."""
    powercap, proc = tmp_path / "powercap", tmp_path / "proc"
    (powercap / "intel-rapl:0").mkdir(parents=True)
    for name, value in (
        ("name", "package-0"),
        ("energy_uj", "1000"),
        ("max_energy_range_uj", "262143328850"),
    ):
        (powercap / "intel-rapl:0" / name).write_text(value + "\n")
    proc.mkdir()
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    exporter = double.Exporter(
        qemu=False, containers=False, powercap_root=str(powercap), proc_root=str(proc)
    )
    server = double.bind_server(address, 0, exporter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def metrics_wait(listen_address: str, port: int) -> str:
    """The wait command the deploy plans after creating the container (its last command)."""
    data = {
        "scaphandre_listen_address": listen_address,
        "scaphandre_port": port,
        "scaphandre_metrics_timeout_s": 3,
    }
    return all_commands(planned_commands(on_hypervisor(run_scaphandre), ENGINE, data=data))[-1]


@pytest.mark.parametrize(
    "listen_address, served_on",
    [("::1", "::1"), ("127.0.0.1", "127.0.0.1"), ("::", "::"), ("0.0.0.0", "0.0.0.0")],
)
def test_the_wait_finds_metrics_on_the_listen_address(listen_address, served_on, tmp_path):
    with exporter_on(served_on, tmp_path) as port:
        command = metrics_wait(listen_address, port)
        done = subprocess.run(
            ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
        )
    assert done.returncode == 0, done.stderr


def test_the_wait_gives_up_naming_the_bracketed_address(tmp_path):
    with exporter_on("::1", tmp_path) as port:
        pass  # stopped again: nothing answers on that port now
    command = metrics_wait("::1", port).replace("docker logs", "echo no docker here:")
    done = subprocess.run(
        ["sh", "-c", command], capture_output=True, text=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert f"Scaphandre /metrics on [::1]:{port} did not answer within 3s" in done.stderr
