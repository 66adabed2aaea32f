"""The stand-in for OpenNebula's exporter (tests/doubles/opennebula_exporter_double.py) serves
what the attribution rules read, in a format promtool accepts, computed as OpenNebula's
collectors compute it."""

from __future__ import annotations

import re
import subprocess
import urllib.request

from tasks.prometheus.rules import SIZE_BASES
from tests.doubles.opennebula_exporter_double import OpenNebulaExporterDouble, render_metrics

HOSTS = [
    {"id": 4, "name": "hv1", "total_cpu": 1600, "total_mem_kb": 32 * 1024 * 1024},
    {"id": 9, "name": "hv2"},
]
VMS = [
    {
        "id": 101,
        "name": "a",
        "host_id": 4,
        "template": {"VCPU": "4", "CPU": "0.5", "MEMORY": "2048"},
    },
    {"id": 102, "name": "b", "host_id": 9},
]


def samples(text: str) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_values_are_computed_as_opennebulas_collectors_do():
    got = samples(render_metrics(HOSTS, VMS))
    assert got['opennebula_vm_cpu_vcpus{one_vm_id="101"}'] == 4
    assert got['opennebula_vm_cpu_vcpus{one_vm_id="102"}'] == 1, "no VCPU: 1, as the exporter says"
    assert got['opennebula_vm_cpu_ratio{one_vm_id="101"}'] == 0.5
    assert got['opennebula_vm_mem_total_bytes{one_vm_id="101"}'] == 2048 * 1024 * 1024
    assert got['opennebula_vm_host_id{one_vm_id="102"}'] == 9
    assert got['opennebula_host_cpu_total_ratio{one_host_id="4"}'] == 1600
    assert got['opennebula_host_mem_total_bytes{one_host_id="4"}'] == 32 * 1024 * 1024 * 1024
    assert got['opennebula_host_cpu_total_ratio{one_host_id="9"}'] == 800


def test_it_serves_every_series_the_rules_read_in_a_format_promtool_accepts():
    text = render_metrics(HOSTS, VMS)
    served = {line.split("{")[0] for line in text.splitlines() if line and not line.startswith("#")}
    read = {
        name
        for pair in SIZE_BASES.values()
        for expr in pair
        for name in re.findall(r"opennebula_\w+", expr)
    }
    assert read <= served, read - served
    checked = subprocess.run(
        ["/usr/bin/promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_it_answers_over_http_on_loopback():
    with (
        OpenNebulaExporterDouble(HOSTS, VMS) as double,
        urllib.request.urlopen(f"http://{double.address}/metrics", timeout=5) as response,
    ):
        assert response.read().decode() == render_metrics(HOSTS, VMS)
