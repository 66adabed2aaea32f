"""Work done once per pyinfra run (tasks/run_memo.py): shared by every host, fresh next run."""

import pytest
from pyinfra.api import State
from pyinfra.context import ctx_state

from tasks.run_memo import once_per_run

calls = []


@once_per_run
def counted(argument):
    calls.append(argument)
    if argument == "fails":
        raise ValueError("the API is down")
    return f"answer for {argument}"


def test_each_argument_is_worked_out_once_per_run_and_again_in_the_next():
    calls.clear()
    for _run in range(2):
        with ctx_state.use(State()):
            assert [counted("a") for _ in range(3)] == ["answer for a"] * 3
            assert counted("b") == "answer for b"
    assert calls == ["a", "b", "a", "b"]


def test_a_failure_is_remembered_too_and_raised_to_every_caller():
    calls.clear()
    with ctx_state.use(State()):
        for _ in range(3):
            with pytest.raises(ValueError, match="the API is down"):
                counted("fails")
    assert calls == ["fails"]
