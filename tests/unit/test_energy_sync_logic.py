"""Pure logic of the energy sync script: settings, credentials, thresholds, rounding, planning,
and the templates it sends (checked against oned's template grammar and merge rule as the
OpenNebula API simulator implements them)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.doubles.one_api_simulator import merge_template, parse_template

SCRIPT = Path(__file__).resolve().parents[2] / "files" / "opennebula" / "scaphandre_energy_sync.py"


def load_script():
    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


sync = load_script()
POWER, SCORE = sync.POWER_ATTRIBUTE, sync.SCORE_ATTRIBUTE
ENERGY, STAMP = sync.ENERGY_ATTRIBUTE, sync.SAMPLE_TIME_ATTRIBUTE
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
    assert (settings.max_age_s, settings.host_max_power_w, settings.vm_max_power_w) == (
        900,
        5000,
        2000,
    )
    assert (settings.threshold_percent, settings.threshold_watts, settings.threshold_kwh) == (
        2,
        1,
        0.01,
    )


def test_settings_strip_trailing_slash_and_accept_comments(tmp_path):
    settings = sync.load_settings(
        write(
            tmp_path,
            "# managed\n[scaphandre-energy-sync]\n"
            "prometheus_url = http://127.0.0.1:9090/\n; note\n",
        )
    )
    assert settings.prometheus_url == "http://127.0.0.1:9090"


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("interval_s", "30", "interval_s is '30': it must be a whole number from 60 to 86400"),
        ("interval_s", "300.5", "interval_s is '300.5'"),
        ("threshold_percent", "-1", "threshold_percent is '-1': it must be a number from 0 to 100"),
        ("threshold_watts", "one", "threshold_watts is 'one'"),
        ("timeout_s", "0", "timeout_s is '0'"),
        (
            "prometheus_url",
            "localhost:9090",
            "prometheus_url is 'localhost:9090', not an http(s) URL",
        ),
        (
            "one_xmlrpc",
            "http://oneadmin:secret@localhost:2633/RPC2",
            "one_xmlrpc must not hold credentials",
        ),
        ("one_auth_file", "", "one_auth_file is empty"),
        (
            "intervals",
            "300",
            "unknown setting 'intervals'; known settings: prometheus_url, one_xmlrpc",
        ),
        (
            "max_age_s",
            "599",
            (
                "max_age_s is '599': it must be a whole number from 600 to 172800 "
                "(at least twice interval_s)"
            ),
        ),
        (
            "host_max_power_w",
            "10000",
            "host_max_power_w is '10000': it must be a number from 1 to 9999",
        ),
        (
            "vm_max_power_w",
            "5001",
            (
                "vm_max_power_w is '5001': it must be a number from 1 to 5000 "
                "(at most host_max_power_w)"
            ),
        ),
        ("vm_max_power_w", "nan", "vm_max_power_w is 'nan'"),
    ],
)
def test_settings_errors_name_file_and_setting(tmp_path, key, value, message):
    with pytest.raises(sync.SyncError) as caught:
        default_settings(tmp_path, **{key: value})
    assert str(caught.value).startswith(f"configuration {tmp_path / 'sync.conf'}")
    assert message in str(caught.value)
    assert "secret" not in str(caught.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("prometheus_url = x\n", "is not a valid INI file"),
        ("[other]\n", "has no [scaphandre-energy-sync] section"),
    ],
)
def test_settings_file_shape_errors(tmp_path, text, message):
    with pytest.raises(sync.SyncError, match=message.replace("[", r"\[").replace("]", r"\]")):
        sync.load_settings(write(tmp_path, text))


def test_missing_settings_file(tmp_path):
    with pytest.raises(
        sync.SyncError, match=r"cannot read the configuration .*/absent.conf: No such file"
    ):
        sync.load_settings(str(tmp_path / "absent.conf"))


# --------------------------------------------------------------------------- credentials


@pytest.mark.parametrize(
    "content",
    [
        b"oneadmin:s3cret\n",
        b"\xef\xbb\xbfoneadmin:s3cret\n",
        b"oneadmin:s3cret\r\n",
        b"  oneadmin:s3cret  \nsecond line ignored\n",
        b"oneadmin:s3cret",
    ],
)
def test_session_from_credentials_file(tmp_path, content):
    path = tmp_path / "one_auth"
    path.write_bytes(content)
    assert sync.read_session(str(path)) == "oneadmin:s3cret"


def test_password_may_hold_colons(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text("serveradmin:a:b:c\n")
    assert sync.read_session(str(path)) == "serveradmin:a:b:c"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "is malformed"),
        (b"justthepassword\n", "is malformed"),
        (b"oneadmin:\n", "is malformed"),
        (b":password\n", "is malformed"),
        (b"\xff\xfeo\x00n\x00e\x00:\x00p\x00w\x00", "is not UTF-8 text"),
    ],
)
def test_bad_credentials_files_are_named_never_shown(tmp_path, content, message):
    path = tmp_path / "one_auth"
    path.write_bytes(content)
    with pytest.raises(sync.SyncError) as caught:
        sync.read_session(str(path))
    text = str(caught.value)
    assert f"OpenNebula credentials file {path} {message}" in text
    assert "justthepassword" not in text


def test_unreadable_credentials_file(tmp_path):
    with pytest.raises(
        sync.SyncError, match=r"cannot read OpenNebula credentials from .*: Is a directory"
    ):
        sync.read_session(str(tmp_path))


def test_decode_error_is_not_chained(tmp_path):
    """A chained UnicodeDecodeError would carry the file's bytes into a traceback."""
    path = tmp_path / "one_auth"
    path.write_bytes(b"oneadmin:\xff\xfesecret\n")
    with pytest.raises(sync.SyncError) as caught:
        sync.read_session(str(path))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


# --------------------------------------------------------------------------- thresholds and rounding


@pytest.mark.parametrize(
    "power, energy, stamp, expected",
    [
        (151.26, 3.6002, 1_700_000_000.9, ("151.3", "98487", "3.600", "1700000000")),
        (0.04, 0.0004, 1.0, ("0.0", "100000", "0.000", "1")),
        (1234.56, 48.1239, 2.0, ("1234.6", "87654", "48.124", "2")),
        (9999.0, 239.976, 3.0, ("9999.0", "10", "239.976", "3")),
    ],
)
def test_values_are_rounded_as_documented(power, energy, stamp, expected):
    attributes = sync.desired_attributes("host", sync.Sample(power, stamp), energy)
    assert list(attributes.items()) == list(
        zip((POWER, SCORE, ENERGY, STAMP), expected, strict=True)
    )
    vm = sync.desired_attributes("VM", sync.Sample(power, stamp), energy)
    assert list(vm.items()) == [(POWER, expected[0]), (ENERGY, expected[2]), (STAMP, expected[3])]


def test_energy_is_left_out_when_prometheus_has_none():
    assert list(sync.desired_attributes("host", sync.Sample(10.0, 5.0), None)) == [
        POWER,
        SCORE,
        STAMP,
    ]


@pytest.mark.parametrize(
    "co2e, expected",
    [
        (1234.56, "1234.6"),
        (0.04, "0.0"),
        (None, None),
        (float("nan"), None),
        (-1.0, None),
        (float("inf"), None),
    ],
)
def test_emissions_are_written_only_as_a_number_of_grams(co2e, expected):
    attributes = sync.desired_attributes("VM", sync.Sample(10.0, 5.0), 0.5, co2e)
    assert attributes.get(sync.CO2E_ATTRIBUTE) == expected
    assert sync.CO2E_ATTRIBUTE in sync.OWNED_ATTRIBUTES, "removed with the others"


# --------------------------------------------------------------------------- the score


def test_the_score_is_documented_formula():
    """100000 - 10 x power: 150 W -> 98500, 60 W -> 99400, 60.2 W and 60.9 W one step per 0.1 W."""
    assert [sync.score(text) for text in ("150.0", "60.0", "60.2", "60.9", "0.0", "9999.0")] == [
        98500,
        99400,
        99398,
        99391,
        100000,
        10,
    ]


tenths = st.integers(min_value=0, max_value=sync.SCORE_POWER_LIMIT_W * 10)


@hypothesis_settings(max_examples=300, deadline=None)
@given(lower=tenths, higher=tenths)
def test_the_score_is_positive_and_strictly_falls_with_power_over_the_plausible_range(
    lower, higher
):
    """Over every power a host may be written with (0 to the largest ceiling allowed, in
    0.1 W steps): always above 0 (what a rank gives a host without it), strictly lower for
    more power, and one whole step per 0.1 W, so the scheduler's integer cast keeps it."""
    low_text, high_text = "%.1f" % (lower / 10), "%.1f" % (higher / 10)
    assert sync.score(low_text) > 0 and sync.score(high_text) > 0
    assert (sync.score(low_text) > sync.score(high_text)) is (lower < higher)
    assert sync.score(low_text) - sync.score(high_text) == higher - lower


@hypothesis_settings(max_examples=300, deadline=None)
@given(power=st.floats(min_value=0, max_value=sync.SCORE_POWER_LIMIT_W, allow_nan=False))
def test_the_written_score_is_the_written_power_s_and_exact_in_a_c_float(power):
    attributes = sync.desired_attributes("host", sync.Sample(power, 1.0), None)
    assert int(attributes[SCORE]) == sync.score(attributes[POWER]) > 0
    # oned reads a rank's attributes into a C float: every score is a whole number it holds exactly
    assert struct.unpack("f", struct.pack("f", float(attributes[SCORE])))[0] == int(
        attributes[SCORE]
    )


def test_the_largest_ceiling_allowed_keeps_the_score_positive():
    assert sync.SCORE_BASE - sync.SCORE_STEPS_PER_WATT * sync.SCORE_POWER_LIMIT_W > 0


# --------------------------------------------------------------------------- canonical IDs


@hypothesis_settings(max_examples=300, deadline=None)
@given(number=st.integers(min_value=0, max_value=10**12))
def test_a_canonical_id_is_its_number(number):
    assert sync.canonical_id(str(number)) == number
    assert sync.canonical_id("0" + str(number)) is None  # "05" is not VM 5, "00" not VM 0


@hypothesis_settings(max_examples=500, deadline=None)
@given(text=st.text(max_size=8))
def test_only_ascii_decimal_text_without_a_leading_zero_is_an_id(text):
    canonical = text.isascii() and text.isdigit() and (text == "0" or not text.startswith("0"))
    assert (sync.canonical_id(text) is not None) is canonical
    if canonical:
        assert str(sync.canonical_id(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "05",
        "007",
        "00",
        "",
        " 5",
        "5 ",
        "5\n",
        "+5",
        "-5",
        "5.0",
        "1e3",
        "\u0665",
        "\uff15",
        "\u00b2",
        "12a",
        None,
    ],
)
def test_non_canonical_ids_name_no_object(text):
    assert sync.canonical_id(text) is None


@pytest.mark.parametrize(
    "stored, new, moved",
    [
        ("100.0", "102.0", False),  # exactly 2 %: not beyond it
        ("100.0", "102.1", True),
        ("100.0", "97.9", True),
        ("10.0", "11.0", False),  # 1 W floor wins over 2 % of 10 W
        ("10.0", "11.1", True),
        ("0.0", "0.9", False),
        (None, "5.0", True),  # never written
        ("", "5.0", True),
        ("n/a", "5.0", True),
        ("nan", "5.0", True),
    ],
)
def test_power_moves_beyond_the_larger_of_watts_and_percent(stored, new, moved):
    assert sync.moved(stored, new, 1.0, 2.0) is moved


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    old=st.floats(min_value=0, max_value=5000, allow_nan=False),
    delta=st.floats(min_value=-500, max_value=500, allow_nan=False),
)
def test_moved_is_exactly_the_documented_rule(old, delta):
    stored, new = f"{old:.1f}", f"{old + delta:.1f}"
    limit = max(1.0, abs(float(stored)) * 2.0 / 100)
    assert sync.moved(stored, new, 1.0, 2.0) is (abs(float(new) - float(stored)) > limit)


def owned(power="100.0", energy="2.000", stamp=str(NOW - 60)):
    values = {POWER: power, ENERGY: energy, STAMP: stamp}
    return {key: value for key, value in values.items() if value is not None}


@pytest.mark.parametrize(
    "stored, desired_power, desired_energy, expected",
    [
        (owned(), 100.9, 2.0, False),
        (owned(), 103.0, 2.0, True),
        (owned(), 100.0, 2.05, True),  # 2.5 % and 0.05 kWh
        (owned(energy=None), 100.0, 2.0, True),  # energy appeared
        (owned(), 100.0, None, True),  # energy gone from Prometheus: deleted with this write
        (owned(stamp=str(NOW - 3601)), 100.0, 2.0, True),  # older than refresh_s
        (owned(stamp="yesterday"), 100.0, 2.0, True),
        (owned(stamp="\u00b2"), 100.0, 2.0, True),  # a digit to isdigit(), not to int()
        (owned(stamp="\u0665"), 100.0, 2.0, True),  # a decimal to isdecimal() and int(), not a time
        (owned(stamp="0" + str(NOW - 60)), 100.0, 2.0, True),
        (owned(stamp=str(NOW + 3600)), 100.0, 2.0, True),  # ahead of the clock: not a sample's time
        (owned(stamp=str(NOW + 30)), 100.0, 2.0, False),  # a clock a little ahead
        (owned(power="-0.5"), 0.0, 2.0, True),  # within 1 W of the figure, but never plausible
        ({}, 100.0, 2.0, True),
    ],
)
def test_needs_write_for_a_vm(tmp_path, stored, desired_power, desired_energy, expected):
    settings = default_settings(tmp_path)
    desired = sync.desired_attributes("VM", sync.Sample(desired_power, NOW - 30), desired_energy)
    assert sync.needs_write(stored, desired, NOW, settings, settings.vm_max_power_w) is expected


def host_owned(power="100.0", **others):
    return {**owned(power=power, **others), SCORE: str(sync.score(power))}


@pytest.mark.parametrize(
    "stored, expected",
    [
        (host_owned(), False),
        (
            host_owned(power="100.9"),
            False,
        ),  # within the thresholds: score and power stay as they are
        ({**host_owned(), SCORE: "99999"}, True),  # a score that is not the stored power's
        ({**host_owned(), SCORE: "99000.0"}, True),
        (owned(), True),  # written before there was a score
    ],
)
def test_needs_write_for_a_host_keeps_the_score_the_stored_power_s(tmp_path, stored, expected):
    settings = default_settings(tmp_path)
    desired = sync.desired_attributes("host", sync.Sample(100.0, NOW - 30), 2.0)
    assert sync.needs_write(stored, desired, NOW, settings, settings.host_max_power_w) is expected


@pytest.mark.parametrize(
    "kind, power, energy, refused",
    [
        ("host", 5000.0, 120.0, (False, False, "")),
        ("host", 0.0, 0.0, (False, False, "")),
        ("host", 1e20, 5.0, (True, False, "power 1e+20 W (0 to 5000 W)")),
        ("host", -0.01, 5.0, (True, False, "power -0.01 W (0 to 5000 W)")),
        ("host", float("nan"), 5.0, (True, False, "power nan W (0 to 5000 W)")),
        ("host", float("inf"), None, (True, False, "power inf W (0 to 5000 W)")),
        ("host", 100.0, 120.001, (False, True, "24 h energy 120.001 kWh (0 to 120 kWh)")),
        ("host", 100.0, -1.0, (False, True, "24 h energy -1 kWh (0 to 120 kWh)")),
        (
            "VM",
            2000.5,
            1e18,
            (True, True, "power 2000.5 W (0 to 2000 W), 24 h energy 1e+18 kWh (0 to 48 kWh)"),
        ),
        ("VM", 2000.0, 48.0, (False, False, "")),
    ],
)
def test_implausible_figures(tmp_path, kind, power, energy, refused):
    assert sync.implausible(kind, power, energy, default_settings(tmp_path)) == refused


# --------------------------------------------------------------------------- Prometheus results


def test_series_join_by_labels_live_ones_exactly():
    mean = [({"job": "s", "one_host_id": "3"}, 150.0), ({"job": "s", "one_host_id": "9"}, 1e20)]
    live = [
        ({"job": "s", "one_host_id": "3"}, NOW - 20.5),
        ({"job": "s", "one_host_id": "9"}, NOW - 5),
    ]
    recent = [
        ({"job": "s", "one_host_id": "3"}, NOW - 60),
        ({"job": "s", "one_host_id": "4"}, NOW - 600),
        ({"job": "other", "one_host_id": "3"}, NOW - 120),
        ({"job": "s", "one_host_id": "5"}, float("nan")),
    ]
    joined = sync.join_series(mean, live, recent)
    assert joined == [
        (
            {"job": "s", "one_host_id": "3"},
            sync.Series(None, 150.0, NOW - 20.5, True),
        ),  # the exact time
        (
            {"job": "s", "one_host_id": "9"},
            sync.Series(None, 1e20, NOW - 5, True),
        ),  # kept: refused later
        ({"job": "s", "one_host_id": "4"}, sync.Series(None, None, NOW - 600, False)),
        ({"job": "other", "one_host_id": "3"}, sync.Series(None, None, NOW - 120, False)),
    ]


def series(host_id, power, newest_s_ago, live=True):
    return sync.Series(host_id, power, NOW - newest_s_ago, live)


def choice(obj, *found):
    made = sync.choose_series(obj, list(found))
    return made.outcome, made.series, made.newest_s, made.measured_elsewhere


def test_one_current_series_gives_the_figure():
    vm = one_object("VM", 42, current_host_id=3)
    assert choice(vm, series(3, 20.0, 20)) == ("current", [series(3, 20.0, 20)], NOW - 20, False)


def test_a_vm_that_moved_takes_its_new_host_s_series_the_old_one_ended():
    vm = one_object("VM", 42, current_host_id=3)
    moved_away = series(4, 60.0, 120, live=False)  # its staleness marker came when it left
    assert choice(vm, moved_away, series(3, 20.0, 20))[:2] == ("current", [series(3, 20.0, 20)])


@pytest.mark.parametrize(
    "found, why",
    [
        ((series(3, 20.0, 20), series(4, 60.0, 20)), "measured on two hosts at once"),
        (
            (series(3, 20.0, 20), series(3, 20.0, 20)),
            "one VM under two label sets (two jobs) on its host",
        ),
        (
            (series(3, 20.0, 200, live=False), series(4, 60.0, 120, live=False)),
            "both ended: neither can be told right",
        ),
    ],
)
def test_two_current_series_are_a_conflict_and_neither_is_chosen(found, why):
    vm = one_object("VM", 42, current_host_id=3)
    outcome, chosen, newest, _ = choice(vm, *found)
    assert (outcome, chosen, newest) == ("conflict", list(found), None), why


def test_a_host_under_two_label_sets_is_a_conflict():
    host = one_object("host", 3)
    assert choice(host, series(3, 150.0, 20), series(3, 151.0, 20))[0] == "conflict"


def test_no_current_series_tells_the_newest_sample_on_the_vm_s_host():
    vm = one_object("VM", 42, current_host_id=3)
    assert choice(vm, series(3, None, 400, live=False), series(4, None, 100)) == (
        "none",
        [],
        NOW - 400,
        False,
    )
    assert choice(vm, series(4, 60.0, 20)) == ("none", [], None, True)  # measured only elsewhere
    assert choice(one_object("VM", 43)) == ("none", [], None, False)  # never ran, never measured


def test_pool_parsing_reads_our_values_and_the_vm_current_host():
    vm_pool = (
        "<VM_POOL><VM><ID>42</ID><NAME>web</NAME><USER_TEMPLATE>"
        "<SCAPHANDRE_POWER_W><![CDATA[ 12.5 ]]></SCAPHANDRE_POWER_W>"
        "<SCAPHANDRE_SAMPLE_TIME><X>1</X></SCAPHANDRE_SAMPLE_TIME><OTHER>1</OTHER></USER_TEMPLATE>"
        "<HISTORY_RECORDS><HISTORY><SEQ>1</SEQ><HID>5</HID></HISTORY>"
        "<HISTORY><SEQ>0</SEQ><HID>3</HID></HISTORY></HISTORY_RECORDS></VM>"
        "<VM><ID>43</ID><NAME>new</NAME><USER_TEMPLATE/><HISTORY_RECORDS/></VM></VM_POOL>"
    )
    vms = sync.parse_pool(vm_pool, "VM", "USER_TEMPLATE", "VM")
    assert vms[42].owned == {
        POWER: "12.5",
        STAMP: None,
    }  # a vector where a value belongs: rewritten
    assert vms[42].current_host_id == 5 and vms[43].current_host_id is None
    assert sync.label(vms[42]) == "VM 42 (web)"


def test_pool_that_is_not_xml_is_named():
    with pytest.raises(sync.OneUnreachable, match="oned's host pool reply is not XML"):
        sync.parse_pool("<HOST_POOL>", "HOST", "TEMPLATE", "host")


def one_object(kind, object_id, owned_values=None, current_host_id=None):
    host = object_id if kind == "host" else current_host_id
    return sync.OneObject(kind, object_id, f"{kind}{object_id}", owned_values or {}, host)


def measurements(series_by_id=None, energy=None, ignored=()):
    return sync.Measurements(series_by_id or {}, energy or {}, list(ignored))


def test_plan_classifies_every_object(tmp_path):
    settings = default_settings(tmp_path)
    hosts = {
        3: one_object("host", 3),
        4: one_object("host", 4, owned()),
        5: one_object("host", 5),
        6: one_object("host", 6, host_owned(power="150.0", stamp=str(NOW - 100), energy=None)),
        8: one_object("host", 8, owned()),
    }
    vms = {
        42: one_object("VM", 42, current_host_id=3),
        43: one_object("VM", 43, current_host_id=3),
        44: one_object("VM", 44, current_host_id=None),
        45: one_object("VM", 45, owned(), current_host_id=3),
    }
    host_measured = measurements(
        {
            3: [series(3, 150.0, 20)],
            4: [series(4, None, 400, live=False)],
            5: [series(5, None, 400, live=False)],
            6: [series(6, 150.4, 20)],
            9: [series(9, 80.0, 20)],
        },
        {3: 3.6},
    )
    vm_measured = measurements(
        {42: [series(3, 20.0, 20)], 43: [series(4, 5.0, 20)], 77: [series(3, None, 400)]},
        ignored=['one_vm_id="042"'],
    )
    plan = sync.plan_sync(hosts, vms, host_measured, vm_measured, NOW, settings)
    assert [(write.obj.kind, write.obj.id, write.reason) for write in plan.writes] == [
        ("host", 3, "write"),
        ("host", 8, "expire"),
        ("VM", 42, "write"),
        ("VM", 45, "expire"),
    ]
    assert plan.writes[0].attributes == {
        POWER: "150.0",
        SCORE: "98500",
        ENERGY: "3.600",
        STAMP: str(NOW - 20),
    }
    assert plan.writes[0].removed == []
    assert [obj.id for obj in plan.unchanged] == [6]
    # 4 and 5 were last measured 400 s ago: within max_age_s (900), values kept;
    # VM 43 is measured on host 4 but runs on host 3: reported, nothing to keep
    assert [(obj.kind, obj.id) for obj in plan.not_fresh] == [("host", 4), ("host", 5), ("VM", 43)]
    # host 8 and VM 45 carry values Prometheus no longer backs with any sample
    assert [(obj.kind, obj.id) for obj in plan.expired] == [("host", 8), ("VM", 45)]
    assert plan.writes[1].removed == sorted(owned()) and plan.writes[1].attributes == {}
    assert plan.unknown == ["host 9"]  # VM 77 is not fresh anywhere: not worth a word
    assert plan.ignored == ['one_vm_id="042"']
    assert plan.refused == [] and plan.conflicts == []


@pytest.mark.parametrize("last_seen_s_ago, expired", [(899, False), (901, True)])
def test_values_expire_once_prometheus_has_had_no_sample_for_max_age_s(
    tmp_path, last_seen_s_ago, expired
):
    settings = default_settings(tmp_path)
    hosts = {4: one_object("host", 4, host_owned(stamp=str(NOW - 5000)))}
    plan = sync.plan_sync(
        hosts,
        {},
        measurements({4: [series(4, None, last_seen_s_ago, live=False)]}),
        measurements(),
        NOW,
        settings,
    )
    assert ([obj.id for obj in plan.expired], [obj.id for obj in plan.not_fresh]) == (
        ([4], []) if expired else ([], [4])
    )


def test_energy_without_a_current_value_is_deleted_in_the_same_write(tmp_path):
    settings = default_settings(tmp_path)
    hosts = {3: one_object("host", 3, host_owned(stamp=str(NOW - 30)))}
    plan = sync.plan_sync(
        hosts, {}, measurements({3: [series(3, 100.0, 20)]}), measurements(), NOW, settings
    )
    [write] = plan.writes
    assert write.reason == "write" and ENERGY not in write.attributes and write.removed == [ENERGY]
    assert sync.render_template(write.attributes, write.removed) == (
        f'SCAPHANDRE_POWER_W = "100.0"\nSCAPHANDRE_SCORE = "99000"\nSCAPHANDRE_SAMPLE_TIME = "{NOW - 20}"\n'
        "SCAPHANDRE_ENERGY_KWH_24H = []\n"
    )


def test_an_implausible_power_is_refused_and_removes_the_values(tmp_path):
    settings = default_settings(tmp_path)
    hosts = {3: one_object("host", 3, host_owned()), 4: one_object("host", 4)}
    vms = {42: one_object("VM", 42, owned(), current_host_id=3)}
    plan = sync.plan_sync(
        hosts,
        vms,
        measurements({3: [series(3, 1e20, 20)], 4: [series(4, -3.0, 20)]}),
        measurements({42: [series(3, 2500.0, 20)]}),
        NOW,
        settings,
    )
    assert [(obj.id, why) for obj, why in plan.refused] == [
        (3, "power 1e+20 W (0 to 5000 W)"),
        (4, "power -3 W (0 to 5000 W)"),
        (42, "power 2500 W (0 to 2000 W)"),
    ]
    assert [
        (write.obj.id, write.reason, write.attributes, write.removed) for write in plan.writes
    ] == [
        (3, "refuse", {}, sorted(host_owned())),
        (42, "refuse", {}, sorted(owned())),
    ]  # host 4 had none


def test_an_implausible_energy_alone_is_left_out_and_the_power_written(tmp_path):
    settings = default_settings(tmp_path)
    hosts = {3: one_object("host", 3, host_owned())}
    plan = sync.plan_sync(
        hosts,
        {},
        measurements({3: [series(3, 100.0, 20)]}, {3: 1e18}),
        measurements(),
        NOW,
        settings,
    )
    assert [(obj.id, why) for obj, why in plan.refused] == [
        (3, "24 h energy 1e+18 kWh (0 to 120 kWh)")
    ]
    [write] = plan.writes
    assert (write.reason, write.attributes[POWER], write.removed) == ("write", "100.0", [ENERGY])


@pytest.mark.parametrize(
    "stamp_s_ago, expired", [(600, False), (901, True), (-3600, True), ("x", True)]
)
def test_a_conflict_is_not_written_and_its_values_expire_by_their_own_sample_time(
    tmp_path, stamp_s_ago, expired
):
    settings = default_settings(tmp_path)
    stamp = str(NOW - stamp_s_ago) if isinstance(stamp_s_ago, int) else stamp_s_ago
    vms = {42: one_object("VM", 42, owned(stamp=stamp), current_host_id=3)}
    plan = sync.plan_sync(
        {},
        vms,
        measurements(),
        measurements({42: [series(3, 20.0, 20), series(4, 60.0, 20)]}),
        NOW,
        settings,
    )
    assert [(obj.id, len(found)) for obj, found in plan.conflicts] == [(42, 2)]
    assert [(write.reason, write.removed) for write in plan.writes] == (
        [("expire", sorted(owned()))] if expired else []
    )


def test_stored_age():
    assert sync.stored_age({STAMP: str(NOW - 30)}, NOW) == 30
    assert sync.stored_age({STAMP: str(NOW + 30)}, NOW) == 0  # a clock a little ahead
    assert sync.stored_age({STAMP: str(NOW + 61)}, NOW) is None
    assert sync.stored_age({}, NOW) is None and sync.stored_age({STAMP: None}, NOW) is None


# --------------------------------------------------------------------------- templates sent to oned


def test_written_template_parses_to_the_values_in_oned_grammar():
    attributes = sync.desired_attributes("host", sync.Sample(151.26, 1_700_000_000), 3.6)
    assert parse_template(sync.render_template(attributes)) == list(attributes.items())


def test_a_write_with_a_removal_sets_and_deletes_in_one_merge():
    current = [
        ("NOTES", "rack 4"),
        (POWER, "90.0"),
        (SCORE, "99100"),
        (ENERGY, "2.000"),
        (STAMP, "1"),
    ]
    attributes = sync.desired_attributes("host", sync.Sample(100.0, 2.0), None)
    after = merge_template(current, parse_template(sync.render_template(attributes, [ENERGY])))
    assert after == [("NOTES", "rack 4"), (POWER, "100.0"), (SCORE, "99000"), (STAMP, "2")]


names = st.from_regex(r"[A-Z][A-Z0-9_]{0,12}", fullmatch=True).filter(
    lambda name: name not in sync.OWNED_ATTRIBUTES
)
values = st.one_of(
    st.text(st.characters(blacklist_categories=("Cs",)), max_size=20).map(str.strip),
    st.dictionaries(
        st.from_regex(r"[A-Z]{1,5}", fullmatch=True),
        st.text(max_size=5).map(str.strip),
        min_size=1,
        max_size=3,
    ),
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    others=st.lists(st.tuples(names, values), max_size=8),
    ours=st.lists(st.sampled_from(sync.OWNED_ATTRIBUTES), unique=True, min_size=1),
    position=st.integers(min_value=0, max_value=8),
)
def test_removal_template_deletes_exactly_our_attributes_in_merge_mode(others, ours, position):
    current = (
        others[:position] + [(name, "1") for name in ours] + others[position:] + [(ours[0], "2")]
    )
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


@pytest.mark.parametrize(
    "password",
    [
        "pa ss word",
        "pa\tss\tword",
        "pass\nword",
        " lead and trail ",
        "two  spaces",
        "tab\t \nmix",
        "\u00a0nbsp\u2003em",
    ],
)
def test_a_password_holding_blanks_is_masked_before_lines_are_flattened(
    capsys, monkeypatch, password
):
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    log = sync.Log()
    log.add_secret("oneadmin:" + password)
    log.add_secret(password)
    log.error(
        f"oned said: [{password}] and oneadmin:{password}; flattened [{' '.join(password.split())}]"
    )
    log.info(f"{password}")
    out = capsys.readouterr()
    assert out.err == "oned said: [***] and ***; flattened [***]\n"
    assert out.out == "***\n"


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    password=st.text(st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=16)
    # (a password made of the mask's own "*" would be found in the mask itself)
    .filter(lambda text: len(" ".join(text.split())) >= 4 and "*" not in text),
    before=st.text(max_size=10),
    after=st.text(max_size=10),
)
def test_no_password_survives_in_any_line(password, before, after):
    """Whatever the password holds (blanks, newlines, any character) and whatever surrounds
    it: neither it nor its flattened form is in the line the log writes."""
    log = sync.Log()
    log.add_secret("u:" + password)
    log.add_secret(password)
    line = " ".join(log.redact(before + password + after).split())
    assert password not in line and " ".join(password.split()) not in line


def test_client_repr_holds_no_session():
    client = sync.OneClient("http://127.0.0.1:1/RPC2", "oneadmin:Pa55word", 1)
    assert "Pa55word" not in repr(client) and "Pa55word" not in str(vars(client).get("url"))


# --------------------------------------------------------------------------- portability


def test_script_runs_on_python_3_6_and_later():
    """vermin reads the syntax and the standard library calls: nothing newer than 3.6."""
    vermin = Path(sys.executable).with_name("vermin")
    assert vermin.exists(), "vermin missing from the venv: pip install -r requirements.txt"
    result = subprocess.run(
        [
            str(vermin),
            "--target=3.6-",
            "--violations",
            "--no-tips",
            "--eval-annotations",
            str(SCRIPT),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_is_executable_and_says_so():
    assert os.access(SCRIPT, os.X_OK)
    assert SCRIPT.read_text().startswith("#!/usr/bin/env python3\n")
    assert shutil.which("python3")
