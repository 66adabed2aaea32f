"""The pure helpers of bench/noop_floor.py: ratios taken pair by pair, and the bounded wait
for a quiet machine. The benchmark itself needs the test bed and is run by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bench.noop_floor import pair_ratios, wait_for_load

_SECONDS = st.floats(min_value=0.01, max_value=1000, allow_nan=False)


def test_each_pair_gives_its_own_ratio():
    assert pair_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]


@pytest.mark.parametrize(("a", "b"), [([1.0], [1.0, 2.0]), ([], [])])
def test_pairs_that_do_not_match_are_an_error(a, b):
    with pytest.raises(ValueError, match="pairs must match"):
        pair_ratios(a, b)


@given(st.lists(st.tuples(_SECONDS, _SECONDS), min_size=1, max_size=20), _SECONDS)
def test_a_machine_slower_by_one_factor_for_a_pair_leaves_its_ratio(pairs, slower):
    """A change in speed falls on both runs of a pair: its ratio stays."""
    a, b = [first for first, _ in pairs], [second for _, second in pairs]
    scaled = pair_ratios([x * slower for x in a], [y * slower for y in b])
    assert scaled == pytest.approx(pair_ratios(a, b))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_wait_ends_as_soon_as_the_load_falls():
    clock, loads = FakeClock(), iter([5.0, 4.5, 1.0])
    assert (
        wait_for_load(4.0, 60, poll_s=10, read=lambda: next(loads), sleep=clock.sleep, clock=clock)
        == 1.0
    )
    assert clock.now == 20


def test_a_machine_that_stays_loaded_is_given_up_on_at_the_bound():
    clock = FakeClock()
    assert (
        wait_for_load(4.0, 25, poll_s=10, read=lambda: 9.0, sleep=clock.sleep, clock=clock) is None
    )
    assert clock.now == 25
