"""When the energy sync has nothing to do on a rerun (tasks/energy_sync/plan.py's
installed_as_wanted, judged from the host's one read): only with every file, its owner,
group and mode, the script's directory and the running timer exactly as the deploy leaves
them. Any one thing else, and the steps run as on a first deploy."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tasks.energy_sync import plan
from tasks.install_record.facts import FoundFile
from tasks.install_record.record import sha256_of

ACCOUNT = plan.ServiceAccount(user="oneadmin", group="oneadmin")
TEXTS = {
    path: f"what the deploy writes at {path}\n"
    for path in (plan.SCRIPT_PATH, plan.CONFIG_PATH, plan.SERVICE_PATH, plan.TIMER_PATH)
}
FRONTEND = {
    "user": "oneadmin",
    "group": "oneadmin",
    "python": "/usr/bin/python3",
    "config_dir": "yes",
}
SCRIPT_DIR = {"owner": "root", "group": "root", "mode": "755"}


def installed() -> dict[str, FoundFile]:
    found = {}
    for path, text in TEXTS.items():
        owner, group, mode = plan.file_owners(ACCOUNT)[path]
        found[path] = FoundFile(
            "file", sha256=sha256_of(text.encode()), owner=owner, group=group, mode=mode
        )
    return found


def judged(found=None, frontend=FRONTEND, script_dir=SCRIPT_DIR, timer_running=True) -> bool:
    return plan.installed_as_wanted(
        installed() if found is None else found, TEXTS, ACCOUNT, frontend, script_dir, timer_running
    )


def test_everything_as_the_deploy_leaves_it_is_as_wanted():
    assert judged()
    assert plan.file_owners(ACCOUNT)[plan.CONFIG_PATH] == ("root", "oneadmin", "640")


@pytest.mark.parametrize(
    "change",
    [
        {"state": "absent", "sha256": None},
        {"link": True},
        {"sha256": "0" * 64},
        {"owner": "oneadmin"},
        {"group": "adm"},
        {"mode": "666"},
        {"mode": None},
        {"owner": None},
    ],
)
@pytest.mark.parametrize("path", list(TEXTS))
def test_one_file_otherwise_is_not(path, change):
    found = installed()
    found[path] = replace(found[path], **change)
    assert not judged(found)


def test_a_file_missing_from_the_read_is_not():
    found = installed()
    del found[plan.TIMER_PATH]
    assert not judged(found)


@pytest.mark.parametrize("timer_running", [False, None])
def test_a_timer_not_running_or_not_reported_is_not(timer_running):
    assert not judged(timer_running=timer_running)


@pytest.mark.parametrize(
    "script_dir", [None, {}, {**SCRIPT_DIR, "mode": "775"}, {**SCRIPT_DIR, "owner": "oneadmin"}]
)
def test_a_script_directory_otherwise_is_not(script_dir):
    assert not judged(script_dir=script_dir)


def test_without_etc_one_it_is_not():
    assert not judged(frontend={**FRONTEND, "config_dir": "no"})
