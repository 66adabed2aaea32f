"""YAML of the files the deploy owns (targets file, job snippet): written and read with PyYAML.

config_file.py also re-serialises the operator's prometheus.yml through it when the job changes.
"""

from __future__ import annotations

from typing import Any

import yaml


# libyaml's C implementation when PyYAML was built with it: ten times faster on large clouds.
_SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_SafeLoader)


class _PlainDumper(_SafeDumper):
    """Safe dumper that writes repeated objects out in full (no &id001 anchors)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(data: Any) -> str:
    return yaml.dump(
        data,
        Dumper=_PlainDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
    )


def normalised(data: Any) -> Any:
    """The value as it would read back from YAML (tuples become lists, ...)."""
    return load(dump(data))

