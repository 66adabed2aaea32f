"""The record of what the deploy installed on a host (tasks/install_record): its file, what
a deploy adds (never forgetting earlier entries) and what remove.py takes out."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.install_record.record import (
    RECORD_FILE,
    DaemonJsonChange,
    InstallRecord,
    InstallRecordError,
    parse_install_record,
)

OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}

records = st.builds(
    InstallRecord,
    package_manager=st.sampled_from(["apt", "dnf"]),
    engine_packages=st.lists(st.sampled_from(["docker.io", "docker-ce", "docker-ce-cli", "containerd.io"]),
                             unique=True).map(tuple),
    daemon_json=st.none() | st.builds(DaemonJsonChange, st.just(dict(OURS)),
                                      st.dictionaries(st.sampled_from(list(OURS)), st.booleans() | st.text(max_size=4))),
    repository_files=st.lists(st.sampled_from(["/etc/yum.repos.d/docker-ce.repo", "/etc/apt/keyrings/docker.asc"]),
                              unique=True).map(tuple),
    images=st.lists(st.sampled_from(["hubblo/scaphandre:1.0.2", "hubblo/scaphandre:1.0.3"]), unique=True).map(tuple),
)


@given(records)
def test_the_file_gives_back_the_record_it_was_written_from(record):
    if not record.engine_packages:
        record = InstallRecord(daemon_json=record.daemon_json, repository_files=record.repository_files,
                               images=record.images)
    assert parse_install_record(record.to_json().splitlines()) == record


def test_no_file_is_an_empty_record_and_an_empty_record_says_nothing_was_installed():
    assert parse_install_record(None) == InstallRecord()
    assert InstallRecord().empty and not InstallRecord().installed_engine
    assert json.loads(InstallRecord().to_json()) == {"format": 1}


@pytest.mark.parametrize("lines", [["{not json"], ['{"format": 2}'], ['["images"]'], ['{"format": 1, "daemon_json": {"previous": {}}}']])
def test_a_file_this_deploy_did_not_write_is_refused_naming_it_and_the_way_out(lines):
    with pytest.raises(InstallRecordError) as refused:
        parse_install_record(lines)
    assert str(refused.value).startswith(f"{RECORD_FILE} (the deploy's record of what it installed here) cannot be read")
    assert "delete it to have the deploy treat the Docker engine and image as the operator's" in str(refused.value)


def test_a_rerun_never_forgets_what_an_earlier_run_recorded():
    first = InstallRecord().with_engine("apt", ["docker.io"]).with_image("hubblo/scaphandre:1.0.2")
    again = first.with_engine("apt", ["docker.io"]).with_image("hubblo/scaphandre:1.0.3")
    assert again.engine_packages == ("docker.io",) and again.installed_engine
    assert again.images == ("hubblo/scaphandre:1.0.2", "hubblo/scaphandre:1.0.3")


def test_daemon_json_values_recorded_first_win_over_a_reruns_view():
    """The first run saw the operator's iptables=true and no bridge key; a rerun sees the deploy's own
    values in the file, which must not replace what the operator had."""
    first = InstallRecord().with_daemon_json(DaemonJsonChange(dict(OURS), {"iptables": True}))
    rerun_view = DaemonJsonChange(dict(OURS), dict(OURS))  # what the file holds by then
    assert first.with_daemon_json(rerun_view).daemon_json == DaemonJsonChange(dict(OURS), {"iptables": True})


def test_removal_takes_out_the_engine_with_its_files_and_settings_and_only_the_removed_images():
    record = (InstallRecord().with_engine("dnf", ["docker-ce"]).with_repository_files(["/etc/yum.repos.d/docker-ce.repo"])
              .with_daemon_json(DaemonJsonChange(dict(OURS), {})).with_image("a:1").with_image("b:2"))
    assert record.without_engine() == InstallRecord(images=("a:1", "b:2"))
    assert record.without_engine().without_images(["a:1", "b:2"]).empty
    assert record.without_images(["a:1"]).images == ("b:2",)
