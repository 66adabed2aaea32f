"""A rerun on a hypervisor the deploy already set up: the facts it reads, and what it plans.

Every fact is one SSH round trip per host (pyinfra keeps none between calls), and the
hypervisor's steps run on every rerun: a rerun reads the host's one combined fact
(tasks/host_state), captured here from a hypervisor of the test bed after a deploy, and
plans no operation at all. A section that fact did not report is read by the step that
needs it, through pyinfra's own facts, as it was before the combined read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.docker_engine import ensure_docker_engine
from tasks.host_state import HypervisorFound, read_host_state
from tasks.host_state.facts import HostState
from tasks.install_record import install_ledger
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre
from tasks.scaphandre.spec import scaphandre_spec
from tasks.settings import Settings
from tests.unit.hypervisor_facts import host_facts, inspect_of
from tests.unit.pyinfra_harness import FactTable, all_commands, default_data, planned_commands

CAPTURED = Path(__file__).resolve().parents[1] / "data" / "host_state" / "hypervisor_rerun.txt"
IMAGE = "scaphandre-test-double:1.0.2"  # the stand-in image the captured host runs
DATA = {"scaphandre_image": IMAGE}


def hypervisor_steps(settings) -> None:
    """The hypervisor part of deploy.py."""
    found = read_host_state(settings)
    ledger = install_ledger(read=found.record)
    on_hypervisor = found.hypervisor or HypervisorFound()
    enable_rapl(settings, on_hypervisor)
    ensure_docker_engine(settings, ledger, on_hypervisor)
    run_scaphandre(settings, ledger, on_hypervisor)


def captured(without: str | None = None, replace: dict[str, str] | None = None) -> list[str]:
    """The captured output, with the section `without` left out, or lines replaced."""
    lines, skipping = [], False
    for line in CAPTURED.read_text().splitlines():
        if line.startswith("@@section "):
            skipping = line == f"@@section {without}"
        if not skipping:
            lines.append((replace or {}).get(line, line))
    return lines


def deployed_hypervisor(output: list[str]) -> FactTable:
    """The captured one read, and pyinfra's own facts of the same deployed host (for what
    the one read did not report)."""
    fingerprint = scaphandre_spec(Settings.from_data(default_data() | DATA)).fingerprint
    container = inspect_of(fingerprint)
    container["Config"]["Image"] = IMAGE
    record = HostState().process(captured())
    return FactTable(
        {
            **host_facts(rapl=True, docker=True),
            "SystemdStatus": {"docker.service": True},
            "SystemdEnabled": {"docker.service": True},
            "InstallRecordFile": record.record,
            "DockerImage": [{"Id": "sha256:1"}],
            "DockerContainer": [container],
            "HostState": lambda **kwargs: HostState().process(output),
        }
    )


def test_the_captured_rerun_reads_one_fact_and_plans_nothing():
    facts = deployed_hypervisor(captured())
    planned = planned_commands(hypervisor_steps, facts, data=DATA)
    assert planned == {}, planned
    assert facts.asked == ["HostState"], facts.asked


@pytest.mark.parametrize(
    ("section", "read_instead"),
    [
        ("rapl", "RaplProbe"),
        ("modules_load", "File"),  # pyinfra's files.template
        ("engine", "DockerEngineInstalled"),
        ("engine_unit", "SystemdStatus"),  # pyinfra's systemd.service
        ("container", "DockerContainer"),  # the container operation's own look
    ],
)
def test_a_section_not_reported_is_read_by_the_step_that_needs_it(section, read_instead):
    facts = deployed_hypervisor(captured(without=section))
    commands = all_commands(planned_commands(hypervisor_steps, facts, data=DATA))
    assert read_instead in facts.asked, facts.asked
    if section.startswith("engine") or section == "container":  # the table has all their facts
        assert commands == [], "the same host, read the slow way: still nothing to do"
    else:  # the table has no modules-load file: pyinfra's files.template writes it
        assert any("scaphandre-rapl.conf" in command for command in commands), commands


def test_an_unreported_engine_is_looked_for_never_installed_blind():
    """No engine section: the engine is looked for (the fact says there is one), not installed."""
    facts = deployed_hypervisor(captured(without="engine"))
    planned = planned_commands(hypervisor_steps, facts, data=DATA)
    assert not any("install" in name.lower() for name in planned), planned


def test_rapl_no_longer_exposed_loads_the_modules():
    facts = deployed_hypervisor(captured(replace={"exposed=yes": "exposed=no"}))
    planned = planned_commands(hypervisor_steps, facts, data=DATA)
    assert any(name.endswith("Load RAPL modules") for name in planned), planned


def test_a_stopped_container_is_started_again():
    exited = {'            "Status": "running",': '            "Status": "exited",'}
    facts = deployed_hypervisor(captured(replace=exited))
    # What its operation reads again.
    facts.facts["DockerContainer"][0]["State"]["Status"] = "exited"
    planned = planned_commands(hypervisor_steps, facts, data=DATA)
    assert any("Run Scaphandre container" in name for name in planned), planned


def test_a_stopped_engine_is_started():
    facts = deployed_hypervisor(captured(replace={"SubState=running": "SubState=dead"}))
    facts.facts["SystemdStatus"] = {"docker.service": False}
    planned = planned_commands(hypervisor_steps, facts, data=DATA)
    assert any(name.endswith("Enable and start Docker") for name in planned), planned
