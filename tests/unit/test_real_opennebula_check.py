"""The by-hand check against a real oned (tests/real_opennebula/check_against_oned.py) is run
rarely; these keep it from rotting in between: it still imports what it drives, its scheduler
cases are built from the expressions the documents advise, and it refuses what it must
without an oned."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.real_opennebula import check_against_oned as check


def test_its_scheduler_cases_are_the_documented_expressions():
    scenarios = check.scheduler_scenarios()
    documented_rank = set(check.documented("SCHED_RANK"))
    assert len(documented_rank) == 1, "README and docs/energy-sync.md advise one SCHED_RANK"
    assert documented_rank <= {scenario.rank for scenario in scenarios}
    assert set(check.documented("SCHED_REQUIREMENTS")) <= {
        scenario.requirements for scenario in scenarios
    }
    assert check.documented_default_rank() in documented_rank


@pytest.mark.parametrize(
    "scenario",
    check.scheduler_scenarios() + check.default_sched_scenarios(),
    ids=lambda scenario: scenario.title,
)
def test_the_model_allows_where_the_real_scheduler_put_the_vm(scenario):
    """What OpenNebula 6.10.5's mm_sched did with each case of the check (recorded in it, see
    tests/real_opennebula/README.md), given to the model with the sync's own attribute values."""
    hosts = {
        letter: {}
        if watts is None
        else dict(
            check.sync.desired_attributes("host", check.sync.Sample(watts, 1_750_000_000), 1.5)
        )
        for letter, watts in scenario.power.items()
    }
    rank = scenario.rank if scenario.rank is not None else check.documented_default_rank()
    allowed = check.best_hosts(
        hosts, rank=rank, requirements=scenario.requirements, with_room=set(scenario.with_room)
    )
    if scenario.seen == "pending":
        assert allowed == set()
    else:
        assert scenario.seen in allowed


@pytest.mark.parametrize("url", ["http://one.example.org:2633/RPC2", "http://192.0.2.10:2633/RPC2"])
def test_it_refuses_an_oned_off_loopback(url):
    with pytest.raises(check.CheckError, match="not on loopback"):
        check.loopback_only(url)


def test_it_accepts_loopback_endpoints():
    for url in (
        "http://127.0.0.1:2633/RPC2",
        "http://localhost:2633/RPC2",
        "http://[::1]:2633/RPC2",
    ):
        check.loopback_only(url)


def test_it_refuses_an_unknown_section(capsys):
    with pytest.raises(SystemExit):
        check.main(["--sections", "api,nope"])
    assert "unknown sections nope" in capsys.readouterr().err


def test_cdata_detection():
    assert check.cdata_values(
        "<TEMPLATE><A><![CDATA[a > b]]></A><V><K><![CDATA[1]]></K></V></TEMPLATE>", "TEMPLATE"
    )
    assert not check.cdata_values("<TEMPLATE><A>1</A></TEMPLATE>", "TEMPLATE")


def test_pytest_does_not_collect_it():
    """Run by hand only: a collected module without an oned would have to skip itself."""
    ini = (Path(check.REPO) / "pytest.ini").read_text()
    assert "python_files" not in ini  # pytest's default: test_*.py and *_test.py
    assert not re.fullmatch(r"test_.*\.py|.*_test\.py", Path(check.__file__).name)
