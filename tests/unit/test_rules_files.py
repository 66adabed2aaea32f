"""The shipped Prometheus rules (files/prometheus/) pass the real promtool, their unit
tests pass, and the config logic lists the rules file under rule_files.

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

from tasks.prometheus_config import (
    PrometheusConfigError,
    config_needs_update,
    merge_job,
    rule_files_in_config,
    rules_for_job,
    scaphandre_job,
    without_rule_file,
)

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
}
EXPECTED_ALERTS = {"ScaphandreExporterDown", "ScaphandreRaplMissing", "ScaphandreHostPowerWithoutVm"}


@pytest.fixture(scope="module", autouse=True)
def promtool_present():
    """Fail (not skip): these tests are the proof that the shipped rules are valid."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def rules_in(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def job(job_name: str = "scaphandre") -> dict:
    return scaphandre_job(
        targets_file="/etc/prometheus/scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name=job_name
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
    assert f"SUCCESS: {len(EXPECTED_RECORDS) + len(EXPECTED_ALERTS)} rules found" in checked.stdout


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
        for metric in ("scaph_host_power_microwatts", "scaph_process_power_consumption_microwatts", "up"):
            assert f"{metric} " not in expr and not expr.endswith(metric), (rule, "selector without labels")
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
    return text.replace('job="scaphandre"', f'job="{job_name}"').replace("job: scaphandre", f"job: {job_name}")


def test_rules_for_another_job_name_pass_promtool_and_their_tests(tmp_path):
    rendered = rules_for_job(RULES.read_text(), "opennebula-power")
    assert 'job="scaphandre"' not in rendered
    assert rendered.count('job="opennebula-power"') == RULES.read_text().count('job="scaphandre"')
    tests = write_rules_and_tests(tmp_path, rendered, renamed_job(RULES_TEST.read_text(), "opennebula-power"))
    checked = promtool("check", "rules", RULES.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(tests), cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rules_left_on_the_default_job_miss_series_of_another_job(tmp_path):
    tests = write_rules_and_tests(tmp_path, RULES.read_text(), renamed_job(RULES_TEST.read_text(), "opennebula-power"))
    assert promtool("test", "rules", str(tests), cwd=tmp_path).returncode != 0


def test_rules_for_the_default_job_are_the_shipped_file():
    assert rules_for_job(RULES.read_text()) == RULES.read_text()


@pytest.mark.parametrize("bad_name", ["", "two words", 'quo"te', "back\\slash", "hash#tag", "colon: space", None])
def test_rules_for_job_refuses_names_that_cannot_be_written_safely(bad_name):
    with pytest.raises(ValueError, match="cannot be written into the rules file"):
        rules_for_job(RULES.read_text(), bad_name)


def test_rules_for_job_refuses_text_that_selects_no_scaphandre_job():
    with pytest.raises(ValueError, match='no job="scaphandre" selector'):
        rules_for_job("groups: []\n", "power")


# ---------------------------------------------------------------- rule_files in prometheus.yml


def test_debian_config_with_an_empty_rule_files_gets_ours():
    merged = merge_job((FIXTURES / "debian_default.yml").read_text(), job(), rule_file=RULE_FILE)
    assert rule_files_in_config(merged) == [RULE_FILE]
    parsed = yaml.safe_load(merged)
    assert list(parsed)[:3] == ["global", "alerting", "rule_files"], "key order kept"
    assert [j["job_name"] for j in parsed["scrape_configs"]] == ["prometheus", "node", "scaphandre"]


def test_opennebula_config_keeps_its_own_rules_file_first():
    merged = merge_job((FIXTURES / "opennebula.yml").read_text(), job(), rule_file=RULE_FILE)
    assert rule_files_in_config(merged) == ["rules.yml", RULE_FILE]


def test_a_config_without_rule_files_gets_the_key_before_scrape_configs():
    text = "global:\n  scrape_interval: 30s\nscrape_configs: []\n"
    merged = yaml.safe_load(merge_job(text, job(), rule_file=RULE_FILE))
    assert list(merged) == ["global", "rule_files", "scrape_configs"]
    assert merged["rule_files"] == [RULE_FILE]


def test_no_previous_config_gives_the_job_and_the_rules_file():
    for empty in (None, "", "# nothing yet\n"):
        merged = yaml.safe_load(merge_job(empty, job(), rule_file=RULE_FILE))
        assert merged["rule_files"] == [RULE_FILE]
        assert [j["job_name"] for j in merged["scrape_configs"]] == ["scaphandre"]


def test_rules_file_listed_once_however_often_merged():
    once = merge_job((FIXTURES / "opennebula.yml").read_text(), job(), rule_file=RULE_FILE)
    twice = merge_job(once, job(), rule_file=RULE_FILE)
    assert rule_files_in_config(twice) == ["rules.yml", RULE_FILE]


def test_without_rule_file_the_merge_is_unchanged():
    """The existing API: callers that pass no rule_file get exactly what they got before."""
    original = (FIXTURES / "debian_default.yml").read_text()
    merged = merge_job(original, job())
    assert yaml.safe_load(merged)["rule_files"] is None
    assert merge_job(original, job(), rule_file=None) == merged


def test_config_needs_update_when_only_the_rules_file_is_missing():
    without_rules = merge_job((FIXTURES / "debian_default.yml").read_text(), job())
    assert not config_needs_update(without_rules, job())
    assert config_needs_update(without_rules, job(), rule_file=RULE_FILE)
    with_rules = merge_job(without_rules, job(), rule_file=RULE_FILE)
    assert not config_needs_update(with_rules, job(), rule_file=RULE_FILE)
    assert config_needs_update(with_rules, job("other"), rule_file=RULE_FILE), "a job change still counts"


@pytest.mark.parametrize("bad_rule_files", ["rule_files: rules.yml\n", "rule_files: [{a: 1}]\n"])
def test_rule_files_that_are_not_a_list_of_names_are_refused(bad_rule_files):
    with pytest.raises(PrometheusConfigError, match="rule_files"):
        merge_job(bad_rule_files + "scrape_configs: []\n", job(), rule_file=RULE_FILE)


@pytest.mark.parametrize("bad_rule_file", ["", "   "])
def test_an_empty_rule_file_name_is_refused(bad_rule_file):
    with pytest.raises(ValueError, match="rule_file"):
        merge_job(None, job(), rule_file=bad_rule_file)


def test_without_rule_file_removes_only_ours():
    merged = merge_job((FIXTURES / "opennebula.yml").read_text(), job(), rule_file=RULE_FILE)
    assert rule_files_in_config(without_rule_file(merged, RULE_FILE)) == ["rules.yml"]
    untouched = (FIXTURES / "opennebula.yml").read_text()
    assert without_rule_file(untouched, RULE_FILE) == untouched


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
    config.write_text(
        merge_job((FIXTURES / "opennebula.yml").read_text(), scrape, rule_file=str(tmp_path / "scaphandre_rules.yml"))
    )
    checked = promtool("check", "config", str(config), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 10 rules found" in checked.stdout
