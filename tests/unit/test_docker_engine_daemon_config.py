"""daemon.json for an engine the deploy installs (tasks/docker_engine/daemon_config.py):
merged into what is there, and taken out again leaving exactly the operator's settings."""

from __future__ import annotations

import hashlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.docker_engine.daemon_config import (
    ENGINE_NETWORK_SETTINGS,
    DaemonConfigError,
    GivenBack,
    given_back,
    parse_daemon_json,
    previous_values,
    render_daemon_json,
    with_engine_network_settings,
    without_engine_network_settings,
)

OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
# An operator's daemon.json: any keys, sometimes also ones the deploy sets.
operator_files = st.dictionaries(
    st.sampled_from([*OURS, "log-driver", "data-root", "dns", "mtu"]) | st.text(max_size=6),
    json_values,
    max_size=6,
)


def test_the_engine_network_settings_are_exactly_the_four_that_keep_host_networking():
    assert ENGINE_NETWORK_SETTINGS == OURS


def test_no_file_reads_as_none_and_an_empty_one_as_no_settings():
    assert parse_daemon_json(None) is None
    assert parse_daemon_json(b"") == {} and parse_daemon_json(b"\n  \n") == {}


def test_a_file_that_is_not_json_is_refused_naming_file_place_and_fix():
    with pytest.raises(DaemonConfigError) as refused:
        parse_daemon_json(b'{\n  "log-driver": "journald"\n  "mtu": 1400\n}\n')
    message = str(refused.value)
    assert message.startswith(
        "/etc/docker/daemon.json is not valid JSON (Expecting ',' delimiter at line 3 column 3)"
    )
    assert "fix it or move it aside, then rerun" in message


def test_a_json_value_that_is_not_an_object_is_refused():
    with pytest.raises(DaemonConfigError, match="holds a JSON list, not an object of settings"):
        parse_daemon_json(b'["iptables"]')


def test_merging_keeps_the_operators_keys_in_place_and_sets_ours():
    merged = with_engine_network_settings({"log-driver": "journald", "iptables": True, "mtu": 1400})
    assert list(merged) == ["log-driver", "iptables", "mtu", "ip6tables", "ip-forward", "bridge"]
    assert merged == {"log-driver": "journald", "mtu": 1400, **OURS}
    assert previous_values({"log-driver": "journald", "iptables": True}) == {"iptables": True}
    assert with_engine_network_settings(None) == OURS and previous_values(None) == {}


@given(operator_files)
def test_merge_then_removal_gives_back_exactly_the_operators_file(operator):
    merged = with_engine_network_settings(operator)
    assert all(merged[key] == value for key, value in OURS.items())
    assert without_engine_network_settings(merged, OURS, previous_values(operator)) == operator


@given(operator_files, st.sampled_from(list(OURS)), json_values)
def test_a_key_the_operator_changed_after_the_deploy_is_theirs_and_kept(operator, key, their_value):
    edited = {**with_engine_network_settings(operator), key: their_value}
    restored = without_engine_network_settings(edited, OURS, previous_values(operator))
    if their_value == OURS[key]:
        return  # indistinguishable from the deploy's own value, which goes
    assert restored[key] == their_value


def test_removal_of_a_file_that_held_only_ours_leaves_nothing():
    assert without_engine_network_settings(dict(OURS), OURS, {}) == {}


def test_the_rendered_file_is_json_with_a_final_newline():
    text = render_daemon_json({"log-driver": "journald", **OURS})
    assert text.endswith("}\n") and json.loads(text) == {"log-driver": "journald", **OURS}
    assert parse_daemon_json(text.encode()) == {"log-driver": "journald", **OURS}


# --------------------------------------------------------------------------- given back by remove.py

WRITTEN = render_daemon_json({"log-driver": "journald", **OURS}).encode()


def give_back(current: bytes, previous: bytes | None, link: bool = False, known: bool = True):
    try:
        earlier = parse_daemon_json(previous)
    except DaemonConfigError:
        earlier = None  # any bytes at all, for the property below
    return given_back(
        current,
        link,
        OURS,
        previous_values(earlier),
        previous,
        (previous is not None) if known else None,
        hashlib.sha256(WRITTEN).hexdigest() if known else None,
    )


@given(
    st.binary(max_size=40)
    | operator_files.map(lambda settings: json.dumps(settings, indent=3).encode())
)
def test_a_file_still_as_the_deploy_wrote_it_gets_back_exactly_its_earlier_bytes(previous):
    assert give_back(WRITTEN, previous) == GivenBack("write", previous)


def test_a_file_the_deploy_created_goes_unless_it_is_a_link():
    assert give_back(WRITTEN, None) == GivenBack("delete")
    assert give_back(WRITTEN, None, link=True) == GivenBack("write", b"{}\n")


def test_a_file_still_as_it_was_before_is_left_alone():
    assert give_back(b'{"iptables": true}', b'{"iptables": true}') == GivenBack("keep")


@given(operator_files, st.sampled_from(list(OURS)), json_values)
def test_a_file_changed_since_loses_only_the_deploys_keys_and_says_so(operator, key, their_value):
    previous = json.dumps(operator).encode()
    edited = {**with_engine_network_settings(operator), key: their_value, "added-later": 1}
    outcome = give_back(render_daemon_json(edited).encode(), previous)
    assert outcome.action == "write" and "changed since the deploy wrote it" in outcome.note
    restored = json.loads(outcome.content)
    assert restored["added-later"] == 1
    if their_value != OURS[key]:
        assert restored[key] == their_value


def test_a_record_without_the_earlier_bytes_gives_back_key_by_key_quietly():
    outcome = give_back(WRITTEN, b'{"iptables": true}', known=False)
    assert outcome == GivenBack(
        "write", render_daemon_json({"log-driver": "journald", "iptables": True}).encode()
    )
