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

    pyinfra (3.10) fails one host when its connection raises an OSError or paramiko's
    SSHException, but two other errors of a lost connection escape it and stop every
    host with "An internal exception occurred": paramiko's Transport.open_channel
    re-raises the bare EOFError its reader thread saw when the other side vanished (a
    hypervisor powered off mid-run), met while pyinfra reads a fact inside an operation;
    and pyinfra's own ConnectError when a file upload or download cannot open its SFTP
    channel. Both are raised here as the SSHException pyinfra fails one host for, with
    the same text. Idempotent: each method is wrapped once per process.
    """
    from paramiko import SSHException, Transport
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.ssh import SSHConnector

    _raise_as_ssh_error(Transport, "open_channel", EOFError, SSHException,
                        lambda error: "SSH connection lost: the host closed it")
    for method in ("put_file", "get_file"):
        _raise_as_ssh_error(SSHConnector, method, ConnectError, SSHException, str)


def _raise_as_ssh_error(owner, name: str, caught: type[BaseException], raised: type[BaseException], message) -> None:
    original = getattr(owner, name)
    if getattr(original, "_raises_ssh_errors", False):
        return

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        try:
            return original(*args, **kwargs)
        except caught as error:
            raise raised(message(error)) from None

    wrapper._raises_ssh_errors = True
    setattr(owner, name, wrapper)
