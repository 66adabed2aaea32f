"""Unit tests of tasks.prometheus.config_file: the operator's prometheus.yml edited in
place, every byte outside the deploy's job kept.

The corpus under tests/data/prometheus/corpus holds real-shaped files (Debian's and
OpenNebula's shipped ones, the prometheus-community Ansible role's rendering, hand-edited
ones). Each is edited, checked byte for byte outside the job's lines, read back as
Prometheus reads it, and checked with promtool.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

import tasks.prometheus.config_file as edit
from tasks import compat
from tasks.prometheus.config_file import (
    ADDED_KEY_COMMENT,
    PrometheusConfigError,
    edit_fingerprint,
    foreign_job_conflict,
    needs_update,
    owned_job,
    with_job,
    without_job,
)
from tests.unit.prometheus_yaml_checks import (
    JOB,
    JOB_V3,
    RULES,
    TARGETS,
    assert_only_job_lines_changed,
    assert_only_rule_file_added,
    assert_values_kept,
    changed_region,
    generated_config,
    lines_of,
    located,
    owned_line_span,
    split_jobs,
    text_view,
    typed_view,
)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "prometheus" / "corpus"
CORPUS_FILES = sorted(CORPUS.glob("*.yml"))
PROMTOOL = "/usr/bin/promtool"

# Files holding the deploy's job already (pasted from the old scripts, renamed, or written earlier).
CORPUS_WITH_JOB = {
    "comments_everywhere.yml",
    "hand_pasted_static.yml",
    "job_in_middle.yml",
    "renamed_owned_job.yml",
}
# Files promtool 2.42 refuses as they are, and why; every other corpus file must pass as it is.
PROMTOOL_REFUSES_INPUT = {
    "scrape_config_files.yml": "scrape_config_files arrived in Prometheus 2.43",
}


NO_JOB_FILES = [path for path in CORPUS_FILES if path.name not in CORPUS_WITH_JOB]
JOB_FILES = [path for path in CORPUS_FILES if path.name in CORPUS_WITH_JOB]


def corpus_ids(paths):
    return [path.name for path in paths]


# --------------------------------------------------------------------------
# The corpus


def test_corpus_is_large_and_varied_enough():
    names = {path.name for path in CORPUS_FILES}
    assert len(names) >= 15
    assert names >= CORPUS_WITH_JOB and set(PROMTOOL_REFUSES_INPUT) <= names
    raw = {path.name: path.read_bytes() for path in CORPUS_FILES}
    assert raw["debian_shipped.yml"].startswith(
        b"# Sample config for Prometheus."
    )  # Debian's as shipped
    assert b"\r\n" in raw["crlf_line_endings.yml"] and b"\n" not in raw[
        "crlf_line_endings.yml"
    ].replace(b"\r\n", b"")
    assert raw["bom_no_final_newline.yml"].startswith(b"\xef\xbb\xbf") and not raw[
        "bom_no_final_newline.yml"
    ].endswith(b"\n")
    assert b"\t" in raw["tabs_in_comments.yml"]
    for name, config in raw.items():
        has_job = split_jobs(typed_view(config))[0] is not None
        assert has_job == (name in CORPUS_WITH_JOB), name


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
def test_adding_the_job_changes_only_its_own_lines(path):
    before = path.read_bytes()
    after = with_job(before, JOB, None, TARGETS)
    assert_only_job_lines_changed(before, after)
    taken_out, _put_in = changed_region(before, after)
    if path.name not in CORPUS_WITH_JOB:
        assert taken_out == b"", "a new job is only inserted"
    assert split_jobs(typed_view(after))[0] == JOB


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
def test_rule_file_adds_one_entry_and_nothing_else(path):
    before = path.read_bytes()
    assert_only_rule_file_added(
        with_job(before, JOB, None, TARGETS), with_job(before, JOB, RULES, TARGETS)
    )


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
@pytest.mark.parametrize("rule_file", [None, RULES])
def test_operator_values_read_back_unchanged(path, rule_file):
    before = path.read_bytes()
    after = with_job(before, JOB, rule_file, TARGETS)
    assert_values_kept(before, after, rule_file)
    new_text = text_view(after)
    assert split_jobs(new_text)[0]["metric_relabel_configs"][0]["regex"] == "one-(0|[1-9][0-9]*)"


@pytest.mark.parametrize("path", NO_JOB_FILES, ids=corpus_ids(NO_JOB_FILES))
@pytest.mark.parametrize("rule_file", [None, RULES])
def test_add_then_remove_gives_back_the_original_bytes(path, rule_file):
    before = path.read_bytes()
    added = with_job(before, JOB, rule_file, TARGETS)
    assert added != before
    removed = without_job(added, "scaphandre", TARGETS, rule_file)
    if path.name == "null_keys.yml" and rule_file:
        # An explicit null (rule_files: ~) made way for the entry; it comes back as an empty value.
        assert removed == before.replace(b"rule_files: ~\n", b"rule_files:\n")
    else:
        assert removed == before


@pytest.mark.parametrize("path", JOB_FILES, ids=corpus_ids(JOB_FILES))
def test_removing_an_existing_job_keeps_everything_else(path):
    before = path.read_bytes()
    removed = without_job(before, "scaphandre", TARGETS, RULES)
    b_lines, r_lines = lines_of(before), lines_of(removed)
    first, end = owned_line_span(before)
    assert r_lines in (b_lines[:first] + b_lines[end:], b_lines[: first - 1] + b_lines[end:])
    for view in (typed_view, text_view):
        assert split_jobs(view(removed)) == (None, split_jobs(view(before))[1])


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
def test_edit_is_idempotent(path):
    once = with_job(path.read_bytes(), JOB, RULES, TARGETS)
    assert not needs_update(once, JOB, RULES, TARGETS)
    assert with_job(once, JOB, RULES, TARGETS) == once
    assert needs_update(once, JOB_V3, RULES, TARGETS)
    upgraded = with_job(once, JOB_V3, RULES, TARGETS)
    assert split_jobs(typed_view(upgraded))[0] == JOB_V3
    assert_only_job_lines_changed(once, upgraded)


def promtool_check(directory: Path, config: bytes) -> subprocess.CompletedProcess:
    config_path = directory / "prometheus.yml"
    config_path.write_bytes(config)
    return subprocess.run(
        [PROMTOOL, "check", "config", str(config_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(not Path(PROMTOOL).exists(), reason="promtool is not installed on this machine")
@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
def test_promtool_accepts_every_result_whose_input_it_accepts(path, tmp_path):
    # Rule files the corpus names by relative path exist (empty) beside the config, as on a server.
    (tmp_path / "rules.yml").write_text("")
    (tmp_path / "rules").mkdir()
    (tmp_path / "alerts").mkdir()
    rule_file = str(tmp_path / "scaphandre_rules.yml")
    Path(rule_file).write_text("")
    before = path.read_bytes()
    checked = promtool_check(tmp_path, before)
    if path.name in PROMTOOL_REFUSES_INPUT:
        assert checked.returncode != 0, (
            f"promtool now accepts {path.name}: drop it from PROMTOOL_REFUSES_INPUT"
        )
        return
    assert checked.returncode == 0, checked.stdout + checked.stderr
    after = with_job(before, JOB, rule_file, TARGETS)
    checked = promtool_check(tmp_path, after)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"Checking {rule_file}" in checked.stdout
    removed = without_job(after, "scaphandre", TARGETS, rule_file)
    assert promtool_check(tmp_path, removed).returncode == 0


# --------------------------------------------------------------------------
# Layout and line endings of what is written


def test_crlf_file_gets_crlf_lines_only():
    before = (CORPUS / "crlf_line_endings.yml").read_bytes()
    after = with_job(before, JOB, RULES, TARGETS)
    assert b"\n" not in after.replace(b"\r\n", b"")
    assert after.count(b"\r\n") > before.count(b"\r\n") + 10


def test_bom_and_missing_final_newline_are_kept():
    before = (CORPUS / "bom_no_final_newline.yml").read_bytes()
    after = with_job(before, JOB, RULES, TARGETS)
    assert after.startswith(b"\xef\xbb\xbf") and after.count(b"\xef\xbb\xbf") == 1
    assert not after.endswith(b"\n")
    assert "Åsa Ødegård" in after.decode("utf-8-sig")


def test_new_job_follows_the_list_style_of_its_siblings():
    for name, dash, nested in (
        ("non_indented_lists.yml", "- job_name: scaphandre", "  - files:\n    - " + TARGETS),
        (
            "debian_shipped.yml",
            "  - job_name: scaphandre",
            "      - files:\n          - " + TARGETS,
        ),
        (
            "indented_lists.yml",
            "    -   job_name: scaphandre",
            "        file_sd_configs:\n            -   files:\n                    - " + TARGETS,
        ),
    ):
        after = with_job((CORPUS / name).read_bytes(), JOB, None, TARGETS).decode()
        assert f"\n{dash}  # managed by" in after, name
        assert nested in after, name


def test_jobs_separated_by_blank_lines_get_one_before_the_new_job():
    after = with_job((CORPUS / "debian_shipped.yml").read_bytes(), JOB, None, TARGETS).decode()
    assert "['localhost:9100']\n\n  - job_name: scaphandre" in after
    after = with_job((CORPUS / "non_indented_lists.yml").read_bytes(), JOB, None, TARGETS).decode()
    assert "    env: prod\n- job_name: scaphandre" in after


def test_rule_files_goes_before_the_comments_that_introduce_scrape_configs():
    before = (
        b"global:\n  scrape_interval: 15s\n\n# The jobs.\n# One per exporter.\n"
        b"scrape_configs:\n- job_name: a\n  static_configs: [{targets: ['a:1']}]\n"
    )
    after = with_job(before, JOB, RULES, TARGETS)
    assert after.startswith(
        b"global:\n  scrape_interval: 15s\n\nrule_files:  "
        + ADDED_KEY_COMMENT.encode()
        + b"\n- "
        + RULES.encode()
        + b"\n\n# The jobs.\n"
    )
    assert without_job(after, "scaphandre", TARGETS, RULES) == before


def test_debian_null_rule_files_gets_the_entry_after_its_commented_examples():
    after = with_job((CORPUS / "debian_shipped.yml").read_bytes(), JOB, RULES, TARGETS).decode()
    assert f'  # - "second_rules.yml"\n  - {RULES}\n\n# A scrape configuration' in after


def test_opennebula_flow_rule_files_gets_a_flow_entry():
    after = with_job((CORPUS / "opennebula_shipped.yml").read_bytes(), JOB, RULES, TARGETS).decode()
    assert f"rule_files: ['rules.yml', {RULES}]\n" in after


def test_flow_scrape_configs_gets_a_flow_job_and_an_empty_flow_list_one_too():
    after = with_job(
        (CORPUS / "flow_scrape_configs.yml").read_bytes(), JOB, RULES, TARGETS
    ).decode()
    assert f"rule_files: [{RULES}]\n" in after
    assert "labels: {zone: NO}}]}, {job_name: scaphandre, file_sd_configs:" in after
    empty = b"global: {scrape_interval: 15s}\nscrape_configs: []  # none yet\n"
    after = with_job(empty, JOB, None, TARGETS)
    assert after.startswith(
        b"global: {scrape_interval: 15s}\nscrape_configs: [{job_name: scaphandre, "
    )
    assert after.endswith(b"]  # none yet\n")
    assert without_job(after, "scaphandre", TARGETS, None) == empty


@pytest.mark.parametrize(
    "config", [None, b"", b"\n\n", b"# just a comment\n", b"---\n", b"# no newline"]
)
def test_missing_or_empty_file_gives_a_minimal_config_after_its_comments(config):
    after = with_job(config, JOB, RULES, TARGETS)
    assert after.startswith(config or b"")
    assert typed_view(after) == {"rule_files": [RULES], "scrape_configs": [JOB]}
    if config is not None:
        assert without_job(after, "scaphandre", TARGETS, RULES) == config


def test_values_that_yaml_11_would_retype_are_quoted_in_the_job():
    job = dict(
        JOB,
        params={
            "module": [
                "on",
                "NO",
                "01",
                "1.10",
                "0123",
                "12:30:00",
                "~",
                "yes",
                "1e3",
                "0o17",
                "2024-01-01",
            ]
        },
    )
    after = with_job(b"", job, None, TARGETS)
    assert typed_view(after)["scrape_configs"][0]["params"] == job["params"]
    assert yaml.safe_load(after)["scrape_configs"][0]["params"] == job["params"], (
        "YAML 1.1 reads them as strings too"
    )
    assert text_view(after)["scrape_configs"][0]["params"] == job["params"]


def test_awkward_strings_round_trip_through_the_written_job():
    awkward = [
        "it's",
        'say "hi"',
        "tab\there",
        "new\nline",
        "#hash",
        "- dash",
        "a: b",
        "{x}",
        "[y]",
        "",
        " lead",
        "trail ",
        "é€😀",
        "\x7f",
        "back\\slash",
    ]
    job = dict(JOB, params={"values": awkward})
    for config in (b"", b"scrape_configs: []\n"):  # block and flow style
        after = with_job(config, job, None, TARGETS)
        assert typed_view(after)["scrape_configs"][0]["params"]["values"] == awkward


# --------------------------------------------------------------------------
# Which job is the deploy's


def test_owned_job_is_found_by_name_or_by_the_targets_file_it_reads():
    hand = owned_job((CORPUS / "hand_pasted_static.yml").read_bytes(), "scaphandre", TARGETS)
    assert hand["static_configs"][0]["labels"] == {"host_id": "0"}
    renamed = owned_job((CORPUS / "renamed_owned_job.yml").read_bytes(), "scaphandre", TARGETS)
    assert renamed["job_name"] == "energy"
    assert owned_job((CORPUS / "debian_shipped.yml").read_bytes(), "scaphandre", TARGETS) is None
    assert owned_job(None, "scaphandre", TARGETS) is None


def test_owned_job_hands_out_a_copy():
    config = (CORPUS / "hand_pasted_static.yml").read_bytes()
    owned_job(config, "scaphandre", TARGETS)["static_configs"].clear()
    assert len(owned_job(config, "scaphandre", TARGETS)["static_configs"]) == 3


def test_renamed_job_is_replaced_in_place_under_the_configured_name():
    before = (CORPUS / "renamed_owned_job.yml").read_bytes()
    after = with_job(before, JOB, None, TARGETS)
    names = [job["job_name"] for job in typed_view(after)["scrape_configs"]]
    assert names == ["prometheus", "scaphandre", "node"]


def test_job_in_the_middle_is_replaced_where_it_is():
    after = with_job((CORPUS / "job_in_middle.yml").read_bytes(), JOB, None, TARGETS)
    assert [job["job_name"] for job in typed_view(after)["scrape_configs"]] == [
        "prometheus",
        "scaphandre",
        "node",
        "libvirt",
    ]


def test_comments_after_the_job_stay_and_comments_inside_it_go():
    after = with_job((CORPUS / "comments_everywhere.yml").read_bytes(), JOB, None, TARGETS).decode()
    assert "# a comment right after the scaphandre job, at list level" in after
    assert "# a comment right after the job, indented like its keys" in after
    assert "# --- energy, written by the deploy; do not edit by hand ---" in after
    assert "# a comment inside the job" not in after


def test_formatting_alone_never_asks_for_a_rewrite():
    once = with_job((CORPUS / "debian_shipped.yml").read_bytes(), JOB, RULES, TARGETS)
    reformatted = once.replace(
        b"regex: 'one-(0|[1-9][0-9]*)'", b'regex: "one-(0|[1-9][0-9]*)"  # quoted otherwise'
    )
    assert reformatted != once, "the regex is found to be requoted"
    reformatted = reformatted.replace(
        b"    file_sd_configs:\n", b"    # a comment of the operator's\n    file_sd_configs:\n"
    )
    assert reformatted != once
    assert not needs_update(reformatted, JOB, RULES, TARGETS)
    assert with_job(reformatted, JOB, RULES, TARGETS) == reformatted


def test_true_is_not_one_and_one_is_not_one_point_zero():
    config = with_job(b"", dict(JOB, honor_labels=True, sample_limit=1), None, TARGETS)
    assert needs_update(config, dict(JOB, honor_labels=1, sample_limit=1), None, TARGETS)
    assert needs_update(config, dict(JOB, honor_labels=True, sample_limit=1.0), None, TARGETS)
    assert not needs_update(config, dict(JOB, honor_labels=True, sample_limit=1), None, TARGETS)


def test_rule_file_already_listed_is_not_added_twice():
    before = (
        b"rule_files:\n  - "
        + RULES.encode()
        + b"\nscrape_configs:\n  - job_name: a\n    static_configs: [{targets: ['a:1']}]\n"
    )
    after = with_job(before, JOB, RULES, TARGETS)
    assert typed_view(after)["rule_files"] == [RULES]


def test_two_rule_file_entries_are_both_removed():
    before = f"rule_files: [{RULES}, a.yml, {RULES}]\nscrape_configs:\n- job_name: a\n".encode()
    assert (
        without_job(before, "scaphandre", TARGETS, RULES)
        == b"rule_files: [a.yml]\nscrape_configs:\n- job_name: a\n"
    )
    before = f"rule_files:\n- {RULES}\n- a.yml\n- {RULES}\nscrape_configs: []\n".encode()
    assert (
        without_job(before, "scaphandre", TARGETS, RULES)
        == b"rule_files:\n- a.yml\nscrape_configs: []\n"
    )


def test_nothing_to_remove_gives_the_same_bytes():
    for path in NO_JOB_FILES:
        before = path.read_bytes()
        assert without_job(before, "scaphandre", TARGETS, RULES) == before
    assert without_job(None, "scaphandre", TARGETS, RULES) is None


def test_anchors_and_merges_of_the_operator_survive():
    before = (CORPUS / "anchors_and_merges.yml").read_bytes()
    after = with_job(before, JOB, RULES, TARGETS)
    jobs = typed_view(after)["scrape_configs"]
    assert jobs[1]["scrape_timeout"] == "10s" and jobs[1]["job_name"] == "libvirt"
    assert jobs[2]["static_configs"][0]["labels"] == {
        "datacenter": "ams1",
        "row": 1,
        "role": "frontend",
    }
    assert text_view(after)["scrape_configs"][0]["static_configs"][0]["labels"]["row"] == "01"


def test_an_alias_entry_of_scrape_configs_is_kept_as_an_alias():
    before = b"scrape_configs:\n- &a\n  job_name: a\n  static_configs: [{targets: ['a:1']}]\n- *a\n"
    after = with_job(before, JOB, None, TARGETS)
    assert after.startswith(before)
    assert b"- *a\n- job_name: scaphandre" in after


# --------------------------------------------------------------------------
# The operator's own job bearing the configured name


def test_operator_job_named_like_the_configured_job_is_never_overwritten():
    node_job = dict(JOB, job_name="node")
    config = (CORPUS / "debian_shipped.yml").read_bytes()
    message = foreign_job_conflict(config, node_job)
    assert "'node'" in message and "prometheus_job_name" in message and "untouched" in message
    with pytest.raises(PrometheusConfigError, match="prometheus_job_name"):
        with_job(config, node_job, None, TARGETS)
    assert without_job(config, "node", TARGETS, None) == config


def test_default_name_or_our_targets_file_make_a_job_ours():
    assert foreign_job_conflict((CORPUS / "hand_pasted_static.yml").read_bytes(), JOB) is None
    renamed_ours = (CORPUS / "renamed_owned_job.yml").read_bytes()
    assert foreign_job_conflict(renamed_ours, dict(JOB, job_name="energy")) is None
    assert foreign_job_conflict(None, JOB) is None


# --------------------------------------------------------------------------
# Files that are refused, with the live file untouched


def refusal(config: bytes, **kwargs) -> str:
    with pytest.raises(PrometheusConfigError) as error:
        with_job(config, kwargs.get("job", JOB), kwargs.get("rule_file", RULES), TARGETS)
    message = str(error.value)
    assert "\n" not in message and "untouched" in message
    return message


def test_latin1_comment_is_refused_naming_line_and_byte():
    config = "global:\n  scrape_interval: 15s\n# Réglages du frontal\nscrape_configs: []\n".encode(
        "latin-1"
    )
    offset = config.index("é".encode("latin-1"))
    message = refusal(config)
    assert "UTF-8" in message and "line 3" in message and f"byte offset {offset}" in message


@pytest.mark.parametrize(
    "config, expected",
    [
        ((CORPUS.parent / "broken.yml").read_bytes(), "not valid YAML"),
        (b"- job_name: a\n", "not a YAML mapping"),
        (b"plain words\n", "not a YAML mapping"),
        (b"scrape_configs:\n  job_name: a\n", "'scrape_configs' in prometheus.yml is a mapping"),
        (b"scrape_configs:\n- job_name: a\n- just a string\n", "entry 2 of 'scrape_configs'"),
        (b"rule_files: rules.yml\nscrape_configs: []\n", "single string ('rules.yml')"),
        (b"rule_files: [a.yml, [b.yml]]\n", "entry 2 of 'rule_files'"),
        (
            b"scrape_configs:\n- job_name: scaphandre\n- job_name: scaphandre\n",
            "2 scrape jobs named 'scaphandre'",
        ),
        (b"{global: {scrape_interval: 15s}}\n", "flow style"),
        ("global:\n  a: 1\u2028\n".encode(), "line separator"),
        (
            b"global:\n  scrape_interval: 15s\x07\n",
            "a character YAML does not allow (#x0007) on line 2",
        ),
        (b"a: 1\n---\nb: 2\n", "not valid YAML"),
    ],
)
def test_unusable_files_are_refused_in_one_line(config, expected):
    assert expected in refusal(config)


def test_two_candidate_jobs_are_refused_naming_both():
    config = (
        b"scrape_configs:\n- job_name: scaphandre\n  static_configs: [{targets: ['a:1']}]\n"
        b"- job_name: energy\n  file_sd_configs: [{files: [" + TARGETS.encode() + b"]}]\n"
    )
    message = refusal(config)
    assert "'scaphandre'" in message and "'energy'" in message
    with pytest.raises(PrometheusConfigError):
        owned_job(config, "scaphandre", TARGETS)


def test_duplicate_key_message_never_shows_a_value():
    config = b"scrape_configs:\n- job_name: a\n  basic_auth:\n    password: s3cr3t-one\n    password: s3cr3t-two\n"
    message = refusal(config)
    assert "password" in message and "line 5" in message and "s3cr3t" not in message


def test_anchor_in_the_owned_job_used_elsewhere_is_refused_not_broken():
    config = (
        b"scrape_configs:\n- job_name: scaphandre\n  static_configs: &hosts [{targets: ['a:1']}]\n"
        b"- job_name: node\n  static_configs: *hosts\n"
    )
    assert "cannot be edited safely" in refusal(config)


def test_removal_that_would_break_an_alias_is_refused():
    config = (
        b"scrape_configs:\n- job_name: scaphandre\n  static_configs: &hosts [{targets: ['a:1']}]\n"
        b"- job_name: node\n  static_configs: *hosts\n"
    )
    with pytest.raises(PrometheusConfigError, match="cannot be edited safely"):
        without_job(config, "scaphandre", TARGETS, None)


def test_bad_arguments_are_programming_errors():
    with pytest.raises(ValueError, match="the job has no job_name"):
        with_job(b"", {"file_sd_configs": []}, None, TARGETS)
    with pytest.raises(ValueError, match="which YAML cannot carry plainly"):
        with_job(b"", dict(JOB, extra=object()), None, TARGETS)
    with pytest.raises(ValueError, match="must name a file"):
        needs_update(b"", JOB, "", TARGETS)
    with pytest.raises(TypeError):
        with_job("scrape_configs: []\n", JOB, None, TARGETS)


# --------------------------------------------------------------------------
# Cost


def count_parses(monkeypatch) -> list[int]:
    """Every YAML parse the module makes, counted."""
    calls: list[int] = []
    real = edit._compose
    monkeypatch.setattr(
        edit, "_compose", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs)
    )
    return calls


def test_one_parse_of_the_input_and_one_of_the_result(monkeypatch):
    calls = count_parses(monkeypatch)
    before = (
        CORPUS / "debian_shipped.yml"
    ).read_bytes() + f"# {time.time_ns()}\n".encode()  # not cached yet
    assert needs_update(before, JOB, RULES, TARGETS)
    assert foreign_job_conflict(before, JOB) is None
    after = with_job(before, JOB, RULES, TARGETS)
    assert len(calls) == 2
    assert not needs_update(after, JOB, RULES, TARGETS)  # the result was parsed to check it
    assert len(calls) == 2


def test_a_file_that_needs_nothing_costs_one_parse(monkeypatch):
    once = with_job(
        (CORPUS / "opennebula_shipped.yml").read_bytes() + f"# {time.time_ns()}\n".encode(),
        JOB,
        RULES,
        TARGETS,
    )
    edit._parse.cache_clear()
    calls = count_parses(monkeypatch)
    assert with_job(once, JOB, RULES, TARGETS) == once
    assert len(calls) == 1


def test_the_fingerprint_tells_requests_apart_as_with_job_does():
    fingerprint = edit_fingerprint(JOB, RULES, TARGETS)
    assert fingerprint == edit_fingerprint(dict(reversed(list(JOB.items()))), RULES, TARGETS), (
        "key order does not count"
    )
    assert len(fingerprint) == 64 and int(fingerprint, 16) >= 0
    others = [
        edit_fingerprint(JOB_V3, RULES, TARGETS),
        edit_fingerprint(JOB, None, TARGETS),
        edit_fingerprint(JOB, RULES + ".other", TARGETS),
        edit_fingerprint(JOB, RULES, TARGETS + ".other"),
        edit_fingerprint(dict(JOB, job_name="energy"), RULES, TARGETS),
        edit_fingerprint(dict(JOB, sample_limit=1), RULES, TARGETS),
        edit_fingerprint(dict(JOB, sample_limit=1.0), RULES, TARGETS),
        edit_fingerprint(dict(JOB, sample_limit=True), RULES, TARGETS),
    ]
    assert len({fingerprint, *others}) == len(others) + 1
    with pytest.raises(ValueError, match="must name a file"):
        edit_fingerprint(JOB, "", TARGETS)


def test_a_large_file_is_edited_and_restored_through_libyaml(tmp_path, monkeypatch):
    before = generated_config(200_000)
    assert len(before) >= 200_000
    composed_by_ruamel = []
    real = compat.compose_with_ruamel
    monkeypatch.setattr(
        compat, "compose_with_ruamel", lambda text: composed_by_ruamel.append(1) or real(text)
    )
    rule_file = str(tmp_path / "scaphandre_rules.yml")
    Path(rule_file).write_text("")
    after = with_job(before, JOB, rule_file, TARGETS)
    # The rule file's line after the operator's one, the job after the last job (before the
    # blank line that ends the file): nothing else.
    expected = before.replace(
        b"  - rules/*.yml\n", b"  - rules/*.yml\n  - " + rule_file.encode() + b"\n", 1
    )
    assert expected.endswith(b"\n\n") and after.endswith(b"\n\n")
    assert after.startswith(expected[:-1])
    assert YAML(typ="safe", pure=True).load(after[len(expected) - 1 : -1].decode()) == [JOB]
    assert without_job(after, "scaphandre", TARGETS, rule_file) == before
    assert composed_by_ruamel == [], "libyaml located everything"
    if Path(PROMTOOL).exists():
        assert promtool_check(tmp_path, after).returncode == 0


def test_comments_indented_under_the_key_above_stay_with_it():
    before = (
        b"global:\n  scrape_interval: 15s\n  # scrape_timeout: 10s\n# The jobs.\n"
        b"scrape_configs:\n  - job_name: a\n"
    )
    after = with_job(before, JOB, RULES, TARGETS)
    assert after.startswith(
        b"global:\n  scrape_interval: 15s\n  # scrape_timeout: 10s\nrule_files:  "
    )
    assert without_job(after, "scaphandre", TARGETS, RULES) == before


def test_explicit_null_scrape_configs_makes_way_for_the_job():
    before = b"global:\n  scrape_interval: 15s\nscrape_configs: ~  # nothing yet\n"
    after = with_job(before, JOB, None, TARGETS)
    assert after.startswith(
        b"global:\n  scrape_interval: 15s\nscrape_configs:  # nothing yet\n  - job_name: scaphandre"
    )
    assert typed_view(after)["scrape_configs"] == [JOB]


def test_indented_top_level_mapping_gets_keys_at_its_column():
    before = b"  global:\n    scrape_interval: 15s\n"
    after = with_job(before, JOB, RULES, TARGETS)
    assert typed_view(after) == {
        "global": {"scrape_interval": "15s"},
        "rule_files": [RULES],
        "scrape_configs": [JOB],
    }
    assert b"\n  scrape_configs:  # added by" in after
    assert without_job(after, "scaphandre", TARGETS, RULES) == before


def test_file_ended_by_a_document_end_marker_is_refused():
    assert "cannot be edited safely" in refusal(b"global:\n  scrape_interval: 15s\n...\n")


# --------------------------------------------------------------------------
# The check of every result: a splice gone wrong is refused, never handed back


@pytest.mark.parametrize(
    "corruption, expected",
    [
        ((b"localhost:9100", b"localhost:9101"), "the operator's other jobs"),
        ((b"monitor: 'example'", b"monitor: example2"), "change 'global'"),
        ((b"monitor: 'example'", b"monitor: 01"), "change 'global'"),  # the same text, re-typed
        (
            (b"target_label: one_vm_id\n", b"target_label: one_vm\n"),
            "does not read back as written",
        ),
        (
            (b'  # - "second_rules.yml"\n  - /etc', b'  # - "second_rules.yml"\n  - /tmp'),
            "rule_files does not read back",
        ),
    ],
)
def test_result_that_does_not_read_back_as_intended_is_refused(monkeypatch, corruption, expected):
    real_apply = edit._apply
    old, new = (part.decode() for part in corruption)
    monkeypatch.setattr(
        edit, "_apply", lambda text, edits: real_apply(text, edits).replace(old, new, 1)
    )
    before = (CORPUS / "debian_shipped.yml").read_bytes()
    with pytest.raises(PrometheusConfigError, match="cannot be edited safely") as error:
        with_job(before, JOB, RULES, TARGETS)
    assert expected in str(error.value)


def test_removal_that_does_not_read_back_as_intended_is_refused(monkeypatch):
    real_apply = edit._apply
    monkeypatch.setattr(
        edit,
        "_apply",
        lambda text, edits: real_apply(text, edits).replace("'prometheus'", "prometheus2"),
    )
    with pytest.raises(PrometheusConfigError, match="the operator's other jobs"):
        without_job((CORPUS / "hand_pasted_static.yml").read_bytes(), "scaphandre", TARGETS, None)


# --------------------------------------------------------------------------
# libyaml locates exactly what ruamel's own parser locates


def test_a_folded_value_reads_as_yaml_folds_it_through_either_parser():
    config = (
        b"scrape_configs:\n- job_name: scaphandre\n  metrics_path: >-\n    /a\n    b\n\n    c\n"
    )
    for accelerated in (True, False):
        assert located(config, accelerated=accelerated)[0][-1][2] == "/a b\nc"
    assert owned_job(config, "scaphandre", TARGETS)["metrics_path"] == "/a b\nc"


def test_libyaml_is_installed():
    assert compat.libyaml_parser() is not None, (
        "ruamel.yaml.clib is pinned in requirements.txt: install it"
    )


@pytest.mark.parametrize("path", CORPUS_FILES, ids=corpus_ids(CORPUS_FILES))
def test_libyaml_locates_what_ruamel_locates_in_the_corpus_and_the_edits(path):
    before = path.read_bytes()
    for config in (
        before,
        with_job(before, JOB, RULES, TARGETS),
        with_job(before, JOB_V3, None, TARGETS),
    ):
        assert located(config, accelerated=True) == located(config, accelerated=False)


@pytest.mark.parametrize(
    "config, why",
    [
        (b"global:\n  scrape_interval: 15s\n# a\tcomment\n", "a tab ruamel's scanner may refuse"),
        (b"a: 1\n...\n", "a document end marker"),
        (b"%YAML 1.1\n---\nglobal: {}\n", "a directive"),
        (b"\xef\xbb\xbfa: 1\n\xef\xbb\xbfb: 2\n", "a second byte-order mark"),
        ((CORPUS / "glob_rule_files.yml").read_bytes(), "libyaml refuses [localhost:9090]"),
        (b"scrape_configs:\n- !!map &job\n  job_name: a\n", "a tag before an anchor"),
    ],
)
def test_ruamel_answers_where_libyaml_may_not(config, why, monkeypatch):
    composed_by_ruamel = []
    real = compat.compose_with_ruamel
    monkeypatch.setattr(
        compat, "compose_with_ruamel", lambda text: composed_by_ruamel.append(1) or real(text)
    )
    located(config, accelerated=True)
    assert composed_by_ruamel == [1], why


# --------------------------------------------------------------------------
# The fixtures the other tests use (tests/data/prometheus/*.yml), and change detection


FIXTURES = CORPUS.parent


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def job_names(config: bytes) -> list[str]:
    return [job["job_name"] for job in typed_view(config)["scrape_configs"]]


def test_a_hand_written_job_is_replaced_where_it_stands():
    before = fixture_bytes("hand_written_scaphandre.yml")
    assert job_names(before) == ["prometheus", "scaphandre", "node"]
    after = with_job(before, JOB, None, TARGETS)
    assert job_names(after) == ["prometheus", "scaphandre", "node"]
    assert owned_job(after, "scaphandre", TARGETS) == JOB
    assert typed_view(after)["global"] == {"scrape_interval": "30s", "scrape_timeout": "10s"}
    assert_only_job_lines_changed(before, after)


def test_a_config_without_scrape_configs_gets_them_at_the_end():
    before = b"global:\n  scrape_interval: 1m\n"
    after = with_job(before, JOB, None, TARGETS)
    assert after.startswith(before)
    assert typed_view(after) == {"global": {"scrape_interval": "1m"}, "scrape_configs": [JOB]}


@pytest.mark.parametrize(
    "name", [None, "empty.yml", "debian_default.yml", "hand_written_scaphandre.yml"]
)
def test_an_update_is_needed_when_the_job_is_missing_or_hand_written(name):
    assert needs_update(None if name is None else fixture_bytes(name), JOB, None, TARGETS)


def test_an_update_is_needed_when_the_job_differs_and_not_when_another_job_does():
    merged = with_job(fixture_bytes("opennebula.yml"), JOB, None, TARGETS)
    assert needs_update(merged, dict(JOB, scrape_interval="30s"), None, TARGETS)
    edited = merged.replace(b"kvm-node-a.example.org:9926", b"kvm-node-z.example.org:9926")
    assert edited != merged
    assert not needs_update(edited, JOB, None, TARGETS)


def test_an_update_is_needed_when_only_the_rules_file_is_missing():
    without_rules = with_job(fixture_bytes("debian_default.yml"), JOB, None, TARGETS)
    assert not needs_update(without_rules, JOB, None, TARGETS)
    assert needs_update(without_rules, JOB, RULES, TARGETS)
    with_rules = with_job(without_rules, JOB, RULES, TARGETS)
    assert not needs_update(with_rules, JOB, RULES, TARGETS)


def test_removal_takes_only_our_rules_file_out():
    merged = with_job(fixture_bytes("opennebula.yml"), JOB, RULES, TARGETS)
    assert typed_view(merged)["rule_files"] == ["rules.yml", RULES]
    assert without_job(merged, "scaphandre", TARGETS, RULES) == fixture_bytes("opennebula.yml")


def test_a_custom_job_name_never_overwrites_an_operators_job_of_that_name():
    mine = dict(JOB, job_name="prometheus")
    conflict = foreign_job_conflict(fixture_bytes("debian_default.yml"), mine)
    assert conflict and "prometheus_job_name" in conflict
    with pytest.raises(PrometheusConfigError, match="prometheus_job_name"):
        with_job(fixture_bytes("debian_default.yml"), mine, None, TARGETS)


def test_our_own_job_under_a_custom_name_is_recognised_by_its_targets_file():
    older = with_job(None, dict(JOB, job_name="power", scrape_interval="30s"), None, TARGETS)
    mine = dict(JOB, job_name="power")
    assert foreign_job_conflict(older, mine) is None
    assert job_names(with_job(older, mine, None, TARGETS)) == ["power"]
    assert foreign_job_conflict(fixture_bytes("hand_written_scaphandre.yml"), JOB) is None


def test_a_new_job_name_moves_the_job_and_removal_finds_it_by_its_targets_file():
    deployed = with_job(fixture_bytes("debian_default.yml"), JOB, RULES, TARGETS)
    renamed = with_job(deployed, dict(JOB, job_name="power"), RULES, TARGETS)
    assert job_names(renamed) == ["prometheus", "node", "power"], (
        "moved, not a second job on the same targets"
    )
    assert without_job(renamed, "scaphandre", TARGETS, RULES) == fixture_bytes("debian_default.yml")
