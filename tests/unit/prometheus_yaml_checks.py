"""Checks of an edited prometheus.yml, shared by the unit and property tests of
tasks.prometheus.config_file.

The readers here are independent of the module under test: ruamel's safe loader for
YAML 1.2 values, libyaml's base loader for the text of every value, ruamel's
round-trip line information for where the deploy's job stands.
"""

from __future__ import annotations

import difflib
import re

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from tasks.prometheus.config_file import ADDED_KEY_COMMENT
from tasks.prometheus.job import scaphandre_job

TARGETS = "/etc/prometheus/scaphandre_targets.yml"
RULES = "/etc/prometheus/scaphandre_rules.yml"
JOB = scaphandre_job(targets_file=TARGETS, prometheus_version=(2, 42, 0))
JOB_V3 = scaphandre_job(targets_file=TARGETS, prometheus_version=(3, 5, 0))
_BREAK = re.compile(rb"\r\n|\r|\n")
_TEXT_BREAK = re.compile(r"\r\n|\r|\n")


def typed_view(config: bytes) -> dict:
    """The file as a YAML 1.2 reader sees it (ruamel's safe loader; YAML 1.1 readers
    would themselves re-type NO, 01, on...). ruamel refuses tabs used as separation, which
    the corpus has only before comments and after colons: read as spaces."""
    text = config.decode("utf-8-sig").replace("\t", " ")
    return YAML(typ="safe", pure=True).load(text) or {}


def text_view(config: bytes) -> dict:
    """Every scalar as the text written, with libyaml's tokenizer (the one Prometheus' Go
    reader derives from): what Prometheus' string fields read."""
    return yaml.load(config, Loader=yaml.CBaseLoader) or {}  # noqa: S506 - only str, list, dict


def reads_targets(job: dict) -> bool:
    return any(TARGETS in (sd.get("files") or []) for sd in job.get("file_sd_configs") or [])


def split_jobs(view: dict, job_name: str = "scaphandre") -> tuple[dict | None, list]:
    """(the deploy's job, the other jobs) of a view."""
    jobs = view.get("scrape_configs") or []
    owned = [job for job in jobs if job.get("job_name") == job_name or reads_targets(job)]
    assert len(owned) <= 1
    return (owned[0] if owned else None), [job for job in jobs if job not in owned]


def lines_of(config: bytes) -> list[bytes]:
    return config.splitlines(keepends=True)


def _last_line(node) -> int:
    if isinstance(node, CommentedMap):
        found = [node.lc.line]
        for key, value in node.items():
            found += [node.lc.key(key)[0], node.lc.value(key)[0], _last_line(value)]
        return max(found)
    if isinstance(node, CommentedSeq):
        found = [node.lc.line]
        for position, value in enumerate(node):
            found += [node.lc.item(position)[0], _last_line(value)]
        return max(found)
    return -1


def owned_line_span(config: bytes, job_name: str = "scaphandre") -> tuple[int, int] | None:
    """[first, end) lines of the deploy's job in a block-style scrape_configs: from the
    line of its '-' to the last line holding one of its keys or values. Computed from
    ruamel's round-trip line information, apart from the module under test. None when
    there is no such job, or scrape_configs is a flow list ([...])."""
    text = config.decode("utf-8-sig").replace("\t", " ")
    jobs = (YAML(typ="rt").load(text) or {}).get("scrape_configs") or []
    found = [
        i for i, job in enumerate(jobs) if job.get("job_name") == job_name or reads_targets(job)
    ]
    if not found or jobs.fa.flow_style():
        return None
    (position,) = found
    lines = _TEXT_BREAK.split(text)
    first = jobs.lc.item(position)[0]
    while not lines[first].lstrip().startswith("-"):
        first -= 1
    return first, _last_line(jobs[position]) + 1


def common_ends(before: bytes, after: bytes) -> tuple[int, int, bytes]:
    """(common prefix length, common suffix length, what the after text has between them)."""
    prefix = 0
    while prefix < min(len(before), len(after)) and before[prefix] == after[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < min(len(before), len(after)) - prefix and before[-1 - suffix] == after[-1 - suffix]
    ):
        suffix += 1
    return prefix, suffix, after[prefix : len(after) - suffix]


def changed_region(before: bytes, after: bytes) -> tuple[bytes, bytes]:
    """(what was taken out, what was put in) between the longest common prefix and suffix."""
    prefix, suffix, put_in = common_ends(before, after)
    return before[prefix : len(before) - suffix], put_in


def flow_job_span(config: bytes) -> tuple[int, int] | None:
    """Byte offsets of the deploy's job's text in a flow-style scrape_configs."""
    text = config.decode("utf-8-sig")
    offset = len(config) - len(text.encode())
    for key, value in YAML(typ="rt").compose(text).value:
        if key.value == "scrape_configs":
            for item in value.value:
                if any(k.value == "job_name" and v.value == "scaphandre" for k, v in item.value):
                    start, end = item.start_mark.index, item.end_mark.index
                    return offset + len(text[:start].encode()), offset + len(text[:end].encode())
    return None


def eol_of(config: bytes) -> bytes:
    found = _BREAK.search(config)
    return found.group() if found else b"\n"


def assert_only_job_lines_changed(before: bytes, after: bytes) -> None:
    """Every line outside the deploy's job's lines is the input's, byte for byte.

    A new job may bring along, just above it: one blank line (as its siblings are
    separated), and the scrape_configs key line when the file had none; at the end of
    a file without a final newline, the line break before it. In a flow-style
    scrape_configs, the one change is the job's own text."""
    span_after = owned_line_span(after)
    if span_after is None:  # flow style: one stretch of text changed, within the job's text
        prefix, suffix, put_in = common_ends(before, after)
        job_start, job_end = flow_job_span(after)
        if flow_job_span(before) is None:  # inserted after the last job, with its comma
            assert (prefix, put_in) == (job_start - 2, b", " + after[job_start:job_end])
        else:
            assert job_start <= prefix and len(after) - suffix <= job_end
        return
    b_lines, a_lines = lines_of(before), lines_of(after)
    span_before = owned_line_span(before)
    if span_before is not None:
        assert b_lines[: span_before[0]] == a_lines[: span_after[0]]
        assert b_lines[span_before[1] :] == a_lines[span_after[1] :]
        return
    first, end = span_after
    if first > 0 and a_lines[first - 1].decode().strip() == f"scrape_configs:  {ADDED_KEY_COMMENT}":
        first -= 1
    kept = [a_lines[:first] + a_lines[end:]]
    if first > 0 and a_lines[first - 1].strip() == b"":
        kept.append(a_lines[: first - 1] + a_lines[end:])
    kept_bytes = [b"".join(lines) for lines in kept]
    if end == len(a_lines) and not before.endswith((b"\n", b"\r")):
        assert not after.endswith((b"\n", b"\r")), "a missing final newline stays missing"
        kept_bytes = [
            k[: -len(eol_of(before))] if k.endswith(eol_of(before)) else k for k in kept_bytes
        ]
    assert before in kept_bytes


def assert_only_rule_file_added(
    without_rule: bytes, with_rule: bytes, rule_file: str = RULES
) -> None:
    """The two results differ by the rule_files entry only: one inserted line (with the
    key line when the deploy adds the key, and its separating blank line), or, in a flow
    list, one line that is the old one plus the entry."""
    old, new = lines_of(without_rule), lines_of(with_rule)
    changes = [
        op
        for op in difflib.SequenceMatcher(a=old, b=new, autojunk=False).get_opcodes()
        if op[0] != "equal"
    ]
    assert len(changes) == 1, changes
    tag, a0, a1, b0, b1 = changes[0]
    if (tag, a1 - a0, b1 - b0) == ("replace", 1, 2) and old[a0].strip() == b"rule_files: ~":
        # An explicit null makes way for the entry.
        assert [line.strip() for line in new[b0:b1]] == [b"rule_files:", b"- " + rule_file.encode()]
        return
    if tag == "insert":
        allowed = {"", f"- {rule_file}", f"rule_files:  {ADDED_KEY_COMMENT}"}
        assert {line.decode().strip() for line in new[b0:b1]} <= allowed
        assert any(line.decode().strip() == f"- {rule_file}" for line in new[b0:b1])
    else:
        assert (tag, a1 - a0, b1 - b0) == ("replace", 1, 1)
        assert (
            new[b0].replace(f", {rule_file}".encode(), b"").replace(rule_file.encode(), b"")
            == old[a0]
        )


def assert_values_kept(before: bytes, after: bytes, rule_file: str | None) -> None:
    """Every top-level key, every job but the deploy's and the operator's rule files read
    back as before, both as YAML 1.2 values and as the text of every value."""
    for view in (typed_view, text_view):
        old, new = view(before), view(after)
        edited = ("scrape_configs", "rule_files")
        assert {k: v for k, v in old.items() if k not in edited} == {
            k: v for k, v in new.items() if k not in edited
        }
        assert split_jobs(old)[1] == split_jobs(new)[1]
        old_rules, new_rules = (
            v.get("rule_files") if isinstance(v.get("rule_files"), list) else [] for v in (old, new)
        )
        assert new_rules == old_rules + (
            [rule_file] if rule_file and rule_file not in old_rules else []
        )


def located(config: bytes, *, accelerated: bool) -> tuple:
    """What the module locates in a file, composed through libyaml (accelerated) or through
    ruamel's own parser: for every node its kind, tag, value, style and start and end
    positions, the alias spans, or the refusal. Implicit nulls write nothing, so their
    positions are not read (ruamel puts them at the next token, libyaml after the ':');
    end positions are read as indexes only (at the end of a file without a final line
    break, libyaml counts one more line)."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

    import tasks.prometheus.config_file as edit

    try:
        source = edit._Source.decode(config)
        root, alias_spans = edit._compose(source, accelerated=accelerated)
    except edit.PrometheusConfigError as refused:
        return ("refused", str(refused))
    if root is not None and not (isinstance(root, MappingNode) and not root.flow_style):
        return ("not a block mapping, refused", type(root).__name__)
    nodes: list[tuple] = []
    seen: dict[int, int] = {}

    def walk(node) -> None:
        if id(node) in seen:
            nodes.append(("the node again", seen[id(node)]))
            return
        seen[id(node)] = len(seen)
        implicit_null = isinstance(node, ScalarNode) and node.style is None and node.value == ""
        marks = (
            ()
            if implicit_null
            else (
                node.start_mark.index,
                node.start_mark.line,
                node.start_mark.column,
                node.end_mark.index,
            )
        )
        if isinstance(node, ScalarNode):
            nodes.append(("scalar", str(node.tag), node.value, node.style, *marks))
        elif isinstance(node, SequenceNode):
            nodes.append(("sequence", str(node.tag), node.flow_style, *marks))
            for item in node.value:
                walk(item)
        else:
            nodes.append(("mapping", str(node.tag), node.flow_style, *marks))
            for key, value in node.value:
                walk(key)
                walk(value)

    if root is not None:
        walk(root)
    return tuple(nodes), tuple(sorted(alias_spans.values()))


def generated_config(size: int) -> bytes:
    """A prometheus.yml of about `size` bytes: one static job per host, as large sites
    without service discovery have. Made at test time: megabytes of repeated text would add
    nothing to the repository that these lines do not say (bench/run_bench.py edits 2 MB)."""
    parts = [
        (
            b"# generated\nglobal:\n  scrape_interval: 15s\n  external_labels:\n    country: NO\n"
            b"rule_files:\n  - rules/*.yml\nscrape_configs:\n"
        )
    ]
    total, host = len(parts[0]), 0
    while total < size:
        part = (
            f"  # rack {host // 20}, host {host}\n  - job_name: node_{host}\n    scrape_interval: 30s\n"
            f"    static_configs:\n      - targets: ['kvm{host}.example.org:9100', 'kvm{host}.example.org:9177']\n"
            f"        labels:\n          replica: 0{host % 10}\n          release: 1.10\n          zone: NO\n"
            f"    relabel_configs:\n      - source_labels: [__address__]\n        regex: '([^:]+):\\d+'\n"
            f"        target_label: instance\n        replacement: '$1'\n\n"
        ).encode()
        parts.append(part)
        total += len(part)
        host += 1
    return b"".join(parts)
