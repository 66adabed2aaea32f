"""Test double for a pyinfra host: runs @deploy functions through pyinfra's own API
with facts supplied by the test, and returns the commands each operation would run.

No SSH and no host: pyinfra's `Host.get_fact` is replaced for the duration of a
`planned_commands` call by a lookup in the facts the test gives.
"""

from __future__ import annotations

import contextlib
import json
import runpy
from collections.abc import Callable
from pathlib import Path
from unittest import mock

from pyinfra.api import Config, Inventory, State
from pyinfra.api.command import FileUploadCommand, FunctionCommand, StringCommand
from pyinfra.api.host import Host
from pyinfra.api.state import StateStage
from pyinfra.connectors.util import CommandOutput
from pyinfra.context import ctx_host, ctx_inventory, ctx_state

from tasks.preflight import check_settings
from tasks.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def default_data() -> dict:
    """The deploy's defaults, read from group_data/all.py as the pyinfra CLI would."""
    values = runpy.run_path(str(REPO / "group_data" / "all.py"))
    return {key: value for key, value in values.items() if not key.startswith("_")}


class FactTable:
    """Answers get_fact calls: by fact class name, optionally refined by a keyword argument.

    The host's one read (tasks/host_state's HostState), unless the table gives it, is
    answered from the facts it stands in for that have no other reader: the install record,
    RAPL, whether an engine is installed, the Prometheus server. The rest of what it reports
    is left unreported, so the steps plan pyinfra's own operations, which read the table's
    facts (the modules-load file, the engine's unit, the container ...) as they would
    without the one read.
    """

    def __init__(self, facts: dict):
        self.facts = facts
        self.asked: list[str] = []
        self.asked_while_planning: list[str] = []

    def __call__(self, host: Host, cls, *args, **kwargs):
        self.asked.append(cls.__name__)
        return self.answer(cls, **kwargs)

    def answer(self, cls, **kwargs):
        name = cls.__name__
        for key in (f"{name}:{value}" for value in kwargs.values() if isinstance(value, str)):
            if key in self.facts:
                return self.facts[key]
        if name in self.facts:
            value = self.facts[name]
            return value(**kwargs) if callable(value) else value
        if name == "HostState":
            return self.host_state(**kwargs)
        default = getattr(cls, "default", None)
        return default() if callable(default) else None

    def host_state(self, lock=None, hypervisor=None, prometheus=None):
        from tasks.docker_engine.facts import DockerEngineInstalled
        from tasks.host_state.parse import HostFound, HypervisorFound, PrometheusFound
        from tasks.install_record.facts import InstallRecordFile
        from tasks.prometheus.facts import PrometheusServer
        from tasks.rapl.facts import RaplProbe

        found_hypervisor = found_prometheus = None
        if hypervisor is not None:
            found_hypervisor = HypervisorFound(
                rapl=self.answer(RaplProbe), engine_installed=self.answer(DockerEngineInstalled)
            )
        if prometheus is not None:
            found_prometheus = PrometheusFound(
                server=self.answer(
                    PrometheusServer,
                    candidates=prometheus.candidates,
                    binaries=prometheus.binaries,
                    promtools=prometheus.promtools,
                    config_file=prometheus.config_file,
                    service=prometheus.service,
                )
            )
        return HostFound(
            record=self.answer(InstallRecordFile, lock=lock),
            hypervisor=found_hypervisor,
            prometheus=found_prometheus,
        )


def render(command) -> str:
    if isinstance(command, StringCommand):
        return command.get_raw_value()
    if isinstance(command, FileUploadCommand):
        return f"upload {command.dest}"
    if isinstance(command, FunctionCommand):
        return f"call {command.function.__name__}{command.args}"
    return repr(command)


def uploaded_text(command) -> str | None:
    """The text an upload of computed content (not a local file) puts on the host."""
    if isinstance(command, FileUploadCommand) and hasattr(command.src, "getvalue"):
        return command.src.getvalue()
    return None


def record_facts(
    record: dict | str | bytes | None, lock: str = "held", holder=None, stale=None
) -> dict:
    """The install record fact as a host answers it: the record file holding `record` (a
    dict written as JSON, or the file's text or bytes as they are; None: no file), read with
    the host's lock in the state `lock`."""
    from tasks.install_record.facts import RecordRead
    from tasks.install_record.record import record_digest

    if isinstance(record, dict):
        record = json.dumps(record, indent=2) + "\n"
    content = record.encode() if isinstance(record, str) else record
    return {
        "InstallRecordFile": RecordRead(
            content=content, digest=record_digest(content), lock=lock, holder=holder, stale=stale
        )
    }


def uploads_by_operation(
    run: Callable[[Settings], None], facts: dict, data: dict | None = None, **options
) -> dict[str, dict[str, str | bytes]]:
    """Operation name (without its @deploy prefix) -> destination -> content, for every
    upload of computed content the plan makes, in plan order."""
    uploads: dict[str, dict] = {}
    for name, commands in planned_command_objects(run, facts, data, **options).items():
        for command in commands:
            content = uploaded_text(command)
            if content is not None:
                uploads.setdefault(name.split(" | ")[-1], {})[command.dest] = content
    return uploads


def with_ledger(step: Callable) -> Callable[[Settings], None]:
    """`step(settings, ledger)` as remove.py calls it, the ledger read from the host's facts."""
    from tasks.install_record import install_ledger

    def run(settings: Settings) -> None:
        step(settings, install_ledger())

    return run


def on_hypervisor(step: Callable, ledger: bool = True) -> Callable[[Settings], None]:
    """`step(settings, ledger, found)` (without `ledger`: `step(settings, found)`) as deploy.py
    calls it on a hypervisor: the ledger and `found` from the host's one read."""
    from tasks.host_state import read_host_state
    from tasks.install_record import install_ledger

    def run(settings: Settings) -> None:
        found = read_host_state(settings)
        if ledger:
            step(settings, install_ledger(read=found.record), found.hypervisor)
        else:
            step(settings, found.hypervisor)

    return run


def planned_commands(
    run: Callable[[Settings], None],
    facts: dict | FactTable,
    data: dict | None = None,
    groups: tuple[str, ...] = ("hypervisors",),
    name: str = "hv1",
    as_executed: bool = False,
) -> dict[str, list[str]]:
    """Operation name -> commands, for the operations `run(settings)` adds on one host with
    `facts`, after the settings check as deploy.py makes it (a host whose settings fail it
    gets only that check's failure).

    `facts` may be a FactTable, whose `asked` then lists every fact the step read.
    With `as_executed`, operations are taken in order as a run executes them: each `_if`
    condition is evaluated (an operation whose condition fails gets no commands), and an
    operation counts as changed when it yielded commands, so `did_change` conditions see
    the operations before them as pyinfra would after running them successfully."""
    return {
        op: [render(command) for command in commands]
        for op, commands in planned_command_objects(
            run, facts, data, groups, name, as_executed
        ).items()
    }


def planned_uploads(
    run: Callable[[Settings], None], facts: dict, data: dict | None = None
) -> dict[str, str]:
    """Destination -> text of every upload of computed content the plan makes (the last one
    wins when a file is written twice)."""
    uploads = {}
    for commands in planned_command_objects(run, facts, data).values():
        for command in commands:
            text = uploaded_text(command)
            if text is not None:
                uploads[command.dest] = text
    return uploads


def planned_command_objects(
    run: Callable[[Settings], None],
    facts: dict | FactTable,
    data: dict | None = None,
    groups: tuple[str, ...] = ("hypervisors",),
    name: str = "hv1",
    as_executed: bool = False,
) -> dict[str, list]:
    """Like planned_commands, with pyinfra's command objects instead of their text."""
    host_data = default_data() | (data or {})
    group_lists = {group: ([name], {}) for group in groups}
    inventory = Inventory(([name], host_data), **group_lists)
    state = State(inventory=inventory, config=Config())
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host(name)
    state.activate_host(host)
    table = facts if isinstance(facts, FactTable) else FactTable(facts)
    planned: dict[str, list] = {}
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(
                Host,
                "get_fact",
                # A function, so that the patched method is bound and receives the host
                # (the table, a callable object, would not be).
                lambda self, cls, *a, **kw: table(self, cls, *a, **kw),  # noqa: PLW0108
            )
        )
        stack.enter_context(ctx_state.use(state))
        stack.enter_context(ctx_host.use(host))
        settings = check_settings(inventory)
        if settings is not None:
            run(settings)
        table.asked_while_planning = list(table.asked)  # what pyinfra's prepare pass reads
        state.is_executing = as_executed  # pyinfra evaluates `_if` only while executing
        for op_hash in host.op_hash_order:
            op_data = state.get_op_data_for_host(host, op_hash)
            names = ", ".join(sorted(state.get_op_meta(op_hash).names))
            commands = list(op_data.command_generator())
            if as_executed:
                op_data.operation_meta.set_complete(True, commands, CommandOutput([]))
            planned[names] = commands
    return planned


def planned_script(
    script: str,
    facts: dict | FactTable,
    data: dict | None = None,
    groups: tuple[str, ...] = ("hypervisors",),
    name: str = "hv1",
) -> dict[str, list[str]]:
    """Operation name -> commands, for what the repository's own `script` (deploy.py, remove.py)
    plans on one host with `facts`, run as the pyinfra CLI runs it."""
    host_data = default_data() | (data or {})
    inventory = Inventory(([name], host_data), **{group: ([name], {}) for group in groups})
    state = State(inventory=inventory, config=Config())
    state.set_stage(StateStage.Prepare)
    host = inventory.get_host(name)
    state.activate_host(host)
    table = facts if isinstance(facts, FactTable) else FactTable(facts)
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            mock.patch.object(
                Host,
                "get_fact",
                # A function, so that the patched method is bound and receives the host
                # (the table, a callable object, would not be).
                lambda self, cls, *a, **kw: table(self, cls, *a, **kw),  # noqa: PLW0108
            )
        )
        stack.enter_context(ctx_state.use(state))
        stack.enter_context(ctx_host.use(host))
        stack.enter_context(ctx_inventory.use(inventory))
        runpy.run_path(str(REPO / script))
        return {
            ", ".join(sorted(state.get_op_meta(op_hash).names)): [
                render(command)
                for command in state.get_op_data_for_host(host, op_hash).command_generator()
            ]
            for op_hash in host.op_hash_order
        }


def all_commands(planned: dict[str, list[str]]) -> list[str]:
    return [command for commands in planned.values() for command in commands]
