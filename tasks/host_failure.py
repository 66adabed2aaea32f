"""Failing one host with a message, the others carrying on."""

from __future__ import annotations

import functools

from pyinfra import logger
from pyinfra.api import FunctionCommand, operation


class UnsupportedHostError(ValueError):
    """The host cannot take the deploy (OS, CPU, kernel ...); the message names the cause and the fix."""


def log_failure(state, host, reason: str) -> bool:
    """Prints `reason` in red for this host and reports the command as failed."""
    host.log_styled(reason, fg="red", log_func=logger.error)
    return False


def failure_command(reason: str) -> FunctionCommand:
    """A command that fails the host it runs on with `reason` (for operations that find a
    problem while planning and must yield nothing else)."""
    return FunctionCommand(log_failure, (reason,), {})


@operation(is_idempotent=False)
def fail_host(reason: str):
    """Stops this host's deploy with `reason`, before any later operation touches it.

    Used for problems found while planning (unknown to OpenNebula, unsupported OS,
    a bad setting ...): the other hosts carry on.
    """
    yield failure_command(reason)


def report_lost_connections_as_host_failures() -> None:
    """Guarantees that a host whose SSH connection drops in the middle of the run fails
    alone, the others going on.

    pyinfra fails one host when its connection raises an OSError or paramiko's
    SSHException. But when the other side vanishes (a hypervisor powered off mid-run),
    paramiko's Transport.open_channel re-raises the error its reader thread saw, a bare
    EOFError, which pyinfra does not catch while it reads a fact inside an operation:
    the whole run then stops with "An internal exception occurred". Here that EOFError
    becomes the SSHException pyinfra expects. Idempotent: wraps once per process.
    """
    from paramiko import SSHException, Transport

    original = Transport.open_channel
    if getattr(original, "_reports_eof_as_ssh_error", False):
        return

    @functools.wraps(original)
    def open_channel(self, *args, **kwargs):
        try:
            return original(self, *args, **kwargs)
        except EOFError:
            raise SSHException("SSH connection lost: the host closed it") from None

    open_channel._reports_eof_as_ssh_error = True
    Transport.open_channel = open_channel
