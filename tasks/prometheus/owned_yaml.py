"""YAML of the files the deploy owns, written and read with PyYAML: the job snippet, and the
targets file as earlier versions wrote it (targets.py now writes that file as JSON).

The operator's prometheus.yml never goes through here: config_file.py splices it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

# libyaml's C implementation when PyYAML was built with it: ten times faster on large clouds.
# (Typed as the pure Python classes, which have the same interface.)
if TYPE_CHECKING:
    _SafeDumper = yaml.SafeDumper
    _SafeLoader = yaml.SafeLoader
else:
    _SafeDumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(text: str) -> Any:
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 - the safe loader, C or Python


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
