"""Test double for a pyinfra host that is this machine: runs @deploy functions and
operations through pyinfra's own API, answers every fact by running the fact's own
command with bash here, then runs the planned commands here the way pyinfra's SSH
connector would (shell commands with `sh -c`, uploads as file writes, Python callbacks
called), stopping at the first failure as pyinfra stops a host.

For operations whose every path is given to them (files under a test's tmp_path), so
the product's real shell runs against real files, permissions and links. `fake_bin`
is put first in PATH for the facts and the commands: test doubles of system tools
(systemctl, ...) go there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput, OutputLine
from pyinfra.context import ctx_host, ctx_state

from tests.unit.pyinfra_harness import default_data

COMMAND_TIMEOUT_S = 60


@dataclass
class LocalRun:
    """What happened: every command run (shell text or 'upload PATH' or 'call NAME', then
    the commands that callback ran), the facts asked for, the failure that stopped the host
    (None when all succeeded): a failed command's stderr, or what a callback logged in red."""

    commands: list[str] = field(default_factory=list)
    facts: list[str] = field(default_factory=list)
    fact_output_sizes: list[int] = field(default_factory=list)  # bytes each fact printed
    failure: str | None = None
    stderr: str = ""
    logged_failures: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.commands)


def _environment(fake_bin: Path | None) -> dict[str, str]:
    path = os.environ.get("PATH", "/usr/bin:/bin")
    return {**os.environ, "PATH": f"{fake_bin}:{path}" if fake_bin else path, "LC_ALL": "C"}


def _shell(command: str, fake_bin: Path | None) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["sh", "-c", command],
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        env=_environment(fake_bin),
        check=False,
    )


def _local_fact(fake_bin: Path | None, result: LocalRun):
    def get_fact(host: Host, cls, *args, **kwargs):
        fact = cls()
        result.facts.append(cls.__name__)
        done = _shell(str(fact.command(*args, **kwargs)), fake_bin)
        result.fact_output_sizes.append(len(done.stdout))
        assert done.returncode == 0, (
            f"fact {cls.__name__} failed here: {done.stderr.decode(errors='replace')}"
        )
        lines = done.stdout.decode("utf-8", "surrogateescape").splitlines()
        return (
            fact.process(lines) if lines else fact.default()
        )  # as pyinfra does: no output, the default

    return get_fact


def _local_shell_command(fake_bin: Path | None, result: LocalRun):
    def run_shell_command(
        host: Host, command, print_output: bool = False, print_input: bool = False, **arguments
    ):
        text = command.get_raw_value() if isinstance(command, StringCommand) else str(command)
        result.commands.append(text)
        done = _shell(text, fake_bin)
        lines = [
            OutputLine("stdout", line) for line in done.stdout.decode(errors="replace").splitlines()
        ]
        lines += [
            OutputLine("stderr", line) for line in done.stderr.decode(errors="replace").splitlines()
        ]
        return done.returncode == 0, CommandOutput(lines)

    return run_shell_command


def _logged_in_red(result: LocalRun):
    original = Host.log_styled

    def log_styled(host: Host, message, log_func=None, **styles):
        if styles.get("fg") == "red":
            result.logged_failures.append(message)
        return original(host, message, **({"log_func": log_func} if log_func else {}), **styles)

    return log_styled


def run_here(
    run: Callable[[], None],
    data: dict | None = None,
    groups: tuple[str, ...] = ("prometheus",),
    fake_bin: Path | None = None,
) -> LocalRun:
    """Plans `run()` (which adds operations) for one host named prom1, then runs its commands here."""
    inventory = Inventory(
        (["prom1"], default_data() | (data or {})), **{group: (["prom1"], {}) for group in groups}
    )
    state = State(inventory=inventory, config=Config())
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host("prom1")
    state.activate_host(host)
    result = LocalRun()
    with contextlib.ExitStack() as stack:
        stack.enter_context(mock.patch.object(Host, "get_fact", _local_fact(fake_bin, result)))
        stack.enter_context(
            mock.patch.object(Host, "run_shell_command", _local_shell_command(fake_bin, result))
        )
        stack.enter_context(mock.patch.object(Host, "log_styled", _logged_in_red(result)))
        stack.enter_context(ctx_state.use(state))
        stack.enter_context(ctx_host.use(host))
        run()
        for op_hash in host.op_hash_order:
            for command in state.get_op_data_for_host(host, op_hash).command_generator():
                if not _execute(command, state, host, result, fake_bin):
                    return result
    return result


def _execute(command, state, host, result: LocalRun, fake_bin: Path | None) -> bool:
    if isinstance(command, FunctionCommand):
        result.commands.append(f"call {command.function.__name__}")
        reasons = [arg for arg in command.args if isinstance(arg, str)]
        logged_before = len(result.logged_failures)
        if command.function(state, host, *command.args, **command.kwargs) is False:
            logged = result.logged_failures[logged_before:]
            result.failure = (
                logged[-1] if logged else reasons[0] if reasons else command.function.__name__
            )
            return False
        return True
    if isinstance(command, FileUploadCommand):
        result.commands.append(f"upload {command.dest}")
        source = command.src
        if hasattr(source, "seek"):
            source.seek(0)  # as pyinfra's uploads do: the operation may have read it for its digest
        data = source.read() if hasattr(source, "read") else Path(source).read_bytes()
        Path(command.dest).write_bytes(data if isinstance(data, bytes) else data.encode())
        return True
    assert isinstance(command, StringCommand), command
    text = command.get_raw_value()
    result.commands.append(text)
    done = _shell(text, fake_bin)
    result.stderr += done.stderr.decode(errors="replace")
    if done.returncode != 0:
        result.failure = done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
        return False
    return True
