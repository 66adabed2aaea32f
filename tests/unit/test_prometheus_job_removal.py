"""remove_job: the scaphandre job leaves prometheus.yml, everything else stays."""

from pathlib import Path

import yaml

from tasks.prometheus_config import merge_job, remove_job, scaphandre_job

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "prometheus"


def job():
    return scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0))


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
    from tasks.prometheus_config import foreign_job_conflict

    mine = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="prometheus")
    conflict = foreign_job_conflict((FIXTURES / "debian_default.yml").read_text(), mine)
    assert conflict and "prometheus_job_name" in conflict


def test_our_own_job_under_a_custom_name_is_recognised_by_its_targets_file():
    from tasks.prometheus_config import foreign_job_conflict

    mine = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="power")
    older = scaphandre_job(targets_file="scaphandre_targets.yml", prometheus_version=(2, 42, 0), job_name="power",
                           scrape_interval="30s")
    assert foreign_job_conflict(merge_job(None, older), mine) is None
    assert foreign_job_conflict((FIXTURES / "hand_written_scaphandre.yml").read_text(), job()) is None
