"""Failing one host (tasks/host_failure.py): a connection lost in the middle of the run
becomes the error pyinfra fails that host for, instead of one that stops every host."""

from __future__ import annotations

import pytest
from paramiko import SSHException, Transport

from tasks.host_failure import report_lost_connections_as_host_failures


@pytest.fixture(autouse=True)
def restored_afterwards(monkeypatch):
    """Whatever a test wraps is put back as it was (monkeypatch restores what it saw)."""
    from pyinfra.connectors.ssh import SSHConnector

    for owner, name in ((Transport, "open_channel"), (SSHConnector, "put_file"), (SSHConnector, "get_file")):
        monkeypatch.setattr(owner, name, getattr(owner, name))


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


def test_an_upload_that_cannot_open_its_channel_fails_that_host_only(monkeypatch):
    """pyinfra's ConnectError from a file transfer on a lost connection is not among the
    errors pyinfra fails one host for: it becomes the SSHException that is."""
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.ssh import SSHConnector

    def no_sftp(self, *args, **kwargs):
        raise ConnectError("Unable to establish SFTP connection.")

    monkeypatch.setattr(SSHConnector, "put_file", no_sftp)
    monkeypatch.setattr(SSHConnector, "get_file", no_sftp)
    report_lost_connections_as_host_failures()
    for method in (SSHConnector.put_file, SSHConnector.get_file):
        with pytest.raises(SSHException, match="Unable to establish SFTP connection"):
            method(object.__new__(SSHConnector), "src", "dest")
