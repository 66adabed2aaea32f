"""Unit tests of tasks.prometheus_config: pure text in, text out."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tasks.prometheus_config import (
    DEFAULT_JOB_NAME,
    PrometheusConfigError,
    ScrapeTarget,
    config_needs_update,
    job_in_config,
    merge_job,
    parse_targets_file,
    prometheus_version,
    render_targets_file,
    scaphandre_job,
    scrape_job_snippet,
    targets_file_entries,
)

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "prometheus"
TARGETS_FILE = "/etc/prometheus/scaphandre_targets.yml"

HV1 = ScrapeTarget(address="hv1.example.com:8080", one_host_id=3, host_name="hv1")
HV2 = ScrapeTarget(address="hv2.example.com:8080", one_host_id=7, host_name="hv2")
HV3 = ScrapeTarget(address="hv3.example.com:8080", one_host_id=12, host_name="hv3")


def fixture_text(name: str) -> str:
    return (FIXTURES / name).read_text()


def job_v2(**kwargs) -> dict:
    return scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=(2, 42, 0), **kwargs)


def job_names(config_text: str) -> list[str]:
    return [job["job_name"] for job in yaml.safe_load(config_text)["scrape_configs"]]


# --------------------------------------------------------------------------
# Targets file


def test_targets_entries_have_string_labels_for_both_id_conventions():
    assert targets_file_entries([HV1]) == [
        {
            "targets": ["hv1.example.com:8080"],
            "labels": {"host_id": "3", "one_host_id": "3", "host_name": "hv1"},
        }
    ]


def test_targets_sorted_by_host_id_whatever_the_input_order():
    entries = targets_file_entries([HV3, HV1, HV2])
    assert [e["labels"]["one_host_id"] for e in entries] == ["3", "7", "12"]


def test_rendered_targets_file_is_stable_and_marked_as_managed():
    first = render_targets_file([HV2, HV1, HV3])
    assert first == render_targets_file([HV3, HV2, HV1])
    assert first.startswith("#") and "Managed" in first.splitlines()[0]
    parsed = yaml.safe_load(first)
    assert parsed == targets_file_entries([HV1, HV2, HV3])
    # Label values must stay strings once written (Prometheus rejects numbers).
    assert "'3'" in first


def test_same_host_twice_is_listed_once():
    assert len(targets_file_entries([HV1, HV1])) == 1


def test_duplicate_address_is_refused_naming_both_hosts():
    clash = ScrapeTarget(address=HV1.address, one_host_id=99, host_name="other")
    with pytest.raises(ValueError) as error:
        targets_file_entries([HV1, clash])
    assert "hv1" in str(error.value) and "other" in str(error.value)


def test_duplicate_host_id_is_refused_naming_both_hosts():
    clash = ScrapeTarget(address="hv9:8080", one_host_id=HV1.one_host_id, host_name="hv9")
    with pytest.raises(ValueError) as error:
        render_targets_file([HV1, clash])
    assert "hv1" in str(error.value) and "hv9" in str(error.value)


@pytest.mark.parametrize(
    "address, one_host_id, host_name",
    [("", 1, "a"), ("http://hv:8080", 1, "a"), ("hv:8080", -1, "a"), ("hv:8080", "1", "a"), ("hv:8080", 1, " ")],
)
def test_invalid_scrape_target_is_refused(address, one_host_id, host_name):
    with pytest.raises(ValueError):
        ScrapeTarget(address=address, one_host_id=one_host_id, host_name=host_name)


def test_targets_file_round_trip():
    text = render_targets_file([HV2, HV1])
    assert parse_targets_file(text) == [HV1, HV2]


@pytest.mark.parametrize("text", [None, "", "   \n", "# only a comment\n"])
def test_missing_or_empty_targets_file_parses_to_nothing(text):
    assert parse_targets_file(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "targets: [a]\n",  # a mapping, not a list
        "- [a, b]\n",  # entries not mappings
        "- targets: [hv:8080]\n",  # no labels
        "- targets: [hv:8080]\n  labels: {one_host_id: x, host_name: hv}\n",  # id not an integer
        "- targets: [hv:8080]\n  labels: {one_host_id: '1'}\n",  # no host name
        "- targets: [hv:8080\n",  # not YAML
    ],
)
def test_malformed_targets_file_is_refused(text):
    with pytest.raises(ValueError):
        parse_targets_file(text)


# --------------------------------------------------------------------------
# Version


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            "prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)\n"
            "  build user:       team+pkg-go@tracker.debian.org\n",
            (2, 42, 0),
        ),
        ("prometheus, version 3.5.0 (branch: HEAD, revision: 8be3a9560fbdd18a94dedec4b747c35178177202)\n", (3, 5, 0)),
        ("prometheus, version 2.31.2+ds1 (branch: debian/sid, revision: 2.31.2+ds1-1ubuntu1)", (2, 31, 2)),
    ],
)
def test_prometheus_version_parsed(output, expected):
    assert prometheus_version(output) == expected


@pytest.mark.parametrize("garbage", ["", "bash: prometheus: command not found", "prometheus, version unknown"])
def test_unreadable_version_is_refused_quoting_the_text(garbage):
    with pytest.raises(ValueError) as error:
        prometheus_version(garbage)
    assert repr(garbage.strip()) in str(error.value)


# --------------------------------------------------------------------------
# The job


def test_job_for_prometheus_2_has_no_fallback_protocol():
    job = job_v2()
    assert "fallback_scrape_protocol" not in job
    assert job["job_name"] == DEFAULT_JOB_NAME
    assert job["file_sd_configs"] == [{"files": [TARGETS_FILE]}]
    assert "scrape_interval" not in job and "scrape_timeout" not in job


@pytest.mark.parametrize("version", [(3, 0, 0), (3, 5, 0), (4, 0, 1)])
def test_job_for_prometheus_3_sets_fallback_protocol(version):
    job = scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=version)
    assert job["fallback_scrape_protocol"] == "PrometheusText0.0.4"


def test_job_name_and_intervals_are_passed_through():
    job = job_v2(job_name="power", scrape_interval="30s", scrape_timeout="20s")
    assert (job["job_name"], job["scrape_interval"], job["scrape_timeout"]) == ("power", "30s", "20s")


@pytest.mark.parametrize("interval", ["15", "fast", "1.5s", ""])
def test_bad_interval_is_refused_naming_it(interval):
    with pytest.raises(ValueError) as error:
        job_v2(scrape_interval=interval)
    assert "scrape_interval" in str(error.value)


def test_vm_relabelling_reads_vmname_first_then_cmdline_only_when_unset():
    vmname_rule, cmdline_rule = job_v2()["metric_relabel_configs"]
    assert vmname_rule["source_labels"] == ["vmname"]
    assert vmname_rule["target_label"] == "one_vm_id"
    # The cmdline rule sees the current one_vm_id first, so it cannot overwrite it.
    assert cmdline_rule["source_labels"] == ["one_vm_id", "cmdline"]
    assert cmdline_rule["regex"].startswith(cmdline_rule["separator"])
    # The real behaviour is proven against a running Prometheus in
    # tests/integration/test_relabel_with_real_prometheus.py.


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
# Snippet


def test_snippet_is_a_pasteable_self_contained_job():
    job = job_v2(scrape_interval="30s")
    snippet = scrape_job_snippet(job, [HV2, HV1])
    assert snippet.startswith("#")
    jobs = yaml.safe_load(snippet)
    assert isinstance(jobs, list) and len(jobs) == 1
    pasted = jobs[0]
    assert "file_sd_configs" not in pasted
    assert pasted["static_configs"] == targets_file_entries([HV1, HV2])
    assert pasted["metric_relabel_configs"] == job["metric_relabel_configs"]
    assert (pasted["job_name"], pasted["scrape_interval"]) == ("scaphandre", "30s")
    # Pasted under scrape_configs: it is a valid config document.
    assert yaml.safe_load("scrape_configs:\n" + snippet)["scrape_configs"] == jobs


def test_snippet_refuses_duplicate_hosts():
    clash = ScrapeTarget(address=HV1.address, one_host_id=99, host_name="other")
    with pytest.raises(ValueError):
        scrape_job_snippet(job_v2(), [HV1, clash])
