"""Every config the Prometheus logic renders passes the real `promtool check config`.

promtool is Debian's 2.42 (/usr/bin/promtool), and for the targets file also 3.5
(fetched by tests/testbed/fetch-prometheus3.sh). It resolves file_sd and rule_files
paths relative to the config file, so each case writes the config and everything it
references into its own tmp_path.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tasks.prometheus.config_file import with_job
from tasks.prometheus.job import scaphandre_job, scrape_job_snippet
from tasks.prometheus.targets import ScrapeTarget, render_targets_file

PROMTOOL = "/usr/bin/promtool"
PROMTOOL_3 = (
    Path(__file__).resolve().parents[2]
    / ".testbed"
    / "prometheus3"
    / "root"
    / "usr"
    / "bin"
    / "promtool"
)
FIXTURES = Path(__file__).resolve().parents[1] / "data" / "prometheus"
TARGETS_NAME = "scaphandre_targets.yml"
PROMETHEUS_2 = (2, 42, 0)
PROMETHEUS_3 = (3, 5, 0)

TARGETS = [
    ScrapeTarget(address="hv1:8080", one_host_id=0, host_name="kvm-node-a"),
    ScrapeTarget(address="hv2:8080", one_host_id=1, host_name="kvm-node-b"),
    ScrapeTarget(address="hv3.example.org:9999", one_host_id=12, host_name="hv3"),
]

# A valid rule file standing in for the rules.yml opennebula-prometheus ships.
RULES_YML = """\
groups:
  - name: test-double-rules
    rules:
      - alert: HostDown
        expr: up == 0
        for: 1m
"""


@pytest.fixture(scope="module", autouse=True)
def promtool_present():
    """Fail (not skip): these tests are the proof that rendered configs are valid."""
    assert shutil.which(PROMTOOL), f"{PROMTOOL} missing: apt-get install prometheus"


def promtool_check(config: Path, promtool: str | Path = PROMTOOL) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(promtool), "check", "config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
        check=False,
    )


def write_bed(tmp_path: Path, config_text: str) -> Path:
    """Config, targets file and referenced rule file side by side; returns the config path."""
    (tmp_path / TARGETS_NAME).write_text(render_targets_file(TARGETS))
    (tmp_path / "rules.yml").write_text(RULES_YML)
    config = tmp_path / "prometheus.yml"
    config.write_text(config_text)
    return config


def merge_job(config_text: str | None, job: dict) -> str:
    """The config with the job spliced in, as the deploy writes it."""
    return with_job(
        None if config_text is None else config_text.encode(), job, None, TARGETS_NAME
    ).decode()


def job(version=PROMETHEUS_2, **kwargs) -> dict:
    return scaphandre_job(targets_file=TARGETS_NAME, prometheus_version=version, **kwargs)


@pytest.mark.parametrize(
    "fixture",
    ["debian_default.yml", "opennebula.yml", "hand_written_scaphandre.yml", "empty.yml"],
)
@pytest.mark.parametrize("intervals", [{}, {"scrape_interval": "10s", "scrape_timeout": "5s"}])
def test_merged_config_passes_promtool(tmp_path, fixture, intervals):
    merged = merge_job((FIXTURES / fixture).read_text(), job(**intervals))
    result = promtool_check(write_bed(tmp_path, merged))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr
    # promtool also read our targets file (it validates file_sd files it finds).
    assert "does not exist" not in result.stdout + result.stderr


def test_opennebula_fixture_needs_its_rule_file(tmp_path):
    """Guards the test itself: the OpenNebula-style config really references rules.yml."""
    merged = merge_job((FIXTURES / "opennebula.yml").read_text(), job())
    config = write_bed(tmp_path, merged)
    (tmp_path / "rules.yml").unlink()
    result = promtool_check(config)
    assert result.returncode != 0
    assert "rules.yml" in result.stdout + result.stderr


def test_minimal_config_from_none_passes_promtool(tmp_path):
    result = promtool_check(write_bed(tmp_path, merge_job(None, job())))
    assert result.returncode == 0, result.stdout + result.stderr


def test_snippet_wrapped_into_a_minimal_config_passes_promtool(tmp_path):
    snippet = scrape_job_snippet(job(scrape_interval="30s"), TARGETS)
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 15s\nscrape_configs:\n" + snippet)
    result = promtool_check(config)
    assert result.returncode == 0, result.stdout + result.stderr


def test_rendered_targets_file_is_accepted_and_a_bad_one_is_not(tmp_path):
    """promtool validates file_sd contents: prove our targets file is what it expects."""
    config = write_bed(tmp_path, merge_job(None, job()))
    assert promtool_check(config).returncode == 0
    (tmp_path / TARGETS_NAME).write_text(
        "- targets: [hv1:8080]\n  labels: {host_id: [not, a, string]}\n"
    )
    result = promtool_check(config)
    assert result.returncode != 0
    assert TARGETS_NAME in result.stdout + result.stderr


def test_broken_merged_config_fails_with_promtools_message(tmp_path):
    # A timeout longer than the interval is valid YAML but an invalid config.
    merged = merge_job(
        (FIXTURES / "debian_default.yml").read_text(),
        job(scrape_interval="5s", scrape_timeout="10s"),
    )
    result = promtool_check(write_bed(tmp_path, merged))
    assert result.returncode != 0
    assert "scrape timeout greater than scrape interval" in result.stdout + result.stderr
    assert "scaphandre" in result.stdout + result.stderr


def test_prometheus_3_job_is_rejected_by_prometheus_2(tmp_path):
    """Proves the version switch matters: promtool 2.42 does not know fallback_scrape_protocol."""
    merged = merge_job((FIXTURES / "debian_default.yml").read_text(), job(PROMETHEUS_3))
    assert "fallback_scrape_protocol" in merged
    result = promtool_check(write_bed(tmp_path, merged))
    assert result.returncode != 0
    assert "fallback_scrape_protocol" in result.stdout + result.stderr


ODD_NAMES = [
    ScrapeTarget(address="hv1:8080", one_host_id=0, host_name='quoted "name" with \\ and é'),
    ScrapeTarget(
        address="[2001:db8::7]:8080", one_host_id=7, host_name="line\u2028separator, next\x85line"
    ),
    ScrapeTarget(
        address="hv3:8080", one_host_id=12, host_name="- [looks: like] {yaml} #not-a-comment"
    ),
]


@pytest.mark.parametrize("promtool", ["2.42", "3.5"])
@pytest.mark.parametrize(
    "name", ["scaphandre_targets.yml", "scaphandre_targets.yaml", "scaphandre_targets.json"]
)
def test_the_json_targets_file_passes_promtool_under_every_name_file_sd_reads(
    tmp_path, promtool, name
):
    """The targets file is JSON under a comment header (YAML too) and, named .json, JSON
    alone: Prometheus' file_sd reads it either way, host names with YAML's special
    characters included; a header left in a .json file is refused, proving promtool read it."""
    binary = PROMTOOL if promtool == "2.42" else PROMTOOL_3
    assert Path(binary).is_file(), f"{binary} missing: run tests/testbed/fetch-prometheus3.sh"
    (tmp_path / name).write_text(render_targets_file(ODD_NAMES, json_only=name.endswith(".json")))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        merge_job(None, scaphandre_job(targets_file=name, prometheus_version=PROMETHEUS_2))
    )
    result = promtool_check(config, binary)
    assert result.returncode == 0, result.stdout + result.stderr
    if name.endswith(".json"):
        (tmp_path / name).write_text(render_targets_file(ODD_NAMES))
        assert promtool_check(config, binary).returncode != 0
