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
from weakref import WeakKeyDictionary

from pyinfra.context import ctx_state

# Under the pyinfra CLI gevent patches threading, so this lock serialises the greenlets.
_lock = threading.RLock()
_by_state: WeakKeyDictionary = WeakKeyDictionary()
_outside_a_run: dict = {}  # used when no pyinfra State is active (plain Python callers)


def _results_of_this_run() -> dict:
    state = ctx_state.get()
    if state is None:
        return _outside_a_run
    return _by_state.setdefault(state, {})


def once_per_run(function):
    """Decorates `function` so that, per run and per arguments, it runs once.

    Its result, or the exception it raised, is remembered: every later caller in
    the same run gets the same answer (a failed API call is not retried per host).
    Arguments must be hashable.
    """

    @functools.wraps(function)
    def remembered(*args):
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

    return remembered
