"""Failing one host with a message, the others carrying on."""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

from pyinfra import logger
from pyinfra.api import FunctionCommand, operation

if TYPE_CHECKING:
    from pyinfra.api.host import Host
    from pyinfra.api.state import State


class UnsupportedHostError(ValueError):
    """The host cannot take the deploy (OS, CPU, kernel ...); the message names the cause and the fix."""


def log_failure(state: State, host: Host, reason: str) -> bool:
    """Prints `reason` in red for this host and reports the command as failed."""
    host.log_styled(reason, fg="red", log_func=logger.error)
    return False


def failure_command(reason: str) -> FunctionCommand:
    """A command that fails the host it runs on with `reason` (for operations that find a
    problem while planning and must yield nothing else)."""
    return FunctionCommand(log_failure, (reason,), {})


@operation(is_idempotent=False)
def fail_host(reason: str) -> Generator[FunctionCommand, None, None]:
    """Stops this host's deploy with `reason`, before any later operation touches it.

    Used for problems found while planning (unknown to OpenNebula, unsupported OS,
    a bad setting ...): the other hosts carry on.
    """
    yield failure_command(reason)
