"""What the deploy asks of the operator's prometheus.yml, checked, and its fingerprint.

Kept apart from the editor (config_file.py) because a rerun needs only this: the
fingerprint of the request, compared with the one recorded when the file was last
written or checked, answers it without loading the editor and its YAML library.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


class PrometheusConfigError(ValueError):
    """prometheus.yml cannot be edited safely; the live file was left untouched."""

    # What is wrong, without the advice around it (set by the editor where it raises).
    reason: str


# Raised whenever the editor changes what a file must hold for a given request (which job
# is the deploy's, how jobs compare): a fingerprint taken under other rules no longer matches.
EDIT_RULES_VERSION = 1


def plain(value: Any, where: str) -> Any:
    """A deep copy of value as plain YAML data (tuples become lists); anything else is refused."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [plain(item, f"{where}[{position}]") for position, item in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str) or not key:
                raise ValueError(f"{where} has a key {key!r} that is not a non-empty string")
        return {key: plain(item, f"{where}.{key}") for key, item in value.items()}
    raise ValueError(f"{where} holds a {type(value).__name__}, which YAML cannot carry plainly")


def wanted_job(job: Any) -> dict[str, Any]:
    """The job as plain data, with a job_name; ValueError otherwise."""
    if not isinstance(job, dict):
        raise ValueError("the job must be a mapping")
    wanted: dict[str, Any] = plain(job, "the job")
    if not isinstance(wanted.get("job_name"), str) or not wanted["job_name"]:
        raise ValueError("the job has no job_name")
    return wanted


def check_file(value: Any, setting: str, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{setting} {value!r} must name a file")


def check_job_name(job_name: Any) -> None:
    if not isinstance(job_name, str) or not job_name:
        raise ValueError(f"job name {job_name!r} must be a non-empty string")


def edit_fingerprint(job: dict[str, Any], rule_file: str | None, targets_file: str) -> str:
    """A digest of what the editor's with_job is asked for: the same fingerprint, the same request.

    A file with_job handed back for a request (or left as it was) needs nothing for the same
    request again, so "<the file's SHA-256> <fingerprint>", kept by the caller, answers a
    rerun without parsing the file. Values are told apart as with_job tells them (true
    from 1, 1 from 1.0); the order of the job's keys does not count.
    """
    wanted = wanted_job(job)
    check_file(rule_file, "rule_file", optional=True)
    check_file(targets_file, "targets_file")
    request = [EDIT_RULES_VERSION, wanted, rule_file, targets_file]
    encoded = json.dumps(request, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hashlib.sha256(encoded).hexdigest()
