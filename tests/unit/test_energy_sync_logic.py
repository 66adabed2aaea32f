"""Pure logic of the energy sync script: settings, credentials, thresholds, rounding, planning,
and the templates it sends (checked against oned's template grammar and merge rule as the
OpenNebula API simulator implements them)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from tests.doubles.one_api_simulator import merge_template, parse_template

SCRIPT = Path(__file__).resolve().parents[2] / "files" / "opennebula" / "scaphandre_energy_sync.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = load_script()
POWER, ENERGY, STAMP = sync.POWER_ATTRIBUTE, sync.ENERGY_ATTRIBUTE, sync.SAMPLE_TIME_ATTRIBUTE
NOW = 1_750_000_000


def write(tmp_path: Path, text: str, name: str = "sync.conf") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def default_settings(tmp_path, **overrides):
    body = "".join(f"{key} = {value}\n" for key, value in overrides.items())
    return sync.load_settings(write(tmp_path, "[scaphandre-energy-sync]\n" + body))


# --------------------------------------------------------------------------- settings


def test_settings_defaults(tmp_path):
    settings = default_settings(tmp_path)
    assert settings.prometheus_url == "http://127.0.0.1:9090"
    assert settings.one_xmlrpc == "http://localhost:2633/RPC2"
    assert settings.one_auth_file == "/var/lib/one/.one/one_auth"
    assert (settings.interval_s, settings.refresh_s, settings.timeout_s) == (300, 3600, 30)
    assert (settings.threshold_percent, settings.threshold_watts, settings.threshold_kwh) == (2, 1, 0.01)


def test_settings_strip_trailing_slash_and_accept_comments(tmp_path):
    settings = sync.load_settings(write(tmp_path, "# managed\n[scaphandre-energy-sync]\n"
                                                  "prometheus_url = http://127.0.0.1:9090/\n; note\n"))
    assert settings.prometheus_url == "http://127.0.0.1:9090"


@pytest.mark.parametrize("key, value, message", [
    ("interval_s", "30", "interval_s is '30': it must be a whole number from 60 to 86400"),
    ("interval_s", "300.5", "interval_s is '300.5'"),
    ("threshold_percent", "-1", "threshold_percent is '-1': it must be a number from 0 to 100"),
    ("threshold_watts", "one", "threshold_watts is 'one'"),
    ("timeout_s", "0", "timeout_s is '0'"),
    ("prometheus_url", "localhost:9090", "prometheus_url is 'localhost:9090', not an http(s) URL"),
    ("one_xmlrpc", "http://oneadmin:secret@localhost:2633/RPC2", "one_xmlrpc must not hold credentials"),
    ("one_auth_file", "", "one_auth_file is empty"),
    ("intervals", "300", "unknown setting 'intervals'; known settings: prometheus_url, one_xmlrpc"),
])
def test_settings_errors_name_file_and_setting(tmp_path, key, value, message):
    with pytest.raises(sync.SyncError) as caught:
        default_settings(tmp_path, **{key: value})
    assert str(caught.value).startswith(f"configuration {tmp_path / 'sync.conf'}")
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("prometheus_url = x\n", "is not a valid INI file"),
    ("[other]\n", "has no [scaphandre-energy-sync] section"),
])
def test_settings_file_shape_errors(tmp_path, text, message):
    with pytest.raises(sync.SyncError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sync.load_settings(write(tmp_path, text))


def test_missing_settings_file(tmp_path):
    with pytest.raises(sync.SyncError, match=r"cannot read the configuration .*/absent.conf: No such file"):
        sync.load_settings(str(tmp_path / "absent.conf"))


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize("content", [
    b"oneadmin:s3cret\n", b"\xef\xbb\xbfoneadmin:s3cret\n", b"oneadmin:s3cret\r\n",
    b"  oneadmin:s3cret  \nsecond line ignored\n", b"oneadmin:s3cret",
])
def test_session_from_credentials_file(tmp_path, content):
    path = tmp_path / "one_auth"
    path.write_bytes(content)
    assert sync.read_session(str(path)) == "oneadmin:s3cret"


def test_password_may_hold_colons(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text("serveradmin:a:b:c\n")
    assert sync.read_session(str(path)) == "serveradmin:a:b:c"


@pytest.mark.parametrize("content, message", [
    (b"", "is malformed"), (b"justthepassword\n", "is malformed"), (b"oneadmin:\n", "is malformed"),
    (b":password\n", "is malformed"), (b"\xff\xfeo\x00n\x00e\x00:\x00p\x00w\x00", "is not UTF-8 text"),
])
def test_bad_credentials_files_are_named_never_shown(tmp_path, content, message):
    path = tmp_path / "one_auth"
    path.write_bytes(content)
    with pytest.raises(sync.SyncError) as caught:
        sync.read_session(str(path))
    text = str(caught.value)
    assert f"OpenNebula credentials file {path} {message}" in text
    assert "justthepassword" not in text


def test_unreadable_credentials_file(tmp_path):
    with pytest.raises(sync.SyncError, match=r"cannot read OpenNebula credentials from .*: Is a directory"):
        sync.read_session(str(tmp_path))


def test_decode_error_is_not_chained(tmp_path):
    """A chained UnicodeDecodeError would carry the file's bytes into a traceback."""
    path = tmp_path / "one_auth"
    path.write_bytes(b"oneadmin:\xff\xfesecret\n")
    with pytest.raises(sync.SyncError) as caught:
        sync.read_session(str(path))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --------------------------------------------------------------------------- thresholds and rounding


@pytest.mark.parametrize("power, energy, stamp, expected", [
    (151.26, 3.6002, 1_700_000_000.9, ("151.3", "3.600", "1700000000")),
    (0.04, 0.0004, 1.0, ("0.0", "0.000", "1")),
    (1234.56, 48.1239, 2.0, ("1234.6", "48.124", "2")),
])
def test_values_are_rounded_as_documented(power, energy, stamp, expected):
    attributes = sync.desired_attributes(sync.Sample(power, stamp), energy)
    assert list(attributes.items()) == list(zip((POWER, ENERGY, STAMP), expected))


def test_energy_is_left_out_when_prometheus_has_none():
    assert list(sync.desired_attributes(sync.Sample(10.0, 5.0), None)) == [POWER, STAMP]


@pytest.mark.parametrize("stored, new, moved", [
    ("100.0", "102.0", False),   # exactly 2 %: not beyond it
    ("100.0", "102.1", True),
    ("100.0", "97.9", True),
    ("10.0", "11.0", False),     # 1 W floor wins over 2 % of 10 W
    ("10.0", "11.1", True),
    ("0.0", "0.9", False),
    (None, "5.0", True),         # never written
    ("", "5.0", True),
    ("n/a", "5.0", True),
    ("nan", "5.0", True),
])
def test_power_moves_beyond_the_larger_of_watts_and_percent(stored, new, moved):
    assert sync.moved(stored, new, 1.0, 2.0) is moved


@hypothesis_settings(max_examples=200, deadline=None)
@given(old=st.floats(min_value=0, max_value=5000, allow_nan=False),
       delta=st.floats(min_value=-500, max_value=500, allow_nan=False))
def test_moved_is_exactly_the_documented_rule(old, delta):
    stored, new = "%.1f" % old, "%.1f" % (old + delta)
    limit = max(1.0, abs(float(stored)) * 2.0 / 100)
    assert sync.moved(stored, new, 1.0, 2.0) is (abs(float(new) - float(stored)) > limit)


def owned(power="100.0", energy="2.000", stamp=str(NOW - 60)):
    values = {POWER: power, ENERGY: energy, STAMP: stamp}
    return {key: value for key, value in values.items() if value is not None}


@pytest.mark.parametrize("stored, desired_power, desired_energy, expected", [
    (owned(), 100.9, 2.0, False),
    (owned(), 103.0, 2.0, True),
    (owned(), 100.0, 2.05, True),            # 2.5 % and 0.05 kWh
    (owned(energy=None), 100.0, 2.0, True),  # energy appeared
    (owned(), 100.0, None, False),           # energy gone from Prometheus: power alone decides
    (owned(stamp=str(NOW - 3601)), 100.0, 2.0, True),  # older than refresh_s
    (owned(stamp="yesterday"), 100.0, 2.0, True),
    (owned(stamp="\u00b2"), 100.0, 2.0, True),  # a digit to isdigit(), not to int()
    ({}, 100.0, 2.0, True),
])
def test_needs_write(tmp_path, stored, desired_power, desired_energy, expected):
    settings = default_settings(tmp_path)
    desired = sync.desired_attributes(sync.Sample(desired_power, NOW - 30), desired_energy)
    assert sync.needs_write(stored, desired, NOW, settings) is expected


# --------------------------------------------------------------------------- Prometheus results


def test_series_join_by_labels_and_keep_the_best_per_object():
    power = [({"job": "s", "one_host_id": "3"}, 150.0), ({"job": "s", "one_host_id": "x"}, 9.0)]
    last = [({"job": "s", "one_host_id": "3"}, 100.0), ({"job": "s", "one_host_id": "4"}, 90.0),
            ({"job": "other", "one_host_id": "3"}, 120.0), ({"job": "s", "one_host_id": "x"}, 1.0)]
    joined = sync.measured_series(power, last)
    assert (({"job": "s", "one_host_id": "4"}), sync.Sample(None, 90.0)) in joined
    assert sync._better(sync.Sample(150.0, 100.0), sync.Sample(None, 120.0))  # fresh beats newer-but-empty
    assert sync._better(sync.Sample(1.0, 101.0), sync.Sample(150.0, 100.0))


def test_pool_parsing_reads_our_values_and_the_vm_current_host():
    vm_pool = ("<VM_POOL><VM><ID>42</ID><NAME>web</NAME><USER_TEMPLATE>"
               "<SCAPHANDRE_POWER_W><![CDATA[ 12.5 ]]></SCAPHANDRE_POWER_W>"
               "<SCAPHANDRE_SAMPLE_TIME><X>1</X></SCAPHANDRE_SAMPLE_TIME><OTHER>1</OTHER></USER_TEMPLATE>"
               "<HISTORY_RECORDS><HISTORY><SEQ>1</SEQ><HID>5</HID></HISTORY>"
               "<HISTORY><SEQ>0</SEQ><HID>3</HID></HISTORY></HISTORY_RECORDS></VM>"
               "<VM><ID>43</ID><NAME>new</NAME><USER_TEMPLATE/><HISTORY_RECORDS/></VM></VM_POOL>")
    vms = sync.parse_pool(vm_pool, "VM", "USER_TEMPLATE", "VM")
    assert vms[42].owned == {POWER: "12.5", STAMP: None}  # a vector where a value belongs: rewritten
    assert vms[42].current_host_id == 5 and vms[43].current_host_id is None
    assert sync.label(vms[42]) == "VM 42 (web)"


def test_pool_that_is_not_xml_is_named():
    with pytest.raises(sync.OneUnreachable, match="oned's host pool reply is not XML"):
        sync.parse_pool("<HOST_POOL>", "HOST", "TEMPLATE", "host")


def one_object(kind, object_id, owned_values=None, current_host_id=None):
    host = object_id if kind == "host" else current_host_id
    return sync.OneObject(kind, object_id, f"{kind}{object_id}", owned_values or {}, host)


def test_plan_classifies_every_object(tmp_path):
    settings = default_settings(tmp_path)
    hosts = {3: one_object("host", 3), 4: one_object("host", 4, owned()), 5: one_object("host", 5),
             6: one_object("host", 6, owned(power="150.0", stamp=str(NOW - 100)))}
    vms = {42: one_object("VM", 42, current_host_id=3), 43: one_object("VM", 43, current_host_id=3),
           44: one_object("VM", 44, current_host_id=None)}
    host_samples = {3: sync.Sample(150.0, NOW - 20), 5: sync.Sample(None, NOW - 400),
                    6: sync.Sample(150.4, NOW - 20), 9: sync.Sample(80.0, NOW - 20)}
    vm_samples = {42: {3: sync.Sample(20.0, NOW - 20)}, 43: {4: sync.Sample(5.0, NOW - 20)},
                  77: {3: sync.Sample(None, NOW - 400)}}
    plan = sync.plan_sync(hosts, vms, host_samples, {3: 3.6}, vm_samples, {}, NOW, settings)
    assert [(write.obj.kind, write.obj.id) for write in plan.writes] == [("host", 3), ("VM", 42)]
    assert plan.writes[0].attributes == {POWER: "150.0", ENERGY: "3.600", STAMP: str(NOW - 20)}
    assert [obj.id for obj in plan.unchanged] == [6]
    # 4 carries values but has no series; 5 has a series with nothing in the window;
    # VM 43 is measured on host 4 but runs on host 3
    assert [(obj.kind, obj.id) for obj in plan.not_fresh] == [("host", 4), ("host", 5), ("VM", 43)]
    assert plan.unknown == ["host 9"]  # VM 77 is not fresh anywhere: not worth a word


# --------------------------------------------------------------------------- templates sent to oned


def test_written_template_parses_to_the_values_in_oned_grammar():
    attributes = sync.desired_attributes(sync.Sample(151.26, 1_700_000_000), 3.6)
    assert parse_template(sync.render_template(attributes)) == list(attributes.items())


names = st.from_regex(r"[A-Z][A-Z0-9_]{0,12}", fullmatch=True).filter(lambda name: name not in sync.OWNED_ATTRIBUTES)
values = st.one_of(st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(str.strip),
                   st.dictionaries(st.from_regex(r"[A-Z]{1,5}", fullmatch=True), st.text(max_size=5).map(str.strip),
                                   min_size=1, max_size=3))


@hypothesis_settings(max_examples=200, deadline=None)
@given(others=st.lists(st.tuples(names, values), max_size=8),
       ours=st.lists(st.sampled_from(sync.OWNED_ATTRIBUTES), unique=True, min_size=1),
       position=st.integers(min_value=0, max_value=8))
def test_removal_template_deletes_exactly_our_attributes_in_merge_mode(others, ours, position):
    current = others[:position] + [(name, "1") for name in ours] + others[position:] + [(ours[0], "2")]
    after = merge_template(current, parse_template(sync.removal_template(ours)))
    assert after == others


def test_update_methods():
    assert sync.update_method(one_object("host", 1)) == "one.host.update"
    assert sync.update_method(one_object("VM", 1)) == "one.vm.update"


# --------------------------------------------------------------------------- output


def test_log_masks_the_secret_and_flattens_lines(capsys, monkeypatch):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = sync.Log()
    log.add_secret("oneadmin:Pa55word")
    log.add_secret("Pa55word")
    log.add_secret("abc")  # too short to mask without garbling every line
    log.error("oned said:\n  bad Pa55word and oneadmin:Pa55word, abc")
    assert capsys.readouterr().err == "oned said: bad *** and ***, abc\n"


def test_client_repr_holds_no_session():
    client = sync.OneClient("http://127.0.0.1:1/RPC2", "oneadmin:Pa55word", 1)
    assert "Pa55word" not in repr(client) and "Pa55word" not in str(vars(client).get("url"))


# --------------------------------------------------------------------------- portability


def test_script_runs_on_python_3_6_and_later():
    """vermin reads the syntax and the standard library calls: nothing newer than 3.6."""
    vermin = Path(sys.executable).with_name("vermin")
    assert vermin.exists(), "vermin missing from the venv: pip install -r requirements.txt"
    result = subprocess.run([str(vermin), "--target=3.6-", "--violations", "--no-tips", "--eval-annotations",
                             str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_is_executable_and_says_so():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert shutil.which("python3")
