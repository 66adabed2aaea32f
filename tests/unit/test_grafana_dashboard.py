"""The Grafana dashboard (files/grafana/) is valid for file provisioning, every panel
query parses as PromQL, and the provider file renders as pyinfra renders it.

No Grafana runs here: the shape is checked against what Grafana's file
provisioning reads (a plain dashboard model, not an export wrapped for the
import UI), and the PromQL with the real promtool. tests/e2e/test_dashboard_queries.py
runs every query against a real Prometheus.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from pyinfra.api.util import get_template

from tasks.grafana import dashboard_without_carbon

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "files" / "grafana" / "scaphandre-opennebula.json"
PROVIDER = REPO / "files" / "grafana" / "provisioning-dashboards.yml"
PROMTOOL = "/usr/bin/promtool"
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}

# Grafana's own variables a query may use.
BUILTIN_VARIABLES = {
    "__all",
    "__range",
    "__range_s",
    "__range_ms",
    "__rate_interval",
    "__interval",
    "__interval_ms",
}
# What a test puts in place of each variable to get plain PromQL (the "All" host value is allValue).
TEST_VALUES = {
    "job": "scaphandre",
    "host": ".*",
    "topn": "5",
    "__range": "5m",
    "__range_s": "300",
    "__range_ms": "300000",
    "__rate_interval": "1m",
    "__interval": "1m",
    "__interval_ms": "60000",
}
_VARIABLE = re.compile(r"\$(?:\{(\w+)(?::\w+)?\}|(\w+))")


def load_dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    """Every panel, also those nested in collapsed rows."""
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def variables_in(text: str) -> set[str]:
    return {braced or plain for braced, plain in _VARIABLE.findall(text)}


def substitute(expr: str, values: dict[str, str] = TEST_VALUES) -> str:
    """The query as Grafana would send it with these variable values."""

    def value(match: re.Match) -> str:
        name = match.group(1) or match.group(2)
        if name not in values:
            raise KeyError(f"no test value for dashboard variable ${name} in {expr!r}")
        return values[name]

    return _VARIABLE.sub(value, expr)


def panel_queries(
    dashboard: dict | None = None, values: dict[str, str] = TEST_VALUES
) -> list[tuple[str, str, str]]:
    """(panel title, refId, PromQL with variables substituted) for every panel target."""
    dashboard = dashboard or load_dashboard()
    return [
        (panel["title"], target["refId"], substitute(target["expr"], values))
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
    ]


# ---------------------------------------------------------------- shape


def test_dashboard_is_a_plain_model_grafana_provisioning_reads():
    dashboard = load_dashboard()
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"]), (
        "a stable uid keeps links and the folder place"
    )
    assert dashboard["title"].strip()
    assert dashboard.get("id") is None, "a provisioned dashboard must not carry a database id"
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["schemaVersion"] >= 30
    # Export-for-sharing keys are resolved only by the import UI, never by provisioning.
    assert (
        "__inputs" not in dashboard
        and "__requires" not in dashboard
        and "dashboard" not in dashboard
    )
    assert "${DS_" not in DASHBOARD.read_text()


def test_a_datasource_variable_chooses_the_prometheus():
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    datasource = variables["datasource"]
    assert datasource["type"] == "datasource" and datasource["query"] == "prometheus"
    for name in ("job", "host"):
        assert variables[name]["datasource"] == DATASOURCE_REF
        assert variables[name]["query"].startswith("label_values(scaph_host_power_microwatts")
    assert variables["job"]["current"]["value"] == "scaphandre", "the deploy's default job name"
    assert variables["host"]["includeAll"] and variables["host"]["allValue"] == ".*"
    assert variables["topn"]["type"] == "custom"


def test_every_panel_has_queries_on_the_chosen_datasource():
    panels = all_panels(load_dashboard())
    assert len(panels) >= 8
    assert len({p["id"] for p in panels}) == len(panels), "panel ids must be unique"
    for panel in panels:
        assert panel["title"].strip() and panel["type"] in {
            "stat",
            "timeseries",
            "bargauge",
            "table",
        }, panel
        assert panel["datasource"] == DATASOURCE_REF, panel["title"]
        targets = panel["targets"]
        assert targets, panel["title"]
        assert len({t["refId"] for t in targets}) == len(targets), panel["title"]
        for target in targets:
            assert target["datasource"] == DATASOURCE_REF, panel["title"]
            assert target["expr"].strip(), f"empty query in {panel['title']}"


def test_panels_sit_on_the_grid_without_overlapping():
    taken: dict[tuple[int, int], str] = {}
    for panel in all_panels(load_dashboard()):
        grid = panel["gridPos"]
        assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, (
            panel["title"]
        )
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in taken, f"{panel['title']} overlaps {taken[(x, y)]}"
                taken[(x, y)] = panel["title"]


def test_every_variable_used_is_defined():
    dashboard = load_dashboard()
    defined = {v["name"] for v in dashboard["templating"]["list"]} | BUILTIN_VARIABLES
    text = json.dumps(dashboard["panels"]) + json.dumps(dashboard["templating"])
    assert variables_in(text) <= defined, variables_in(text) - defined


def test_the_panels_cover_cloud_total_hosts_top_vms_and_vm_energy():
    queries = {
        title: [" ".join(t["expr"].split()) for t in panel["targets"]]
        for panel in all_panels(load_dashboard())
        for title in [panel["title"]]
    }
    flat = [(title, expr) for title, exprs in queries.items() for expr in exprs]
    cloud_total = [e for _, e in flat if e.startswith("sum(scaph_host_power_microwatts")]
    per_host = [e for _, e in flat if "by (one_host_id, host_name)" in e and "$__range" not in e]
    top_vms = [
        e
        for _, e in flat
        if e.startswith("topk($topn,") and "one_vm_id" in e and "$__range" not in e
    ]
    vm_energy = [
        e
        for _, e in flat
        if "by (one_host_id, one_vm_id)" in e and "[$__range:1m]" in e and "/ 60 / 1e9" in e
    ]
    assert cloud_total and per_host and top_vms and vm_energy, queries


def test_energy_queries_integrate_power_the_same_way():
    """Scaphandre's microwatts summed over 1-minute steps: / 60 gives microwatt-hours, / 1e9 kWh.
    The attribution's watts, recorded once a minute: their samples summed / 60 / 1000 (no step
    that could repeat a sample across a gap)."""
    checked = 0
    for panel in all_panels(load_dashboard()):
        for target in panel["targets"]:
            expr = target["expr"]
            if panel["fieldConfig"]["defaults"]["unit"] != "kwatth" or target["refId"] not in (
                "A",
                "C",
            ):
                continue
            if "scaph_" in expr:
                assert "sum_over_time(" in expr and "[$__range:1m]) / 60 / 1e9" in expr, (
                    panel["title"],
                    expr,
                )
            else:
                assert re.search(
                    r"sum_over_time\(one_vm:\w+_power_watts\{[^}]*\}\[\$__range\]\)\) / 60 / 1000$",
                    expr,
                ), expr
            checked += 1
    assert checked >= 4


def test_attributed_power_and_emissions_per_vm_are_shown_beside_the_measured():
    queries = {
        (title, ref): " ".join(expr.split())
        for title, ref, expr in panel_queries(values=TEST_VALUES)
    }
    energy = [
        expr for (title, _), expr in queries.items() if title == "Energy per VM over the range"
    ]
    assert any("scaph_process_power_consumption_microwatts" in e for e in energy)
    assert any("one_vm:attributed_power_watts" in e for e in energy)
    assert any("one_vm:emissions_gco2e_per_hour" in e for e in energy)
    assert any(
        t.startswith("Top 5 VMs by attributed power") or "attributed power" in t for t, _ in queries
    )
    assert any("one_host:power_part_watts" in e for e in queries.values())
    emissions = [title for (title, _), expr in queries.items() if "emissions_gco2e" in expr]
    assert len(emissions) >= 3


def test_without_carbon_nothing_about_emissions_is_left():
    stripped = dashboard_without_carbon(load_dashboard())
    text = json.dumps(stripped)
    assert "emissions" not in " ".join(
        t["expr"] for p in all_panels(stripped) for t in p["targets"]
    )
    assert "Emissions" not in json.dumps([p.get("transformations") for p in stripped["panels"]])
    assert '"Emissions"' not in text
    titles = {p["title"] for p in all_panels(stripped)}
    assert "Top $topn VMs by emissions" not in titles and "Energy per VM over the range" in titles
    table = next(p for p in stripped["panels"] if p["title"] == "Energy per VM over the range")
    assert [t["refId"] for t in table["targets"]] == ["A", "B", "C"]
    # only panels all of whose queries read emissions go, the others keep their place
    kept = [
        p["id"]
        for p in load_dashboard()["panels"]
        if not all("emissions" in target["expr"] for target in p["targets"])
    ]
    assert [p["id"] for p in stripped["panels"]] == kept and len(kept) == len(
        load_dashboard()["panels"]
    ) - 2
    assert dashboard_without_carbon(stripped) == stripped


def test_every_query_parses_as_promql(tmp_path):
    """promtool parses each substituted query, written as a recording rule."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"
    queries = panel_queries()
    assert all("$" not in expr for _, _, expr in queries)
    rules = {
        "groups": [
            {
                "name": "dashboard-queries",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": expr}
                    for n, (_, _, expr) in enumerate(queries)
                ],
            }
        ]
    }
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(yaml.safe_dump(rules))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(queries)} rules found" in checked.stdout


def test_a_broken_query_would_be_caught(tmp_path):
    rules_file = tmp_path / "queries.yml"
    rules_file.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "g",
                        "rules": [
                            {
                                "record": "dashboard:broken",
                                "expr": substitute("topk($topn, sum by (one_vm_id) (x)"),
                            }
                        ],
                    }
                ]
            }
        )
    )
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode != 0


def test_substitute_refuses_an_unknown_variable():
    with pytest.raises(KeyError, match=r"\$nope"):
        substitute('up{job=~"$nope"}')


# ---------------------------------------------------------------- provider file and deploy settings


def render_provider(**data) -> dict:
    """The provider file as pyinfra's files.template renders it."""
    return yaml.safe_load(get_template(str(PROVIDER)).render(**data))


def test_provider_points_grafana_at_the_dashboards_dir():
    provider = render_provider(
        grafana_dashboards_dir="/srv/dash/one", grafana_dashboard_folder="OpenNebula"
    )
    assert provider["apiVersion"] == 1
    [entry] = provider["providers"]
    assert entry["type"] == "file" and entry["folder"] == "OpenNebula"
    assert entry["options"]["path"] == "/srv/dash/one"
    assert 0 < entry["updateIntervalSeconds"] <= 60, (
        "dashboard changes are picked up without a restart"
    )


def test_provider_values_with_yaml_special_characters_stay_strings():
    provider = render_provider(
        grafana_dashboards_dir="/srv/a: b #c", grafana_dashboard_folder='Power "RAPL"'
    )
    assert provider["providers"][0]["options"]["path"] == "/srv/a: b #c"
    assert provider["providers"][0]["folder"] == 'Power "RAPL"'


def test_provider_needs_every_setting():
    # pyinfra renders with StrictUndefined: a missing setting fails rather than writing "".
    with pytest.raises(Exception, match=r"StrictUndefined|grafana_dashboard_folder"):
        get_template(str(PROVIDER)).render(grafana_dashboards_dir="/srv/dash")
