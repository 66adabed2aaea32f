"""The attribution and carbon rules (files/prometheus/scaphandre_rules.yml, tasks/prometheus/rules.py,
tasks/accounting/carbon.py) under the real promtool.

Hand-computed cases live in files/prometheus/scaphandre_rules_test.yml; here: that those tests
catch wrong formulas, the size bases other than vCPUs, the carbon intensity rules the deploy
adds, and a property test: for any hosts, VMs, sizes (some unknown) and capacities (some
unknown), the rules give what a plain Python model of the attribution gives, and each host's
parts add up to its measured power (to 1e-9 W) on every sample.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tasks.accounting.carbon import host_intensity, intensity_rules
from tasks.prometheus.rules import SIZE_BASES, render_rules, rules_for_size_basis

PROMTOOL = "/usr/bin/promtool"
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "files" / "prometheus" / "scaphandre_rules.yml"
RULES_TEST = REPO / "files" / "prometheus" / "scaphandre_rules_test.yml"
TOLERANCE_W = 1e-9
HOST = 'job="scaphandre", instance="hv1:8080", host_id="7", one_host_id="7", host_name="hv1"'
ONE = 'job="opennebula_exporter", instance="one-frontend:9925"'


@pytest.fixture(scope="module", autouse=True)
def promtool_present():
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"


def promtool_test(
    directory: Path, rules_text: str, tests: list[dict]
) -> subprocess.CompletedProcess:
    """`promtool test rules` of `tests` against `rules_text`, both written in `directory`."""
    (directory / "rules.yml").write_text(rules_text)
    (directory / "tests.yml").write_text(
        yaml.safe_dump(
            {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests},
            sort_keys=False,
        )
    )
    return subprocess.run(
        [PROMTOOL, "test", "rules", "tests.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=directory,
        check=False,
    )


def shipped_tests_against(directory: Path, rules_text: str) -> subprocess.CompletedProcess:
    (directory / RULES.name).write_text(rules_text)
    (directory / RULES_TEST.name).write_text(RULES_TEST.read_text())
    return subprocess.run(
        [PROMTOOL, "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=directory,
        check=False,
    )


# ---------------------------------------------------------------- the hand-computed tests bite


@pytest.mark.parametrize(
    "wrong, right, caught",
    [
        # overcommitment ignored: shares over the capacity even when the sizes exceed it
        (
            "one_host:allocated_size > one_host:capacity_size\n          or one_host:capacity_size",
            "one_host:capacity_size",
            "one_vm:attributed_power_watts",
        ),
        # processes not scaled down when they exceed the host: a negative constant power
        (
            "clamp_max(one_host:measured_power_watts / (one_host:process_power_watts > 0), 1)",
            "(one_host:measured_power_watts * 0 + 1)",
            "one_host:power_part_watts",
        ),
        # the capacity no VM holds given to the VMs
        (
            "          or one_host:capacity_size\n          or one_host:allocated_size",
            "          or one_host:allocated_size",
            "one_vm:constant_power_watts",
        ),
        # a VM's emissions from its measured power instead of its attributed power
        (
            "          one_vm:attributed_power_watts\n          * on (one_host_id) group_left () one_host:carbon",
            "          one_vm:measured_power_watts\n          * on (one_host_id) group_left () one_host:carbon",
            "one_vm:emissions_gco2e_per_hour",
        ),
        # the host's own processes counted as constant power
        (
            'one_vm_id=""}) / 1e6\n          or one_host:measured_power_watts * 0)',
            'one_vm_id="-"}) / 1e6\n          or one_host:measured_power_watts * 0)',
            "one_host:power_part_watts",
        ),
    ],
)
def test_the_shipped_tests_catch_a_wrong_attribution(tmp_path, wrong, right, caught):
    shipped = RULES.read_text()
    assert shipped.count(wrong) == 1, wrong
    tested = shipped_tests_against(tmp_path, shipped.replace(wrong, right))
    assert tested.returncode != 0
    assert caught in tested.stdout + tested.stderr


# ---------------------------------------------------------------- size bases


def two_vms_on_one_host(basis_series: list[dict], expected: dict[str, float]) -> list[dict]:
    """Host 7: 100 W, VM 101 10 W and VM 102 5 W, no other process: 85 W to share. The
    expected attributed power is an input series; the rules must give it to 1e-9 W."""
    series = [
        {"series": f"scaph_host_power_microwatts{{{HOST}}}", "values": "100000000x5"},
        {
            "series": f'scaph_process_power_consumption_microwatts{{{HOST}, pid="1", one_vm_id="101"}}',
            "values": "10000000x5",
        },
        {
            "series": f'scaph_process_power_consumption_microwatts{{{HOST}, pid="2", one_vm_id="102"}}',
            "values": "5000000x5",
        },
        # vCPUs that would give other shares: another basis must not read them
        {"series": f'opennebula_vm_cpu_vcpus{{{ONE}, one_vm_id="101"}}', "values": "1x5"},
        {"series": f'opennebula_vm_cpu_vcpus{{{ONE}, one_vm_id="102"}}', "values": "8x5"},
        {"series": f'opennebula_host_cpu_total_ratio{{{ONE}, one_host_id="7"}}', "values": "400x5"},
        *basis_series,
        *(
            {
                "series": f'expected_attributed_power_watts{{one_vm_id="{vm}"}}',
                "values": f"{value!r}x5",
            }
            for vm, value in expected.items()
        ),
    ]
    return [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                {
                    "expr": (
                        "abs(one_vm:attributed_power_watts"
                        f" - on (one_vm_id) expected_attributed_power_watts) > {TOLERANCE_W}"
                    ),
                    "eval_time": "3m",
                    "exp_samples": [],
                },
                {
                    "expr": "count(one_vm:attributed_power_watts - on (one_vm_id) expected_attributed_power_watts)",
                    "eval_time": "3m",
                    "exp_samples": [{"labels": "{}", "value": len(expected)}],
                },
            ],
        }
    ]


def test_memory_basis_shares_by_memory_out_of_the_hosts_memory(tmp_path):
    """64 GiB host; 16 and 8 GiB VMs: 16/64 x 85 = 21.25 and 8/64 x 85 = 10.625."""
    gib = 1024**3
    memory = [
        {
            "series": f'opennebula_vm_mem_total_bytes{{{ONE}, one_vm_id="101"}}',
            "values": f"{16 * gib}x5",
        },
        {
            "series": f'opennebula_vm_mem_total_bytes{{{ONE}, one_vm_id="102"}}',
            "values": f"{8 * gib}x5",
        },
        {
            "series": f'opennebula_host_mem_total_bytes{{{ONE}, one_host_id="7"}}',
            "values": f"{64 * gib}x5",
        },
    ]
    rules = rules_for_size_basis(RULES.read_text(), "memory")
    tested = promtool_test(
        tmp_path, rules, two_vms_on_one_host(memory, {"101": 31.25, "102": 15.625})
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_cpu_basis_shares_by_cpu_out_of_the_hosts_cpus(tmp_path):
    """CPU 0.5 and 2 of a 4-CPU host: 0.5/4 x 85 = 10.625 and 2/4 x 85 = 42.5."""
    cpu = [
        {"series": f'opennebula_vm_cpu_ratio{{{ONE}, one_vm_id="101"}}', "values": "0.5x5"},
        {"series": f'opennebula_vm_cpu_ratio{{{ONE}, one_vm_id="102"}}', "values": "2x5"},
    ]
    rules = rules_for_size_basis(RULES.read_text(), "cpu")
    tested = promtool_test(tmp_path, rules, two_vms_on_one_host(cpu, {"101": 20.625, "102": 47.5}))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_vcpu_basis_is_the_shipped_file_and_shares_over_the_overcommitted_vcpus(tmp_path):
    """1 and 8 vCPUs on 4 CPUs: overcommitted, so shared over the 9 vCPUs."""
    assert rules_for_size_basis(RULES.read_text(), "vcpu") == RULES.read_text()
    assert set(SIZE_BASES) == {"vcpu", "cpu", "memory"}
    tested = promtool_test(
        tmp_path,
        RULES.read_text(),
        two_vms_on_one_host([], {"101": 10 + 85 / 9, "102": 5 + 85 * 8 / 9}),
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_the_expected_values_are_checked(tmp_path):
    """The check above is not vacuous: a wrong expectation fails it."""
    tested = promtool_test(
        tmp_path, RULES.read_text(), two_vms_on_one_host([], {"101": 10 + 85 / 8, "102": 5})
    )
    assert tested.returncode != 0


@pytest.mark.parametrize("basis", ["cpu", "memory"])
def test_other_bases_pass_promtool_check(tmp_path, basis):
    rules = tmp_path / "rules.yml"
    rules.write_text(rules_for_size_basis(RULES.read_text(), basis))
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", str(rules)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    expressions = [
        rule["expr"]
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
    ]
    assert not any("opennebula_vm_cpu_vcpus" in expr for expr in expressions)
    assert sum(SIZE_BASES[basis][0] in expr for expr in expressions) == 1


def test_an_unknown_basis_or_foreign_text_is_refused():
    with pytest.raises(ValueError, match="size basis 'disk'"):
        rules_for_size_basis(RULES.read_text(), "disk")
    with pytest.raises(ValueError, match="does not read"):
        rules_for_size_basis("groups: []\n", "memory")


# ---------------------------------------------------------------- carbon intensity


def test_a_hosts_own_intensity_wins_then_its_cluster_by_name_then_by_id():
    clusters = {"paris": 56.0, 104: 'grid{zone="DE"}', "104": 1.0}
    assert host_intensity(300.0, clusters, "paris", 100) == 300.0
    assert host_intensity(None, clusters, "paris", 104) == 56.0
    assert host_intensity(None, clusters, "berlin", 104) == 'grid{zone="DE"}'
    assert host_intensity(None, clusters, None, None) is None
    assert host_intensity(None, {}, "paris", 1) is None


def test_no_intensity_adds_no_rule_and_the_file_is_the_shipped_one():
    assert intensity_rules({}, "90m") == ""
    assert render_rules(RULES.read_text(), "scaphandre", "vcpu", "") == RULES.read_text()


def rendered_with_carbon() -> str:
    carbon = intensity_rules({7: 100.0, 9: 'grid_intensity{zone="b"}'}, "90m")
    return render_rules(RULES.read_text(), "opennebula-power", "vcpu", carbon)


def test_the_intensity_group_is_appended_as_the_last_group_and_passes_promtool(tmp_path):
    rendered = rendered_with_carbon()
    groups = yaml.safe_load(rendered)["groups"]
    assert [g["name"] for g in groups][-1] == "scaphandre-opennebula-carbon-intensity"
    assert groups[-1]["interval"] == "1m"
    assert groups[-1]["rules"] == [
        {
            "record": "one_host:carbon_intensity_gco2e_per_kwh",
            "expr": "vector(100.0)",
            "labels": {"one_host_id": "7"},
        },
        {
            "record": "one_host:carbon_intensity_gco2e_per_kwh",
            "expr": 'max(last_over_time(grid_intensity{zone="b"}[90m]))',
            "labels": {"one_host_id": "9"},
        },
    ]
    assert (
        groups[:-1]
        == yaml.safe_load(render_rules(RULES.read_text(), "opennebula-power", "vcpu"))["groups"]
    )
    (tmp_path / "rules.yml").write_text(rendered)
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", "rules.yml"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_number_holds_and_an_hourly_feed_holds_until_max_age(tmp_path):
    """Host 9's feed publishes 250 at 0m and 350 at 60m, then stops: 350 counts until 150m
    (60m + 90m), then host 9 has no intensity and, from the next evaluation, no emissions;
    host 7's 100 never ends."""
    power = 'job="opennebula-power", instance="hv{n}:8080", host_id="{n}", one_host_id="{n}"'
    series = [
        {"series": f"scaph_host_power_microwatts{{{power.format(n=n)}}}", "values": "50000000x200"}
        for n in (7, 9)
    ]
    series.append({"series": 'grid_intensity{zone="b"}', "values": "250 _x59 350"})

    def emissions_at(eval_time: str, expected: dict[str, float]) -> dict:
        return {
            "expr": "one_host:emissions_gco2e_per_hour",
            "eval_time": eval_time,
            "exp_samples": [
                {
                    "labels": f'one_host:emissions_gco2e_per_hour{{job="opennebula-power", one_host_id="{host}"}}',
                    "value": value,
                }
                for host, value in expected.items()
            ],
        }

    tests = [
        {
            "interval": "1m",
            "input_series": series,
            "promql_expr_test": [
                emissions_at("30m", {"7": 5, "9": 12.5}),  # 50 W x 250 g/kWh / 1000
                emissions_at("61m", {"7": 5, "9": 17.5}),  # x 350
                emissions_at("149m", {"7": 5, "9": 17.5}),
                emissions_at("152m", {"7": 5}),  # the minute after the intensity rule stops
            ],
        }
    ]
    tested = promtool_test(tmp_path, rendered_with_carbon(), tests)
    assert tested.returncode == 0, tested.stdout + tested.stderr


# ---------------------------------------------------------------- property: the rules are the model


def model(
    host_uw: int,
    vm_uw: dict[str, int],
    other_uw: list[int],
    sizes: dict[str, int | None],
    capacity: int | None,
) -> tuple[dict[str, float], dict[str, float]]:
    """(attributed watts per VM, the four parts in watts) as the rules define them."""
    host = host_uw / 1e6
    vms = {vm: power / 1e6 for vm, power in vm_uw.items()}
    others = sum(other_uw) / 1e6
    processes = sum(vms.values()) + others
    scale = min(1.0, host / processes) if processes > 0 else 1.0
    dynamic = {vm: power * scale for vm, power in vms.items()}
    constant_power = host - processes * scale
    sized = {vm: size for vm, size in sizes.items() if vm in vms and size}
    allocated = sum(sized.values())
    shared = (max(allocated, capacity) if capacity else allocated) or None
    constant = {vm: size / shared * constant_power for vm, size in sized.items()} if shared else {}
    attributed = {vm: dynamic[vm] + constant.get(vm, 0.0) for vm in vms}
    parts = {
        "vms_dynamic": sum(dynamic.values()),
        "vms_constant": sum(constant.values()),
        "unallocated": constant_power - sum(constant.values()),
        "host_processes": others * scale,
    }
    return attributed, parts


hosts_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "host_uw": st.integers(0, 400_000_000),
            "vms": st.lists(
                st.tuples(st.integers(0, 150_000_000), st.one_of(st.none(), st.integers(1, 32))),
                max_size=4,
            ),
            "others": st.lists(st.integers(0, 50_000_000), max_size=2),
            "capacity": st.one_of(st.none(), st.integers(1, 64)),
        }
    ),
    min_size=1,
    max_size=3,
)


@hypothesis_settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(hosts=hosts_strategy)
def test_the_rules_attribute_as_the_model_and_the_parts_add_up(tmp_path, hosts):
    series, checks = [], []
    next_vm = 100
    for number, host in enumerate(hosts, start=1):
        labels = f'job="scaphandre", instance="hv{number}:8080", one_host_id="{number}"'
        series.append(
            {"series": f"scaph_host_power_microwatts{{{labels}}}", "values": f"{host['host_uw']}x3"}
        )
        if host["capacity"] is not None:
            series.append(
                {
                    "series": f'opennebula_host_cpu_total_ratio{{{ONE}, one_host_id="{number}"}}',
                    "values": f"{host['capacity'] * 100}x3",
                }
            )
        vm_uw, sizes = {}, {}
        for power, size in host["vms"]:
            next_vm += 1
            vm = str(next_vm)
            vm_uw[vm], sizes[vm] = power, size
            series.append(
                {
                    "series": f'scaph_process_power_consumption_microwatts{{{labels}, pid="{vm}", one_vm_id="{vm}"}}',
                    "values": f"{power}x3",
                }
            )
            if size is not None:
                series.append(
                    {
                        "series": f'opennebula_vm_cpu_vcpus{{{ONE}, one_vm_id="{vm}"}}',
                        "values": f"{size}x3",
                    }
                )
        for pid, power in enumerate(host["others"]):
            series.append(
                {
                    "series": f'scaph_process_power_consumption_microwatts{{{labels}, pid="9{pid}"}}',
                    "values": f"{power}x3",
                }
            )
        attributed, parts = model(host["host_uw"], vm_uw, host["others"], sizes, host["capacity"])
        assert all(value >= -TOLERANCE_W for value in [*attributed.values(), *parts.values()])
        assert math.isclose(sum(parts.values()), host["host_uw"] / 1e6, abs_tol=TOLERANCE_W)
        for vm, watts in attributed.items():
            series.append(
                {
                    "series": f'model_attributed_power_watts{{one_host_id="{number}", one_vm_id="{vm}"}}',
                    "values": f"{watts!r}x3",
                }
            )
        for part, watts in parts.items():
            series.append(
                {
                    "series": f'model_power_part_watts{{one_host_id="{number}", part="{part}"}}',
                    "values": f"{watts!r}x3",
                }
            )

    def none_at(expr: str) -> list[dict]:
        return [{"expr": expr, "eval_time": t, "exp_samples": []} for t in ("1m", "3m")]

    checks += none_at(
        f"abs(one_vm:attributed_power_watts - on (one_host_id, one_vm_id) "
        f"model_attributed_power_watts) > {TOLERANCE_W}"
    )
    checks += none_at(
        "model_attributed_power_watts unless on (one_host_id, one_vm_id) one_vm:attributed_power_watts"
    )
    checks += none_at(
        "one_vm:attributed_power_watts unless on (one_host_id, one_vm_id) model_attributed_power_watts"
    )
    checks += none_at(
        f"abs(one_host:power_part_watts - on (one_host_id, part) model_power_part_watts) > {TOLERANCE_W}"
    )
    checks += none_at(
        "model_power_part_watts unless on (one_host_id, part) one_host:power_part_watts"
    )
    checks += none_at(
        f"abs(sum by (job, one_host_id) (one_host:power_part_watts) - one_host:measured_power_watts)"
        f" > {TOLERANCE_W}"
    )
    checks += none_at(
        f"abs(sum by (job, one_host_id) (one_vm:attributed_power_watts) + sum by (job, one_host_id) "
        f'(one_host:power_part_watts{{part=~"unallocated|host_processes"}}) '
        f"- on (job, one_host_id) one_host:measured_power_watts) > {TOLERANCE_W}"
    )
    checks += none_at(
        f"one_host:power_part_watts < -{TOLERANCE_W} or one_vm:attributed_power_watts < 0"
    )
    tested = promtool_test(
        tmp_path,
        RULES.read_text(),
        [{"interval": "1m", "input_series": series, "promql_expr_test": checks}],
    )
    assert tested.returncode == 0, tested.stdout[-3000:] + tested.stderr[-2000:]
