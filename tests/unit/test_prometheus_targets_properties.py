"""The targets file (tasks/prometheus/targets.py) as a property, with Hypothesis: whatever
the host name label holds and whatever the address (IPv4, bracketed IPv6, DNS name), what
render_targets_file writes, parse_targets_file reads back unchanged — which is what keeps
the entries of hypervisors outside a --limit run; read as YAML (as Prometheus reads a .yml
file) it says the same as read as JSON; and a file in the YAML layout earlier versions
wrote is read back the same."""

from __future__ import annotations

import ipaddress
import json

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.prometheus.owned_yaml import dump
from tasks.prometheus.targets import (
    TARGETS_FILE_HEADER,
    ScrapeTarget,
    parse_targets_file,
    render_targets_file,
    targets_file_entries,
)

dns_label = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,14}[a-z0-9])?\Z")
dns_name = st.lists(dns_label, min_size=1, max_size=4).map(".".join)
ipv6 = st.ip_addresses(v=6).map(lambda address: f"[{address}]")
host = st.one_of(dns_name, st.ip_addresses(v=4).map(str), ipv6)
address = st.builds(lambda h, port: f"{h}:{port}", host, st.integers(min_value=1, max_value=65535))
# Any text Prometheus could get as a label value: control characters, quotes, YAML syntax, unicode.
label_text = st.text(min_size=1, max_size=40).filter(lambda text: text.strip())
target = st.builds(
    ScrapeTarget,
    address=address,
    one_host_id=st.integers(min_value=0, max_value=2**31),
    host_name=label_text,
)


def distinct(targets: list[ScrapeTarget]) -> list[ScrapeTarget]:
    """One target per address and per ID, as the run hands them over."""
    by_address, by_id, kept = set(), set(), []
    for item in targets:
        if item.address not in by_address and item.one_host_id not in by_id:
            by_address.add(item.address)
            by_id.add(item.one_host_id)
            kept.append(item)
    return kept


@settings(max_examples=400, deadline=None)
@given(targets=st.lists(target, max_size=8).map(distinct))
def test_any_targets_read_back_exactly_as_written(targets):
    text = render_targets_file(targets)
    assert sorted(parse_targets_file(text), key=lambda t: t.one_host_id) == sorted(
        targets, key=lambda t: t.one_host_id
    )
    assert render_targets_file(parse_targets_file(text)) == text, (
        "rendering is stable: no rewrite on a rerun"
    )


@settings(max_examples=200, deadline=None)
@given(item=target)
def test_every_label_is_a_string_and_the_address_one_token(item):
    [entry] = yaml.safe_load(render_targets_file([item]))
    assert entry["targets"] == [item.address]
    assert all(isinstance(value, str) for value in entry["labels"].values())
    assert entry["labels"]["host_name"] == item.host_name
    host_part = item.address.rsplit(":", 1)[0]
    if host_part.startswith("["):
        assert ipaddress.ip_address(host_part[1:-1]).version == 6


@settings(max_examples=300, deadline=None)
@given(targets=st.lists(target, max_size=6).map(distinct))
def test_yaml_and_json_read_the_same_entries(targets):
    """Prometheus reads a .yml targets file as YAML and a .json one as JSON: both must see
    exactly the entries, whatever characters a host name holds (line separators, C1 controls,
    a byte order mark, quotes and backslashes included)."""
    entries = targets_file_entries(targets)
    assert yaml.safe_load(render_targets_file(targets)) == entries
    assert json.loads(render_targets_file(targets, json_only=True)) == entries
    render_targets_file(targets).encode("utf-8")  # writable as the UTF-8 file Prometheus reads


@settings(max_examples=200, deadline=None)
@given(targets=st.lists(target, max_size=6).map(distinct))
def test_a_file_written_by_an_earlier_version_reads_the_same(targets):
    """Earlier versions wrote the entries as PyYAML block YAML under the same header."""
    earlier = TARGETS_FILE_HEADER + dump(targets_file_entries(targets))
    assert sorted(parse_targets_file(earlier), key=lambda t: t.one_host_id) == sorted(
        targets, key=lambda t: t.one_host_id
    )
