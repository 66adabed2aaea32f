"""Sharding across Prometheus servers: promtool accepts each server's job, and the
shards split any set of targets exactly once between them."""

from __future__ import annotations

import subprocess

import pytest
import yaml

from tasks.prometheus.config_file import with_job
from tasks.prometheus.job import scaphandre_job, shard_relabel_configs
from tasks.prometheus.targets import ScrapeTarget, render_targets_file


def sharded_job(index: int, count: int) -> dict:
    job = scaphandre_job(targets_file="targets.yml", prometheus_version=(2, 42, 0))
    job["relabel_configs"] = shard_relabel_configs(index, count)
    return job


@pytest.mark.parametrize("index", [0, 1, 2])
def test_promtool_accepts_every_shard(tmp_path, index):
    targets = [
        ScrapeTarget(address=f"hv{i}:8080", one_host_id=i, host_name=f"hv{i}") for i in range(1, 6)
    ]
    (tmp_path / "targets.yml").write_text(render_targets_file(targets))
    config = tmp_path / "prometheus.yml"
    config.write_bytes(with_job(None, sharded_job(index, 3), None, "targets.yml"))
    checked = subprocess.run(
        ["promtool", "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_rules_keep_one_shard_by_hashmod_of_the_address():
    first, keep = shard_relabel_configs(1, 2)
    assert (
        first["action"] == "hashmod"
        and first["modulus"] == 2
        and first["source_labels"] == ["__address__"]
    )
    assert (
        keep["action"] == "keep"
        and keep["regex"] == "1"
        and keep["source_labels"] == [first["target_label"]]
    )
    assert yaml.safe_load(yaml.safe_dump(first)) == first


def test_a_shard_outside_the_servers_is_refused():
    with pytest.raises(ValueError, match="shard 2 does not exist among 2 Prometheus servers"):
        shard_relabel_configs(2, 2)
