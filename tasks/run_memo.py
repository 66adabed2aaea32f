"""Work done once per pyinfra run and shared by every host.

pyinfra runs deploy.py once per host, concurrently (gevent greenlets under the
CLI). Whatever describes the whole cloud (the OpenNebula host pool, which
hypervisor is which host, the job snippet) is worked out by the first host that
asks and handed to the others; the next run (a new pyinfra State, as in tests
that run several) starts afresh.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast
from weakref import WeakKeyDictionary

from pyinfra.context import ctx_state

if TYPE_CHECKING:
    from pyinfra.api.state import State

# What a call answered: (True, its result) or (False, the exception it raised), by (the
# function's qualified name, its arguments).
Results = dict[tuple[str, tuple[Any, ...]], tuple[bool, Any]]
Function = TypeVar("Function", bound=Callable[..., Any])

# Under the pyinfra CLI gevent patches threading, so this lock serialises the greenlets.
_lock = threading.RLock()
_by_state: WeakKeyDictionary[State, Results] = WeakKeyDictionary()
_outside_a_run: Results = {}  # used when no pyinfra State is active (plain Python callers)


def _results_of_this_run() -> Results:
    state: State | None = ctx_state.get()
    if state is None:
        return _outside_a_run
    return _by_state.setdefault(state, {})


def once_per_run(function: Function) -> Function:
    """Decorates `function` so that, per run and per arguments, it runs once.

    Its result, or the exception it raised, is remembered: every later caller in
    the same run gets the same answer (a failed API call is not retried per host).
    Arguments must be hashable.
    """

    @functools.wraps(function)
    def remembered(*args: Any) -> Any:
        key = (function.__qualname__, args)
        with _lock:
            results = _results_of_this_run()
            if key not in results:
                try:
                    results[key] = (True, function(*args))
                # Whatever the call raised is remembered, then raised to every caller.
                except Exception as error:  # noqa: BLE001
                    results[key] = (False, error)
            succeeded, value = results[key]
        if succeeded:
            return value
        raise value

    return cast(Function, remembered)
