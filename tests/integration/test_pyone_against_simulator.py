"""The real pyone client, over real HTTP on 127.0.0.1, against the OpenNebula API simulator."""

from __future__ import annotations

import os
import selectors
import socket
import subprocess
import sys
import time
import traceback
import xmlrpc.client
from pathlib import Path

import pyone
import pytest
import yaml

from tasks.opennebula.client import (
    OneAuthError,
    OneEndpoint,
    OneProtocolError,
    OneUnreachableError,
    fetch_host_pool,
)
from tasks.opennebula.pool import OneHost, OpenNebulaError
from tests.doubles.one_api_simulator import OneApiSimulator
from tests.unit.pyone_reference import as_fields, hosts_from_binding

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "Sim-Pa55-never-shown"
HOSTS = [
    {"id": 0, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2},
    {"id": 4, "name": "hv2.example.org", "hostname": "hv2", "im_mad": "kvm", "state": 4},
    {"id": 7, "name": "hv3", "hostname": "hv3.example.org", "im_mad": "kvm", "state": 3},
    {"id": 9, "name": "hv4", "hostname": "hv4", "im_mad": "kvm", "state": 8},
    {"id": 12, "name": "lxc1", "hostname": "lxc1", "im_mad": "lxc", "state": 2},
    {"id": 15, "name": "vcenter-cluster", "im_mad": "vcenter", "vm_mad": "vcenter", "state": 0},
]
EXPECTED = [
    OneHost(0, "hv1", "hv1", "kvm", 2, "MONITORED"),
    OneHost(4, "hv2.example.org", "hv2", "kvm", 4, "DISABLED"),
    OneHost(7, "hv3", "hv3.example.org", "kvm", 3, "ERROR"),
    OneHost(9, "hv4", "hv4", "kvm", 8, "OFFLINE"),
    OneHost(12, "lxc1", "lxc1", "lxc", 2, "MONITORED"),
    OneHost(15, "vcenter-cluster", None, "vcenter", 0, "INIT"),
]


@pytest.fixture
def simulator():
    with OneApiSimulator(HOSTS, user="oneadmin", password=PASSWORD) as sim:
        yield sim


def endpoint_for(url: str, password: str = PASSWORD, timeout: float = 5.0) -> OneEndpoint:
    return OneEndpoint(
        url=url,
        session=f"oneadmin:{password}",
        timeout=timeout,
        auth_source="~/.one/one_auth (/test/one_auth)",
    )


def assert_secret_absent(error: BaseException, password: str = PASSWORD) -> None:
    """The password must appear nowhere an operator or a log could see it."""
    texts = [str(error), repr(error), "".join(traceback.format_exception(error))]
    for text in texts:
        assert password not in text
    assert error.__cause__ is None and error.__suppress_context__
    assert "\n" not in str(error)


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_fetch_maps_every_state_and_driver(simulator, capsys):
    hosts = fetch_host_pool(endpoint_for(simulator.url))
    assert hosts == EXPECTED[::-1]  # newest first: oned's default API_LIST_ORDER is DESC
    # pyone's bindings print warnings to stderr when the XML does not fit them
    assert capsys.readouterr().err == ""


def test_the_pool_read_from_the_raw_reply_is_the_one_pyones_bindings_give(capsys):
    """Over HTTP, through pyone both ways: fetch_host_pool (one call, the document read for
    what the deploy uses) gives every field, template included, that pyone's own
    `hostpool.info()` binding gave the earlier client, on a pool with odd hosts."""
    odd = [
        *HOSTS,
        {
            "id": 21,
            "name": "a&b <odd> é",
            "hostname": ["first", "second"],
            "state": 2,
            "template": {
                "SSH_PORT": " 2222 ",
                "PCI": {"ADDRESS": "0000:00:02:0"},
                "NOTE": "x]]>y",
                "EMPTY": "",
            },
        },
        {"id": 22, "name": "no-hostname", "state": 6, "template_attributes": []},
    ]
    with OneApiSimulator(odd, user="oneadmin", password=PASSWORD) as sim:
        ours = fetch_host_pool(endpoint_for(sim.url))
        bound = pyone.OneServer(
            sim.url, session=f"oneadmin:{PASSWORD}", protocol="xmlrpc"
        ).hostpool.info()
        assert sim.calls == {"one.hostpool.info": 2}
    reference = as_fields(hosts_from_binding(bound))
    assert as_fields(ours) == reference
    by_id = {host.id: host for host in ours}
    assert dict(by_id[21].template)["SSH_PORT"] == "2222" and by_id[21].hostname == "first"
    assert by_id[22].template == () and by_id[22].hostname is None
    assert capsys.readouterr().err == ""


def test_one_call_per_fetch(simulator):
    endpoint = endpoint_for(simulator.url)
    fetch_host_pool(endpoint)
    assert simulator.calls == {"one.hostpool.info": 1}
    fetch_host_pool(endpoint)
    assert simulator.calls == {"one.hostpool.info": 2}


def test_set_hosts_changes_the_pool(simulator):
    endpoint = endpoint_for(simulator.url)
    simulator.set_hosts([*HOSTS, {"id": 20, "name": "hv5", "hostname": "hv5"}])
    assert fetch_host_pool(endpoint)[0] == OneHost(20, "hv5", "hv5", "kvm", 2, "MONITORED")


def test_each_host_carries_its_cluster_for_the_carbon_intensity_per_cluster(simulator):
    simulator.set_hosts([dict(HOSTS[0], cluster_id=104, cluster="berlin"), HOSTS[1]])
    hosts = fetch_host_pool(endpoint_for(simulator.url))
    assert sorted((h.id, h.cluster_id, h.cluster) for h in hosts) == [
        (0, 104, "berlin"),
        (4, 0, "default"),
    ]


def test_simulator_xml_passes_pyone_bindings_for_host_info(simulator, capsys):
    client = pyone.OneServer(simulator.url, session=f"oneadmin:{PASSWORD}", protocol="xmlrpc")
    host = client.host.info(7)
    assert (host.ID, host.NAME, host.STATE, host.IM_MAD) == (7, "hv3", 3, "kvm")
    assert host.TEMPLATE["HOSTNAME"] == "hv3.example.org"
    assert host.HOST_SHARE.TOTAL_CPU == 800 and host.HOST_SHARE.NUMA_NODES.NODE
    assert host.MONITORING.CAPACITY.FREE_CPU is not None
    with pytest.raises(pyone.OneNoExistsException, match=r"\[one.host.info\] Error getting host"):
        client.host.info(99)
    assert capsys.readouterr().err == ""
    assert simulator.calls == {"one.host.info": 2}


def test_wrong_password_is_an_auth_error_naming_endpoint_and_user(simulator):
    with pytest.raises(OneAuthError) as caught:
        fetch_host_pool(endpoint_for(simulator.url, password="wrong-" + PASSWORD))
    message = str(caught.value)
    assert simulator.url in message and "'oneadmin'" in message
    assert "/test/one_auth" in message and "password" in message
    assert_secret_absent(caught.value, "wrong-" + PASSWORD)
    assert simulator.calls == {"one.hostpool.info": 1}


def test_dead_endpoint_is_unreachable_quickly():
    url = f"http://127.0.0.1:{closed_port()}/RPC2"
    started = time.monotonic()
    with pytest.raises(OneUnreachableError) as caught:
        fetch_host_pool(endpoint_for(url, timeout=10))
    assert time.monotonic() - started < 2.0
    message = str(caught.value)
    assert url in message and "connection refused" in message and "ONE_XMLRPC" in message
    assert_secret_absent(caught.value)


def test_hanging_api_times_out_within_bound():
    with OneApiSimulator(HOSTS, password=PASSWORD, mode="hang", hang_s=8) as sim:
        started = time.monotonic()
        with pytest.raises(OneUnreachableError) as caught:
            fetch_host_pool(endpoint_for(sim.url, timeout=1))
        elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3.0
    assert "did not answer within 1 s" in str(caught.value)
    assert_secret_absent(caught.value)


def test_timeout_does_not_change_the_process_wide_socket_default(simulator):
    # pyone's own `timeout` calls socket.setdefaulttimeout(), which would also change
    # every other socket of the deploy (pyinfra's SSH); ours must leave it alone.
    before = socket.getdefaulttimeout()
    fetch_host_pool(endpoint_for(simulator.url, timeout=3))
    assert socket.getdefaulttimeout() == before


@pytest.mark.parametrize("mode", ["garbage", "html"])
def test_non_xmlrpc_reply_is_reported_as_such(mode):
    with (
        OneApiSimulator(HOSTS, password=PASSWORD, mode=mode) as sim,
        pytest.raises(OpenNebulaError) as caught,
    ):
        fetch_host_pool(endpoint_for(sim.url))
    assert isinstance(caught.value, OneProtocolError)
    message = str(caught.value)
    assert "not OpenNebula XML-RPC" in message and sim.url in message
    assert_secret_absent(caught.value)


def test_http_500_is_reported_with_status():
    with (
        OneApiSimulator(HOSTS, password=PASSWORD, mode="http500") as sim,
        pytest.raises(OneProtocolError) as caught,
    ):
        fetch_host_pool(endpoint_for(sim.url))
    assert "HTTP 500" in str(caught.value)
    assert_secret_absent(caught.value)


def test_other_xmlrpc_server_is_not_mistaken_for_opennebula():
    """An XML-RPC server that is not oned (the method is unknown there) gives a clear error."""
    import threading
    from xmlrpc.server import SimpleXMLRPCServer

    server = SimpleXMLRPCServer(("127.0.0.1", 0), logRequests=False)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/RPC2"
        with pytest.raises(OpenNebulaError) as caught:
            fetch_host_pool(endpoint_for(url))
    finally:
        server.shutdown()
        server.server_close()
    assert url in str(caught.value) and "one.hostpool.info" in str(caught.value)
    assert_secret_absent(caught.value)


def test_oneapi_protocol_env_does_not_divert_to_grpc(simulator, monkeypatch):
    monkeypatch.setenv("ONEAPI_PROTOCOL", "grpc")
    assert len(fetch_host_pool(endpoint_for(simulator.url))) == len(HOSTS)


# --------------------------------------------------------------------------- process mode


def read_line_within(stream, seconds: float) -> str:
    """Return one line from a pipe, or '' if none arrives in time (bounded wait)."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    try:
        if not selector.select(timeout=seconds):
            return ""
        return stream.readline()
    finally:
        selector.close()


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def test_simulator_as_a_process(tmp_path):
    hosts_file = tmp_path / "hosts.yml"
    write_atomically(hosts_file, yaml.safe_dump(HOSTS[:2]))
    password_file = tmp_path / "password"
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
            "--user",
            "oneadmin",
            "--password-file",
            str(password_file),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = read_line_within(process.stdout, 15)
        assert line.startswith("listening on http://127.0.0.1:"), line
        url = line.split()[-1]
        endpoint = endpoint_for(url)
        control = xmlrpc.client.ServerProxy(url)

        assert [host.name for host in fetch_host_pool(endpoint)] == ["hv2.example.org", "hv1"]
        assert control.sim.calls() == {"one.hostpool.info": 1}

        # the test bed adds a hypervisor by rewriting the file
        write_atomically(hosts_file, yaml.safe_dump([*HOSTS[:2], {"id": 30, "name": "hv9"}]))
        assert [host.id for host in fetch_host_pool(endpoint)] == [30, 4, 0]
        assert control.sim.calls() == {"one.hostpool.info": 2}

        with pytest.raises(OneAuthError):
            fetch_host_pool(endpoint_for(url, password="nope"))
        assert control.sim.reset() is True
        assert control.sim.calls() == {}
    finally:
        process.terminate()  # SIGTERM to this PID only
        try:
            out, err = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate(timeout=5)
    assert process.returncode == 0, err
    assert PASSWORD not in out + err + line
