"""The deploy's record, on each hypervisor, of what it installed there.

record.py is the plain data; here it is read from the host and written back by
operations placed right after the ones that installed what they record.
"""

from __future__ import annotations

from pyinfra import host
from pyinfra.facts.files import FileContents
from pyinfra.operations import files

from tasks.host_failure import fail_host
from tasks.install_record.record import (
    RECORD_DIR,
    RECORD_FILE,
    InstallRecord,
    InstallRecordError,
    parse_install_record,
)
from tasks.text_file import text_file


class InstallLedger:
    """What the deploy installed on this host: the record read at the start of the run plus
    what this run's operations, in their order, add or take away.

    `record` is the state as it will be once every operation planned so far has run;
    `write` plans the operation that puts it on the host.
    """

    def __init__(self, record: InstallRecord, readable: bool = True):
        self.record = record
        self.readable = readable  # False: the file is unreadable and the host already failed

    def write(self, name: str, updated: InstallRecord) -> None:
        """Plans writing `updated` to the host (root-only), or removing the file when nothing
        is left to record; nothing when it is what the host already holds."""
        if updated == self.record:
            return
        self.record = updated
        if updated.empty:
            files.file(name=name, path=RECORD_FILE, present=False)
            files.directory(name=f"{name}: its directory", path=RECORD_DIR, present=False)
        else:
            text_file(name=name, path=RECORD_FILE, text=updated.to_json(), mode="600", directory_mode="700")


def install_ledger() -> InstallLedger:
    """The ledger of this host, from its record file; an unreadable record fails the host
    (nothing can then be judged the deploy's own) with a message naming the file."""
    try:
        return InstallLedger(parse_install_record(host.get_fact(FileContents, path=RECORD_FILE)))
    except InstallRecordError as error:
        fail_host(name="Read the record of what the deploy installed", reason=str(error))
        return InstallLedger(InstallRecord(), readable=False)
