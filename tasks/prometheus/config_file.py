"""Edits of the operator's prometheus.yml that touch only the deploy's scrape job
and its rules file: bytes in, bytes out, nothing else rewritten.

The file is never re-serialised. ruamel.yaml's round-trip composer only locates
things (the jobs under ``scrape_configs``, the ``rule_files`` entries) with the
exact character positions of what is written; the edit is a splice of text:

* the job the deploy owns is replaced, line for line, by the newly rendered job;
* a new job goes after the last job of ``scrape_configs`` (the key is appended at
  the end of the file when there is none);
* one ``rule_files`` entry is added after the last one, or removed (a missing
  ``rule_files`` key is created just before ``scrape_configs`` and its comments).

Every other byte is the input's: comments, key order, quoting, flow style,
anchors and aliases, blank lines, line endings, a missing final newline, tabs
in comments, a UTF-8 byte-order mark. Written lines use the file's own line
ending and list style: ``- job_name:`` at the column of the other jobs, nested
lists indented like the file's own. A job in a flow-style ``scrape_configs:
[...]`` and a file in a flow-style ``rule_files: [...]`` get a flow entry on one
line. Strings are quoted whenever a YAML 1.1 or 1.2 reader would take them for
something else (``NO``, ``01``, ``1.10``, ``on``, ``12:30:00``, ``~``...).

Every result is parsed again before it is handed back: the deploy's job must
read back exactly as wanted, and every other job and top-level key must read
back with the same tags and the same text for every value as in the input.
Anything else raises PrometheusConfigError, so a file this module cannot edit
safely is refused, never damaged.

Values are read as YAML 1.2's core schema reads them (null, true/false,
integers, floats); everything else, timestamps included, stays the text
written, as Prometheus' string fields read it.

Keys and jobs the deploy adds carry a comment saying so; the key lines added
for an empty file go away again with the last entry the deploy removes, so
removing the job from a file the deploy added it to gives back the original
bytes (an explicit ``rule_files: ~`` that made way for the entry comes back as
an empty ``rule_files:``).

What is refused rather than guessed at: a file that is not UTF-8 or not YAML,
a top level that is not a block mapping, scrape_configs or rule_files of the
wrong shape, two jobs the deploy could own, an anchor inside the deploy's job
that the rest of the file uses, Unicode line separators (YAML 1.1 and 1.2
readers split lines differently there), and any result that does not read back
as intended. Tabs that only separate (before a comment, at the end of a line,
after a key's colon) are accepted as Prometheus accepts them.

Cost: locating is a YAML parse. With ruamel.yaml.clib (pinned), libyaml's compiled
scanner and parser feed ruamel's composer, about 3 s per megabyte; a file libyaml
cannot answer for with certainty (see tasks/compat.py) takes ruamel's own parser,
about 20-40 s per megabyte, with the same result. An edit parses the input once and
the result once, and the last two parses are kept for the next question about the
same bytes. edit_fingerprint lets a caller skip the parse of a file it already had
answered for the same request.
"""

from __future__ import annotations

import bisect
import codecs
import copy
import functools
import gc
import math
import re
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import CollectionNode, MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.reader import ReaderError
from ruamel.yaml.resolver import VersionedResolver

from tasks import compat
from tasks.compat import AliasSpans
from tasks.prometheus.edit_request import (
    PrometheusConfigError,
    check_file,
    check_job_name,
    edit_fingerprint,
    wanted_job,
)
from tasks.prometheus.job import SHIPPED_JOB_NAME

__all__ = [
    "PrometheusConfigError",
    "edit_fingerprint",
    "foreign_job_conflict",
    "needs_update",
    "owned_job",
    "with_job",
    "without_job",
]

_DEPLOY = "Scaphandre-on-OpenNebula deploy"
# Trailing comment on the first line of the job the deploy writes (inside its block,
# so it goes away with the job).
JOB_COMMENT = f"# managed by the {_DEPLOY}: changes to this job are overwritten"
# Trailing comment on a key line the deploy adds; such a key is removed with its last entry.
ADDED_KEY_COMMENT = f"# added by the {_DEPLOY}"

_SCRAPE_CONFIGS = "scrape_configs"
_RULE_FILES = "rule_files"

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_LINE_BREAK_BYTES = re.compile(rb"\r\n|\r|\n")
# Line breaks in YAML 1.1 readers (libyaml, the Go reader Prometheus uses) but not in YAML 1.2 ones.
_DISPUTED_BREAK = re.compile("[\x85\u2028\u2029]")


def _untouched(reason: str) -> PrometheusConfigError:
    error = PrometheusConfigError(f"{reason}; the live prometheus.yml was left untouched")
    error.reason = reason
    return error


def _unsafe(why: str) -> PrometheusConfigError:
    return _untouched(
        f"prometheus.yml cannot be edited safely ({why}): add the job by hand "
        "or write that part of the file more plainly"
    )


# --------------------------------------------------------------------------
# The text and its lines


@dataclass(frozen=True)
class _Source:
    """The decoded file and where each of its lines starts.

    Lines are split at CRLF, LF and lone CR, as YAML 1.2 does; a line's text
    includes its line break.
    """

    text: str
    bom: bool
    eol: str
    starts: tuple[int, ...]

    @classmethod
    def decode(cls, config: bytes) -> _Source:
        bom = config.startswith(codecs.BOM_UTF8)
        body = config[len(codecs.BOM_UTF8) :] if bom else config
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as error:
            offset = error.start + (len(codecs.BOM_UTF8) if bom else 0)
            line = len(_LINE_BREAK_BYTES.findall(config, 0, offset)) + 1
            raise _untouched(
                f"prometheus.yml is not valid UTF-8 (line {line}, byte offset {offset}): "
                "re-save it as UTF-8, e.g. with iconv -f latin1 -t utf-8"
            ) from None
        first_break = _LINE_BREAK.search(text)
        starts = [0] + [match.end() for match in _LINE_BREAK.finditer(text)]
        if starts[-1] == len(text):
            starts.pop()
        source = cls(text, bom, first_break.group() if first_break else "\n", tuple(starts))
        disputed = _DISPUTED_BREAK.search(text)
        if disputed:
            raise _untouched(
                f"prometheus.yml has a Unicode line separator (U+{ord(disputed.group()):04X}) "
                f"on line {source.line_of(disputed.start()) + 1}, which YAML readers do not "
                "agree on: replace it with a plain line break or remove it"
            )
        return source

    def encode(self, text: str) -> bytes:
        return (codecs.BOM_UTF8 if self.bom else b"") + text.encode("utf-8")

    @property
    def line_count(self) -> int:
        return len(self.starts)

    @property
    def ends_with_break(self) -> bool:
        return self.text.endswith(("\n", "\r"))

    def line_of(self, index: int) -> int:
        return bisect.bisect_right(self.starts, index) - 1

    def start(self, line: int) -> int:
        return self.starts[line] if line < len(self.starts) else len(self.text)

    def end(self, line: int) -> int:
        """Index just past the line's break (or the end of the text)."""
        return self.start(line + 1)

    def content_end(self, line: int) -> int:
        """Index of the line's break (or the end of the text)."""
        end = self.end(line)
        if self.text.endswith("\r\n", 0, end):
            return end - 2
        if self.text.endswith(("\n", "\r"), 0, end):
            return end - 1
        return end

    def content(self, line: int) -> str:
        return self.text[self.start(line) : self.content_end(line)]

    def is_blank(self, line: int) -> bool:
        return not self.content(line).strip(" \t")

    def is_comment_or_blank(self, line: int) -> bool:
        stripped = self.content(line).strip(" \t")
        return not stripped or stripped.startswith("#")


# --------------------------------------------------------------------------
# Parsing: where things are written, and what they mean


Function = TypeVar("Function", bound=Callable[..., Any])
# The top-level keys of a file as written: key -> (key node, value node), in file order.
TopKeys = dict[str, tuple[Node, Node]]


def _without_cyclic_gc(function: Function) -> Function:
    """Runs `function` with Python's cyclic garbage collector paused: a parse builds
    hundreds of thousands of objects, none in a cycle, and the collector would otherwise
    walk them again and again while they are made (a third of the time of a large file)."""

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return function(*args, **kwargs)
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            gc.enable()

    return cast(Function, paused)


@dataclass(frozen=True)
class _Job:
    position: int  # in scrape_configs, from 0
    data: dict[str, Any]
    name: Any
    reads: frozenset[str]  # files of its file_sd_configs

    def describe(self) -> str:
        return f"{self.name!r} (entry {self.position + 1} of scrape_configs)"


@dataclass(frozen=True)
class _Config:
    """A parsed prometheus.yml: its text, its top-level keys as written, its jobs and rule files."""

    source: _Source
    root: MappingNode | None  # None: no mapping yet (missing, empty or comment-only file)
    keys: TopKeys
    alias_spans: AliasSpans
    jobs: tuple[_Job, ...]
    rule_files: tuple[str, ...]

    def value(self, key: str) -> Node | None:
        found = self.keys.get(key)
        return None if found is None else found[1]

    def key_node(self, key: str) -> Node:
        return self.keys[key][0]

    def written_start(self, parent: Node, slot: int | Node) -> int:
        span = self._alias_span(parent, slot)
        if span is not None:
            return span[0]
        index: int = _child(parent, slot).start_mark.index
        return index

    def written_end(self, parent: Node, slot: int | Node) -> int | None:
        """Index just past the last character written for that child, None when nothing is."""
        span = self._alias_span(parent, slot)
        if span is not None:
            return span[1]
        return self._content_end(_child(parent, slot))

    def is_alias(self, parent: Node, slot: int | Node) -> bool:
        return self._alias_span(parent, slot) is not None

    def _alias_span(self, parent: Node, slot: int | Node) -> tuple[int, int] | None:
        return self.alias_spans.get((id(parent), slot if isinstance(slot, int) else id(slot)))

    def _content_end(self, node: Node) -> int | None:
        if isinstance(node, ScalarNode):
            # An implicit null writes nothing; its marks point at the next token.
            return None if node.style is None and node.value == "" else node.end_mark.index
        if cast(CollectionNode, node).flow_style:
            end: int = node.end_mark.index
            return end
        ends: list[int | None] = []
        if isinstance(node, SequenceNode):
            for position, item in enumerate(node.value):
                span = self.alias_spans.get((id(node), position))
                ends.append(span[1] if span else self._content_end(item))
        else:
            for key, value in node.value:
                span = self.alias_spans.get((id(node), id(key)))
                ends.append(self._content_end(key))
                ends.append(span[1] if span else self._content_end(value))
        known = [end for end in ends if end is not None]
        return max(known) if known else None


def _child(parent: Node, slot: int | Node) -> Node:
    if isinstance(slot, int):
        item: Node = parent.value[slot]
        return item
    for key, value in parent.value:
        if key is slot:
            found: Node = value
            return found
    raise KeyError(slot)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _yaml_problem(error: Exception, source: _Source) -> str:
    """One line saying what is wrong and where, never quoting a value of the file."""
    if isinstance(error, ReaderError):
        where = source.line_of(error.position) + 1 if isinstance(error.position, int) else "?"
        return f"a character YAML does not allow (#x{error.character:04x}) on line {where}"
    if isinstance(error, MarkedYAMLError):
        parts = [str(part) for part in (error.context, error.problem) if part]
        what = ", ".join(parts) or "unreadable YAML"
        mark = error.problem_mark or error.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        return " ".join(str(what).split()) + where
    return type(error).__name__


def _compose(source: _Source, *, accelerated: bool = True) -> tuple[Node | None, AliasSpans]:
    """The root node and where aliases are written (see compat.compose_yaml: libyaml when it
    can answer for certain, ruamel's own parser otherwise and for every error message)."""
    try:
        with warnings.catch_warnings():
            # A reused anchor name is valid YAML (the later one wins); the warning would print the file.
            warnings.simplefilter("ignore")
            return compat.compose_yaml(source.text, accelerated=accelerated)
    except YAMLError as error:
        problem = _yaml_problem(error, source)
        refused = _untouched(
            f"prometheus.yml is not valid YAML ({problem}): fix it by hand (promtool check config shows the details)"
        )
        refused.reason = problem
        raise refused from None
    except RecursionError:
        raise _unsafe("its values are nested too deeply") from None


# YAML 1.2 core schema; everything else (timestamps, '=', unknown tags) stays the text written.
_TAG = "tag:yaml.org,2002:"


def _scalar_value(node: ScalarNode) -> Any:
    tag = str(node.tag)
    text = node.value
    try:
        if tag == _TAG + "null":
            return None
        if tag == _TAG + "bool":
            return text.lower() in ("true", "yes", "on", "y")
        if tag == _TAG + "int":
            return _int_value(text)
        if tag == _TAG + "float":
            return _float_value(text)
    except ValueError:
        pass  # a YAML 1.1 form (60-based, ...): Prometheus' string fields read the text
    return text


def _int_value(text: str) -> int:
    digits = text.replace("_", "")
    sign = -1 if digits.startswith("-") else 1
    digits = digits.lstrip("+-")
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if digits.lower().startswith(prefix):
            return sign * int(digits[2:], base)
    return sign * int(digits, 10)


def _float_value(text: str) -> float:
    lowered = text.replace("_", "").lower()
    if lowered.lstrip("+-") == ".inf":
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(lowered)


class _Values:
    """Plain Python values of composed nodes, without touching the nodes.

    ruamel's own constructors rewrite mapping nodes in place to resolve merge
    keys; the nodes are the map of the file here, so values are built apart.
    Aliases give the same object; a recursive alias or a key written twice in
    one mapping is refused (Prometheus refuses both too).
    """

    def __init__(self, source: _Source) -> None:
        self.source = source
        self.done: dict[int, Any] = {}
        self.active: set[int] = set()

    def of(self, node: Node) -> Any:
        known = self.done.get(id(node), self)
        if known is not self:
            return known
        if id(node) in self.active:
            raise _unsafe(f"a recursive alias at line {node.start_mark.line + 1}")
        self.active.add(id(node))
        if isinstance(node, ScalarNode):
            value = _scalar_value(node)
        elif isinstance(node, SequenceNode):
            value = [self.of(item) for item in node.value]
        else:
            value = self._mapping(node)
        self.active.discard(id(node))
        self.done[id(node)] = value
        return value

    def _mapping(self, node: MappingNode) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        merged: dict[Any, Any] = {}
        merge_seen = False
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and str(key_node.tag) == _TAG + "merge":
                if merge_seen:
                    raise self._duplicate(key_node, "<<")
                merge_seen = True
                for source in self._merge_sources(value_node):
                    for key, value in source.items():
                        merged.setdefault(key, value)
                continue
            key = self.of(key_node)
            if isinstance(key, (dict, list)):
                raise _unsafe(
                    f"a key that is a list or mapping at line {key_node.start_mark.line + 1}"
                )
            if key in result:
                raise self._duplicate(key_node, key)
            result[key] = self.of(value_node)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result

    def _merge_sources(self, value_node: Node) -> list[dict[Any, Any]]:
        nodes = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        sources = [self.of(item) for item in nodes]
        if not all(isinstance(source, dict) for source in sources):
            raise _untouched(
                f"prometheus.yml merges something that is not a mapping with '<<' at line "
                f"{value_node.start_mark.line + 1}: fix it by hand"
            )
        return sources

    @staticmethod
    def _duplicate(key_node: Node, key: Any) -> PrometheusConfigError:
        shown = f"the key {key!r}" if isinstance(key, str) else "a key"
        return _untouched(
            f"prometheus.yml has {shown} twice in one mapping (line {key_node.start_mark.line + 1}): "
            "remove one of them (Prometheus refuses it too)"
        )


def _files_read(job: dict[str, Any]) -> frozenset[str]:
    found: set[str] = set()
    configs = job.get("file_sd_configs")
    for sd_config in configs if isinstance(configs, list) else []:
        files = sd_config.get("files") if isinstance(sd_config, dict) else None
        if isinstance(files, list):
            found.update(name for name in files if isinstance(name, str))
    return frozenset(found)


def _top_keys(root: MappingNode) -> TopKeys:
    keys: TopKeys = {}
    for key_node, value_node in root.value:
        if not isinstance(key_node, ScalarNode):
            raise _unsafe(
                f"a top-level key that is a list or mapping at line {key_node.start_mark.line + 1}"
            )
        if str(key_node.tag) == _TAG + "merge":
            raise _untouched(
                "prometheus.yml merges keys into its top level with '<<': write those keys out, "
                "Prometheus does not read a merged top level either"
            )
        if key_node.value in keys:
            raise _Values._duplicate(key_node, key_node.value)
        keys[key_node.value] = (key_node, value_node)
    return keys


def _top_value(keys: TopKeys, key: str, values: _Values) -> Any:
    """The value of a top-level key; None when the key is absent or null."""
    return values.of(keys[key][1]) if key in keys else None


def _jobs(keys: TopKeys, values: _Values) -> tuple[_Job, ...]:
    listed = _top_value(keys, _SCRAPE_CONFIGS, values)
    if listed is None:
        return ()
    if not isinstance(listed, list):
        raise _untouched(
            f"'scrape_configs' in prometheus.yml is a {_kind(listed)}, not a list of jobs: "
            "write it as a list of '- job_name: ...' entries"
        )
    jobs = []
    for position, item in enumerate(listed):
        if not isinstance(item, dict):
            raise _untouched(
                f"entry {position + 1} of 'scrape_configs' in prometheus.yml is a {_kind(item)}, "
                "not a job mapping: fix it by hand"
            )
        jobs.append(_Job(position, item, item.get("job_name"), _files_read(item)))
    return tuple(jobs)


def _rule_files(keys: TopKeys, values: _Values) -> tuple[str, ...]:
    listed = _top_value(keys, _RULE_FILES, values)
    if listed is None:
        return ()
    if isinstance(listed, str):
        raise _untouched(
            f"'rule_files' in prometheus.yml is not a list but a single string ({listed!r}): "
            f"write it as a list, e.g. rule_files: [{listed!r}]"
        )
    if not isinstance(listed, list):
        raise _untouched(
            f"'rule_files' in prometheus.yml is a {_kind(listed)}, not a list of file names"
        )
    for position, item in enumerate(listed):
        if not isinstance(item, str):
            raise _untouched(
                f"entry {position + 1} of 'rule_files' in prometheus.yml is a {_kind(item)}, "
                "not a file name: fix it by hand"
            )
    return tuple(listed)


@functools.lru_cache(maxsize=2)
@_without_cyclic_gc
def _parse(config: bytes) -> _Config:
    """The parsed file. The last two are kept: the deploy asks several questions of the
    live file, then of the result, and a parse of a large file takes seconds."""
    source = _Source.decode(config)
    root, alias_spans = _compose(source)
    if root is None or (isinstance(root, ScalarNode) and root.style is None and root.value == ""):
        return _Config(source, None, {}, alias_spans, (), ())
    if not isinstance(root, MappingNode):
        kind = "list" if isinstance(root, SequenceNode) else "single value"
        raise _untouched(
            f"prometheus.yml is not a YAML mapping (its top level is a {kind}): it should consist "
            "of keys such as 'global:' and 'scrape_configs:'"
        )
    if root.flow_style:
        raise _untouched(
            "the top level of prometheus.yml is written in flow style ({...}): "
            "write it as block YAML, one 'key: value' per line"
        )
    keys = _top_keys(root)
    for key in (_SCRAPE_CONFIGS, _RULE_FILES):
        if key in keys and alias_spans.get((id(root), id(keys[key][0]))):
            raise _unsafe(f"'{key}' is an alias of another part of the file")
    values = _Values(source)
    try:
        jobs = _jobs(keys, values)
        rule_files = _rule_files(keys, values)
    except RecursionError:
        raise _unsafe("its values are nested too deeply") from None
    return _Config(source, root, keys, alias_spans, jobs, rule_files)


def _parsed(config: object) -> _Config:
    if config is None:
        return _parse(b"")
    if isinstance(config, (bytearray, memoryview)):
        config = bytes(config)
    if not isinstance(config, bytes):
        raise TypeError(f"prometheus.yml content must be bytes, not {type(config).__name__}")
    return _parse(config)


# --------------------------------------------------------------------------
# Which job is the deploy's


def _named(config: _Config, job_name: str) -> list[_Job]:
    named = [job for job in config.jobs if job.name == job_name]
    if len(named) > 1:
        raise _untouched(
            f"prometheus.yml has {len(named)} scrape jobs named {job_name!r} (entries "
            f"{', '.join(str(job.position + 1) for job in named)} of scrape_configs): "
            "remove the extra ones by hand"
        )
    return named


def _is_foreign(job: _Job, job_name: str, targets_file: str) -> bool:
    """A job of the operator's that merely bears the configured name."""
    return job.name == job_name != SHIPPED_JOB_NAME and targets_file not in job.reads


def _owned(
    config: _Config, job_name: str, targets_file: str, *, include_foreign: bool = True
) -> _Job | None:
    """The job named job_name, or the one reading targets_file (a renamed job); two is an error."""
    candidates = {job.position: job for job in _named(config, job_name)}
    candidates.update({job.position: job for job in config.jobs if targets_file in job.reads})
    if not include_foreign:
        candidates = {
            p: job for p, job in candidates.items() if not _is_foreign(job, job_name, targets_file)
        }
    if len(candidates) > 1:
        described = " and ".join(job.describe() for job in candidates.values())
        raise _untouched(
            f"prometheus.yml has {len(candidates)} jobs the deploy could own, {described}: the job "
            f"named {job_name!r} and any job reading {targets_file} are the deploy's; "
            "remove or rename all but one of them by hand"
        )
    return next(iter(candidates.values()), None)


def _conflict(config: _Config, job: dict[str, Any]) -> str | None:
    name = job["job_name"]
    named = _named(config, name)
    if not named or name == SHIPPED_JOB_NAME or _files_read(job) & named[0].reads:
        return None
    return (
        f"prometheus.yml already has a job named {name!r} that this deploy did not write; "
        "choose another prometheus_job_name (the live file is untouched)"
    )


# --------------------------------------------------------------------------
# The job and values as written


def _same(left: Any, right: Any) -> bool:
    """Equality that tells true from 1 and 1 from 1.0, as a typed reader does."""
    if type(left) is not type(right):
        return False
    if isinstance(left, dict):
        return left.keys() == right.keys() and all(_same(left[key], right[key]) for key in left)
    if isinstance(left, list):
        return len(left) == len(right) and all(
            _same(a, b) for a, b in zip(left, right, strict=True)
        )
    if isinstance(left, float) and math.isnan(left):
        return math.isnan(right)
    return bool(left == right)


_STRING = _TAG + "str"
_RESOLVERS = (VersionedResolver(version=(1, 1)), VersionedResolver(version=(1, 2)))
# Strings that may stand unquoted, in block and flow context alike.
_PLAIN = re.compile(r"[A-Za-z0-9_/$.][A-Za-z0-9_/$.+-]*")
# Characters a single-quoted scalar may hold on one line, for every YAML reader.
_SINGLE_QUOTABLE = re.compile(
    "[\x20-\x7e\xa0-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*"
)


def _reads_as_string(text: str) -> bool:
    return all(
        str(resolver.resolve(ScalarNode, text, (True, False))) == _STRING for resolver in _RESOLVERS
    )


def _string(text: str) -> str:
    if _PLAIN.fullmatch(text) and _reads_as_string(text):
        return text
    if _SINGLE_QUOTABLE.fullmatch(text):
        return "'" + text.replace("'", "''") + "'"
    escaped = []
    for char in text:
        code = ord(char)
        if char in '\\"':
            escaped.append("\\" + char)
        elif _SINGLE_QUOTABLE.fullmatch(char):
            escaped.append(char)
        elif code <= 0xFF:
            escaped.append(f"\\x{code:02x}")
        elif code <= 0xFFFF:
            escaped.append(f"\\u{code:04x}")
        else:
            escaped.append(f"\\U{code:08x}")
    return '"' + "".join(escaped) + '"'


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        written = repr(value)
        return written if "." in written or "e" in written else written + ".0"
    return _string(value)


def _flow(value: Any) -> str:
    if isinstance(value, dict):
        return (
            "{" + ", ".join(f"{_string(key)}: {_flow(item)}" for key, item in value.items()) + "}"
        )
    if isinstance(value, list):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    return _scalar(value)


@dataclass(frozen=True)
class _Layout:
    """How the file lays out block collections, so that written lines look like its own."""

    mapping_indent: int = 2  # columns from a key to the keys of the mapping under it
    list_offset: int = (
        2  # columns from a key to the '-' of the list under it (0: "- x" under "key:")
    )
    key_gap: int = 2  # columns from a '-' to the first key of a mapping entry ("-   key" is 4)


def _mapping_lines(mapping: dict[str, Any], column: int, layout: _Layout) -> list[str]:
    lines = []
    for key, value in mapping.items():
        head = " " * column + _string(key) + ":"
        if isinstance(value, dict) and value:
            lines.append(head)
            lines.extend(_mapping_lines(value, column + layout.mapping_indent, layout))
        elif isinstance(value, list) and value:
            lines.append(head)
            lines.extend(_sequence_lines(value, column + layout.list_offset, layout))
        else:
            lines.append(f"{head} {_flow(value)}")
    return lines


def _sequence_lines(items: list[Any], column: int, layout: _Layout) -> list[str]:
    lines = []
    for item in items:
        if isinstance(item, dict) and item:
            gap = layout.key_gap
            entry = _mapping_lines(item, column + gap, layout)
        elif isinstance(item, list) and item:
            gap = layout.key_gap
            entry = _sequence_lines(item, column + gap, layout)
        else:
            gap = 2
            entry = [" " * (column + gap) + _flow(item)]
        entry[0] = " " * column + "-" + " " * (gap - 1) + entry[0][column + gap :]
        lines.extend(entry)
    return lines


def _job_lines(job: dict[str, Any], dash_column: int, layout: _Layout) -> list[str]:
    lines = _sequence_lines([job], dash_column, layout)
    lines[0] += "  " + JOB_COMMENT
    return lines


# --------------------------------------------------------------------------
# Where list entries are written


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str


def _apply(text: str, edits: Iterable[_Edit]) -> str:
    pieces = []
    done = 0
    for edit in sorted(edits, key=lambda e: (e.start, e.end)):
        if edit.start < done:
            raise _unsafe("two edits of the same place")
        pieces.append(text[done : edit.start])
        pieces.append(edit.text)
        done = edit.end
    pieces.append(text[done:])
    return "".join(pieces)


def _joined(source: _Source, lines: list[str], at: int) -> str:
    """Whole lines to write at index `at`, ended like the file's lines."""
    body = "".join(line + source.eol for line in lines)
    if at == len(source.text) and source.text and not source.ends_with_break:
        # Keep the file's missing final newline: the break goes before the lines.
        body = source.eol + body[: -len(source.eol)]
    return body


def _insert_lines(source: _Source, before_line: int, lines: list[str]) -> _Edit:
    at = source.start(before_line)
    return _Edit(at, at, _joined(source, lines, at))


def _replace_lines(source: _Source, first: int, last: int, lines: list[str]) -> _Edit:
    start, end = source.start(first), source.end(last)
    body = "".join(line + source.eol for line in lines)
    if end == len(source.text) and not source.ends_with_break:
        body = body[: -len(source.eol)]
    return _Edit(start, end, body)


def _remove_lines(source: _Source, lines: set[int]) -> list[_Edit]:
    """Edits removing those lines; each run of them takes the blank line just above it
    along (the one a new entry or key was separated by)."""
    taken = set(lines)
    for first, _last in _runs(sorted(lines)):
        if first > 0 and source.is_blank(first - 1):
            taken.add(first - 1)
    edits = []
    for first, last in _runs(sorted(taken)):  # runs that now touch are removed as one
        start, end = source.start(first), source.end(last)
        if end == len(source.text) and not source.ends_with_break and first > 0:
            start = source.content_end(first - 1)  # the last line keeps having no break
        edits.append(_Edit(start, end, ""))
    return edits


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    runs: list[list[int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1][1] = number
        else:
            runs.append([number, number])
    return [(first, last) for first, last in runs]


def _dash_column(config: _Config, sequence: SequenceNode) -> int:
    """Column of the '-' of a block sequence's entries."""
    text = config.source.text
    found = re.compile(r"-(?=[ \t\r\n])").search(text, sequence.start_mark.index)
    first = config.written_start(sequence, 0)
    if found is None or found.start() > first:
        raise _unsafe(
            f"no '-' found before the list entry at line {config.source.line_of(first) + 1}"
        )
    return found.start() - config.source.start(config.source.line_of(found.start()))


def _dash_line(config: _Config, sequence: SequenceNode, position: int, dash_column: int) -> int:
    """The line holding the '-' of a block sequence's entry."""
    source = config.source
    begin = config.written_start(sequence, position)
    line = source.line_of(begin)
    before = source.text[source.start(line) : begin]
    if re.fullmatch(" " * dash_column + r"-[ \t]+", before):
        return line
    if before.strip(" \t") == "":
        # The '-' stands alone on an earlier line, maybe with comments between.
        alone = re.compile(" " * dash_column + r"-[ \t]*(#.*)?")
        for above in range(line - 1, -1, -1):
            if alone.fullmatch(source.content(above)):
                return above
            if not source.is_comment_or_blank(above):
                break
    raise _unsafe(
        f"the list entry at line {line + 1} is laid out in a way this edit does not follow"
    )


def _entry_lines(config: _Config, sequence: SequenceNode, position: int) -> tuple[int, int]:
    """First and last line of a block sequence's entry: from its '-' to its last written
    value. Comment lines after that belong to what follows."""
    source = config.source
    dash_column = _dash_column(config, sequence)
    first = _dash_line(config, sequence, position, dash_column)
    if position + 1 < len(sequence.value):
        region_end = source.start(_dash_line(config, sequence, position + 1, dash_column))
    else:
        region_end = sequence.end_mark.index
    last = source.line_of(max(region_end - 1, source.start(first)))
    while last > first and source.is_comment_or_blank(last):
        last -= 1
    written_end = config.written_end(sequence, position)
    if written_end is not None:
        while written_end > 0 and source.text[written_end - 1] in " \t\r\n":
            written_end -= 1
        last = max(last, source.line_of(written_end - 1))
    return first, last


def _flow_removal(config: _Config, sequence: SequenceNode, positions: set[int]) -> list[_Edit]:
    """Edits removing those entries of a flow sequence with their commas."""
    edits = []
    count = len(sequence.value)
    for first, last in _runs(sorted(positions)):
        if last + 1 < count:
            start, end = (
                config.written_start(sequence, first),
                config.written_start(sequence, last + 1),
            )
        elif first > 0:
            start = _written_at(config.written_end(sequence, first - 1))
            end = _written_at(config.written_end(sequence, last))
        else:
            start = config.written_start(sequence, first)
            end = _written_at(config.written_end(sequence, last))
        edits.append(_Edit(start, end, ""))
    return edits


def _written_at(index: int | None) -> int:
    """Where an entry of a flow list is written: an entry written as nothing has no place."""
    if index is None:
        raise _unsafe("an entry of a list that is written as nothing")
    return index


def _flow_append(config: _Config, sequence: SequenceNode, entry: str) -> _Edit:
    if sequence.value:
        at = _written_at(config.written_end(sequence, len(sequence.value) - 1))
        return _Edit(at, at, ", " + entry)
    closing = sequence.end_mark.index - 1
    if config.source.text[closing : closing + 1] != "]":
        raise _unsafe(f"no ']' closing the list at line {config.source.line_of(closing) + 1}")
    return _Edit(closing, closing, entry)


def _layout(config: _Config) -> _Layout:
    """The file's habits, from the first block collections met, top-level keys first."""
    found: dict[str, int] = {}
    pending: list[Node] = [] if config.root is None else [config.root]
    for _ in range(500):  # the first few collections tell the file's habit
        if not pending or len(found) == 3:
            break
        node = pending.pop(0)
        if isinstance(node, SequenceNode) and not node.flow_style:
            pending.extend(node.value)
        if not isinstance(node, MappingNode) or node.flow_style:
            continue
        for key, value in node.value:
            pending.append(value)
            if isinstance(value, ScalarNode) or value.flow_style or not value.value:
                continue
            if isinstance(value, MappingNode):
                indent = value.start_mark.column - key.start_mark.column
                if 1 <= indent <= 8:
                    found.setdefault("mapping_indent", indent)
                continue
            try:
                dash_column = _dash_column(config, value)
            except PrometheusConfigError:
                continue
            if 0 <= dash_column - key.start_mark.column <= 8:
                found.setdefault("list_offset", dash_column - key.start_mark.column)
            if "key_gap" not in found:
                gap = _key_gap(config, value, dash_column)
                if gap is not None:
                    found["key_gap"] = gap
    return _Layout(**found)


def _list_layout(config: _Config, sequence: SequenceNode, key_column: int) -> tuple[int, _Layout]:
    """Dash column of an existing block list, and the layout for entries written in it:
    the list's own habits first, then the file's."""
    layout = _layout(config)
    dash_column = _dash_column(config, sequence)
    gap = _key_gap(config, sequence, dash_column)
    return dash_column, _Layout(
        mapping_indent=layout.mapping_indent,
        list_offset=max(0, dash_column - key_column),
        key_gap=layout.key_gap if gap is None else gap,
    )


def _top_column(config: _Config) -> int:
    return 0 if config.root is None else config.root.start_mark.column


def _added_key_line(config: _Config, key: str) -> str:
    return " " * _top_column(config) + f"{key}:  {ADDED_KEY_COMMENT}"


# --------------------------------------------------------------------------
# Edits that add


def _key_gap(config: _Config, sequence: SequenceNode, dash_column: int) -> int | None:
    """Columns from an entry's '-' to its first key, as the list's first mapping entry
    written on the '-' line has it; None when no entry tells."""
    source = config.source
    for position, item in enumerate(sequence.value):
        if (
            isinstance(item, MappingNode)
            and not item.flow_style
            and not config.is_alias(sequence, position)
        ):
            begin: int = item.start_mark.index
            line_start = source.start(source.line_of(begin))
            if (
                source.text[line_start + dash_column : line_start + dash_column + 1] == "-"
                and begin - line_start - dash_column >= 2
            ):
                return begin - line_start - dash_column
            return None
    return None


def _job_edit(config: _Config, owned: _Job | None, job: dict[str, Any]) -> list[_Edit]:
    """The owned job replaced in place, or the job added after the last one."""
    source = config.source
    jobs_node = config.value(_SCRAPE_CONFIGS)
    if jobs_node is None:
        return []  # scrape_configs is added with the job at the end of the file
    if isinstance(jobs_node, SequenceNode) and jobs_node.flow_style:
        if owned is None:
            return [_flow_append(config, jobs_node, _flow(job))]
        start = config.written_start(jobs_node, owned.position)
        end = _written_at(config.written_end(jobs_node, owned.position))
        return [_Edit(start, end, _flow(job))]
    key_column = config.key_node(_SCRAPE_CONFIGS).start_mark.column
    if isinstance(jobs_node, ScalarNode):  # scrape_configs: with no jobs (null)
        layout = _layout(config)
        return _fill_null_key(
            config,
            _SCRAPE_CONFIGS,
            lambda dash: _job_lines(
                job, dash, _Layout(layout.mapping_indent, max(0, dash - key_column), layout.key_gap)
            ),
        )
    jobs_node = cast(SequenceNode, jobs_node)  # _jobs refused anything but a list or null
    dash_column, layout = _list_layout(config, jobs_node, key_column)
    lines = _job_lines(job, dash_column, layout)
    if owned is not None:
        first, last = _entry_lines(config, jobs_node, owned.position)
        return [_replace_lines(source, first, last, lines)]
    last_position = len(jobs_node.value) - 1
    first, last = _entry_lines(config, jobs_node, last_position)
    if last_position > 0 and first > 0 and source.is_blank(first - 1):
        lines = ["", *lines]  # the jobs are separated by blank lines: so is this one
    return [_insert_lines(source, last + 1, lines)]


def _fill_null_key(
    config: _Config, key: str, entry_lines: Callable[[int], list[str]]
) -> list[_Edit]:
    """Entries for a key written with no value: after the key's line and the comment
    lines indented under it (Debian ships rule_files with commented-out examples)."""
    source = config.source
    key_node, value_node = config.keys[key]
    edits = []
    if value_node.value:  # an explicit null (~, null): taken out, the entries follow the key
        start = value_node.start_mark.index
        while start > 0 and source.text[start - 1] in " \t":
            start -= 1
        edits.append(_Edit(start, value_node.end_mark.index, ""))
    key_column = key_node.start_mark.column
    after = source.line_of(key_node.start_mark.index) + 1
    dash_column = None
    while after < source.line_count:
        line = source.content(after)
        indent = len(line) - len(line.lstrip(" "))
        if not line.lstrip(" ").startswith("#") or indent <= key_column:
            break
        dash_column = indent if dash_column is None else dash_column
        after += 1
    if dash_column is None:
        dash_column = key_column + _layout(config).list_offset
    edits.append(_insert_lines(source, after, entry_lines(dash_column)))
    return edits


def _rule_file_edits(config: _Config, rule_file: str | None) -> list[_Edit]:
    """rule_file appended to rule_files, or rule_files created just before scrape_configs."""
    if not rule_file or rule_file in config.rule_files:
        return []
    source = config.source
    listed = config.value(_RULE_FILES)
    if listed is None:
        if _SCRAPE_CONFIGS not in config.keys:
            return []  # rule_files is added with scrape_configs at the end of the file
        return [_rule_files_before_jobs(config, rule_file)]
    if isinstance(listed, ScalarNode):
        return _fill_null_key(
            config, _RULE_FILES, lambda dash: [" " * dash + "- " + _string(rule_file)]
        )
    listed = cast(SequenceNode, listed)  # _rule_files refused anything but a list or null
    if listed.flow_style:
        return [_flow_append(config, listed, _string(rule_file))]
    dash_column = _dash_column(config, listed)
    _first, last = _entry_lines(config, listed, len(listed.value) - 1)
    return [_insert_lines(source, last + 1, [" " * dash_column + "- " + _string(rule_file)])]


def _rule_files_before_jobs(config: _Config, rule_file: str) -> _Edit:
    """A new rule_files key above scrape_configs and the comment lines that introduce it."""
    source = config.source
    key_node = config.key_node(_SCRAPE_CONFIGS)
    key_line = source.line_of(key_node.start_mark.index)
    introduction = re.compile(" " * key_node.start_mark.column + "#.*")
    at = key_line
    while at > 0 and introduction.fullmatch(source.content(at - 1)):
        at -= 1
    if at == 0:
        at = key_line  # those comments head the file: the key goes right above scrape_configs
    dash_column = _top_column(config) + _layout(config).list_offset
    lines = [_added_key_line(config, _RULE_FILES), " " * dash_column + "- " + _string(rule_file)]
    if at > 0 and source.is_blank(at - 1):
        lines.append("")
    return _insert_lines(source, at, lines)


def _new_keys_at_end(config: _Config, job: dict[str, Any], rule_file: str | None) -> list[_Edit]:
    """scrape_configs (and rule_files before it, when missing too) appended to the file."""
    if _SCRAPE_CONFIGS in config.keys:
        return []
    source = config.source
    column = _top_column(config)
    layout = _layout(config)
    dash_column = column + layout.list_offset
    lines = [""] if source.text else []
    if rule_file and _RULE_FILES not in config.keys:
        lines += [
            _added_key_line(config, _RULE_FILES),
            " " * dash_column + "- " + _string(rule_file),
        ]
    lines.append(_added_key_line(config, _SCRAPE_CONFIGS))
    lines += _job_lines(job, dash_column, layout)
    return [_insert_lines(source, source.line_count, lines)]


# --------------------------------------------------------------------------
# Edits that remove


def _is_added_key(config: _Config, key: str) -> bool:
    line = config.source.line_of(config.key_node(key).start_mark.index)
    return config.source.content(line) == _added_key_line(config, key)


def _removal(config: _Config, key: str, positions: set[int]) -> tuple[set[int], list[_Edit]]:
    """Lines (block list) or edits (flow list) that take those entries of a list away,
    with its key when the deploy added it and nothing else is left in it."""
    # Entries to take away are entries of a list (see _parse).
    sequence = cast(SequenceNode, config.value(key))
    if not positions:
        return set(), []
    if sequence.flow_style:
        return set(), _flow_removal(config, sequence, positions)
    lines: set[int] = set()
    for position in positions:
        first, last = _entry_lines(config, sequence, position)
        lines.update(range(first, last + 1))
    if len(positions) == len(sequence.value) and _is_added_key(config, key):
        lines.add(config.source.line_of(config.key_node(key).start_mark.index))
    return lines, []


# --------------------------------------------------------------------------
# Checking the result


def _raw(node: Node, memo: dict[int, tuple[Any, ...]], active: set[int]) -> tuple[Any, ...]:
    """The node as written: tags and values, quoting style, order. Aliases read as their anchor."""
    known = memo.get(id(node))
    if known is not None:
        return known
    if id(node) in active:
        raise _unsafe(f"a recursive alias at line {node.start_mark.line + 1}")
    active.add(id(node))
    if isinstance(node, ScalarNode):
        raw: tuple[Any, ...] = ("=", str(node.tag), node.value, node.style)
    elif isinstance(node, SequenceNode):
        raw = ("[", str(node.tag), tuple(_raw(item, memo, active) for item in node.value))
    else:
        raw = (
            "{",
            str(node.tag),
            tuple((_raw(k, memo, active), _raw(v, memo, active)) for k, v in node.value),
        )
    active.discard(id(node))
    memo[id(node)] = raw
    return raw


def _raw_jobs(
    config: _Config, skip: int | None, memo: dict[int, tuple[Any, ...]]
) -> list[tuple[Any, ...]]:
    jobs_node = config.value(_SCRAPE_CONFIGS)
    if not isinstance(jobs_node, SequenceNode):
        return []
    return [
        _raw(item, memo, set()) for position, item in enumerate(jobs_node.value) if position != skip
    ]


@_without_cyclic_gc
def _check_kept(
    before: _Config, after: _Config, skip_before: int | None, skip_after: int | None
) -> None:
    """Every top-level key but the two edited, and every job but the deploy's, reads back as written."""
    memo_before: dict[int, tuple[Any, ...]] = {}
    memo_after: dict[int, tuple[Any, ...]] = {}
    edited = (_SCRAPE_CONFIGS, _RULE_FILES)
    kept_before = [key for key in before.keys if key not in edited]
    kept_after = [key for key in after.keys if key not in edited]
    if kept_before != kept_after:
        raise _unsafe("the edit would change the top-level keys")
    for key in kept_before:
        written_before, written_after = before.keys[key][1], after.keys[key][1]
        if _raw(written_before, memo_before, set()) != _raw(written_after, memo_after, set()):
            raise _unsafe(f"the edit would change '{key}'")
    if _raw_jobs(before, skip_before, memo_before) != _raw_jobs(after, skip_after, memo_after):
        raise _unsafe("the edit would change the operator's other jobs")


def _verify_added(
    before: _Config,
    after: _Config,
    owned: _Job | None,
    job: dict[str, Any],
    rule_file: str | None,
    targets_file: str,
) -> None:
    placed = _owned(after, job["job_name"], targets_file)
    if placed is None or not _same(placed.data, job):
        raise _unsafe("the job does not read back as written")
    expected_position = owned.position if owned is not None else len(before.jobs)
    if placed.position != expected_position or len(after.jobs) != len(before.jobs) + (
        owned is None
    ):
        raise _unsafe("the job did not land where it belongs")
    wanted_rules = before.rule_files
    if rule_file and rule_file not in wanted_rules:
        wanted_rules = (*wanted_rules, rule_file)
    if after.rule_files != wanted_rules:
        raise _unsafe("rule_files does not read back as intended")
    _check_kept(before, after, None if owned is None else owned.position, placed.position)


def _verify_removed(
    before: _Config,
    after: _Config,
    owned: _Job | None,
    job_name: str,
    targets_file: str,
    rule_file: str | None,
) -> None:
    if _owned(after, job_name, targets_file, include_foreign=False) is not None:
        raise _unsafe("the job is still there after removing it")
    if len(after.jobs) != len(before.jobs) - (owned is not None):
        raise _unsafe("the removal would change the number of other jobs")
    if after.rule_files != tuple(name for name in before.rule_files if name != rule_file):
        raise _unsafe("rule_files does not read back as intended")
    _check_kept(before, after, None if owned is None else owned.position, None)


# --------------------------------------------------------------------------
# The API


def owned_job(config: bytes | None, job_name: str, targets_file: str) -> dict[str, Any] | None:
    """The deploy's job in prometheus.yml as plain data, or None when there is none.

    The deploy's job is the one named job_name, or any job whose file_sd_configs
    reads targets_file (a job renamed since is found, and moved, that way). Two
    such jobs, or two named job_name, raise PrometheusConfigError naming them.
    Values read as described in the module docstring (strings stay strings).
    """
    check_job_name(job_name)
    check_file(targets_file, "targets_file")
    found = _owned(_parsed(config), job_name, targets_file)
    return None if found is None else copy.deepcopy(found.data)


def needs_update(
    config: bytes | None, job: dict[str, Any], rule_file: str | None, targets_file: str
) -> bool:
    """True when the deploy's job in the file differs from `job` (compared as read, so
    formatting and comments never count), or rule_file is not under rule_files."""
    wanted = wanted_job(job)
    check_file(rule_file, "rule_file", optional=True)
    check_file(targets_file, "targets_file")
    return _needs_update(_parsed(config), wanted, rule_file, targets_file)


def _needs_update(
    config: _Config, job: dict[str, Any], rule_file: str | None, targets_file: str
) -> bool:
    current = _owned(config, job["job_name"], targets_file)
    if current is None or not _same(current.data, job):
        return True
    return bool(rule_file) and rule_file not in config.rule_files


def foreign_job_conflict(config: bytes | None, job: dict[str, Any]) -> str | None:
    """Why writing `job` would destroy one of the operator's own jobs, or None.

    A job bearing the job's name is taken as the deploy's when it reads one of
    the job's file_sd files, or when the name is the default `scaphandre` (the
    name of the job pasted from the original scripts). Any other job of that
    name is the operator's and is never overwritten.
    """
    return _conflict(_parsed(config), wanted_job(job))


def with_job(
    config: bytes | None, job: dict[str, Any], rule_file: str | None, targets_file: str
) -> bytes:
    """The file with `job` in it, and rule_file under rule_files; every other byte kept.

    The deploy's job (see owned_job) is replaced in place, otherwise the job is
    added after the last job. Input that needs no change comes back as it is.
    A missing, empty or comment-only file gives a minimal configuration holding
    the job (and rule file) after its comments. Raises PrometheusConfigError when
    the file is unusable, when a job of the operator's bears the job's name
    (see foreign_job_conflict), or when the result would not read back exactly
    as intended.
    """
    wanted = wanted_job(job)
    check_file(rule_file, "rule_file", optional=True)
    check_file(targets_file, "targets_file")
    before = _parsed(config)
    owned = _owned(before, wanted["job_name"], targets_file)
    conflict = _conflict(before, wanted)
    if conflict:
        raise PrometheusConfigError(conflict)
    if config is not None and not _needs_update(before, wanted, rule_file, targets_file):
        return bytes(config)
    edits = (
        _rule_file_edits(before, rule_file)
        + _job_edit(before, owned, wanted)
        + _new_keys_at_end(before, wanted, rule_file)
    )
    result = before.source.encode(_apply(before.source.text, edits))
    after = _parse_result(result)
    _verify_added(before, after, owned, wanted, rule_file, targets_file)
    return result


def without_job(
    config: bytes | None, job_name: str, targets_file: str, rule_file: str | None
) -> bytes | None:
    """The file without the deploy's job and without rule_file under rule_files; every
    other byte kept. For removing the deploy.

    A job that merely bears job_name but is the operator's (see
    foreign_job_conflict) stays. A key the deploy added (its line carries the
    deploy's comment) goes when its last entry goes. Input with nothing to
    remove comes back byte-identical; None (no file) gives None.
    """
    check_job_name(job_name)
    check_file(targets_file, "targets_file")
    check_file(rule_file, "rule_file", optional=True)
    if config is None:
        return None
    before = _parsed(config)
    owned = _owned(before, job_name, targets_file, include_foreign=False)
    rule_positions = {
        p for p, name in enumerate(before.rule_files) if rule_file and name == rule_file
    }
    if owned is None and not rule_positions:
        return bytes(config)
    job_lines, job_edits = _removal(
        before, _SCRAPE_CONFIGS, set() if owned is None else {owned.position}
    )
    rule_lines, rule_edits = _removal(before, _RULE_FILES, rule_positions)
    # One pass over both lists' lines: removed runs that touch are taken as one.
    edits = job_edits + rule_edits + _remove_lines(before.source, job_lines | rule_lines)
    result = before.source.encode(_apply(before.source.text, edits))
    after = _parse_result(result)
    _verify_removed(before, after, owned, job_name, targets_file, rule_file)
    return result


def _parse_result(result: bytes) -> _Config:
    try:
        return _parse(result)
    except PrometheusConfigError as error:
        raise _unsafe(f"the edited file would not read back: {error.reason}") from None
