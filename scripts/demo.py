"""The local simulated cloud behind `bash scripts/demo.sh`, and the power report after the deploy.

    python scripts/demo.py up       # simulated hosts + OpenNebula API simulator, matching inventory.py
    python scripts/demo.py report   # waits for Prometheus, prints power per hypervisor and per VM
    python scripts/demo.py down     # removes them

Everything it starts is a test double from tests/ (simulated hypervisors and
hardware, the OpenNebula API simulator, the stand-in exporter image).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.testbed.bed import TestBed  # noqa: E402

STATE = REPO / ".testbed" / "demo"
SIMULATOR_PORT = 26330  # inventory.py's one_xmlrpc
SSH_PORT_BASE = 2221  # inventory.py's ports: hv1..hv3 2221-2223, prom1 2271
PROMETHEUS_API_PORT = 9190
POOL_FILE = REPO / "tests" / "doubles" / "one_hostpool_sample.yml"
WAIT_S = 120


def bed() -> TestBed:
    return TestBed(
        prefix="sotb-demo",
        state_dir=STATE,
        hypervisors=("hv1", "hv2", "hv3"),
        ssh_port_base=SSH_PORT_BASE,
        prometheus_api_port=PROMETHEUS_API_PORT,
    )


def simulator_pid() -> int | None:
    try:
        pid = int((STATE / "one_simulator.pid").read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start_simulator() -> None:
    if simulator_pid():
        return
    password_file = STATE / "one_password"
    if not password_file.exists():
        password_file.write_text(secrets.token_urlsafe(16))
        password_file.chmod(0o600)
    auth_file = STATE / "one_auth"
    auth_file.write_text(f"oneadmin:{password_file.read_text()}\n")
    auth_file.chmod(0o600)
    # The simulator keeps its own copy of the log's descriptor: this one is closed once it runs.
    with open(STATE / "one_simulator.log", "w") as log:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.doubles.one_api_simulator",
                "--port",
                str(SIMULATOR_PORT),
                "--hosts",
                str(POOL_FILE),
                "--user",
                "oneadmin",
                "--password-file",
                str(password_file),
            ],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (STATE / "one_simulator.pid").write_text(str(process.pid))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if "listening on" in (STATE / "one_simulator.log").read_text():
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise SystemExit(
        f"the OpenNebula API simulator did not start; see {STATE / 'one_simulator.log'}"
    )


def up() -> None:
    STATE.mkdir(parents=True, exist_ok=True)
    simulated = bed()
    simulated.build_images()
    simulated.up(reuse=True)
    start_simulator()
    print(
        f"--> Simulated cloud up: hv1 hv2 hv3 and prom1; OpenNebula API simulator on 127.0.0.1:{SIMULATOR_PORT}"
    )


def down() -> None:
    pid = simulator_pid()
    if pid:
        os.kill(pid, signal.SIGTERM)
    (STATE / "one_simulator.pid").unlink(missing_ok=True)
    bed().down()
    print("--> Simulated cloud removed")


def query(promql: str) -> list[dict]:
    url = f"http://127.0.0.1:{PROMETHEUS_API_PORT}/api/v1/query?" + urllib.parse.urlencode(
        {"query": promql}
    )
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.load(reply)["data"]["result"]


def report() -> None:
    """Waits (bounded) until Prometheus has host and VM power for every hypervisor, then prints it."""
    deadline = time.monotonic() + WAIT_S
    hosts, vms = [], []
    while time.monotonic() < deadline:
        try:
            hosts = query('scaph_host_power_microwatts{job="scaphandre"}')
            vms = query(
                'scaph_process_power_consumption_microwatts{job="scaphandre", one_vm_id!=""}'
            )
        except OSError:
            pass
        if len(hosts) >= 3 and len({v["metric"]["one_host_id"] for v in vms}) >= 3:
            break
        time.sleep(2)
    else:
        raise SystemExit(
            f"Prometheus on 127.0.0.1:{PROMETHEUS_API_PORT} had no power for every hypervisor "
            f"within {WAIT_S}s"
        )
    print(f"\n--> Power as Prometheus reports it (http://127.0.0.1:{PROMETHEUS_API_PORT}):")
    for series in sorted(hosts, key=lambda s: s["metric"]["instance"]):
        labels = series["metric"]
        print(
            f"    {labels['instance']:<10} one_host_id={labels['one_host_id']:<3} "
            f"host {float(series['value'][1]) / 1e6:6.1f} W"
        )
    for series in sorted(
        vms, key=lambda s: (s["metric"]["instance"], int(s["metric"]["one_vm_id"]))
    ):
        labels = series["metric"]
        print(
            f"    {labels['instance']:<10} one_vm_id={labels['one_vm_id']:<5} "
            f"VM   {float(series['value'][1]) / 1e6:6.3f} W  ({labels.get('exe', '')})"
        )


if __name__ == "__main__":
    actions = {"up": up, "down": down, "report": report}
    if len(sys.argv) != 2 or sys.argv[1] not in actions:
        raise SystemExit(__doc__)
    actions[sys.argv[1]]()
