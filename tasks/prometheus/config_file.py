"""The operator's prometheus.yml: the deploy's job merged in or taken out, everything else kept.

Plain logic: text in, text out; the Prometheus step reads and writes the live file.
"""

from __future__ import annotations

import copy
from typing import Any

import yaml

from tasks.prometheus.job import SHIPPED_JOB_NAME
from tasks.prometheus.owned_yaml import dump, load, normalised

MANAGED_JOB_HEADER = (
    "# The '{job_name}' scrape job below is managed by the Scaphandre-on-OpenNebula\n"
    "# deploy (pyinfra); every other job and setting is kept as it was.\n"
)

CONFIG_HEADER = MANAGED_JOB_HEADER + (
    "# This file was re-serialised: comments of the original were not kept, the\n"
    "# original is saved as a backup next to it.\n"
)

MINIMAL_CONFIG_NOTE = (
    "# No previous configuration: global settings (scrape_interval, ...) are\n"
    "# Prometheus' own defaults.\n"
)


class PrometheusConfigError(ValueError):
    """The operator's prometheus.yml cannot be merged; the live file was left untouched."""



# --------------------------------------------------------------------------
# prometheus.yml


def _untouched(reason: str) -> PrometheusConfigError:
    return PrometheusConfigError(f"{reason}; the live prometheus.yml was left untouched")


def _parse_config(text: str | None) -> dict | None:
    """The parsed config mapping, or None for missing/empty/comment-only text."""
    if text is None or not text.strip():
        return None
    try:
        config = load(text)
    except yaml.YAMLError as error:
        raise _untouched(f"prometheus.yml is not valid YAML ({error})") from None
    if config is None:
        return None
    if not isinstance(config, dict):
        raise _untouched(
            f"prometheus.yml is not a YAML mapping (its top level is a {type(config).__name__})"
        )
    return config


def _scrape_configs(config: dict) -> list:
    """The scrape_configs list of a parsed config ([] when absent or null)."""
    jobs = config.get("scrape_configs")
    if jobs is None:
        return []
    if not isinstance(jobs, list):
        raise _untouched(
            f"'scrape_configs' in prometheus.yml is a {type(jobs).__name__}, not a list"
        )
    for position, item in enumerate(jobs, start=1):
        if not isinstance(item, dict):
            raise _untouched(f"scrape_configs entry {position} in prometheus.yml is not a mapping")
    return jobs


def _managed_index(jobs: list, job_name: str) -> int | None:
    """Position of the job named job_name; more than one is an error Prometheus shares."""
    positions = [i for i, item in enumerate(jobs) if item.get("job_name") == job_name]
    if len(positions) > 1:
        raise _untouched(
            f"prometheus.yml has {len(positions)} scrape jobs named {job_name!r}; "
            "remove the extra ones by hand"
        )
    return positions[0] if positions else None


def _job_name_of(job: dict) -> str:
    name = job.get("job_name") if isinstance(job, dict) else None
    if not isinstance(name, str) or not name:
        raise ValueError("the job to merge has no job_name")
    return name


def _rule_files(config: dict) -> list[str]:
    """The rule_files list of a parsed config ([] when absent or null, as Debian ships it)."""
    listed = config.get("rule_files")
    if listed is None:
        return []
    if not isinstance(listed, list) or not all(isinstance(item, str) for item in listed):
        raise _untouched("'rule_files' in prometheus.yml is not a list of file names")
    return listed


def _with_rule_file(config: dict, rule_file: str) -> dict:
    """The config with rule_file listed under rule_files (appended, the others kept).

    A config without rule_files gets the key just before scrape_configs, where
    Prometheus' sample config has it.
    """
    listed = _rule_files(config)
    wanted = listed if rule_file in listed else [*listed, rule_file]
    if "rule_files" in config:
        return {**config, "rule_files": wanted}
    ordered: dict[str, Any] = {}
    for key, value in config.items():
        if key == "scrape_configs":
            ordered["rule_files"] = wanted
        ordered[key] = value
    ordered.setdefault("rule_files", wanted)
    return ordered


def _check_rule_file(rule_file: str | None) -> None:
    if rule_file is not None and (not isinstance(rule_file, str) or not rule_file.strip()):
        raise ValueError(f"rule_file {rule_file!r} must name the rules file")


def merge_job(existing_config_text: str | None, job: dict, rule_file: str | None = None) -> str:
    """The new prometheus.yml text with ``job`` in it and everything else kept.

    The job of the same name is replaced in place; otherwise the job is
    appended to scrape_configs. Top-level settings and their order are kept.
    With ``rule_file``, that file is also listed under rule_files (the
    operator's own rule files are kept). Missing or empty text gives a minimal
    config holding only the job (and rule file), so the global settings are
    Prometheus' own defaults. Text that is not a YAML mapping, or whose
    scrape_configs is not a list of mappings or rule_files not a list of
    names, raises PrometheusConfigError.
    """
    job_name = _job_name_of(job)
    _check_rule_file(rule_file)
    config = _parse_config(existing_config_text)
    if config is None:
        minimal: dict[str, Any] = {"rule_files": [rule_file]} if rule_file else {}
        minimal["scrape_configs"] = [copy.deepcopy(job)]
        return MANAGED_JOB_HEADER.format(job_name=job_name) + MINIMAL_CONFIG_NOTE + dump(minimal)
    jobs = list(_scrape_configs(config))
    index = _managed_index(jobs, job_name)
    if index is None:
        jobs.append(copy.deepcopy(job))
    else:
        jobs[index] = copy.deepcopy(job)
    merged = dict(config)  # keeps key order; scrape_configs stays where it was
    merged["scrape_configs"] = jobs
    if rule_file:
        merged = _with_rule_file(merged, rule_file)
    return CONFIG_HEADER.format(job_name=job_name) + dump(merged)


def job_in_config(config_text: str | None, job_name: str = SHIPPED_JOB_NAME) -> dict | None:
    """The job named job_name as parsed from the config text, or None if absent.

    Broken text raises PrometheusConfigError, as merge_job would.
    """
    config = _parse_config(config_text)
    if config is None:
        return None
    jobs = _scrape_configs(config)
    index = _managed_index(jobs, job_name)
    return None if index is None else jobs[index]


def rule_files_in_config(config_text: str | None) -> list[str]:
    """The rule_files entries of the config text ([] when none).

    Broken text raises PrometheusConfigError, as merge_job would.
    """
    config = _parse_config(config_text)
    return [] if config is None else list(_rule_files(config))


def config_needs_update(existing_config_text: str | None, job: dict, rule_file: str | None = None) -> bool:
    """True when the managed job in the config differs from ``job``, or when
    ``rule_file`` (if given) is not listed under rule_files.

    The comparison is on parsed YAML, so formatting, key order or comments
    alone never cause a rewrite (and so no reload on a no-op rerun).
    """
    _check_rule_file(rule_file)
    current = job_in_config(existing_config_text, _job_name_of(job))
    if current != normalised(job):
        return True
    return bool(rule_file) and rule_file not in rule_files_in_config(existing_config_text)


def foreign_job_conflict(existing_config_text: str | None, job: dict) -> str | None:
    """Why replacing the job of this name would destroy one of the operator's own, or None.

    A job named like ours is taken as ours (and replaced) when it is called
    `scaphandre`, as the original scripts' pasted job was, or reads our targets
    file; a differently named job of the operator's (say `prometheus_job_name`
    set to `node`) is never overwritten.
    """
    name = _job_name_of(job)
    existing = job_in_config(existing_config_text, name)
    if existing is None or name == SHIPPED_JOB_NAME:
        return None
    ours = {f for sd in job.get("file_sd_configs") or [] for f in sd.get("files") or []}
    theirs = {
        f
        for sd in (existing.get("file_sd_configs") or [] if isinstance(existing, dict) else [])
        if isinstance(sd, dict)
        for f in sd.get("files") or []
    }
    if ours & theirs:
        return None
    return (
        f"prometheus.yml already has a job named {name!r} that this deploy did not write; "
        "choose another prometheus_job_name (the live file is untouched)"
    )


def remove_job(existing_config_text: str, job_name: str = SHIPPED_JOB_NAME) -> str:
    """The prometheus.yml text without the job named job_name, everything else kept.

    Used when the deploy is removed; text without that job comes back unchanged.
    """
    config = _parse_config(existing_config_text)
    if config is None:
        return existing_config_text
    jobs = list(_scrape_configs(config))
    index = _managed_index(jobs, job_name)
    if index is None:
        return existing_config_text
    kept = dict(config)
    kept["scrape_configs"] = jobs[:index] + jobs[index + 1 :]
    return dump(kept)


def without_rule_file(existing_config_text: str, rule_file: str) -> str:
    """The config text with ``rule_file`` no longer under rule_files, everything else kept.

    For taking the deploy away again; text that does not list it comes back unchanged.
    """
    config = _parse_config(existing_config_text)
    if config is None or rule_file not in _rule_files(config):
        return existing_config_text
    kept = dict(config)
    kept["rule_files"] = [item for item in _rule_files(config) if item != rule_file]
    return dump(kept)


# --------------------------------------------------------------------------
