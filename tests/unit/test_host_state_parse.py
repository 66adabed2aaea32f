"""The host's one read as plain data (tasks/host_state/parse.py), from outputs captured on
the test bed's hosts after a deploy, and from those outputs cut short or altered: what is
not reported, or cannot be read, comes back as None (then read again by the step that
needs it), never as a part already as wanted."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pyinfra.api.exceptions import FactProcessError

from tasks.energy_sync.plan import TIMER_UNIT
from tasks.host_failure import UnsupportedHostError
from tasks.host_state.parse import SECTION_MARK, FileState, parse_host_state, split_sections
from tasks.prometheus.edit_request import edit_fingerprint
from tasks.rapl import modules_load_text
from tasks.rapl.plan import MODULES_LOAD_MODE, file_holds, rapl_modules
from tasks.scaphandre.spec import runs_as_specified, scaphandre_spec
from tasks.settings import Settings
from tests.unit.pyinfra_harness import default_data

DATA = Path(__file__).resolve().parents[1] / "data" / "host_state"
HYPERVISOR = (DATA / "hypervisor_rerun.txt").read_text().splitlines()
PROMETHEUS = (DATA / "prometheus_rerun.txt").read_text().splitlines()
IMAGE = "scaphandre-test-double:1.0.2"  # the stand-in image the captured hypervisor runs
SPEC = scaphandre_spec(Settings.from_data(default_data() | {"scaphandre_image": IMAGE}))
NOTHING_AS_WANTED = {"rapl": False, "engine": False, "container": False}


def parse(lines):
    return parse_host_state(lines, TIMER_UNIT)


def as_wanted(lines) -> dict[str, bool]:
    """Each hypervisor part judged as its step judges it: True when nothing is to be done."""
    found = parse(lines).hypervisor
    if found is None:
        return NOTHING_AS_WANTED
    rapl = found.rapl
    try:
        modules = rapl_modules(rapl.vendor, rapl.kernel) if rapl is not None else []
    except UnsupportedHostError:  # the step fails the host
        rapl = None
    modules_load_as_wanted = rapl is not None and file_holds(
        found.modules_load, modules_load_text(modules), MODULES_LOAD_MODE
    )
    return {
        "rapl": bool(rapl and rapl.exposed and modules_load_as_wanted),
        "engine": bool(found.engine_installed and found.engine_active and found.engine_enabled),
        "container": found.container is not None and runs_as_specified(found.container, SPEC),
    }


def section_of(lines: list[str], index: int) -> str | None:
    """The section line `index` belongs to."""
    for line in reversed(lines[: index + 1]):
        if line.startswith(SECTION_MARK):
            return line[len(SECTION_MARK) :]
    return None


# --------------------------------------------------------------------------- captured outputs


def test_a_deployed_hypervisor_reads_as_deployed():
    found = parse(HYPERVISOR)
    assert found.record.lock == "held" and found.record.digest not in ("absent", "unusable")
    assert b'"scaphandre-test-double:1.0.2"' in found.record.content
    hypervisor = found.hypervisor
    assert (hypervisor.rapl.vendor, hypervisor.rapl.exposed) == ("GenuineIntel", True)
    assert hypervisor.modules_load.state == "file" and hypervisor.modules_load.mode == "644"
    engine = (hypervisor.engine_installed, hypervisor.engine_active, hypervisor.engine_enabled)
    assert engine == (True, True, True)
    assert [container["Name"] for container in hypervisor.container] == ["/scaphandre"]
    # Not printed: the image and the engine's firewall, as the record lists both as the deploy's.
    assert hypervisor.image is None and hypervisor.vm_traffic is None
    assert hypervisor.registry_login is None
    assert found.prometheus is None
    assert as_wanted(HYPERVISOR) == {"rapl": True, "engine": True, "container": True}


def test_a_deployed_prometheus_server_reads_as_deployed():
    found = parse(PROMETHEUS)
    assert found.hypervisor is None
    server = found.prometheus
    assert server.server["config"] == "/etc/prometheus/prometheus.yml"
    assert server.server["service"] == "prometheus"
    targets = "/etc/prometheus/scaphandre_targets.yml"
    rules = "/etc/prometheus/scaphandre_rules.yml"
    assert set(server.files) == {targets, rules}
    assert server.files[targets].content.startswith(b"# Managed by the Scaphandre-on-OpenNebula")
    assert hashlib.sha256(server.files[targets].content).hexdigest() == server.files[targets].sha256
    assert server.files[rules].content is None, "its bytes were not asked for"
    rules_found = server.files[rules]
    assert (rules_found.owner, rules_found.group, rules_found.mode) == ("root", "root", "644")
    assert server.files_at([targets, rules], with_content=[targets]) is not None
    assert server.files_at([targets, rules], with_content=[rules]) is None, "bytes not read"
    assert server.files_at([targets, "/etc/prometheus/other.yml"]) is None, "a path not covered"
    config = server.config_at("/etc/prometheus/prometheus.yml")
    assert config.state == "file" and not config.reload_pending
    sha256, fingerprint = config.record_line.split(" ")
    assert sha256 == config.sha256 and config.unchanged_since_recorded(fingerprint)
    other_job = edit_fingerprint({"job_name": "other"}, None, targets)
    assert not config.unchanged_since_recorded(other_job)
    assert server.config_at("/etc/prometheus/elsewhere.yml") is None
    assert server.energy_sync is None


def test_a_reload_still_waiting_is_not_unchanged():
    config = parse([*PROMETHEUS, "reload_pending=1"]).prometheus.config
    assert config.reload_pending
    assert not config.unchanged_since_recorded(config.record_line.split(" ")[1])


def test_prometheus_yml_edited_since_recorded_is_not_unchanged():
    config_section = PROMETHEUS.index(f"{SECTION_MARK}prometheus_config")
    edited = [
        ("sha256=" + "0" * 64) if line.startswith("sha256=") and index > config_section else line
        for index, line in enumerate(PROMETHEUS)
    ]
    config = parse(edited).prometheus.config
    assert not config.unchanged_since_recorded(config.record_line.split(" ")[1])


def test_without_its_record_section_the_read_fails_the_host():
    with pytest.raises(FactProcessError):
        parse([line for line in HYPERVISOR if line != f"{SECTION_MARK}record"])
    with pytest.raises(FactProcessError):
        parse([])


@pytest.mark.parametrize("section", ["rapl", "modules_load", "engine", "engine_unit", "container"])
def test_a_section_left_out_is_not_reported(section):
    lines, skipping = [], False
    for line in HYPERVISOR:
        if line.startswith(SECTION_MARK):
            skipping = line == f"{SECTION_MARK}{section}"
        if not skipping:
            lines.append(line)
    found = parse(lines).hypervisor
    if section == "rapl":
        assert found is None, "no hypervisor part read: every step reads its own facts"
        return
    field = {
        "modules_load": "modules_load",
        "engine": "engine_installed",
        "engine_unit": "engine_active",
        "container": "container",
    }[section]
    assert getattr(found, field) is None


def test_an_engine_that_does_not_answer_is_not_a_container():
    lines = [
        (
            "Cannot connect to the Docker daemon"
            if line == "[" and section_of(HYPERVISOR, index) == "container"
            else line
        )
        for index, line in enumerate(HYPERVISOR)
    ]
    assert parse(lines).hypervisor.container is None


def test_a_modules_load_file_that_is_a_link_is_not_as_wanted():
    lines = ["state=other" if line == "state=file" else line for line in HYPERVISOR]
    sha256 = parse(HYPERVISOR).hypervisor.modules_load.sha256
    assert parse(lines).hypervisor.modules_load == FileState("other", "644", sha256)
    assert not as_wanted(lines)["rapl"]


# --------------------------------------------------------------------------- properties

_RECORD_END = HYPERVISOR.index(f"{SECTION_MARK}rapl")


@given(st.integers(min_value=_RECORD_END, max_value=len(HYPERVISOR) - 1))
def test_an_output_cut_short_never_judges_the_cut_part_as_wanted(cut):
    """Whatever line the output stops at (after the record), the part whose section was cut,
    and every part after it, is not judged as wanted."""
    lines = HYPERVISOR[:cut]
    judged = as_wanted(lines)
    cut_in = section_of(HYPERVISOR, cut)
    order = ["rapl", "modules_load", "engine", "engine_unit", "container"]
    part_of = {
        "rapl": "rapl",
        "modules_load": "rapl",
        "engine": "engine",
        "engine_unit": "engine",
        "container": "container",
    }
    for section in order[order.index(cut_in) :]:
        assert not judged[part_of[section]], (cut_in, judged)


@given(st.data())
def test_one_line_dropped_never_makes_a_part_wanted_that_must_change(data):
    """The captured host with RAPL hidden, the engine stopped and the container exited: with
    any one line of the output lost, no part is ever judged as wanted."""
    changed = {
        "exposed=yes": "exposed=no",
        "SubState=running": "SubState=dead",
        '            "Status": "running",': '            "Status": "exited",',
    }
    lines = [changed.get(line, line) for line in HYPERVISOR]
    assert as_wanted(lines) == NOTHING_AS_WANTED
    dropped = data.draw(st.integers(min_value=_RECORD_END, max_value=len(lines) - 1))
    assert as_wanted(lines[:dropped] + lines[dropped + 1 :]) == NOTHING_AS_WANTED


_NAMES = st.text(
    st.characters(codec="ascii", categories=["L", "N"], include_characters="_"),
    min_size=1,
    max_size=12,
)
_LINE = st.text(st.characters(codec="utf-8", exclude_characters="\n\r"), max_size=30)
_LINES = st.lists(_LINE.filter(lambda line: not line.startswith(SECTION_MARK)), max_size=5)


@given(st.dictionaries(_NAMES, _LINES, max_size=6), st.lists(_LINES.flatmap(st.just), max_size=1))
def test_sections_split_back_into_what_was_printed(sections, before):
    printed = [line for lines in before for line in lines]  # before any mark: not a section's
    for name, lines in sections.items():
        printed += [f"{SECTION_MARK}{name}", *lines]
    assert split_sections(printed) == sections
