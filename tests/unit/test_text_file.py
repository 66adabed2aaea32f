"""Replacing a file in place (tasks/text_file.py), run for real on files under tmp_path
(tests/unit/local_pyinfra_host.py): a symbolic link stays a link and the file it points
to keeps its owner and mode, a new file is root's 0644, a link to nothing is refused,
and nothing staged or spooled is left behind. daemon.json is written this way, at
install and when remove.py gives it back."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tasks import text_file
from tasks.text_file import file_absent_unless_link, file_in_place
from tests.unit.local_pyinfra_host import run_here

OWNER = (4242, 4243)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "state"
    monkeypatch.setattr(text_file, "STATE_DIR", str(directory))
    return directory


def leftovers(root: Path) -> list[str]:
    return sorted(
        str(path)
        for path in root.rglob("*")
        if ".scaphandre-staged." in path.name or path.name.endswith(".upload")
    )


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def write(path: Path, content: bytes):
    return run_here(
        lambda: file_in_place(name="Write", path=str(path), content=content),
        groups=("hypervisors",),
    )


def test_a_symlinked_file_stays_a_link_and_its_target_keeps_owner_and_mode(tmp_path, state):
    target = tmp_path / "srv" / "daemon.json"
    target.parent.mkdir()
    target.write_bytes(b'{"log-driver": "journald"}')
    os.chown(target, *OWNER)
    target.chmod(0o600)
    link = tmp_path / "etc" / "daemon.json"
    link.parent.mkdir()
    link.symlink_to(target)

    run = write(link, b'{"iptables": false}\n')
    assert run.failure is None, run.failure
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() == b'{"iptables": false}\n'
    assert owner_and_mode(target) == (*OWNER, 0o600)
    assert leftovers(tmp_path) == [] and sorted(p.name for p in link.parent.iterdir()) == [
        "daemon.json"
    ]
    assert stat.S_IMODE(state.stat().st_mode) == 0o700, (
        "the bytes travelled through a root-only directory"
    )


def test_a_new_file_is_roots_0644_in_a_directory_made_when_missing(tmp_path, state):
    path = tmp_path / "docker" / "daemon.json"
    run = write(path, b"{}\n")
    assert run.failure is None, run.failure
    assert (
        path.read_bytes() == b"{}\n"
        and owner_and_mode(path) == (0, 0, 0o644)
        and not path.is_symlink()
    )
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755 and leftovers(tmp_path) == []


def test_a_file_already_holding_the_bytes_is_not_written(tmp_path, state):
    path = tmp_path / "daemon.json"
    path.write_bytes(b"{}\n")
    run = write(path, b"{}\n")
    assert run.failure is None and run.commands == [] and not state.exists()


def test_a_link_to_nothing_is_refused_naming_it_and_nothing_is_created(tmp_path, state):
    link = tmp_path / "daemon.json"
    link.symlink_to(tmp_path / "missing.json")
    run = write(link, b"{}\n")
    assert (
        run.failure
        and f"{link} is a symbolic link to {tmp_path / 'missing.json'}, which does not exist"
        in run.failure
    )
    assert not (tmp_path / "missing.json").exists() and link.is_symlink() and not state.exists()


def test_a_removal_takes_a_regular_file_and_leaves_a_link(tmp_path):
    regular, target, link = tmp_path / "a.json", tmp_path / "t.json", tmp_path / "l.json"
    regular.write_bytes(b"{}")
    target.write_bytes(b"{}")
    link.symlink_to(target)
    for path in (regular, link):
        run = run_here(
            lambda p=path: file_absent_unless_link(name="Remove", path=str(p)),
            groups=("hypervisors",),
        )
        assert run.failure is None
    assert not regular.exists() and link.is_symlink() and target.read_bytes() == b"{}"
