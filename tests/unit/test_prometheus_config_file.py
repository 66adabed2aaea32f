"""prometheus.yml edits (tasks/prometheus/config_file.py): the job merged in or taken out,
the rules file listed, change detection; everything of the operator's kept."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.prometheus.config_file import (
    PrometheusConfigError,
    config_needs_update,
    foreign_job_conflict,
    job_in_config,
    merge_job,
    remove_job,
    rule_files_in_config,
    without_rule_file,
)
from tasks.prometheus.job import scaphandre_job

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "prometheus"
TARGETS_FILE = "/etc/prometheus/scaphandre_targets.yml"



def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def job_v2(**kwargs) -> dict:
    return scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=(2, 42, 0), **kwargs)


def job_names(config_text: str) -> list[str]:
    return [job["job_name"] for job in yaml.safe_load(config_text)["scrape_configs"]]


# --------------------------------------------------------------------------
# Merge


@pytest.mark.parametrize("fixture", ["debian_default.yml", "opennebula.yml"])
def test_merge_keeps_every_other_setting_and_appends_the_job(fixture):
    original = yaml.safe_load(fixture_text(fixture))
    merged_text = merge_job(fixture_text(fixture), job_v2())
    merged = yaml.safe_load(merged_text)
    assert list(merged) == list(original)  # top-level keys, same order
    for key in original:
        if key != "scrape_configs":
            assert merged[key] == original[key]
    assert merged["scrape_configs"][:-1] == original["scrape_configs"]
    assert merged["scrape_configs"][-1] == job_v2()
    assert merged_text.startswith("#")


def test_merge_replaces_a_hand_written_job_in_place():
    text = fixture_text("hand_written_scaphandre.yml")
    assert job_names(text) == ["prometheus", "scaphandre", "node"]
    merged_text = merge_job(text, job_v2())
    assert job_names(merged_text) == ["prometheus", "scaphandre", "node"]
    assert job_in_config(merged_text) == job_v2()
    assert yaml.safe_load(merged_text)["global"] == {"scrape_interval": "30s", "scrape_timeout": "10s"}


def test_merge_is_idempotent():
    once = merge_job(fixture_text("opennebula.yml"), job_v2())
    assert merge_job(once, job_v2()) == once


def test_merge_header_explains_comments_were_dropped():
    merged = merge_job(fixture_text("debian_default.yml"), job_v2())
    header = "".join(line for line in merged.splitlines(keepends=True) if line.startswith("#"))
    assert "scaphandre" in header and "backup" in header and "comments" in header
    assert "Attach these labels" not in merged  # original comment not carried over


@pytest.mark.parametrize("text", [None, "", fixture_text("empty.yml"), "# nothing yet\n"])
def test_merge_into_nothing_gives_a_minimal_config(text):
    merged_text = merge_job(text, job_v2())
    assert yaml.safe_load(merged_text) == {"scrape_configs": [job_v2()]}
    assert "default" in merged_text  # says the global settings are Prometheus' own


def test_merge_into_a_config_without_scrape_configs_adds_them():
    merged = yaml.safe_load(merge_job("global:\n  scrape_interval: 1m\n", job_v2()))
    assert merged == {"global": {"scrape_interval": "1m"}, "scrape_configs": [job_v2()]}


@pytest.mark.parametrize(
    "text, what",
    [
        (fixture_text("broken.yml"), "not valid YAML"),
        ("- just\n- a list\n", "not a YAML mapping"),
        ("plain words\n", "not a YAML mapping"),
        ("scrape_configs:\n  job_name: x\n", "not a list"),
        ("scrape_configs:\n  - just-a-string\n", "not a mapping"),
        (
            "scrape_configs:\n  - job_name: scaphandre\n  - job_name: scaphandre\n",
            "2 scrape jobs named 'scaphandre'",
        ),
    ],
)
def test_unusable_config_is_refused_leaving_the_live_file_untouched(text, what):
    with pytest.raises(PrometheusConfigError) as error:
        merge_job(text, job_v2())
    assert what in str(error.value)
    assert "left untouched" in str(error.value)
    assert isinstance(error.value, ValueError)


def test_job_in_config():
    assert job_in_config(fixture_text("debian_default.yml")) is None
    assert job_in_config(None) is None
    assert job_in_config(fixture_text("debian_default.yml"), "node") == {
        "job_name": "node",
        "static_configs": [{"targets": ["localhost:9100"]}],
    }
    with pytest.raises(PrometheusConfigError):
        job_in_config(fixture_text("broken.yml"))


# --------------------------------------------------------------------------
# Change detection


def test_no_update_needed_when_only_formatting_and_comments_differ():
    merged = merge_job(fixture_text("debian_default.yml"), job_v2())
    assert not config_needs_update(merged, job_v2())
    # Same content, hand-reformatted: flow style, other key order, quotes, comments.
    reformatted = (
        "# my own comment\n"
        "scrape_configs:\n"
        "  - metric_relabel_configs: "
        + yaml.safe_dump(job_v2()["metric_relabel_configs"], default_flow_style=True).strip()
        + "\n"
        f"    file_sd_configs: [{{files: ['{TARGETS_FILE}']}}]  # targets\n"
        "    job_name: \"scaphandre\"\n"
    )
    assert job_in_config(reformatted) == job_v2()
    assert not config_needs_update(reformatted, job_v2())


@pytest.mark.parametrize(
    "text",
    [None, "", fixture_text("debian_default.yml"), fixture_text("hand_written_scaphandre.yml")],
)
def test_update_needed_when_the_job_is_missing_or_hand_written(text):
    assert config_needs_update(text, job_v2())


def test_update_needed_when_the_job_differs():
    merged = merge_job(fixture_text("opennebula.yml"), job_v2())
    assert config_needs_update(merged, job_v2(scrape_interval="30s"))
    job_v3 = scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=(3, 0, 0))
    assert config_needs_update(merged, job_v3)


def test_other_jobs_changing_does_not_need_an_update():
    merged = merge_job(fixture_text("opennebula.yml"), job_v2())
    edited = merged.replace("kvm-node-a.example.org:9926", "kvm-node-z.example.org:9926")
    assert edited != merged
    assert not config_needs_update(edited, job_v2())


# --------------------------------------------------------------------------
# Removal


def job(job_name: str = "scaphandre") -> dict:
    return scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name=job_name)


def test_removing_the_merged_job_gives_back_the_operators_config():
    original = (FIXTURES / "opennebula.yml").read_text()
    removed = yaml.safe_load(remove_job(merge_job(original, job())))
    assert removed == yaml.safe_load(original)


def test_a_config_without_the_job_comes_back_unchanged():
    original = (FIXTURES / "debian_default.yml").read_text()
    assert remove_job(original) == original


def test_a_hand_written_scaphandre_job_is_removed_too():
    removed = yaml.safe_load(remove_job((FIXTURES / "hand_written_scaphandre.yml").read_text()))
    assert "scaphandre" not in [j["job_name"] for j in removed["scrape_configs"]]
    assert len(removed["scrape_configs"]) >= 2


def test_a_custom_job_name_never_overwrites_an_operators_job_of_that_name():

    mine = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="prometheus")
    conflict = foreign_job_conflict((FIXTURES / "debian_default.yml").read_text(), mine)
    assert conflict and "prometheus_job_name" in conflict


def test_our_own_job_under_a_custom_name_is_recognised_by_its_targets_file():

    mine = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="power")
    older = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="power",
                           scrape_interval="30s")
    assert foreign_job_conflict(merge_job(None, older), mine) is None
    assert foreign_job_conflict((FIXTURES / "hand_written_scaphandre.yml").read_text(), job()) is None


# --------------------------------------------------------------------------
# rule_files

RULE_FILE = "/etc/prometheus/scaphandre_rules.yml"


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
