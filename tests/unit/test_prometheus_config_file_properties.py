"""Properties of tasks.prometheus.config_file on generated prometheus.yml files: other
jobs with label values that YAML 1.1 would re-type, comments and blank lines anywhere,
any list indentation, LF or CRLF, with or without a final newline."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.prometheus.config_file import needs_update, owned_job, with_job, without_job
from tests.unit.prometheus_yaml_checks import (
    JOB,
    RULES,
    TARGETS,
    assert_only_job_lines_changed,
    assert_only_rule_file_added,
    assert_values_kept,
    located,
    split_jobs,
    text_view,
    typed_view,
)

# Values a YAML 1.1 reader (PyYAML, and Prometheus' reader for non-string fields) re-types.
LOOKALIKES = [
    "NO",
    "no",
    "01",
    "1.10",
    "on",
    "off",
    "0123",
    "12:30:00",
    "~",
    "yes",
    "y",
    "null",
    "true",
    "0x1F",
    "1e3",
    "0o17",
    ".inf",
    "2024-01-01",
    "1_000",
]
PLAIN_SAFE = string.ascii_letters + string.digits + "-_./"

label_values = st.one_of(
    st.sampled_from(LOOKALIKES),
    st.text(alphabet=PLAIN_SAFE, min_size=1, max_size=10).filter(lambda v: v[0] not in "-./"),
)
comments = st.text(alphabet=string.ascii_letters + string.digits + " \t#:-'\"", max_size=30).map(
    lambda text: "# " + text.rstrip()
)


@st.composite
def written_value(draw, value: str) -> str:
    """The value as an operator may write it: plain, single- or double-quoted."""
    style = draw(st.sampled_from(["plain", "single", "double"]))
    if style == "single":
        return f"'{value}'"
    if style == "double":
        return f'"{value}"'
    return value


@st.composite
def jobs(draw, names: list[str], dash: int, gap: int, offset: int) -> list[str]:
    """Lines of block-list jobs, with comments and blank lines between and inside them."""
    lines: list[str] = []
    key = " " * (dash + gap)
    for name in names:
        for _ in range(draw(st.integers(0, 2))):
            lines.append(draw(st.sampled_from(["", " " * dash + draw(comments), draw(comments)])))
        lines.append(" " * dash + "-" + " " * (gap - 1) + f"job_name: {draw(written_value(name))}")
        if draw(st.booleans()):
            lines.append(key + draw(comments))
        lines.append(key + "static_configs:")
        target_dash = " " * (dash + gap + offset)
        lines.append(target_dash + "-" + " " * (gap - 1) + f"targets: ['{name}.example.org:9100']")
        labels = draw(
            st.dictionaries(
                st.sampled_from(["zone", "replica", "release", "site", "mode"]),
                label_values,
                max_size=3,
            )
        )
        if labels:
            lines.append(" " * (dash + gap + offset + gap) + "labels:")
            for label, value in labels.items():
                lines.append(
                    " " * (dash + gap + offset + gap + 2) + f"{label}: {draw(written_value(value))}"
                )
        if draw(st.booleans()):
            lines.append(key + "params:")
            lines.append(key + f"  module: [{draw(written_value(draw(label_values)))}]")
    return lines


@st.composite
def configs(draw, with_owned_job: bool = False) -> bytes:
    """A prometheus.yml the deploy has not touched (or, with_owned_job, holding a pasted
    'scaphandre' job somewhere among the others)."""
    eol = draw(st.sampled_from(["\n", "\r\n"]))
    offset = draw(st.sampled_from([0, 2, 4]))  # list indentation under its key
    gap = draw(st.sampled_from([2, 4]))  # '-   key' or '- key'
    lines: list[str] = []
    if draw(st.booleans()):
        lines.append(draw(comments))
    if draw(st.booleans()):
        lines += ["global:", "  scrape_interval: 15s"]
        labels = draw(
            st.dictionaries(
                st.sampled_from(["country", "replica", "release"]), label_values, max_size=3
            )
        )
        if labels:
            lines.append("  external_labels:")
            lines += [
                f"    {label}: {draw(written_value(value))}" for label, value in labels.items()
            ]
        lines += draw(st.lists(st.sampled_from(["", draw(comments)]), max_size=2))
    rule_files = draw(st.sampled_from(["absent", "null", "block", "flow"]))
    if rule_files == "null":
        lines += ["rule_files:", " " * max(offset, 2) + "# - first_rules.yml"]
    elif rule_files == "block":
        lines += ["rule_files:", " " * offset + "- rules/*.yml"]
    elif rule_files == "flow":
        lines += ["rule_files: ['rules/*.yml']"]
    names = draw(
        st.lists(
            st.sampled_from(["node", "NO", "01", "libvirt", "on", "opennebula", "1.10"]),
            unique=True,
            max_size=4,
        )
    )
    if with_owned_job:
        names.insert(draw(st.integers(0, len(names))), "scaphandre")
    if names or draw(st.booleans()):
        lines += draw(st.lists(st.sampled_from(["", draw(comments)]), max_size=2))
        lines.append("scrape_configs:" + draw(st.sampled_from(["", "  " + draw(comments)])))
        lines += draw(jobs(names, offset, gap, offset))
    lines += draw(st.lists(st.sampled_from(["", draw(comments)]), max_size=2))
    text = eol.join(lines)
    if draw(st.booleans()) or not text:
        text += eol
    return text.encode()


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@PROPERTY_SETTINGS
@given(configs())
def test_generated_configs_are_valid_and_have_no_deploy_job(config):
    view = text_view(config)
    assert split_jobs(view)[0] is None
    assert owned_job(config, "scaphandre", TARGETS) is None


@PROPERTY_SETTINGS
@given(configs(), st.sampled_from([None, RULES]))
def test_adding_keeps_other_jobs_and_every_byte_outside_the_job(config, rule_file):
    added = with_job(config, JOB, rule_file, TARGETS)
    assert split_jobs(typed_view(added))[0] == JOB
    assert_values_kept(config, added, rule_file)
    without_rule = with_job(config, JOB, None, TARGETS)
    assert_only_job_lines_changed(config, without_rule)
    if rule_file:
        assert_only_rule_file_added(without_rule, added)


@PROPERTY_SETTINGS
@given(configs(), st.sampled_from([None, RULES]))
def test_adding_twice_changes_nothing_more(config, rule_file):
    added = with_job(config, JOB, rule_file, TARGETS)
    assert not needs_update(added, JOB, rule_file, TARGETS)
    assert with_job(added, JOB, rule_file, TARGETS) == added


@PROPERTY_SETTINGS
@given(configs(), st.sampled_from([None, RULES]))
def test_removing_what_was_added_gives_back_the_original_bytes(config, rule_file):
    added = with_job(config, JOB, rule_file, TARGETS)
    assert without_job(added, "scaphandre", TARGETS, rule_file) == config


@PROPERTY_SETTINGS
@given(configs(with_owned_job=True))
def test_a_pasted_job_is_replaced_where_it_stands(config):
    names_before = [job["job_name"] for job in text_view(config)["scrape_configs"]]
    replaced = with_job(config, JOB, None, TARGETS)
    assert [job["job_name"] for job in text_view(replaced)["scrape_configs"]] == names_before
    assert_values_kept(config, replaced, None)
    assert_only_job_lines_changed(config, replaced)
    removed = without_job(replaced, "scaphandre", TARGETS, None)
    assert split_jobs(text_view(removed)) == (None, split_jobs(text_view(config))[1])


@PROPERTY_SETTINGS
@given(configs(with_owned_job=True), st.sampled_from([None, RULES]))
def test_libyaml_locates_what_ruamel_locates(config, rule_file):
    for text in (config, with_job(config, JOB, rule_file, TARGETS)):
        assert located(text, accelerated=True) == located(text, accelerated=False)
