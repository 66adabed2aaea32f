"""The Prometheus API double answers the energy sync's queries as real Prometheus does.

Real Prometheus (Debian's promtool, `promtool test rules`) evaluates each query the script
sends over the same series at the same time; its answer must equal the double's. This also
proves that the script's PromQL parses and means what the script assumes: the newest sample
time of a series, whether Prometheus has it now (a series ended by a staleness marker is
gone from timestamp() at once, and still in the subquery over max_age_s), its mean over the
interval, energy added up across a VM's hosts.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.doubles.prometheus_api_double import PrometheusApiDouble

PROMTOOL = "/usr/bin/promtool"
SCRIPT = Path(__file__).resolve().parents[2] / "files" / "opennebula" / "scaphandre_energy_sync.py"
STEP_S = 15
# Off the 15 s sample grid (Prometheus 2 and 3 disagree only on samples at a window's edge);
# at 1232 s two samples (1215 s, 1230 s) came after the last one-minute subquery step (1200 s).
EVAL_TIMES_S = (1207, 1232)
EVAL_AT_S = EVAL_TIMES_S[0]


def load_script():
    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STALE = "stale"  # a staleness marker at that index, as Prometheus writes when a series ends


def series_values(values_by_index: dict[int, float | str], length: int) -> list:
    return [values_by_index.get(index) for index in range(length)]


# name, labels, {sample index (x 15 s): value or STALE}
SERIES = [
    # hosts: steady; changing; stopped at 12m45s (off the minute, see EVAL_AT_S); from 19m30s to 20m
    (
        "one_host:power_watts",
        {"job": "scaphandre", "one_host_id": "3"},
        dict.fromkeys(range(83), 150.0),
    ),
    (
        "one_host:power_watts",
        {"job": "scaphandre", "one_host_id": "4"},
        {i: 90.0 + i for i in range(83)},
    ),
    (
        "one_host:power_watts",
        {"job": "scaphandre", "one_host_id": "7"},
        dict.fromkeys(range(52), 120.0),
    ),
    (
        "one_host:power_watts",
        {"job": "scaphandre", "one_host_id": "8"},
        dict.fromkeys(range(78, 81), 60.0),
    ),
    # host 9's exporter went away at 17m15s: Prometheus ended its series with a staleness marker
    (
        "one_host:power_watts",
        {"job": "scaphandre", "one_host_id": "9"},
        {**dict.fromkeys(range(69), 80.0), 69: STALE},
    ),
    (
        "one_host:energy_kwh:24h",
        {"job": "scaphandre", "one_host_id": "3"},
        dict.fromkeys(range(0, 81, 4), 3.5),
    ),
    (
        "one_host:energy_kwh:24h",
        {"job": "other", "one_host_id": "3"},
        dict.fromkeys(range(0, 81, 4), 3.25),
    ),
    # a VM that migrated from host 4 to host 3 at 14m30s (its series there ended by a
    # staleness marker at 14m45s); another that stayed on host 3
    (
        "one_vm:power_watts",
        {"job": "scaphandre", "one_host_id": "4", "one_vm_id": "42"},
        {**dict.fromkeys(range(59), 30.0), 59: STALE},
    ),
    (
        "one_vm:power_watts",
        {"job": "scaphandre", "one_host_id": "3", "one_vm_id": "42"},
        dict.fromkeys(range(58, 81), 25.5),
    ),
    (
        "one_vm:power_watts",
        {"job": "scaphandre", "one_host_id": "3", "one_vm_id": "43"},
        dict.fromkeys(range(81), 7.25),
    ),
    (
        "one_vm:energy_kwh:24h",
        {"job": "scaphandre", "one_host_id": "4", "one_vm_id": "42"},
        dict.fromkeys(range(0, 81, 4), 0.5),
    ),
    (
        "one_vm:energy_kwh:24h",
        {"job": "scaphandre", "one_host_id": "3", "one_vm_id": "42"},
        dict.fromkeys(range(60, 81, 4), 0.25),
    ),
    # emissions, where hosts have a carbon intensity: host 3 only
    (
        "one_host:emissions_gco2e:24h",
        {"job": "scaphandre", "one_host_id": "3"},
        dict.fromkeys(range(0, 81, 4), 875.0),
    ),
    (
        "one_vm:emissions_gco2e:24h",
        {"job": "scaphandre", "one_host_id": "3", "one_vm_id": "42"},
        dict.fromkeys(range(60, 81, 4), 62.5),
    ),
]


def promtool_series(name: str, labels: dict, values: dict[int, float | str]) -> dict:
    length = max(values) + 1
    text = " ".join(
        "_" if value is None else value if value == STALE else repr(value)
        for value in series_values(values, length)
    )
    label_text = ",".join(f'{key}="{value}"' for key, value in labels.items())
    return {"series": f"{name}{{{label_text}}}", "values": text}


def expected_samples(rows) -> list[dict]:
    return [
        {
            "labels": "{"
            + ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
            + "}",
            "value": value,
        }
        for labels, value in rows
    ]


@pytest.fixture(scope="module", autouse=True)
def promtool_present():
    """Fail (not skip): this is the proof the double behaves like Prometheus."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"


def scenario_double():
    """The double holding SERIES: samples, and each STALE as its series' staleness marker."""
    double = PrometheusApiDouble(evaluation_interval_s=60)
    for name, labels, values in SERIES:
        stale = [index * STEP_S for index, value in values.items() if value == STALE]
        double.add_series(
            name,
            labels,
            [(index * STEP_S, value) for index, value in values.items() if value != STALE],
            stale_at=stale[0] if stale else None,
        )
    return double


def sync_queries(sync, interval_s: int, max_age_s: int) -> list[str]:
    """Every query a run sends: five per kind of object."""
    return [
        query
        for kind, (metric, _, energy) in sync.MEASURES.items()
        for query in (
            *sync.power_queries(metric, interval_s, max_age_s),
            energy,
            sync.EMISSIONS[kind],
        )
    ]


@pytest.mark.parametrize("eval_at_s", EVAL_TIMES_S)
@pytest.mark.parametrize("interval_s, max_age_s", [(300, 900), (600, 1200)])
def test_double_answers_every_sync_query_as_prometheus_does(
    tmp_path, interval_s, max_age_s, eval_at_s
):
    sync = load_script()
    double = scenario_double()
    queries = sync_queries(sync, interval_s, max_age_s)
    tests = []
    for query in queries:
        rows = double.evaluate(query, eval_at_s)
        assert rows, f"the scenario gives {query} no result: it would prove nothing"
        tests.append(
            {"expr": query, "eval_time": f"{eval_at_s}s", "exp_samples": expected_samples(rows)}
        )
    # promtool loads input samples only up to its last evaluation step (every evaluation_interval
    # up to the latest eval_time): a check a minute later makes it load the samples after 1200 s.
    tests.append(
        {
            "expr": "vector(1)",
            "eval_time": f"{eval_at_s + 60}s",
            "exp_samples": [{"labels": "{}", "value": 1}],
        }
    )
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "test.yml").write_text(
        yaml.safe_dump(
            {
                "rule_files": ["rules.yml"],
                "evaluation_interval": "1m",
                "tests": [
                    {
                        "interval": f"{STEP_S}s",
                        "input_series": [promtool_series(*series) for series in SERIES],
                        "promql_expr_test": tests,
                    }
                ],
            },
            sort_keys=False,
        )
    )
    result = subprocess.run(
        [PROMTOOL, "test", "rules", "test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_scenario_exercises_what_the_sync_relies_on():
    """The answers the cross-check above confirms, spelled out."""
    sync = load_script()
    double = scenario_double()
    mean, live, recent = sync.power_queries("one_host:power_watts", 300, 900)
    means = {labels["one_host_id"]: value for labels, value in double.evaluate(mean, EVAL_AT_S)}
    assert means == {
        "3": 150.0,
        "4": 90.0 + (sum(range(61, 81)) / 20),
        "8": 60.0,  # 7 stopped: no mean
        "9": 80.0,
    }  # ended at 1035 s, its samples still averaged
    # Prometheus has 3, 4, 8 now; 7's newest sample is older than the 5-minute lookback; 9
    # ended by its marker
    assert {labels["one_host_id"]: value for labels, value in double.evaluate(live, EVAL_AT_S)} == {
        "3": 1200.0,
        "4": 1200.0,
        "8": 1200.0,
    }
    # the subquery still tells when 7 and 9 were last measured
    assert {
        labels["one_host_id"]: value for labels, value in double.evaluate(recent, EVAL_AT_S)
    } == {"3": 1200.0, "4": 1200.0, "7": 765.0, "8": 1200.0, "9": 1020.0}
    assert {
        labels["one_host_id"]: value
        for labels, value in double.evaluate(sync.MEASURES["host"][2], EVAL_AT_S)
    } == {"3": 3.5}
    vm_mean, vm_live, _ = sync.power_queries("one_vm:power_watts", 300, 900)
    assert {
        (labels["one_vm_id"], labels["one_host_id"]): value
        for labels, value in double.evaluate(vm_mean, EVAL_AT_S)
    } == {("42", "3"): 25.5, ("43", "3"): 7.25}
    # VM 42's series on host 4 ended when it left: only host 3's is current
    assert {
        (labels["one_vm_id"], labels["one_host_id"])
        for labels, _ in double.evaluate(vm_live, EVAL_AT_S)
    } == {("42", "3"), ("43", "3")}
    assert {
        labels["one_vm_id"]: value
        for labels, value in double.evaluate(sync.MEASURES["VM"][2], EVAL_AT_S)
    } == {"42": 0.75}


def test_the_newest_sample_time_is_the_newest_sample_the_mean_is_made_of():
    """Also a sample taken after the subquery's last step: 1230 s, not the 1200 s a
    one-minute step sees, so SCAPHANDRE_SAMPLE_TIME is the newest sample averaged."""
    sync = load_script()
    _, live, recent = sync.power_queries("one_host:power_watts", 300, 900)
    double = scenario_double()
    rows = sync.join_series(
        double.evaluate(live, 1232), double.evaluate(live, 1232), double.evaluate(recent, 1232)
    )
    newest = {labels["one_host_id"]: (found.newest_s, found.live) for labels, found in rows}
    # 3 and 4 run on; 8 stopped at 1200 s (no marker: still within the lookback); 7 stopped
    # long ago and 9 was ended by a marker: only the subquery, looking back over max_age_s,
    # still sees them
    assert newest == {
        "3": (1230.0, True),
        "4": (1230.0, True),
        "7": (765.0, False),
        "8": (1200.0, True),
        "9": (1020.0, False),
    }


def test_unknown_queries_are_refused_loudly():
    double = PrometheusApiDouble()
    status, body = double.answer({"query": ["rate(one_host:power_watts[5m])"], "time": ["100"]})
    assert status == 400 and body["errorType"] == "bad_data"
