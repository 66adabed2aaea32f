"""The file_sd targets file (tasks/prometheus/targets.py): rendered, read back, and which
hypervisors it lists when some cannot be looked up in this run."""

from __future__ import annotations

import json

import pytest
import yaml

from tasks.prometheus.targets import (
    TARGETS_FILE_HEADER,
    ScrapeTarget,
    assemble_targets,
    parse_targets_file,
    render_targets_file,
    targets_file_entries,
)

HV1 = ScrapeTarget(address="hv1.example.com:8080", one_host_id=3, host_name="hv1")
HV2 = ScrapeTarget(address="hv2.example.com:8080", one_host_id=7, host_name="hv2")
HV3 = ScrapeTarget(address="hv3.example.com:8080", one_host_id=12, host_name="hv3")


def test_targets_entries_have_string_labels_for_both_id_conventions():
    assert targets_file_entries([HV1]) == [
        {
            "targets": ["hv1.example.com:8080"],
            "labels": {"host_id": "3", "one_host_id": "3", "host_name": "hv1"},
        }
    ]


def test_targets_sorted_by_host_id_whatever_the_input_order():
    entries = targets_file_entries([HV3, HV1, HV2])
    assert [e["labels"]["one_host_id"] for e in entries] == ["3", "7", "12"]


def test_rendered_targets_file_is_stable_and_marked_as_managed():
    first = render_targets_file([HV2, HV1, HV3])
    assert first == render_targets_file([HV3, HV2, HV1])
    assert first.startswith("#") and "Managed" in first.splitlines()[0]
    parsed = yaml.safe_load(first)
    assert parsed == targets_file_entries([HV1, HV2, HV3])
    # Label values must stay strings once written (Prometheus rejects numbers).
    assert '"one_host_id": "3"' in first


def test_the_targets_file_is_json_under_its_header_one_entry_a_line():
    text = render_targets_file([HV2, HV1, HV3])
    header, body = text[: len(TARGETS_FILE_HEADER)], text[len(TARGETS_FILE_HEADER) :]
    assert header == TARGETS_FILE_HEADER
    assert json.loads(body) == yaml.safe_load(text) == targets_file_entries([HV1, HV2, HV3])
    assert body.splitlines()[0] == "[" and body.splitlines()[-1] == "]"
    assert [
        json.loads(line.rstrip(","))["labels"]["host_name"] for line in body.splitlines()[1:-1]
    ] == ["hv1", "hv2", "hv3"]


def test_a_targets_file_named_json_has_no_header():
    text = render_targets_file([HV1], json_only=True)
    assert json.loads(text) == targets_file_entries([HV1]) and "#" not in text
    assert render_targets_file([], json_only=True) == "[]\n"
    assert parse_targets_file(text) == [HV1]


def test_a_yaml_targets_file_of_an_earlier_version_is_read():
    """What the previous version wrote (PyYAML block style under the same header), verbatim."""
    earlier = TARGETS_FILE_HEADER + (
        "- targets:\n"
        "  - hv1.example.com:8080\n"
        "  labels:\n"
        "    host_id: '3'\n"
        "    one_host_id: '3'\n"
        "    host_name: hv1\n"
        "- targets:\n"
        "  - hv2.example.com:8080\n"
        "  labels:\n"
        "    host_id: '7'\n"
        "    one_host_id: '7'\n"
        "    host_name: hv2\n"
    )
    assert parse_targets_file(earlier) == [HV1, HV2]
    assert render_targets_file(parse_targets_file(earlier)) != earlier, "rewritten once, as JSON"


def test_same_host_twice_is_listed_once():
    assert len(targets_file_entries([HV1, HV1])) == 1


def test_duplicate_address_is_refused_naming_both_hosts():
    clash = ScrapeTarget(address=HV1.address, one_host_id=99, host_name="other")
    with pytest.raises(ValueError, match="have the same scrape address") as error:
        targets_file_entries([HV1, clash])
    assert "hv1" in str(error.value) and "other" in str(error.value)


def test_duplicate_host_id_is_refused_naming_both_hosts():
    clash = ScrapeTarget(address="hv9:8080", one_host_id=HV1.one_host_id, host_name="hv9")
    with pytest.raises(ValueError, match="map to the same OpenNebula host ID") as error:
        render_targets_file([HV1, clash])
    assert "hv1" in str(error.value) and "hv9" in str(error.value)


@pytest.mark.parametrize(
    "address, one_host_id, host_name, refusal",
    [
        ("", 1, "a", "is not a host:port"),
        ("http://hv:8080", 1, "a", "is not a host:port"),
        ("hv:8080", -1, "a", "is not a non-negative integer"),
        ("hv:8080", "1", "a", "is not a non-negative integer"),
        ("hv:8080", 1, " ", "has an empty host name"),
    ],
)
def test_invalid_scrape_target_is_refused(address, one_host_id, host_name, refusal):
    with pytest.raises(ValueError, match=refusal):
        ScrapeTarget(address=address, one_host_id=one_host_id, host_name=host_name)


def test_targets_file_round_trip():
    text = render_targets_file([HV2, HV1])
    assert parse_targets_file(text) == [HV1, HV2]


@pytest.mark.parametrize("text", [None, "", "   \n", "# only a comment\n"])
def test_missing_or_empty_targets_file_parses_to_nothing(text):
    assert parse_targets_file(text) == []


@pytest.mark.parametrize(
    "text, refusal",
    [
        ("targets: [a]\n", "is not a list of file_sd entries"),  # a mapping, not a list
        ("- [a, b]\n", "has no 'targets' list"),  # entries not mappings
        ("- targets: [hv:8080]\n", "has no 'labels' mapping"),
        (
            "- targets: [hv:8080]\n  labels: {one_host_id: x, host_name: hv}\n",
            "has no integer one_host_id label",
        ),
        ("- targets: [hv:8080]\n  labels: {one_host_id: '1'}\n", "has no host_name label"),
        ("- targets: [hv:8080\n", "is not valid YAML"),
    ],
)
def test_malformed_targets_file_is_refused(text, refusal):
    with pytest.raises(ValueError, match=refusal):
        parse_targets_file(text)


# --------------------------------------------------------------------------
# Hypervisors outside the run


def target(address, one_id, name):
    return ScrapeTarget(address=address, one_host_id=one_id, host_name=name)


def test_resolved_hosts_are_all_listed():
    resolved = {"hv1": target("hv1:8080", 7, "hv1"), "hv2": target("hv2:8080", 3, "hv2")}
    targets, warnings = assemble_targets(resolved, {}, [])
    assert sorted(t.one_host_id for t in targets) == [3, 7]
    assert warnings == []


def test_a_host_outside_the_run_keeps_its_previous_entry():
    previous = [target("hv1:8080", 7, "hv1"), target("hv9:8080", 42, "node-nine")]
    targets, warnings = assemble_targets(
        {"hv1": target("hv1:8080", 7, "hv1")}, {"hv9": "hv9:8080"}, previous
    )
    assert target("hv9:8080", 42, "node-nine") in targets
    assert warnings == []


def test_a_host_never_seen_is_left_out_with_a_warning_naming_the_fix():
    targets, warnings = assemble_targets({}, {"hv9": "hv9:8080"}, [target("hv1:8080", 7, "hv1")])
    assert targets == []
    assert len(warnings) == 1 and "hv9" in warnings[0] and "one_host_id" in warnings[0]


def test_previous_entries_of_hosts_removed_from_the_inventory_are_dropped():
    previous = [target("old:8080", 1, "old")]
    targets, _ = assemble_targets({"hv1": target("hv1:8080", 7, "hv1")}, {}, previous)
    assert [t.address for t in targets] == ["hv1:8080"]


def test_characters_yaml_reads_otherwise_than_json_are_escaped():
    """NEL is a line break to YAML 1.1 (folded into a space in a quoted string); DEL and C1
    controls are refused unescaped; LINE SEPARATOR and the byte order mark are breaks or
    markers to some YAML readers. Escaped, YAML and JSON read the same name."""
    odd = ScrapeTarget(
        address="hv9:8080", one_host_id=9, host_name='a\x85b\u2028c\x9f\x7f\ufeffd"\\é'
    )
    text = render_targets_file([odd])
    assert not set("\x85\u2028\x9f\x7f\ufeff") & set(text)
    assert yaml.safe_load(text)[0]["labels"]["host_name"] == odd.host_name
    assert parse_targets_file(text) == [odd]
