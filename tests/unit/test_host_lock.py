"""One run at a time per host (tasks/install_record/lock.py): the lock's shell run for real
here, each "connection" a process of the test's that the lock is tied to (as it is tied
to the sshd process of an SSH connection on a host); and what the deploy plans from the
lock as the record fact found it."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tasks.install_record import install_ledger, lock
from tasks.install_record.facts import InstallRecordFile, RecordRead
from tasks.install_record.lock import (
    RUN_TOKEN,
    Holder,
    LockRequest,
    try_lock_and_read_record,
    wait_for_lock,
)
from tasks.install_record.record import record_digest
from tests.unit.pyinfra_harness import all_commands, planned_commands, record_facts

BOUND_S = 20  # every wait below is bounded by this

# A stand-in for the sshd process of one SSH connection: runs one command as its child,
# prints the command's output and a line saying so, then stays until it is ended.
CONNECTION = """
import subprocess, sys
done = subprocess.run(["sh", "-c", sys.argv[1]], capture_output=True, text=True)
sys.stdout.write(done.stdout + "\\n## stderr\\n" + done.stderr + f"\\n## exit {done.returncode}\\n")
sys.stdout.flush()
sys.stdin.read()  # until the test closes it: the connection ends
"""


class Connection:
    """One connection running `script`; `close()` ends it the way a run ends (its process goes)."""

    def __init__(self, script: str):
        self.process = subprocess.Popen(
            [sys.executable, "-c", CONNECTION, script],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        lines = []
        deadline = time.monotonic() + BOUND_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            lines.append(line)
            if line.startswith("## exit "):
                break
        text = "".join(lines)
        self.stdout, _, rest = text.partition("\n## stderr\n")
        self.stderr, _, code = rest.rpartition("\n## exit ")
        self.returncode = int(code.strip() or -1)

    @property
    def fields(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines() if "=" in line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait(timeout=BOUND_S)


@pytest.fixture
def host_paths(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr(lock, "LOCK_DIR", str(tmp_path / "run"))
    monkeypatch.setattr(lock, "LOCK_FILE", str(tmp_path / "run" / "lock"))
    monkeypatch.setattr(lock, "RECORD_FILE", str(tmp_path / "installed.json"))
    return tmp_path


@pytest.fixture
def connections():
    opened: list[Connection] = []

    def open_(script: str) -> Connection:
        opened.append(Connection(script))
        return opened[-1]

    yield open_
    for connection in opened:
        connection.close()


def try_lock(request_host: str = "hv1", token: str = "aaaa") -> str:
    return try_lock_and_read_record(
        LockRequest(request_host, run_token=token, run="pyinfra pid 1 on op@ctl")
    )


def until(what: str, check) -> None:
    deadline = time.monotonic() + BOUND_S
    while not check():
        assert time.monotonic() < deadline, f"{what} not within {BOUND_S} s"
        time.sleep(0.1)


def holder_alive(lock_file: Path) -> bool:
    pid = Holder.parse(lock_file.read_text()).fields.get("pid") if lock_file.exists() else None
    return bool(pid) and Path(f"/proc/{pid}").exists()


# --------------------------------------------------------------------------- taken with the record's read


def test_a_free_lock_is_taken_with_the_read_and_describes_its_holder(host_paths, connections):
    (host_paths / "installed.json").write_text('{"format": 2}\n')
    first = connections(try_lock())
    assert first.returncode == 0, first.stderr
    assert first.fields["lock"] == "held" and "stale" not in first.fields
    assert first.fields["record_sha256"] == record_digest(b'{"format": 2}\n')
    holder = Holder.parse((host_paths / "run" / "lock").read_text())
    assert holder.run_token == "aaaa" and holder.fields["inventory_host"] == "hv1"
    assert holder.fields["user"] == "root" and holder.fields["anchor"] == str(first.process.pid)
    assert holder.fields["control"] == "pyinfra pid 1 on op@ctl" and holder.fields[
        "since"
    ].endswith("Z")
    assert holder_alive(host_paths / "run" / "lock")
    assert oct((host_paths / "run").stat().st_mode)[-3:] == "700"


def test_a_second_run_finds_it_busy_and_who_holds_it_then_free_once_the_first_connection_is_gone(
    host_paths, connections
):
    first = connections(try_lock("hv1", "aaaa"))
    second = connections(try_lock("hv1", "bbbb"))
    assert second.fields["lock"] == "busy"
    holder = Holder.parse(lock.decode(second.fields["holder"]))
    assert holder.run_token == "aaaa" and holder.fields["pid"]
    first.close()
    until(
        "the holder gone with its connection", lambda: not holder_alive(host_paths / "run" / "lock")
    )
    assert (host_paths / "run" / "lock").read_text() == "", (
        "released cleanly: nothing left to reclaim"
    )
    third = connections(try_lock("hv1", "cccc"))
    assert third.fields["lock"] == "held" and "stale" not in third.fields


def test_a_holder_killed_without_releasing_is_reclaimed_and_said_so(host_paths, connections):
    connections(try_lock("hv1", "aaaa"))
    lock_file = host_paths / "run" / "lock"
    os.kill(int(Holder.parse(lock_file.read_text()).fields["pid"]), signal.SIGKILL)
    until("the killed holder gone", lambda: not holder_alive(lock_file))
    again = connections(try_lock("hv1", "bbbb"))
    assert again.fields["lock"] == "held"
    assert Holder.parse(lock.decode(again.fields["stale"])).run_token == "aaaa"


def test_without_a_lock_request_the_record_is_only_read(host_paths, connections):
    only_read = connections(try_lock_and_read_record(None))
    assert only_read.fields == {"record_sha256": "absent"} and not (host_paths / "run").exists()


# --------------------------------------------------------------------------- waited for by the first operation


def test_the_wait_is_bounded_and_names_the_lock_file_and_its_holder(host_paths, connections):
    connections(try_lock("hv1", "aaaa"))
    started = time.monotonic()
    waiting = connections(wait_for_lock(LockRequest("hv1", run_token="bbbb"), "absent", 2))
    assert 2 <= time.monotonic() - started < BOUND_S
    assert waiting.returncode == 1
    assert (
        f"{host_paths / 'run' / 'lock'} is held by another run: user root from a local session "
        "(pyinfra pid 1 on op@ctl, inventory host hv1), holder pid "
    ) in waiting.stderr
    assert "since " in waiting.stderr and "waited 2 s (host_lock_timeout_s)" in waiting.stderr


def test_a_lock_freed_during_the_wait_is_taken_and_kept(host_paths, connections):
    first = connections(try_lock("hv1", "aaaa"))
    first_holder = Holder.parse((host_paths / "run" / "lock").read_text()).fields["pid"]
    waiting = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CONNECTION,
            wait_for_lock(LockRequest("hv1", run_token="bbbb"), "absent", BOUND_S),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        first.close()
        output = waiting.stdout.readline() + waiting.stdout.readline()
        until("the waiting run holding it", lambda: holder_alive(host_paths / "run" / "lock"))
        holder = Holder.parse((host_paths / "run" / "lock").read_text())
        assert holder.run_token == "bbbb" and holder.fields["pid"] != first_holder, output
    finally:
        waiting.stdin.close()
        waiting.wait(timeout=BOUND_S)


def test_a_record_changed_by_the_run_waited_for_fails_this_one(host_paths, connections):
    read_by_the_plan = record_digest(None)
    (host_paths / "installed.json").write_text(
        '{"format": 2, "images": ["x:1"]}\n'
    )  # what the other run wrote
    waiting = connections(wait_for_lock(LockRequest("hv1", run_token="bbbb"), read_by_the_plan, 5))
    assert waiting.returncode == 1
    assert (
        "another run changed this host since this run read it "
        f"({host_paths / 'installed.json'} is not what the plan was made from): run again"
    ) in waiting.stderr
    assert not holder_alive(host_paths / "run" / "lock"), "the lock is not kept by a run that stops"


def test_a_record_as_the_plan_read_it_lets_the_run_go_on_holding_the_lock(host_paths, connections):
    (host_paths / "installed.json").write_text('{"format": 2}\n')
    waiting = connections(
        wait_for_lock(LockRequest("hv1", run_token="bbbb"), record_digest(b'{"format": 2}\n'), 5)
    )
    assert waiting.returncode == 0, waiting.stderr
    assert Holder.parse((host_paths / "run" / "lock").read_text()).run_token == "bbbb"


# --------------------------------------------------------------------------- what the deploy plans from it

OTHER = Holder(
    {
        "run": "ffff",
        "inventory_host": "hv1",
        "user": "alice",
        "from": "192.0.2.7",
        "pid": "812",
        "since": "2025-05-01T10:00:00Z",
        "control": "pyinfra pid 77 on alice@laptop",
    }
)


def test_a_lock_another_run_holds_is_waited_for_first_with_the_digest_the_plan_read():
    facts = record_facts({"format": 2, "images": ["x:1"]}, lock="busy", holder=OTHER)
    planned = planned_commands(
        lambda settings: install_ledger(settings.host_lock_timeout_s),
        facts,
        data={"host_lock_timeout_s": 7},
    )
    [(name, [command])] = [
        (name, commands) for name, commands in planned.items() if "Wait for" in name
    ]
    assert (
        name
        == "Wait for the other run on this host to finish (/run/scaphandre-opennebula/lock, at most 7 s)"
    )
    digest = record_digest((json.dumps({"format": 2, "images": ["x:1"]}, indent=2) + "\n").encode())
    assert f"want={digest}; timeout=7" in command and 'flock -w "$timeout" 9' in command


def test_the_same_machine_twice_in_one_run_fails_the_second_at_once():
    same_run = Holder({**OTHER.fields, "run": RUN_TOKEN, "inventory_host": "kvm1"})
    commands = all_commands(
        planned_commands(
            lambda settings: install_ledger(),
            record_facts(None, lock="busy", holder=same_run),
            name="frontend",
        )
    )
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert (
        "/run/scaphandre-opennebula/lock is held by inventory host kvm1 of this same run: it and frontend reach "
        "the same machine, which keeps one record; list each machine once in the inventory"
    ) in commands[0]


def test_a_reclaimed_lock_and_one_that_cannot_be_held_are_said(caplog):
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        planned_commands(lambda settings: install_ledger(), record_facts(None, stale=OTHER))
        planned_commands(lambda settings: install_ledger(), record_facts(None, lock="unsupported"))
    messages = [record.getMessage() for record in caplog.records]
    assert any(
        "reclaimed the lock /run/scaphandre-opennebula/lock from a run that ended without releasing it: "
        "user alice from 192.0.2.7 (pyinfra pid 77 on alice@laptop, inventory host hv1), holder pid 812, "
        "since 2025-05-01T10:00:00Z" in message
        for message in messages
    ), messages
    assert any("no SSH connection process to tie the lock" in message for message in messages)


def test_a_dry_run_asks_for_no_lock(monkeypatch):
    asked = []

    def record_fact(lock=None):
        asked.append(lock)
        return RecordRead()

    for argv in (
        ["pyinfra", "--dry", "inventory.py", "deploy.py"],
        ["pyinfra", "-y", "inventory.py", "deploy.py"],
    ):
        monkeypatch.setattr(sys, "argv", argv)
        planned_commands(lambda settings: install_ledger(), {"InstallRecordFile": record_fact})
    assert (
        asked[0] is None and isinstance(asked[1], LockRequest) and asked[1].run_token == RUN_TOKEN
    )


def test_the_fact_reads_the_lock_state_and_the_record_bytes():
    read = InstallRecordFile().process(
        [
            "stale=" + "cnVuPWFhYWEK",
            "lock=held",
            "record_sha256=" + "0" * 64,
            "content:",
            "eyJmb3JtYXQiOiAyfQ==",
        ]
    )
    assert (
        read.lock == "held" and read.stale.run_token == "aaaa" and read.content == b'{"format": 2}'
    )
