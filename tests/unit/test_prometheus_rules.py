"""The shipped Prometheus rules (files/prometheus/, adapted by tasks/prometheus/rules.py) pass
the real promtool, their unit tests pass, and a config listing them passes promtool.

promtool is Debian's 2.42 (/usr/bin/promtool), as in tests/integration. Each
check that writes files does so in its own tmp_path, because promtool resolves
rule_files relative to the file that names them.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tasks.prometheus.config_file import with_job
from tasks.prometheus.job import scaphandre_job
from tasks.prometheus.rules import rules_for_job

PROMTOOL = "/usr/bin/promtool"
REPO = Path(__file__).resolve().parents[2]
RULES = REPO / "files" / "prometheus" / "scaphandre_rules.yml"
RULES_TEST = REPO / "files" / "prometheus" / "scaphandre_rules_test.yml"
FIXTURES = REPO / "tests" / "data" / "prometheus"
RULE_FILE = "/etc/prometheus/scaphandre_rules.yml"

EXPECTED_RECORDS = {
    "one_host:power_watts",
    "one_vm:power_watts",
    "one_cloud:power_watts",
    "one_host:energy_kwh:1h",
    "one_host:energy_kwh:24h",
    "one_vm:energy_kwh:1h",
    "one_vm:energy_kwh:24h",
    # attribution
    "one_host:measured_power_watts",
    "one_vm:measured_power_watts",
    "one_host:process_power_watts",
    "one_host:process_power_scale",
    "one_vm:dynamic_power_watts",
    "one_host:constant_power_watts",
    "one_vm:allocated_size",
    "one_host:capacity_size",
    "one_host:allocated_size",
    "one_host:shared_size",
    "one_vm:constant_power_watts",
    "one_vm:attributed_power_watts",
    "one_vm:host_count",
    "one_host:power_part_watts",
    # emissions (recorded only where a carbon intensity is set)
    "one_host:emissions_gco2e_per_hour",
    "one_vm:emissions_gco2e_per_hour",
    "one_vm:host_count_with_intensity",
    "one_host:emissions_gco2e:24h",
    "one_vm:emissions_gco2e:24h",
}
EXPECTED_ALERTS = {
    "ScaphandreExporterDown",
    "ScaphandreRaplMissing",
    "ScaphandreHostPowerWithoutVm",
}


@pytest.fixture(scope="module", autouse=True)
def promtool_present():
    """Fail (not skip): these tests are the proof that the shipped rules are valid."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


def rules_in(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def job(job_name: str = "scaphandre") -> dict:
    return scaphandre_job(
        targets_file="/etc/prometheus/scaphandre_targets.yml",
        prometheus_version=(2, 42, 0),
        job_name=job_name,
    )


def write_rules_and_tests(directory: Path, rules_text: str, tests_text: str) -> Path:
    """The rules and their promtool tests side by side, as the tests file names the rules file."""
    (directory / RULES.name).write_text(rules_text)
    tests = directory / RULES_TEST.name
    tests.write_text(tests_text)
    return tests


# ---------------------------------------------------------------- the shipped files


def test_promtool_accepts_the_shipped_rules():
    checked = promtool("check", "rules", str(RULES), cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_in(RULES.read_text()))} rules found" in checked.stdout


def test_the_rules_record_power_and_energy_and_alert_on_the_three_failures():
    rules = rules_in(RULES.read_text())
    assert {rule["record"] for rule in rules if "record" in rule} == EXPECTED_RECORDS
    assert {rule["alert"] for rule in rules if "alert" in rule} == EXPECTED_ALERTS
    for rule in rules:
        if "alert" in rule:
            assert rule["labels"]["severity"] in {"info", "warning", "critical"}, rule
            assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule


def test_every_selector_of_a_scaphandre_metric_names_the_job():
    """Without job="...", an exporter also scraped by a hand-pasted job would be counted twice."""
    checked = 0
    for rule in rules_in(RULES.read_text()):
        expr = " ".join(rule["expr"].split())
        for metric in (
            "scaph_host_power_microwatts",
            "scaph_process_power_consumption_microwatts",
            "up",
        ):
            assert f"{metric} " not in expr and not expr.endswith(metric), (
                rule,
                "selector without labels",
            )
            for position in [i for i in range(len(expr)) if expr.startswith(metric + "{", i)]:
                selector = expr[position : expr.index("}", position)]
                assert 'job="scaphandre"' in selector, (rule, selector)
                checked += 1
    assert checked >= 7, "every raw metric selector of the rules was looked at"


def test_promtool_unit_tests_of_the_rules_pass():
    tested = promtool("test", "rules", str(RULES_TEST), cwd=RULES_TEST.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_unit_tests_catch_a_wrong_energy_formula(tmp_path):
    """The promtool tests are not vacuous: energy counted as if every sample were an hour fails them."""
    broken = RULES.read_text().replace("[1h:1m]) / 60 / 1000", "[1h:1m]) / 1000")
    assert broken != RULES.read_text()
    tests = write_rules_and_tests(tmp_path, broken, RULES_TEST.read_text())
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode != 0
    assert "one_host:energy_kwh:1h" in tested.stdout + tested.stderr


def test_the_unit_tests_catch_an_alert_that_no_longer_waits(tmp_path):
    broken = RULES.read_text().replace("for: 30m", "for: 1m")
    tests = write_rules_and_tests(tmp_path, broken, RULES_TEST.read_text())
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode != 0
    assert "ScaphandreHostPowerWithoutVm" in tested.stdout + tested.stderr


# ---------------------------------------------------------------- another job name


def renamed_job(text: str, job_name: str) -> str:
    return text.replace('job="scaphandre"', f'job="{job_name}"').replace(
        "job: scaphandre", f"job: {job_name}"
    )


def test_rules_for_another_job_name_pass_promtool_and_their_tests(tmp_path):
    rendered = rules_for_job(RULES.read_text(), "opennebula-power")
    assert 'job="scaphandre"' not in rendered
    assert rendered.count('job="opennebula-power"') == RULES.read_text().count('job="scaphandre"')
    tests = write_rules_and_tests(
        tmp_path, rendered, renamed_job(RULES_TEST.read_text(), "opennebula-power")
    )
    checked = promtool("check", "rules", RULES.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rules_left_on_the_default_job_miss_series_of_another_job(tmp_path):
    tests = write_rules_and_tests(
        tmp_path, RULES.read_text(), renamed_job(RULES_TEST.read_text(), "opennebula-power")
    )
    assert promtool("test", "rules", str(tests), cwd=tmp_path).returncode != 0


def test_rules_for_the_default_job_are_the_shipped_file():
    assert rules_for_job(RULES.read_text()) == RULES.read_text()


@pytest.mark.parametrize(
    "bad_name", ["", "two words", 'quo"te', "back\\slash", "hash#tag", "colon: space", None]
)
def test_rules_for_job_refuses_names_that_cannot_be_written_safely(bad_name):
    with pytest.raises(ValueError, match="cannot be written into the rules file"):
        rules_for_job(RULES.read_text(), bad_name)


def test_rules_for_job_refuses_text_that_selects_no_scaphandre_job():
    with pytest.raises(ValueError, match='no job="scaphandre" selector'):
        rules_for_job("groups: []\n", "power")


def test_promtool_accepts_the_merged_config_with_the_rules_beside_it(tmp_path):
    """What the deploy writes on a Prometheus server: config, targets file and rules side by side.

    `promtool check config` also loads and checks every file under rule_files.
    """
    (tmp_path / "scaphandre_targets.yml").write_text("[]\n")
    (tmp_path / "rules.yml").write_text("groups: []\n")
    (tmp_path / "scaphandre_rules.yml").write_text(rules_for_job(RULES.read_text(), "scaphandre"))
    scrape = scaphandre_job(
        targets_file=str(tmp_path / "scaphandre_targets.yml"), prometheus_version=(2, 42, 0)
    )
    config = tmp_path / "prometheus.yml"
    config.write_bytes(
        with_job(
            (FIXTURES / "opennebula.yml").read_bytes(),
            scrape,
            str(tmp_path / "scaphandre_rules.yml"),
            str(tmp_path / "scaphandre_targets.yml"),
        )
    )
    checked = promtool("check", "config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules_in(RULES.read_text()))} rules found" in checked.stdout
