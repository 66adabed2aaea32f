"""The deploy's record, on each host, of what it brought there, and the lock that lets one
run at a time change that host.

record.py is the plain data, lock.py the lock's shell, ownership.py whose a file found
at one of the deploy's paths is; here the record is read from the host (taking the
lock in the same round trip) and written back by operations placed around the changes
they record: an intent before, a confirmation after.
"""

from __future__ import annotations

import shlex
from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, cast

from pyinfra import host, logger
from pyinfra.api import StringCommand, deploy, operation
from pyinfra.operations import files, python

from tasks.compat import run_is_dry
from tasks.host_failure import fail_host
from tasks.install_record.facts import FilesAt, FoundFile, InstallRecordFile, RecordRead
from tasks.install_record.lock import LOCK_FILE, RUN_TOKEN, LockRequest, wait_for_lock
from tasks.install_record.ownership import Claim, ManagedPath, claim, removal
from tasks.install_record.record import (
    RECORD_DIR,
    RECORD_FILE,
    InstallRecord,
    InstallRecordError,
    parse_install_record,
)
from tasks.text_file import Commands, whole_file_commands

if TYPE_CHECKING:
    from pyinfra.api.operation import OperationMeta

DEFAULT_LOCK_TIMEOUT_S = 60


@operation(is_idempotent=False)
def record_file(text: str | None, directory_exists: bool) -> Commands:
    """Writes the record (root-only, whole, in one step), or removes it and then its
    directory if that is empty, when `text` is None. The ledger plans this only when the
    record changes, so it reads nothing."""
    if text is not None:
        yield from whole_file_commands(
            RECORD_FILE, text, "600", "700", directory_exists=directory_exists
        )
    else:
        yield StringCommand(
            f"rm -f -- {shlex.quote(RECORD_FILE)} && {{ rmdir -- {shlex.quote(RECORD_DIR)} "
            "2>/dev/null || true; }"
        )


class InstallLedger:
    """What the deploy brought to this host: the record read at the start of the run plus
    what this run's operations, in their order, add or take away.

    `record` is the state as it will be once every operation planned so far has run;
    `write` plans the operation that puts it on the host.
    """

    def __init__(self, record: InstallRecord, readable: bool = True, file_exists: bool = False):
        self.record = record
        self.readable = (
            readable  # False: the record (or the lock) is unusable and the host already failed
        )
        self.file_exists = file_exists

    def write(self, name: str, updated: InstallRecord) -> None:
        """Plans writing `updated` to the host, or removing the file when nothing is left to
        record; nothing when it is what the host will already hold."""
        if updated == self.record:
            return
        self.record = updated
        record_file(
            name=name,
            text=None if updated.empty else updated.to_json(),
            directory_exists=self.file_exists,
        )
        self.file_exists = not updated.empty


def _report_reclaimed(wait: OperationMeta) -> None:
    for line in wait.stdout_lines:
        if line.startswith("reclaimed the lock"):
            logger.warning(f"{host.print_prefix}{line}")


def _lock_problem(read: RecordRead, timeout_s: int) -> str | None:
    """Plans what the lock as found needs (a warning, a wait) and returns why the host must
    fail instead, if it must."""
    if read.stale:
        logger.warning(
            f"{host.print_prefix}reclaimed the lock {LOCK_FILE} from a run that ended without "
            f"releasing it: {read.stale.describe()}"
        )
    if read.lock == "unsupported":
        logger.warning(
            f"{host.print_prefix}no SSH connection process to tie the lock {LOCK_FILE} to: this run "
            "does not keep other runs off this host"
        )
    if read.lock != "busy":
        return None
    holder = read.holder
    if holder is not None and holder.run_token == RUN_TOKEN:
        return (
            f"{LOCK_FILE} is held by inventory host {holder.fields.get('inventory_host', '?')} of this same run: "
            f"it and {host.name} reach the same machine, which keeps one record; list each machine once in "
            "the inventory (in every group it belongs to)"
        )
    wait = hold_host_lock(
        name=f"Wait for the other run on this host to finish ({LOCK_FILE}, at most {timeout_s} s)",
        record_digest_read=read.digest,
        timeout_s=timeout_s,
    )
    python.call(
        name="Report a lock reclaimed from a run that ended",
        function=_report_reclaimed,
        wait=wait,
        _if=wait.did_change,
    )
    return None


@operation(is_idempotent=False)
def hold_host_lock(record_digest_read: str, timeout_s: int) -> Commands:
    """Guarantees this run holds the host's lock for the rest of the run, the record still as
    the plan read it (see tasks/install_record/lock.py); fails the host naming the lock and
    its holder after `timeout_s`, or when another run changed the record meanwhile."""
    yield StringCommand(wait_for_lock(LockRequest(host.name), record_digest_read, timeout_s))


def lock_request() -> LockRequest | None:
    """What the read of the record asks of the host's lock: this host's request, or None
    for --dry (which takes no lock)."""
    return None if run_is_dry() else LockRequest(host.name)


def install_ledger(
    lock_timeout_s: int = DEFAULT_LOCK_TIMEOUT_S, read: RecordRead | None = None
) -> InstallLedger:
    """The ledger of this host, from its record file, read with the host's lock taken (not
    for --dry): `read` when the caller already read it so (tasks/host_state reads it with
    everything else a run decides on), else read here. An unreadable record fails the host
    (nothing could then be judged the deploy's own) with a message naming the file and what
    is wrong, and so does a lock held by this same run for another inventory host. A lock
    another run holds is waited for by the first operation (at most `lock_timeout_s`)."""
    if read is None:
        read = host.get_fact(InstallRecordFile, lock=lock_request())
    unusable = InstallLedger(InstallRecord(), readable=False)
    problem = _lock_problem(read, lock_timeout_s)
    if problem:
        fail_host(name="Take this host's lock", reason=problem)
        return unusable
    try:
        if read.digest == "unusable":
            raise InstallRecordError(
                f"{RECORD_FILE} (the deploy's record of what it installed here) is not a "
                "regular file: move it away"
            )
        record = parse_install_record(read.content)
    except InstallRecordError as error:
        fail_host(name="Read the record of what the deploy installed", reason=str(error))
        return unusable
    return InstallLedger(record, file_exists=read.digest != "absent")


# --------------------------------------------------------------------------- files on a Prometheus server


def files_at(paths: Sequence[str], with_content: Collection[str] = ()) -> dict[str, FoundFile]:
    """What is at each path (one round trip for all)."""
    if not paths:
        return {}
    found = host.get_fact(FilesAt, paths=list(paths), with_content=list(with_content))
    return {path: found.get(index, FoundFile("absent")) for index, path in enumerate(paths)}


def claim_files(
    ledger: InstallLedger,
    paths: list[ManagedPath],
    found: dict[str, FoundFile],
    expected: dict[str, str] | None = None,
) -> bool:
    """Guarantees every file at `paths` is the deploy's before any is written: listed in the
    record, absent, or written by an earlier version (its header, or exactly what this run
    would write there: `expected` SHA-256 by path; then adopted into the record, which the
    host says). Anything else is the operator's: the host fails naming each such file and
    the setting that chooses another path, with nothing changed. False then."""
    # pyinfra declares every @deploy call to return an OperationMeta; it returns what the
    # function itself returns.
    return cast("bool", _claimed_files(ledger=ledger, paths=paths, found=found, expected=expected))


@deploy("Check the files the deploy writes here are its own")
def _claimed_files(
    ledger: InstallLedger,
    paths: list[ManagedPath],
    found: dict[str, FoundFile],
    expected: dict[str, str] | None,
) -> bool:
    outcome: Claim = claim(paths, found, ledger.record, expected)
    if outcome.refused:
        fail_host(
            name="Check the files the deploy writes here are its own",
            reason="; ".join(outcome.refused),
        )
        return False
    if outcome.adopted:
        for path in outcome.adopted:
            logger.warning(
                f"{host.print_prefix}{path} was written by an earlier version of the deploy (its header, "
                f"or exactly what this run writes there): adopted into the record {RECORD_FILE}"
            )
        ledger.write(
            "Record the files an earlier version of the deploy wrote",
            ledger.record.adopting_files(outcome.adopted),
        )
    return True


@deploy("Remove the files the deploy wrote")
def remove_recorded_files(ledger: InstallLedger, paths: list[str]) -> None:
    """Guarantees each of `paths` the record lists is gone if it still holds what the deploy
    wrote, and forgotten by the record either way; a listed file changed since, or an
    unlisted one carrying the deploy's header, stays and the host says so. Nothing else is
    touched."""
    found = files_at(paths)
    for path in paths:
        delete, warning = removal(path, found[path], ledger.record)
        if warning:
            logger.warning(f"{host.print_prefix}warning: {warning}")
        if delete:
            files.file(name=f"Remove {path}", path=path, present=False)
    ledger.write("Forget the removed files in the record", ledger.record.without_files(paths))
