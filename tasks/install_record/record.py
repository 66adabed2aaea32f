"""What the deploy brought to a host, kept on the host so remove.py takes away exactly
that and nothing the operator had before.

The record is one small JSON file the deploy owns (RECORD_FILE, root-only), shared by
every part of the deploy on that host (a host can be a hypervisor and a Prometheus
server at once). A change that could lose the operator's state is recorded as an
intent BEFORE it is made (what was there before, what will be set) and confirmed
after: a run cut in between leaves the intent, and the next run keeps the state it
recorded instead of taking the deploy's own values for the operator's. Entries are
never dropped by a deploy, so a rerun still knows the engine was installed by it.

The file is validated strictly: a field of the wrong type (a string where a list is
expected, a number, an unknown key or format) makes the whole record unreadable, and
the host fails rather than guessing what is whose. Plain data and functions: the steps
read the file through a fact and write what these return.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    JsonValue,
    StringConstraints,
    ValidationError,
    field_validator,
)

RECORD_DIR = "/var/lib/scaphandre-opennebula"
RECORD_FILE = f"{RECORD_DIR}/installed.json"
FORMAT: Final = 2
FORMATS_READ = (1, 2)  # format 1: written by the versions before the intents and the files map

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
PackageManager = Literal["apt", "dnf"]
AbsolutePath = Annotated[str, StringConstraints(pattern=r"^/[^\x00]*$")]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class InstallRecordError(ValueError):
    """The record file cannot be read; the message names it, what is wrong and what to do."""


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


class EngineEntry(_Strict):
    """The Docker engine packages the deploy installs: those that were absent before it.

    Recorded before the installation (done False) and confirmed after it (done True)."""

    package_manager: PackageManager
    packages: tuple[NonEmpty, ...]
    done: bool = True


class PreviousFile(_Strict):
    """A file as it was before the deploy first changed it: its exact bytes, or that there was none."""

    present: bool
    base64: str = ""

    @field_validator("base64")
    @classmethod
    def _decodes(cls, value: str) -> str:
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
        return value

    @property
    def content(self) -> bytes | None:
        return base64.b64decode(self.base64) if self.present else None

    @classmethod
    def of(cls, content: bytes | None) -> PreviousFile:
        if content is None:
            return cls(present=False)
        return cls(present=True, base64=base64.b64encode(content).decode())


class DaemonJsonEntry(_Strict):
    """The keys the deploy set in daemon.json (`settings`), the values those keys had before
    (`previous`, absent keys left out), the whole file as it was before (`previous_file`;
    None when an earlier version recorded only the keys) and the digest of what the deploy
    wrote (`written_sha256`). Recorded before the file is written (done False), confirmed
    after (done True)."""

    settings: dict[str, JsonValue]
    previous: dict[str, JsonValue] = {}
    previous_file: PreviousFile | None = None
    written_sha256: Sha256 | None = None
    done: bool = True


class FileEntry(_Strict):
    """A file the deploy wrote on a Prometheus server: the digest of what it last wrote and
    confirmed (`sha256`, None while it is being created), and of what it is about to write
    (`writing`, an intent recorded before the write and cleared once confirmed)."""

    sha256: Sha256 | None = None
    writing: Sha256 | None = None

    def holds(self, digest: str | None) -> bool:
        """Whether a file with `digest` is one the deploy wrote (or was writing)."""
        return digest is not None and digest in (self.sha256, self.writing)


class InstallRecord(_Strict):
    """Everything the deploy brought to one host (empty: nothing, or the file is absent)."""

    format: Literal[2] = FORMAT
    engine: EngineEntry | None = None
    daemon_json: DaemonJsonEntry | None = None
    repository_files: tuple[
        AbsolutePath, ...
    ] = ()  # Docker's repository files, recorded before being added
    images: tuple[NonEmpty, ...] = ()  # exporter images the deploy pulled or loaded
    files: dict[AbsolutePath, FileEntry] = {}  # files the deploy wrote on a Prometheus server

    @property
    def empty(self) -> bool:
        return self == InstallRecord()

    @property
    def installed_engine(self) -> bool:
        """True when the Docker engine on the host is the one the deploy installed (or was
        installing when a run stopped: its packages were absent before)."""
        return bool(self.engine and self.engine.packages)

    @property
    def engine_packages(self) -> tuple[str, ...]:
        return self.engine.packages if self.engine else ()

    @property
    def package_manager(self) -> str | None:
        return self.engine.package_manager if self.engine else None

    def _with(self, **changes: Any) -> InstallRecord:
        return self.model_copy(update=changes)

    # ------------------------------------------------------------ intents and confirmations (deploy)
    def intending_engine(
        self, package_manager: PackageManager, absent_packages: list[str]
    ) -> InstallRecord:
        """The packages about to be installed recorded as the deploy's (with those recorded
        by an earlier run, which were absent before that run), not yet confirmed."""
        kept = tuple(dict.fromkeys([*self.engine_packages, *absent_packages]))
        return self._with(
            engine=EngineEntry(package_manager=package_manager, packages=kept, done=False)
        )

    def intending_daemon_json(
        self,
        settings: dict[str, Any],
        current: dict[str, Any] | None,
        current_bytes: bytes | None,
        wanted: bytes,
    ) -> InstallRecord:
        """daemon.json about to be written with `settings` (the file holding `wanted`), not
        yet confirmed. What it was before comes from the first record of it: a run that
        stopped after writing the file must not take the deploy's own values for the
        operator's. `current` / `current_bytes`: the file now (None: no file)."""
        earlier = self.daemon_json
        if earlier is None:
            previous = {key: current[key] for key in settings if current and key in current}
            previous_file: PreviousFile | None = PreviousFile.of(current_bytes)
            all_settings = dict(settings)
        else:
            previous, previous_file = dict(earlier.previous), earlier.previous_file
            all_settings = {**settings, **earlier.settings}
        entry = DaemonJsonEntry(
            settings=all_settings,
            previous=previous,
            previous_file=previous_file,
            written_sha256=sha256_of(wanted),
            done=False,
        )
        return self._with(daemon_json=entry)

    def with_repository_files(self, paths: list[str]) -> InstallRecord:
        return self._with(repository_files=tuple(dict.fromkeys([*self.repository_files, *paths])))

    def with_image(self, image: str) -> InstallRecord:
        return self._with(images=tuple(dict.fromkeys([*self.images, image])))

    def intending_files(self, digests: dict[str, str]) -> InstallRecord:
        """Each path about to be written with the content of that digest, recorded as the
        deploy's before the write (its earlier confirmed digest kept until confirmed)."""
        files = dict(self.files)
        for path, digest in digests.items():
            known = files.get(path, FileEntry())
            files[path] = (
                known
                if known.sha256 == digest and not known.writing
                else FileEntry(sha256=known.sha256, writing=digest)
            )
        return self._with(files=files)

    def adopting_files(self, digests: dict[str, str]) -> InstallRecord:
        """Files found at the deploy's paths that an earlier version wrote, recorded as the deploy's."""
        return self._with(
            files={
                **self.files,
                **{path: FileEntry(sha256=digest) for path, digest in digests.items()},
            }
        )

    @property
    def engine_confirmed(self) -> bool:
        return (self.engine is None or self.engine.done) and (
            self.daemon_json is None or self.daemon_json.done
        )

    def with_engine_confirmed(self) -> InstallRecord:
        """The engine's intents confirmed: daemon.json written, the packages installed."""
        changes: dict[str, Any] = {}
        if self.engine and not self.engine.done:
            changes["engine"] = self.engine.model_copy(update={"done": True})
        if self.daemon_json and not self.daemon_json.done:
            changes["daemon_json"] = self.daemon_json.model_copy(update={"done": True})
        return self._with(**changes)

    def with_files_confirmed(self, paths: list[str]) -> InstallRecord:
        """The writes intended for `paths` confirmed: each holds what the deploy was writing."""
        files = dict(self.files)
        for path in paths:
            entry = files.get(path)
            if entry is not None and entry.writing:
                files[path] = FileEntry(sha256=entry.writing)
        return self._with(files=files)

    # ------------------------------------------------------------ removals (remove.py)
    def without_engine(self) -> InstallRecord:
        return self._with(engine=None, daemon_json=None, repository_files=())

    def without_images(self, images: list[str]) -> InstallRecord:
        return self._with(images=tuple(image for image in self.images if image not in images))

    def without_files(self, paths: list[str]) -> InstallRecord:
        return self._with(
            files={path: entry for path, entry in self.files.items() if path not in paths}
        )

    # ------------------------------------------------------------ the file
    def to_json(self) -> str:
        data = self.model_dump(mode="json", exclude_defaults=True)
        return json.dumps({"format": FORMAT, **data}, indent=2) + "\n"  # the format always written


class _EngineV1(_Strict):
    package_manager: PackageManager | None = None
    packages: tuple[NonEmpty, ...] = ()


class _DaemonJsonV1(_Strict):
    settings: dict[str, JsonValue]
    previous: dict[str, JsonValue] = {}


class _RecordV1(_Strict):
    """The record as the versions before format 2 wrote it (hypervisors only)."""

    format: Literal[1]
    engine: _EngineV1 | None = None
    daemon_json: _DaemonJsonV1 | None = None
    repository_files: tuple[AbsolutePath, ...] = ()
    images: tuple[NonEmpty, ...] = ()

    def upgraded(self) -> InstallRecord:
        """The same record in format 2: every entry confirmed, daemon.json's earlier bytes
        unknown (its keys are given back one by one)."""
        engine = None
        if self.engine and self.engine.packages:
            if self.engine.package_manager is None:
                raise ValueError("engine: packages without a package_manager")
            engine = EngineEntry(
                package_manager=self.engine.package_manager, packages=self.engine.packages
            )
        daemon = (
            DaemonJsonEntry(settings=self.daemon_json.settings, previous=self.daemon_json.previous)
            if self.daemon_json
            else None
        )
        return InstallRecord(
            engine=engine,
            daemon_json=daemon,
            repository_files=self.repository_files,
            images=self.images,
        )


def _describe(error: ValidationError) -> str:
    """The first few problems pydantic found, each as `where: what (found …)`."""
    problems = []
    for item in error.errors()[:3]:
        where = ".".join(str(part) for part in item["loc"]) or "the top level"
        found = item.get("input")
        shown = f"{type(found).__name__} {json.dumps(found)[:40]}" if found is not None else "null"
        problems.append(f"{where}: {item['msg'].lower()} (found {shown})")
    more = len(error.errors()) - len(problems)
    return "; ".join(problems) + (f"; and {more} more" if more > 0 else "")


def record_digest(content: bytes | None) -> str:
    """What a run compares to know whether the record changed since it read it."""
    return "absent" if content is None else sha256_of(content)


def parse_install_record(content: bytes | None, path: str = RECORD_FILE) -> InstallRecord:
    """The record from the file's bytes; empty when there is no file (or it is blank).
    Raises InstallRecordError, naming the file and what is wrong, for anything that is not
    a record this deploy wrote, field by field."""
    if content is None or not content.strip():
        return InstallRecord()
    try:
        text = content.decode("utf-8")
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {type(data).__name__}, not an object")
        version = data.get("format")
        if isinstance(version, bool) or version not in FORMATS_READ:
            raise ValueError(
                f"format {json.dumps(version)} is not one this deploy reads "
                f"({' or '.join(str(known) for known in FORMATS_READ)}): was it written by a newer version?"
            )
        if version == 1:
            return _RecordV1.model_validate_json(text).upgraded()
        return InstallRecord.model_validate_json(text)
    except ValidationError as error:
        reason = _describe(error)
    except UnicodeDecodeError:
        reason = "it is not UTF-8 text"
    except ValueError as error:  # json.JSONDecodeError and the checks above
        reason = str(error)
    raise InstallRecordError(
        f"{path} (the deploy's record of what it installed here) cannot be read ({reason}): "
        "restore it, or delete it to have the deploy treat everything it finds on this host as the operator's"
    )
