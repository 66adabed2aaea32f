"""docs/settings.md, written from the settings model (tasks/settings.py).

    python -m tasks.settings_doc > docs/settings.md
    python -m tasks.settings_doc --json-schema > settings.schema.json

The page lists every setting, grouped by component in the model's order, with its
default, what it accepts and its description; a unit test fails when the page in the
repository is not what this gives. The JSON schema is pydantic's, for editors and
other tools. Never imported by the deploy.
"""

from __future__ import annotations

import json
import sys
import types
from typing import Any, Union, get_args, get_origin

from tasks.settings import FIX_IT_WHERE, SECTIONS, Settings, accepted

REGENERATE = "python -m tasks.settings_doc > docs/settings.md"

HEADER = f"""\
# Settings

<!-- Written by `{REGENERATE}` from tasks/settings.py: change the model there, then rerun it. -->

Every setting of the deploy, its default, what it accepts and what it does. Every host
gets the defaults (group_data/all.py takes them from the settings model,
tasks/settings.py). Change one for every host by assigning it in group_data/all.py
(`scaphandre_port = 9100`), for a group in group_data/<group>.py or in the group's data
in inventory.py, for one host in that host's data in inventory.py; a host's data wins
over its groups' data, which wins over group_data/all.py. Values are Python: `True`, not
`"yes"`; `60`, not `"60"`. A value a setting does not accept fails that host at its first
step, before anything changes on it: `setting <name> is <value>, not <what it accepts>:
{FIX_IT_WHERE}`.
"""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _literal(value: Any) -> str:
    """A default as an operator writes it in Python: a list setting as a list."""
    return f"`{list(value) if isinstance(value, tuple) else value!r}`"


def _allows_none(annotation: Any) -> bool:
    while hasattr(annotation, "__metadata__"):
        annotation = annotation.__origin__
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _extra(name: str) -> dict[str, str]:
    """The section of setting `name` and, for one that may be None, what None means: what
    Section keeps in the field's json_schema_extra."""
    extra = Settings.model_fields[name].json_schema_extra
    if not isinstance(extra, dict):
        raise TypeError(f"setting {name} is not made by a Section")
    return {key: str(value) for key, value in extra.items()}


def _default_cell(name: str) -> str:
    field = Settings.model_fields[name]
    unset = _extra(name).get("unset")
    if field.default is None and unset:
        return f"{_literal(None)}: {unset}"
    return _literal(field.default)


def _accepts_cell(name: str) -> str:
    field = Settings.model_fields[name]
    phrase = accepted(name).phrase
    if not _allows_none(field.annotation):
        return phrase
    unset = _extra(name).get("unset")
    if field.default is not None and unset:
        return f"{phrase}, or `None`: {unset}"
    return f"{phrase}, or `None`"


def settings_markdown() -> str:
    """The whole of docs/settings.md."""
    intros = {section.title: section.intro for section in SECTIONS}
    lines = [HEADER]
    section = None
    for name, field in Settings.model_fields.items():
        title = _extra(name)["section"]
        if title != section:
            section = title
            lines += ["", f"## {title}", ""]
            if intros.get(title):
                lines += [intros[title], ""]
            lines += ["| Setting | Default | Accepts | Meaning |", "|---|---|---|---|"]
        lines.append(
            f"| `{name}` | {_cell(_default_cell(name))} | {_cell(_accepts_cell(name))} "
            f"| {_cell(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"


def settings_json_schema() -> dict[str, Any]:
    """The model's JSON schema (pydantic's), every setting with its default and description."""
    return Settings.model_json_schema()


def main(argv: list[str]) -> int:
    if argv == ["--json-schema"]:
        print(json.dumps(settings_json_schema(), indent=2))
    elif not argv:
        sys.stdout.write(settings_markdown())
    else:
        print("usage: python -m tasks.settings_doc [--json-schema]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
