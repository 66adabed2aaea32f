"""The scrape job (tasks/prometheus/job.py): per Prometheus version, VM relabelling,
intervals, the snippet to paste, and sharding."""

from __future__ import annotations

import pytest
import yaml

from tasks.prometheus.job import (
    SHIPPED_JOB_NAME,
    prometheus_version,
    scaphandre_job,
    scrape_job_snippet,
    shard_of,
    shard_relabel_configs,
)
from tasks.prometheus.targets import ScrapeTarget, targets_file_entries

TARGETS_FILE = "/etc/prometheus/scaphandre_targets.yml"
HV1 = ScrapeTarget(address="hv1.example.com:8080", one_host_id=3, host_name="hv1")
HV2 = ScrapeTarget(address="hv2.example.com:8080", one_host_id=7, host_name="hv2")


def job_v2(**kwargs) -> dict:
    return scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=(2, 42, 0), **kwargs)


@pytest.mark.parametrize(
    "output, expected",
    [
        (
            (
                "prometheus, version 2.42.0+ds (branch: debian/sid, revision: 2.42.0+ds-5+deb12u1)\n"
                "  build user:       team+pkg-go@tracker.debian.org\n"
            ),
            (2, 42, 0),
        ),
        (
            "prometheus, version 3.5.0 (branch: HEAD, revision: 8be3a9560fbdd18a94dedec4b747c35178177202)\n",
            (3, 5, 0),
        ),
        (
            "prometheus, version 2.31.2+ds1 (branch: debian/sid, revision: 2.31.2+ds1-1ubuntu1)",
            (2, 31, 2),
        ),
    ],
)
def test_prometheus_version_parsed(output, expected):
    assert prometheus_version(output) == expected


@pytest.mark.parametrize(
    "garbage", ["", "bash: prometheus: command not found", "prometheus, version unknown"]
)
def test_unreadable_version_is_refused_quoting_the_text(garbage):
    with pytest.raises(ValueError, match="cannot read a Prometheus version from") as error:
        prometheus_version(garbage)
    assert repr(garbage.strip()) in str(error.value)


# --------------------------------------------------------------------------
# The job


def test_job_for_prometheus_2_has_no_fallback_protocol():
    job = job_v2()
    assert "fallback_scrape_protocol" not in job
    assert job["job_name"] == SHIPPED_JOB_NAME
    assert job["file_sd_configs"] == [{"files": [TARGETS_FILE]}]
    assert "scrape_interval" not in job and "scrape_timeout" not in job


@pytest.mark.parametrize("version", [(3, 0, 0), (3, 5, 0), (4, 0, 1)])
def test_job_for_prometheus_3_sets_fallback_protocol(version):
    job = scaphandre_job(targets_file=TARGETS_FILE, prometheus_version=version)
    assert job["fallback_scrape_protocol"] == "PrometheusText0.0.4"


def test_job_name_and_intervals_are_passed_through():
    job = job_v2(job_name="power", scrape_interval="30s", scrape_timeout="20s")
    assert (job["job_name"], job["scrape_interval"], job["scrape_timeout"]) == (
        "power",
        "30s",
        "20s",
    )


@pytest.mark.parametrize("interval", ["15", "fast", "1.5s", ""])
def test_bad_interval_is_refused_naming_it(interval):
    with pytest.raises(ValueError, match="is not a Prometheus duration") as error:
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
    with pytest.raises(ValueError, match="have the same scrape address"):
        scrape_job_snippet(job_v2(), [HV1, clash])


# --------------------------------------------------------------------------
# Sharding


def test_shards_split_the_targets_as_prometheus_hashmod_does():
    addresses = [f"hv{n}:8080" for n in range(40)]
    shards = [{a for a in addresses if shard_of(a, 3) == index} for index in range(3)]
    assert set().union(*shards) == set(addresses) and all(shards)
    assert shard_of("hv1:8080", 1) == 0


def test_each_server_keeps_its_shard_index():
    keep = shard_relabel_configs(1, 3)[1]
    assert keep == {"source_labels": ["__tmp_scaphandre_shard"], "regex": "1", "action": "keep"}
    with pytest.raises(ValueError, match="does not exist"):
        shard_relabel_configs(3, 3)
