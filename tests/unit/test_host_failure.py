"""Failing one host (tasks/host_failure.py): a connection lost in the middle of the run
becomes the error pyinfra fails that host for, instead of one that stops every host."""

from __future__ import annotations

import pytest
from paramiko import SSHException, Transport

from tasks.host_failure import report_lost_connections_as_host_failures


@pytest.fixture
def transport_losing_its_peer(monkeypatch):
    """Transport.open_channel as paramiko behaves once the other side has gone: it
    re-raises its reader's EOFError."""
    def vanished(self, kind, *args, **kwargs):
        raise EOFError()

    monkeypatch.setattr(Transport, "open_channel", vanished)


def test_a_vanished_host_is_an_ssh_error_pyinfra_fails_that_host_for(transport_losing_its_peer):
    report_lost_connections_as_host_failures()
    with pytest.raises(SSHException, match="SSH connection lost"):
        Transport.open_channel(object.__new__(Transport), "session")


def test_the_wrapping_is_done_once(transport_losing_its_peer):
    report_lost_connections_as_host_failures()
    wrapped = Transport.open_channel
    report_lost_connections_as_host_failures()
    assert Transport.open_channel is wrapped


def test_other_errors_pass_through_unchanged(monkeypatch):
    def refused(self, kind, *args, **kwargs):
        raise SSHException("Administratively prohibited")

    monkeypatch.setattr(Transport, "open_channel", refused)
    report_lost_connections_as_host_failures()
    with pytest.raises(SSHException, match="Administratively prohibited"):
        Transport.open_channel(object.__new__(Transport), "session")
