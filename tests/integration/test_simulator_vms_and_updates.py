"""The OpenNebula API simulator's VM calls and template updates, through the real pyone client
over real HTTP: replies pyone parses without complaint, oned's merge and replace rules, and
oned's error replies (codes and text)."""

from __future__ import annotations

import xmlrpc.client

import pyone
import pytest

from tests.doubles.one_api_simulator import (
    ACTION,
    AUTHENTICATION,
    INTERNAL,
    NO_EXISTS,
    XML_RPC_API,
    XMLRPC_TYPE_ERROR,
    OneApiSimulator,
)

PASSWORD = "Sim-Pa55"
HOSTS = [
    {
        "id": 3,
        "name": "kvm1",
        "hostname": "kvm1",
        "template": {"NOTES": "rack 4", "LABEL": ["a", "b"]},
    }
]
VMS = [
    {
        "id": 42,
        "name": "web",
        "host_id": 3,
        "hostname": "kvm1",
        "user_template": {
            "LABELS": "prod",
            "SCHED_RANK": "FREE_CPU",
            "NOTE": 'say "hi"',
            "CUSTOM": {"A": "1"},
        },
    },
    {"id": 43, "name": "db", "host_id": 3, "state": 8, "lcm_state": 0, "uid": 5, "gid": 1},
    {"id": 44, "name": "pending", "state": 1, "lcm_state": 0},
    {"id": 45, "name": "gone", "state": 6, "lcm_state": 0},
    {
        "id": 46,
        "name": "moved",
        "history": [
            {"seq": 0, "host_id": 3, "hostname": "kvm1"},
            {"seq": 1, "host_id": 4, "hostname": "kvm2"},
        ],
    },
]


@pytest.fixture
def simulator():
    with OneApiSimulator(
        [dict(h) for h in HOSTS], vms=[dict(vm) for vm in VMS], password=PASSWORD
    ) as sim:
        yield sim


@pytest.fixture
def client(simulator):
    return pyone.OneServer(simulator.url, session=f"oneadmin:{PASSWORD}", protocol="xmlrpc")


def raw(simulator, method, *params, session=f"oneadmin:{PASSWORD}"):
    """Call without pyone, to see oned's envelope as it is."""
    return getattr(xmlrpc.client.ServerProxy(simulator.url), method)(session, *params)


# --------------------------------------------------------------------------- VM replies


def test_vm_info_is_what_pyone_expects(client, simulator, capsys):
    vm = client.vm.info(42)
    assert (vm.ID, vm.NAME, vm.STATE, vm.LCM_STATE, vm.UNAME) == (42, "web", 3, 3, "oneadmin")
    assert vm.USER_TEMPLATE["NOTE"] == 'say "hi"' and vm.USER_TEMPLATE["CUSTOM"] == {"A": "1"}
    assert vm.TEMPLATE["VMID"] == "42" and vm.TEMPLATE["MEMORY"] == "1024"
    assert (
        vm.HISTORY_RECORDS.HISTORY[-1].HID == 3
        and vm.HISTORY_RECORDS.HISTORY[-1].HOSTNAME == "kvm1"
    )
    assert vm.PERMISSIONS.OWNER_U == 1 and vm.BACKUPS.BACKUP_CONFIG is not None
    assert client.vm.info(46).HISTORY_RECORDS.HISTORY[-1].HID == 4  # the newest record
    assert client.vm.info(44).HISTORY_RECORDS.HISTORY == []
    assert capsys.readouterr().err == ""  # pyone's bindings complain on stderr about misfits
    assert simulator.calls == {"one.vm.info": 3}


def test_extended_pool_has_full_user_templates_and_the_short_pool_does_not(client, capsys):
    client.vm.update(42, 'SCAPHANDRE_POWER_W = "20.0"', 1)
    extended = {vm.ID: vm for vm in client.vmpool.infoextended(-2, -1, -1, -1).VM}
    assert extended[42].USER_TEMPLATE["SCAPHANDRE_POWER_W"] == "20.0"
    assert extended[42].USER_TEMPLATE["NOTE"] == 'say "hi"'
    short = {vm.ID: vm for vm in client.vmpool.info(-2, -1, -1, -1).VM}
    # oned's short body keeps only what Sunstone and the scheduler list
    assert dict(short[42].USER_TEMPLATE) == {"LABELS": "prod", "SCHED_RANK": "FREE_CPU"}
    assert short[42].HISTORY_RECORDS.HISTORY[0].HID == 3
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "arguments, expected_ids",
    [
        # newest first: oned's default API_LIST_ORDER is DESC
        ((-2, -1, -1, -1), [46, 44, 43, 42]),  # all owners, every state but DONE
        ((-2, -1, -1, -2), [46, 45, 44, 43, 42]),  # DONE too
        ((-2, -1, -1, 8), [43]),  # POWEROFF only
        ((-3, -1, -1, -1), [46, 44, 42]),  # mine (oneadmin, uid 0)
        ((5, -1, -1, -1), [43]),  # user 5's
        ((-2, 43, 44, -1), [44, 43]),  # ID range
        ((-2, 1, -2, -1), [44, 43]),  # page: offset 1, size 2, counted in that order
    ],
)
def test_vm_pool_filters_like_oned(client, arguments, expected_ids):
    assert [vm.ID for vm in client.vmpool.infoextended(*arguments).VM] == expected_ids
    assert [vm.ID for vm in client.vmpool.info(*arguments).VM] == expected_ids


def test_pools_follow_the_list_order_oned_is_configured_with():
    with OneApiSimulator(
        [dict(h, id=i) for i, h in enumerate(HOSTS * 3)],
        vms=[dict(vm) for vm in VMS],
        password=PASSWORD,
        list_order="ASC",
    ) as ascending:
        client = pyone.OneServer(ascending.url, session=f"oneadmin:{PASSWORD}", protocol="xmlrpc")
        assert [host.ID for host in client.hostpool.info().HOST] == [0, 1, 2]
        assert [vm.ID for vm in client.vmpool.infoextended(-2, 1, -2, -1).VM] == [43, 44]
    with pytest.raises(ValueError, match="ASC or DESC"):
        OneApiSimulator(list_order="desc")


def test_vm_pool_refuses_bad_filters(client):
    with pytest.raises(
        pyone.OneApiException, match=r"\[one.vmpool.infoextended\] Incorrect state filter 99"
    ):
        client.vmpool.infoextended(-2, -1, -1, 99)
    with pytest.raises(pyone.OneApiException, match=r"\[one.vmpool.info\] Incorrect filter_flag"):
        client.vmpool.info(-7, -1, -1, -1)


# --------------------------------------------------------------------------- updates


def test_merge_keeps_other_attributes_and_replaces_named_ones(client, simulator):
    assert client.host.update(3, 'NOTES = "rack 5"\nNEW = 1\n', 1) == 3
    template = client.host.info(3).TEMPLATE
    assert template["NOTES"] == "rack 5" and template["NEW"] == "1"
    assert template["HOSTNAME"] == "kvm1" and template["LABEL"] == ["a", "b"]


def test_merge_with_an_empty_vector_deletes_every_attribute_of_that_name(client, simulator):
    client.host.update(3, "LABEL = []\nNOTES=[ ]", 1)
    template = client.host.info(3).TEMPLATE
    assert "LABEL" not in template and "NOTES" not in template and template["HOSTNAME"] == "kvm1"
    client.vm.update(42, "CUSTOM = []", 1)
    assert "CUSTOM" not in client.vm.info(42).USER_TEMPLATE


def test_merge_of_an_empty_single_value_keeps_the_attribute_empty(client, simulator):
    client.vm.update(42, "NOTE =\n", 1)
    assert ("NOTE", "") in simulator.vm_user_template(42)


def test_replace_drops_everything_not_in_the_new_template_but_a_hosts_drivers(client, simulator):
    client.host.update(3, 'ONLY = "this"', 0)
    assert sorted(simulator.host_template(3)) == [
        ("IM_MAD", "kvm"),
        ("ONLY", "this"),
        ("VM_MAD", "kvm"),
    ]
    client.vm.update(42, 'ONLY = "this"', 0)
    assert dict(client.vm.info(42).USER_TEMPLATE) == {"ONLY": "this"}


def test_a_driver_written_into_a_host_template_becomes_the_hosts_driver(client, simulator):
    client.host.update(3, 'IM_MAD = "lxc"\nVM_MAD = ""', 1)  # an empty one keeps the driver
    host = client.host.info(3)
    assert (host.IM_MAD, host.VM_MAD) == ("lxc", "kvm")
    assert (host.TEMPLATE["IM_MAD"], host.TEMPLATE["VM_MAD"]) == ("lxc", "kvm")


def test_a_host_never_monitored_has_only_what_onehost_create_gives_it(client, simulator):
    simulator.set_hosts(
        [
            *HOSTS,
            {"id": 8, "name": "new", "im_mad": "kvm", "state": 0},
            {"id": 9, "name": "seen", "im_mad": "kvm", "state": 0, "monitored": True},
        ]
    )
    assert sorted(simulator.host_template(8)) == [
        ("IM_MAD", "kvm"),
        ("RESERVED_CPU", ""),
        ("RESERVED_MEM", ""),
        ("VM_MAD", "kvm"),
    ]
    assert "<MONITORING/>" in raw(simulator, "one.host.info", 8)[1]
    assert client.host.info(8).TEMPLATE.get("HOSTNAME") is None
    # re-enabled, a host is INIT again but keeps what its probes reported
    assert ("ARCH", "x86_64") in simulator.host_template(9) and "<MONITORING/>" not in raw(
        simulator, "one.host.info", 9
    )[1]


def test_success_replies_are_three_items_like_oneds(simulator):
    assert raw(simulator, "one.host.info", 3)[::2] == [True, 0]
    assert len(raw(simulator, "one.host.info", 3)) == len(raw(simulator, "one.hostpool.info")) == 3
    assert raw(simulator, "one.host.update", 3, "A = 1", 1) == [True, 3, 0]


def test_update_without_a_type_is_a_replace_as_in_oned(client, simulator):
    client.vm.update(42, 'A = "1"')  # pyone sends no type: oned defaults to 0
    assert simulator.vm_user_template(42) == [("A", "1")]


def test_template_syntax_follows_oned(client, simulator):
    client.vm.update(
        42, 'lower = bare\n# comment\nQ = "x \\"y\\" z"\nV = [ k = "1", L = 2 ]\nM = "a\nb "\n', 0
    )
    assert simulator.vm_user_template(42) == [
        ("LOWER", "bare"),
        ("Q", 'x "y" z'),
        ("V", {"K": "1", "L": "2"}),
        ("M", "a\nb"),
    ]


def test_xml_templates_are_accepted_like_oned(client, simulator):
    client.vm.update(
        42, {"TEMPLATE": {"A": "1", "V": {"K": "x"}}}, 0
    )  # pyone renders nested dicts as XML
    assert simulator.vm_user_template(42) == [("A", "1"), ("V", {"K": "x"})]


def test_template_parse_errors(client):
    with pytest.raises(
        pyone.OneInternalException, match=r"\[one.host.update\] Cannot update template. Parse error"
    ):
        client.host.update(3, "A = ", 1)
    with pytest.raises(pyone.OneActionException, match=r"^\[one.vm.update\] Parse error\.$"):
        client.vm.update(42, 'A = "x]]>y"', 1)


def test_unknown_objects_answer_oneds_no_exists(client, simulator):
    with pytest.raises(
        pyone.OneNoExistsException, match=r"^\[one.host.update\] Error getting host \[99\].$"
    ):
        client.host.update(99, "A = 1", 1)
    with pytest.raises(
        pyone.OneNoExistsException,
        match=r"^\[one.vm.update\] Error getting virtual machine \[99\].$",
    ):
        client.vm.update(99, "A = 1", 1)
    with pytest.raises(
        pyone.OneNoExistsException, match=r"^\[one.vm.info\] Error getting virtual machine \[99\].$"
    ):
        client.vm.info(99)
    # the envelope carries the object's ID, like oned's
    assert raw(simulator, "one.vm.update", 99, "A = 1", 1) == [
        False,
        "[one.vm.update] Error getting virtual machine [99].",
        NO_EXISTS,
        99,
        -1,
    ]
    assert raw(simulator, "one.host.info", 99) == [
        False,
        "[one.host.info] Error getting host [99].",
        NO_EXISTS,
        99,
        -1,
    ]


def test_removed_vm_is_gone(client, simulator):
    simulator.remove_vm(42)
    with pytest.raises(pyone.OneNoExistsException):
        client.vm.update(42, "A = 1", 1)
    assert 42 not in [vm.ID for vm in client.vmpool.infoextended(-2, -1, -1, -2).VM]


def test_wrong_update_type(client):
    with pytest.raises(pyone.OneApiException, match=r"^\[one.host.update\] Wrong update type$"):
        client.host.update(3, "A = 1", 2)


@pytest.mark.parametrize(
    "method, params",
    [
        ("one.host.update", (3, "A = 1", 1)),
        ("one.vm.update", (42, "A = 1", 1)),
        ("one.vm.info", (42,)),
        ("one.vmpool.info", (-2, -1, -1, -1)),
        ("one.vmpool.infoextended", (-2, -1, -1, -1)),
    ],
)
def test_bad_session_is_refused_and_changes_nothing(simulator, method, params):
    before = (simulator.host_template(3), simulator.vm_user_template(42))
    reply = raw(simulator, method, *params, session="oneadmin:wrong")
    assert reply == [
        False,
        f"[{method}] User couldn't be authenticated, aborting call.",
        AUTHENTICATION,
        -1,
        -1,
    ]
    assert (simulator.host_template(3), simulator.vm_user_template(42)) == before


def test_wrong_argument_types_are_xmlrpc_faults(simulator):
    with pytest.raises(xmlrpc.client.Fault) as caught:
        raw(simulator, "one.vm.update", "42", "A = 1", 1)
    assert caught.value.faultCode == XMLRPC_TYPE_ERROR


def test_every_call_is_counted_per_method(client, simulator):
    client.vm.info(42)
    client.vm.update(42, "A = 1", 1)
    with pytest.raises(pyone.OneNoExistsException):
        client.vm.update(99, "A = 1", 1)
    client.vmpool.infoextended(-2, -1, -1, -1)
    client.host.update(3, "A = 1", 1)
    assert simulator.calls == {
        "one.vm.info": 1,
        "one.vm.update": 2,
        "one.vmpool.infoextended": 1,
        "one.host.update": 1,
    }


def test_hooks_run_between_the_answer_and_the_next_call(client, simulator):
    simulator.add_hook("one.vmpool.infoextended", lambda: simulator.remove_vm(42))
    pool = client.vmpool.infoextended(-2, -1, -1, -1)
    assert 42 in [vm.ID for vm in pool.VM]  # the answer was made before the hook ran
    with pytest.raises(pyone.OneNoExistsException):
        client.vm.update(42, "A = 1", 1)
    simulator.set_vms([dict(VMS[0])])
    assert [vm.ID for vm in client.vmpool.infoextended(-2, -1, -1, -1).VM] == [42]  # ran once only


def test_error_codes_are_oneds():
    # include/Request.h
    assert (AUTHENTICATION, NO_EXISTS, ACTION, XML_RPC_API, INTERNAL) == (
        0x100,
        0x400,
        0x800,
        0x1000,
        0x2000,
    )


def test_process_mode_serves_vms_and_keeps_written_templates_across_host_file_changes(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    import yaml

    from tests.integration.test_pyone_against_simulator import read_line_within

    repo = Path(__file__).resolve().parents[2]
    hosts_file, vms_file, password_file = (
        tmp_path / "hosts.yml",
        tmp_path / "vms.yml",
        tmp_path / "password",
    )
    hosts_file.write_text(yaml.safe_dump(HOSTS))
    vms_file.write_text(yaml.safe_dump({"vms": VMS[:1]}))
    password_file.write_text(PASSWORD + "\n")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.doubles.one_api_simulator",
            "--port",
            "0",
            "--hosts",
            str(hosts_file),
            "--vms",
            str(vms_file),
            "--password-file",
            str(password_file),
        ],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line_within(process.stdout, 15)
        assert line.startswith("listening on "), line
        client = pyone.OneServer(
            line.split()[-1], session=f"oneadmin:{PASSWORD}", protocol="xmlrpc"
        )
        assert client.vm.info(42).NAME == "web"
        client.host.update(3, 'SCAPHANDRE_POWER_W = "150.0"', 1)
        temporary = tmp_path / "hosts.tmp"
        temporary.write_text(yaml.safe_dump([*HOSTS, {"id": 9, "name": "kvm9"}]))
        os.replace(temporary, hosts_file)
        assert [host.ID for host in client.hostpool.info().HOST] == [9, 3]
        assert client.host.info(3).TEMPLATE["SCAPHANDRE_POWER_W"] == "150.0"
    finally:
        process.terminate()
        try:
            process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate(timeout=5)
    assert process.returncode == 0
