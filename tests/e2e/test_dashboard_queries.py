"""End to end: after a deploy with the real `pyinfra` CLI, every query of the Grafana
dashboard returns data from the bed's real Prometheus, and the recording and
alerting rules the deploy ships are loaded and produce series.

Own bed (sotb-dash): two simulated hypervisors and prom1, which is also the
`grafana` host of the inventory (no Grafana runs there; the test checks the files
Grafana would read). Scenarios run in file order on one bed.

prom1 also scrapes a stand-in for OpenNebula's exporter (test double, on this machine's
address on the bed's network), listed in its prometheus.yml as OpenNebula lists the real
one: it gives the VMs' sizes and the hosts' capacities the attribution reads. hv1 has a
carbon intensity of its own, hv2 its OpenNebula cluster's.

Which asserts need the deploy to ship the rules and the dashboard (the wiring in
tasks/prometheus.py and deploy.py): test_deploy_ships_rules_and_dashboard,
test_recording_rules_produce_power_and_energy_series, the two alert scenarios and
the no-op rerun's file checks. test_every_dashboard_query_returns_data needs only
the scrape job: the dashboard reads raw Scaphandre series.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tasks.accounting.carbon import intensity_rules
from tasks.prometheus.rules import render_rules
from tests.doubles.one_api_simulator import OneApiSimulator
from tests.doubles.opennebula_exporter_double import OpenNebulaExporterDouble
from tests.e2e.cloud import (
    REPO,
    PrometheusApi,
    bed_gateway,
    bed_port,
    bed_prefix,
    bed_with_opennebula,
    render_inventory,
    run_pyinfra,
)
from tests.testbed.bed import TestBed
from tests.unit.test_grafana_dashboard import TEST_VALUES, panel_queries

pytestmark = pytest.mark.e2e

PREFIX = bed_prefix("sotb-dash")
SSH_PORT_BASE = bed_port(2501)
PROMETHEUS_API_PORT = bed_port(9195)
HYPERVISORS = ("hv1", "hv2")
POOL = [
    {"id": 4, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2},
    {
        "id": 9,
        "name": "hv2.cloud.test",
        "hostname": "hv2",
        "im_mad": "kvm",
        "state": 2,
        "cluster_id": 100,
        "cluster": "lyon",
    },
]
ONE_IDS = {"hv1": "4", "hv2": "9"}
# gCO2e/kWh: hv1's own, hv2's from its cluster
CARBON_DATA = {"hv1": {"carbon_intensity": 250}, "hv2": {"carbon_intensity_clusters": {"lyon": 50}}}
INTENSITIES = {4: 250.0, 9: 50.0}

# Where the deploy puts things on prom1 (Debian's prometheus package; grafana defaults
# except the dashboards directory, which the inventory overrides to prove the setting works).
RULES_ON_SERVER = "/etc/prometheus/scaphandre_rules.yml"
PROMETHEUS_YML = "/etc/prometheus/prometheus.yml"
PROVIDER_ON_SERVER = "/etc/grafana/provisioning/dashboards/scaphandre-opennebula.yml"
DASHBOARDS_DIR = "/srv/grafana/dashboards/opennebula"
DASHBOARD_FILE = REPO / "files" / "grafana" / "scaphandre-opennebula.json"
RULES_FILE = REPO / "files" / "prometheus" / "scaphandre_rules.yml"

DATA_TIMEOUT_S = 180.0  # 2 shared cores, several beds: generous, but bounded


@dataclass
class DashCloud:
    bed: TestBed
    simulator: OneApiSimulator
    inventory: Path
    password: str

    @property
    def prometheus(self) -> PrometheusApi:
        return PrometheusApi(self.bed.prometheus_url)

    def vm_ids(self, host: str) -> set[str]:
        return {str(vm) for vm in self.bed.vm_ids(host)}

    def file_on_prometheus_host(self, path: str) -> str:
        return self.bed.exec(self.bed.prometheus_name, "cat", path).stdout


def write_inventory(path: Path, bed: TestBed) -> Path:
    """The operator's inventory, plus prom1 in a `grafana` group (a host may be in several groups)."""
    render_inventory(path, bed, list(HYPERVISORS), CARBON_DATA)
    with path.open("a") as inventory:
        inventory.write(
            f"grafana = (prometheus[0], {{'grafana_dashboards_dir': {DASHBOARDS_DIR!r}}})\n"
        )
    return path


def opennebula_vms(bed: TestBed) -> list[dict]:
    """The bed's simulated VMs as OpenNebula knows them: 2 vCPUs for the first of each host, 4 for the others."""
    return [
        {
            "id": vm,
            "name": f"guest-{vm}",
            "host_id": int(ONE_IDS[hv]),
            "hostname": hv,
            "template": {"VCPU": "2" if n == 0 else "4"},
        }
        for hv in HYPERVISORS
        for n, vm in enumerate(bed.vm_ids(hv))
    ]


def add_opennebula_exporter_job(bed: TestBed, address: str) -> None:
    """The operator's own job for OpenNebula's exporter in prom1's prometheus.yml, as on a frontend."""
    config = yaml.safe_load(bed.exec(bed.prometheus_name, "cat", PROMETHEUS_YML).stdout)
    config["scrape_configs"].append(
        {"job_name": "opennebula_exporter", "static_configs": [{"targets": [address]}]}
    )
    bed.exec(
        bed.prometheus_name,
        "sh",
        "-c",
        f"cat > {PROMETHEUS_YML}",
        input=yaml.safe_dump(config, sort_keys=False),
    )


@pytest.fixture(scope="module")
def dash(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("dash")
    with bed_with_opennebula(
        PREFIX, state_dir, HYPERVISORS, SSH_PORT_BASE, PROMETHEUS_API_PORT, POOL
    ) as (bed, simulator, password):
        gateway = bed_gateway(bed)
        with OpenNebulaExporterDouble(POOL, opennebula_vms(bed), bind=gateway) as exporter:
            add_opennebula_exporter_job(bed, exporter.address)
            inventory = write_inventory(state_dir / "inventory.py", bed)
            yield DashCloud(bed=bed, simulator=simulator, inventory=inventory, password=password)


def alerts(cloud: DashCloud, name: str) -> list[dict]:
    """Active (pending or firing) alerts of that name, as Prometheus' own API lists them."""
    return [
        a
        for a in cloud.prometheus.get("/api/v1/alerts")["alerts"]
        if a["labels"].get("alertname") == name
    ]


def last_reload(cloud: DashCloud) -> float:
    return float(
        cloud.prometheus.query("prometheus_config_last_reload_success_timestamp_seconds")[0][
            "value"
        ][1]
    )


# ---------------------------------------------------------------- scenarios


def test_deploy_ships_rules_and_dashboard(dash):
    run = run_pyinfra(dash.inventory)
    assert run.returncode == 0, run.output[-6000:]
    assert run.failed_hosts() == []
    assert dash.password not in run.output

    prom = dash.bed.prometheus_name
    # The shipped rules, and the carbon intensity of each hypervisor (hv2's from its cluster)
    assert dash.file_on_prometheus_host(RULES_ON_SERVER) == render_rules(
        RULES_FILE.read_text(), "scaphandre", "vcpu", intensity_rules(INTENSITIES, "90m")
    )
    config = dash.file_on_prometheus_host(PROMETHEUS_YML)
    assert RULES_ON_SERVER in config and "opennebula_exporter" in config
    dash.bed.exec(prom, "promtool", "check", "config", PROMETHEUS_YML)

    shipped = dash.file_on_prometheus_host(f"{DASHBOARDS_DIR}/{DASHBOARD_FILE.name}")
    assert json.loads(shipped) == json.loads(DASHBOARD_FILE.read_text())
    provider = dash.file_on_prometheus_host(PROVIDER_ON_SERVER)
    assert f'path: "{DASHBOARDS_DIR}"' in provider


def test_every_dashboard_query_returns_data(dash):
    """Each panel target, with the dashboard's variables filled in, returns a non-empty result."""

    def scaphandre_reports_both_hosts_and_their_vms():
        hosts = {
            s["metric"]["one_host_id"]
            for s in dash.prometheus.query('scaph_host_power_microwatts{job="scaphandre"}')
        }
        vms = {
            (s["metric"]["one_host_id"], s["metric"]["one_vm_id"])
            for s in dash.prometheus.query(
                'scaph_process_power_consumption_microwatts{one_vm_id!=""}'
            )
        }
        wanted = {(ONE_IDS[h], vm) for h in HYPERVISORS for vm in dash.vm_ids(h)}
        return hosts == set(ONE_IDS.values()) and wanted <= vms

    dash.prometheus.wait_for(
        "host and VM power of both hypervisors",
        scaphandre_reports_both_hosts_and_their_vms,
        timeout_s=DATA_TIMEOUT_S,
    )

    queries = panel_queries(values=TEST_VALUES)
    assert len(queries) >= 10
    deadline = time.monotonic() + DATA_TIMEOUT_S
    empty: list[str] = []
    for title, ref_id, expr in queries:
        # The API answers status "success" or raises (PrometheusApi.get asserts it).
        result = dash.prometheus.query(expr)
        while not result and time.monotonic() < deadline:
            time.sleep(5)
            result = dash.prometheus.query(expr)
        if not result:
            empty.append(f"{title} [{ref_id}]: {expr}")
    assert not empty, "queries with no data:\n" + "\n".join(empty)


def test_per_host_and_per_vm_panels_show_every_host_and_vm(dash):
    by_title = {(title, ref): expr for title, ref, expr in panel_queries()}

    def every_host_draws_power():
        # The bed's RAPL simulation draws 20-50 W; a scrape landing between two counter
        # updates reads 0 W for a moment, so wait (bounded) for a plausible value on every host.
        per_host = dash.prometheus.query(by_title[("Power per hypervisor", "A")])
        in_range = {s["metric"]["one_host_id"] for s in per_host if 1 < float(s["value"][1]) < 500}
        return per_host if in_range == set(ONE_IDS.values()) else None

    dash.prometheus.wait_for(
        "power between 1 and 500 W for every hypervisor",
        every_host_draws_power,
        timeout_s=DATA_TIMEOUT_S,
    )

    # Energy integrates 1-minute steps: a VM seen for less than a minute may have no step yet.
    wanted = {(ONE_IDS[h], vm) for h in HYPERVISORS for vm in dash.vm_ids(h)}

    def every_vm_has_energy():
        energy = dash.prometheus.query(by_title[("Energy per VM over the range", "A")])
        found = {(s["metric"]["one_host_id"], s["metric"]["one_vm_id"]) for s in energy}
        assert found <= wanted, f"energy for VMs the bed does not run: {found - wanted}"
        return found == wanted and all(float(s["value"][1]) > 0 for s in energy)

    dash.prometheus.wait_for(
        "energy over the range for every VM", every_vm_has_energy, timeout_s=DATA_TIMEOUT_S
    )

    top = dash.prometheus.query(by_title[("Top $topn VMs by power", "A")])
    assert 0 < len(top) <= int(TEST_VALUES["topn"])


def test_recording_rules_produce_power_and_energy_series(dash):
    groups = dash.prometheus.get("/api/v1/rules")["groups"]
    ours = [g for g in groups if g["file"] == RULES_ON_SERVER]
    assert {g["name"] for g in ours} == {
        "scaphandre-opennebula-power",
        "scaphandre-opennebula-energy",
        "scaphandre-opennebula-alerts",
        "scaphandre-opennebula-attribution",
        "scaphandre-opennebula-carbon-intensity",
    }, groups

    def series_of(record: str, keys: tuple[str, ...]) -> set[tuple[str, ...]]:
        return {tuple(s["metric"][k] for k in keys) for s in dash.prometheus.query(record)}

    hosts = {(one_id,) for one_id in ONE_IDS.values()}
    vms = {(ONE_IDS[h], vm) for h in HYPERVISORS for vm in dash.vm_ids(h)}
    expected = {
        "one_host:power_watts": (("one_host_id",), hosts),
        "one_vm:power_watts": (("one_host_id", "one_vm_id"), vms),
        "one_cloud:power_watts": (("job",), {("scaphandre",)}),
        # The energy group is evaluated once a minute.
        "one_host:energy_kwh:1h": (("one_host_id",), hosts),
        "one_host:energy_kwh:24h": (("one_host_id",), hosts),
        "one_vm:energy_kwh:1h": (("one_host_id", "one_vm_id"), vms),
        "one_vm:energy_kwh:24h": (("one_host_id", "one_vm_id"), vms),
        # The attribution and emissions groups are evaluated once a minute.
        "one_vm:attributed_power_watts": (("one_host_id", "one_vm_id"), vms),
        "one_host:power_part_watts": (("one_host_id",), hosts),
        "one_host:carbon_intensity_gco2e_per_kwh": (("one_host_id",), hosts),
        "one_vm:emissions_gco2e_per_hour": (("one_host_id", "one_vm_id"), vms),
        "one_host:emissions_gco2e:24h": (("one_host_id",), hosts),
    }
    for record, (keys, wanted) in expected.items():
        dash.prometheus.wait_for(
            f"{record} for {sorted(wanted)}",
            lambda record=record, keys=keys, wanted=wanted: wanted <= series_of(record, keys),
            timeout_s=DATA_TIMEOUT_S,
        )

    def every_rule_evaluated_ok():
        # A group evaluated once a minute reports "unknown" until its first evaluation after a load.
        groups = [
            g
            for g in dash.prometheus.get("/api/v1/rules")["groups"]
            if g["name"] in {g["name"] for g in ours}
        ]
        unhealthy = [
            (r["name"], r["health"], r.get("lastError"))
            for g in groups
            for r in g["rules"]
            if r["health"] != "ok"
        ]
        return groups if not unhealthy else None

    dash.prometheus.wait_for(
        "every Scaphandre rule evaluated with health ok",
        every_rule_evaluated_ok,
        timeout_s=DATA_TIMEOUT_S,
    )

    total = float(dash.prometheus.query("one_cloud:power_watts")[0]["value"][1])
    assert 2 < total < 1000, total
    for series in dash.prometheus.query("one_host:energy_kwh:1h"):
        assert 0 < float(series["value"][1]) < 1, series  # under an hour at 20-50 W


def at(dash: DashCloud, promql: str, moment: str) -> dict[tuple[str, ...], float]:
    """{label values (one_host_id, then one_vm_id or part when present): value} at that instant."""
    result = dash.prometheus.get("/api/v1/query", query=promql, time=moment)["result"]
    return {
        tuple(
            s["metric"][k] for k in ("one_host_id", "one_vm_id", "part") if k in s["metric"]
        ): float(s["value"][1])
        for s in result
    }


def test_a_vms_attributed_power_is_above_its_measured_and_the_parts_add_up_to_the_hosts(dash):
    """On the bed's hosts (20-50 W of RAPL, VMs that sleep), the constant power is most of it:
    each VM is attributed its share by vCPUs out of the host's 8 CPUs, above its measured power,
    and the four parts of each host add up to its measured power, evaluation by evaluation."""
    vms = {(ONE_IDS[h], str(vm)) for h in HYPERVISORS for vm in dash.vm_ids(h)}

    def a_minute_with_every_vm_sized():
        # The time of the newest evaluation of the attribution group: every series of that
        # evaluation has a sample at exactly that time.
        newest = dash.prometheus.query("timestamp(one_host:measured_power_watts)")
        if len(newest) != len(HYPERVISORS) or len({s["value"][1] for s in newest}) != 1:
            return None
        moment = newest[0]["value"][1]
        constant = at(dash, "one_vm:constant_power_watts", moment)
        return moment if set(constant) == vms and all(v > 0 for v in constant.values()) else None

    moment = dash.prometheus.wait_for(
        "a constant power share for every VM",
        a_minute_with_every_vm_sized,
        timeout_s=DATA_TIMEOUT_S,
    )
    measured = at(dash, "one_host:measured_power_watts", moment)
    parts = at(dash, "one_host:power_part_watts", moment)
    attributed = at(dash, "one_vm:attributed_power_watts", moment)
    measured_vm = at(dash, "one_vm:measured_power_watts", moment)
    emissions = at(dash, "one_vm:emissions_gco2e_per_hour", moment)
    for (host, vm), watts in attributed.items():
        assert watts > measured_vm[(host, vm)], (host, vm, watts, measured_vm[(host, vm)])
        assert emissions[(host, vm)] == pytest.approx(
            watts * INTENSITIES[int(host)] / 1000, rel=1e-9
        )
    for (host,), watts in measured.items():
        assert 1 < watts < 500, (host, watts)
        assert sum(v for (h, _), v in parts.items() if h == host) == pytest.approx(watts, abs=1e-9)
        by_vms = sum(v for (h, _), v in attributed.items() if h == host)
        rest = parts[(host, "unallocated")] + parts[(host, "host_processes")]
        assert by_vms + rest == pytest.approx(watts, abs=1e-9)
        # 8 CPUs: the VMs' vCPUs (2 + 4 + ...) hold that share of the constant power (all of it
        # when they are more than 8), the rest is unallocated
        hypervisor = next(h for h in HYPERVISORS if ONE_IDS[h] == host)
        vcpus = sum(2 if n == 0 else 4 for n, _ in enumerate(dash.vm_ids(hypervisor)))
        constant = parts[(host, "vms_constant")] + parts[(host, "unallocated")]
        assert parts[(host, "vms_constant")] == pytest.approx(
            constant * min(vcpus / 8, 1), rel=1e-9
        )


def alert_while(
    dash: DashCloud, alert: str, host: str, break_it: tuple, repair_it: tuple
) -> list[dict]:
    """The `alert` alerts Prometheus lists (bounded wait) while `break_it` holds on `host`;
    `repair_it` runs afterwards whatever happens."""
    dash.bed.exec(host, *break_it)
    try:
        return dash.prometheus.wait_for(
            f"{alert} pending for {host}", lambda: alerts(dash, alert), timeout_s=DATA_TIMEOUT_S
        )
    finally:
        dash.bed.exec(host, *repair_it)


def test_a_hypervisor_without_vms_raises_the_power_without_vm_alert(dash):
    assert alerts(dash, "ScaphandreHostPowerWithoutVm") == []
    pending = alert_while(
        dash,
        "ScaphandreHostPowerWithoutVm",
        "hv2",
        ("systemctl", "stop", "testbed-vms.service"),
        ("systemctl", "start", "testbed-vms.service"),
    )
    assert [a["labels"]["one_host_id"] for a in pending] == [ONE_IDS["hv2"]]
    assert pending[0]["state"] == "pending", "it waits 30 minutes before firing"
    assert pending[0]["labels"]["host_name"] == "hv2.cloud.test"
    dash.prometheus.wait_for(
        "the alert to clear once hv2 runs VMs again",
        lambda: alerts(dash, "ScaphandreHostPowerWithoutVm") == [],
        timeout_s=DATA_TIMEOUT_S,
    )


def test_a_stopped_exporter_raises_the_exporter_down_alert(dash):
    pending = alert_while(
        dash,
        "ScaphandreExporterDown",
        "hv1",
        ("docker", "stop", "scaphandre"),
        ("docker", "start", "scaphandre"),
    )
    assert [(a["labels"]["one_host_id"], a["labels"]["instance"]) for a in pending] == [
        (ONE_IDS["hv1"], "hv1:8080")
    ]


def test_rerun_changes_nothing_and_does_not_reload(dash):
    reload_before = last_reload(dash)
    run = run_pyinfra(dash.inventory)
    assert run.returncode == 0, run.output[-6000:]
    assert run.changed_hosts() == {}, "a rerun with nothing changed must change nothing"
    assert last_reload(dash) == reload_before, "Prometheus was reloaded on a no-op rerun"
