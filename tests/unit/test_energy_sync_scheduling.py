"""What OpenNebula's scheduler does with what the energy sync writes, and with the expressions
the documentation recommends (read from README.md and docs/energy-sync.md, so they cannot
drift from what is proven here).

The scheduler is the model in tests/doubles/one_scheduler_model.py: oned's expression rules
(a missing attribute is 0 in a rank and false in a requirement's comparison, ranks cast to
integers, the highest rank wins). The hosts carry the attributes the sync's own functions
compute: A draws 150 W, B 60 W, C is not measured.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from tests.doubles.one_scheduler_model import (
    ExpressionError,
    best_hosts,
    rank_of,
    requirement_holds,
    tokens,
)

REPO = Path(__file__).resolve().parents[2]
DOCUMENTS = (REPO / "README.md", REPO / "docs" / "energy-sync.md")
SCRIPT = REPO / "files" / "opennebula" / "scaphandre_energy_sync.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = load_script()


def written(power_w: float) -> dict[str, str]:
    """A host's template attributes as the sync writes them for a current figure."""
    return dict(sync.desired_attributes("host", sync.Sample(power_w, 1_750_000_000), 1.5))


HOSTS = {"A": written(150.0), "B": written(60.0), "C": {}}


def documented(name: str) -> list[str]:
    """Every `NAME = "expression"` the documents show (code blocks and inline code)."""
    found = []
    for document in DOCUMENTS:
        found += re.findall(rf'\b{name}\s*=\s*"([^"]*)"', document.read_text())
    return found


def default_sched_blocks() -> list[str]:
    return [
        block
        for document in DOCUMENTS
        for block in re.findall(r"DEFAULT_SCHED = \[(.*?)\]", document.read_text(), re.S)
    ]


# --------------------------------------------------------------------------- the documents' expressions


def documented_ranks() -> list[str]:
    ranks = documented("SCHED_RANK") + [
        re.search(r'\bRANK\s*=\s*"([^"]*)"', block).group(1) for block in default_sched_blocks()
    ]
    assert len(ranks) >= 3, (
        "README and docs/energy-sync.md each recommend a SCHED_RANK, and a DEFAULT_SCHED"
    )
    return ranks


@pytest.mark.parametrize("rank", documented_ranks())
def test_every_documented_rank_prefers_the_host_drawing_least_and_puts_the_unmeasured_last(rank):
    assert best_hosts(HOSTS, rank=rank) == {"B"}
    assert best_hosts(HOSTS, rank=rank, with_room={"A", "C"}) == {"A"}
    assert best_hosts(HOSTS, rank=rank, with_room={"C"}) == {"C"}, (
        "a rank alone never leaves a VM pending"
    )
    assert min(rank_of(rank, HOSTS["A"]), rank_of(rank, HOSTS["B"])) > rank_of(rank, HOSTS["C"])


@pytest.mark.parametrize("rank", documented_ranks())
def test_every_documented_rank_keeps_sub_watt_differences(rank):
    hosts = {"cooler": written(60.2), "warmer": written(60.9)}
    assert best_hosts(hosts, rank=rank) == {"cooler"}
    assert best_hosts({"a": written(60.2), "b": written(60.3)}, rank=rank) == {"a"}


def test_the_default_sched_is_a_custom_rank_policy_without_requirements():
    [block] = default_sched_blocks()
    assert re.search(r"\bPOLICY\s*=\s*3\b", block)
    assert "REQUIREMENTS" not in block, "DEFAULT_SCHED takes a policy and a rank only"


def test_the_documented_requirements_are_the_two_proven_here():
    assert sorted(set(documented("SCHED_REQUIREMENTS"))) == [
        "!(SCAPHANDRE_POWER_W > 400)",
        "SCAPHANDRE_SCORE > 0",
    ]


def test_measured_only_excludes_the_unmeasured_and_a_vm_then_stays_pending():
    rank = documented_ranks()[0]
    [requirement] = [r for r in set(documented("SCHED_REQUIREMENTS")) if "SCORE" in r]
    assert {name for name, host in HOSTS.items() if requirement_holds(requirement, host)} == {
        "A",
        "B",
    }
    assert best_hosts(HOSTS, rank=rank, requirements=requirement, with_room={"A", "C"}) == {"A"}
    assert best_hosts(HOSTS, rank=rank, requirements=requirement, with_room={"C"}) == set()
    # a host measured at 0.0 W is measured: its score is 100000
    assert requirement_holds(requirement, written(0.0))
    assert not requirement_holds("SCAPHANDRE_POWER_W > 0", written(0.0)), (
        "why the score, not the power"
    )


def test_the_400_w_cap_keeps_unmeasured_hosts_and_drops_the_hungry_one():
    [requirement] = [r for r in set(documented("SCHED_REQUIREMENTS")) if "400" in r]
    hosts = {**HOSTS, "D": written(450.0), "E": written(400.9)}
    assert {name for name, host in hosts.items() if requirement_holds(requirement, host)} == {
        "A",
        "B",
        "C",
        "E",
    }


# --------------------------------------------------------------------------- what the score replaces


def test_the_negative_power_rank_puts_an_unmeasured_host_first_and_ties_sub_watt_differences():
    assert best_hosts(HOSTS, rank="-SCAPHANDRE_POWER_W") == {"C"}
    assert best_hosts({"a": written(60.2), "b": written(60.9)}, rank="-SCAPHANDRE_POWER_W") == {
        "a",
        "b",
    }


def test_a_stale_or_refused_host_is_treated_as_unmeasured():
    """The sync removes every attribute of such a host: it is C again, last."""
    hosts = {"A": written(150.0), "stale": {}}
    assert best_hosts(hosts, rank="SCAPHANDRE_SCORE") == {"A"}


# --------------------------------------------------------------------------- the model's own rules


def test_a_missing_attribute_is_zero_in_a_rank_and_false_in_a_comparison():
    assert rank_of("SCAPHANDRE_SCORE", {}) == 0 and rank_of("-SCAPHANDRE_POWER_W", {}) == 0
    for expression in (
        "SCAPHANDRE_POWER_W < 400",
        "SCAPHANDRE_POWER_W > 0",
        "SCAPHANDRE_POWER_W = 0",
        "SCAPHANDRE_POWER_W != 5",
        "SCAPHANDRE_POWER_W < 400.5",
        'NAME = "x*"',
    ):
        assert requirement_holds(expression, {}) is False, expression
    assert requirement_holds("!(SCAPHANDRE_POWER_W > 400)", {}) is True


def test_ranks_are_cast_to_integers_and_computed_in_floats():
    assert rank_of("-SCAPHANDRE_POWER_W", {"SCAPHANDRE_POWER_W": "60.2"}) == -60
    assert rank_of("-SCAPHANDRE_POWER_W", {"SCAPHANDRE_POWER_W": "60.9"}) == -60
    assert rank_of("X * 10", {"X": "60.9"}) == 609
    assert rank_of("- X * 2 + 1", {"X": "3"}) == -5 and rank_of("(1 + 2) * 3", {}) == 9
    assert rank_of("", {}) == 0
    assert rank_of("X", {"X": "16777217"}) == 16777216  # a C float's precision


def test_requirement_comparisons_and_connectives_follow_oned():
    host = {"P": "151.3", "NAME": "kvm1"}
    assert requirement_holds("P > 150", host) and not requirement_holds(
        "P > 151", host
    )  # whole watts
    assert requirement_holds("P > 151.2", host) and requirement_holds("P = 151", host)
    assert requirement_holds('NAME = "kvm*"', host) and requirement_holds("NAME != kvm2", host)
    # one precedence, from the left: (!A) & B, and (A | B) & C
    assert not requirement_holds("!P > 100 & P > 200", host)
    assert not requirement_holds("P > 100 | P > 0 & P > 200", host)
    assert requirement_holds("", {})


def test_the_scanner_takes_the_longest_token():
    assert tokens("-5") == [("INTEGER", "-5")]
    assert tokens("5-3") == [("INTEGER", "5"), ("INTEGER", "-3")]
    with pytest.raises(ExpressionError):
        rank_of("5-3", {})  # two numbers in a row: oned's parser refuses it too
    assert tokens('-SCAPHANDRE_POWER_W != "a b"') == [
        ("OP", "-"),
        ("STRING", "SCAPHANDRE_POWER_W"),
        ("OP", "!"),
        ("OP", "="),
        ("STRING", "a b"),
    ]
