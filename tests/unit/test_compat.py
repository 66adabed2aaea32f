"""tasks/compat.py against the library versions installed (requirements.txt pins them).

For every entry there: it still does its job, what it reaches into is still there with the
same signature, and the library behaviour it works around is still there. A failure names
the entry and says what changed: a private name gone, or an upstream bug fixed so that the
workaround is no longer needed.
"""

from __future__ import annotations

import contextlib
import http.server
import inspect
import io
import json
import socket
import subprocess
import sys
import threading
import xmlrpc.client
from unittest import mock

import pytest
from paramiko import SSHException, Transport

from tasks import compat

URL = "http://127.0.0.1:9/RPC2"  # nothing is sent there: the transports below answer themselves
SESSION = "oneadmin:compat-test-password"
WAIT_S = 10


def parameters(function) -> list[str]:
    return list(inspect.signature(function).parameters)


# =========================================================================== pyone


class CannedTransport(xmlrpc.client.Transport):
    """Answers every XML-RPC request with `reply` (or raises it), noting what was asked."""

    def __init__(self, reply):
        super().__init__()
        self.reply = reply
        self.requests: list[tuple] = []

    def request(self, host, handler, request_body, verbose=False):
        self.requests.append((host, handler, xmlrpc.client.loads(request_body)))
        if isinstance(self.reply, BaseException):
            raise self.reply
        return (self.reply,)


def test_one_server_is_still_needed_pyone_takes_no_transport_of_ours():
    import pyone

    try:
        pyone.OneServer(
            URL, session=SESSION, protocol="xmlrpc", transport=CannedTransport([True, "", 0])
        )
    except TypeError:
        return
    pytest.fail(
        "compat.one_server: pyone.OneServer now accepts transport=: pass the bounded transport "
        "there and stop replacing _ServerProxy__transport"
    )


def test_one_server_is_still_needed_pyones_own_transport_is_unbounded_and_follows_redirects(
    monkeypatch,
):
    import pyone
    import requests

    asked = {}

    class Stop(Exception):
        pass

    def post(url, **kwargs):
        asked.update(kwargs)
        raise Stop()

    monkeypatch.setattr(requests, "post", post)
    with pytest.raises(Stop):
        pyone.OneServer(URL, session=SESSION, protocol="xmlrpc").hostpool.info()
    assert "timeout" not in asked and asked.get("allow_redirects", True), (
        "compat.one_server: pyone's own transport now bounds its request or refuses redirects "
        f"({sorted(asked)}): the deploy's transport may no longer need to replace it"
    )


def test_one_server_puts_the_transport_where_serverproxy_uses_it():
    transport = CannedTransport([True, "<HOST_POOL/>", 0])
    server = compat.one_server(URL, SESSION, transport)
    assert server("transport") is transport, (
        "compat.one_server: xmlrpc.client.ServerProxy no longer keeps its transport in _ServerProxy__transport"
    )
    assert compat.raw_reply(server, "one.hostpool.info") == [True, "<HOST_POOL/>", 0]
    assert transport.requests == [("127.0.0.1:9", "/RPC2", ((SESSION,), "one.hostpool.info"))], (
        "compat.raw_reply: pyone's request no longer goes out as one.hostpool.info(session) through the transport"
    )


def test_raw_reply_reaches_steps_that_keep_their_signatures_and_fault_handling():
    import pyone
    from pyone.server_xrpc import OneServerXRPC

    assert parameters(OneServerXRPC._do_request) == ["self", "method", "params"], (
        "compat.raw_reply: pyone's OneServerXRPC._do_request changed its signature"
    )
    assert parameters(OneServerXRPC._cast_parms) == ["self", "params"], (
        "compat.raw_reply: pyone's OneServerXRPC._cast_parms changed its signature"
    )
    server = compat.one_server(
        URL, SESSION, CannedTransport(xmlrpc.client.Fault(1, "no such method"))
    )
    with pytest.raises(pyone.OneException, match="no such method"):
        compat.raw_reply(server, "one.hostpool.info")


def test_raw_reply_names_pyone_when_its_private_steps_are_gone():
    with pytest.raises(
        compat.UnsupportedLibraryVersion, match=r"pyone .*compat\.raw_reply.*requirements\.txt"
    ):
        compat.raw_reply(object(), "one.hostpool.info")


def test_pyone_requests_transport_still_has_what_the_bounded_transport_uses():
    transport_class = compat.pyone_requests_transport()
    assert issubclass(transport_class, xmlrpc.client.Transport)
    assert parameters(transport_class.request) == [
        "self",
        "host",
        "handler",
        "request_body",
        "verbose",
    ]
    transport = transport_class()
    transport.set_https(True)
    transport.set_https_verify("/etc/ssl/one-ca.pem")
    assert transport.use_https is True and transport.https_verify == "/etc/ssl/one-ca.pem", (
        "compat.pyone_requests_transport: set_https/set_https_verify no longer set use_https/https_verify"
    )
    assert transport.headers.get("Content-Type") == "text/xml", (
        "compat.pyone_requests_transport: pyone's transport no longer carries its request headers in .headers"
    )


def test_decode_xmlrpc_reply_decodes_as_xmlrpc_client_does():
    reply = [
        True,
        "<HOST_POOL><HOST><NAME>a&amp;b &lt;c&gt;</NAME></HOST></HOST_POOL>" * 50,
        0,
        [1, 2.5, {"key": "value"}, False],
    ]
    content = xmlrpc.client.dumps((reply,), methodresponse=True).encode("utf-8")
    assert compat.decode_xmlrpc_reply(content) == xmlrpc.client.loads(content)[0], (
        "compat.decode_xmlrpc_reply: xmlrpc.client.Unmarshaller no longer decodes as xmlrpc.client.loads"
    )
    fault = xmlrpc.client.dumps(xmlrpc.client.Fault(4, "refused"), methodresponse=True).encode(
        "utf-8"
    )
    with pytest.raises(xmlrpc.client.Fault, match="refused"):
        compat.decode_xmlrpc_reply(fault)


def test_decode_xmlrpc_reply_is_still_needed_xmlrpc_client_hands_text_over_in_pieces(monkeypatch):
    pieces = []
    real = xmlrpc.client.Unmarshaller.data
    monkeypatch.setattr(
        xmlrpc.client.Unmarshaller,
        "data",
        lambda self, text: pieces.append(text) or real(self, text),
    )
    content = xmlrpc.client.dumps(("a&amp;" * 1000,), methodresponse=True).encode("utf-8")
    xmlrpc.client.loads(content)
    assert len(pieces) > 100, (
        "compat.decode_xmlrpc_reply: xmlrpc.client now hands each run of text over at once: "
        "its own parser may do"
    )


# =========================================================================== requests, urllib3


@contextlib.contextmanager
def http_server():
    """A loopback HTTP server answering every request (as a server or as a proxy) with 200."""

    class Answer(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(WAIT_S)


def test_session_handing_new_sockets_to_sees_every_socket_direct_and_through_a_proxy():
    from urllib3.connection import HTTPConnection
    from urllib3.poolmanager import PoolManager

    assert parameters(HTTPConnection._new_conn) == ["self"], (
        "compat.session_handing_new_sockets_to: urllib3's HTTPConnection._new_conn changed its signature"
    )
    assert set(PoolManager().pool_classes_by_scheme) >= {"http", "https"}, (
        "compat.session_handing_new_sockets_to: urllib3's PoolManager no longer has pool_classes_by_scheme"
    )
    seen: list[socket.socket] = []
    with http_server() as (url, _port):
        session = compat.session_handing_new_sockets_to(seen.append)
        session.trust_env = False  # only the proxy named below
        try:
            assert session.get(url + "/direct", timeout=WAIT_S).text == "ok"
            assert (
                session.get(
                    "http://one.example.invalid/RPC2", proxies={"http": url}, timeout=WAIT_S
                ).text
                == "ok"
            )
        finally:
            session.close()
    assert len(seen) == 2 and all(isinstance(sock, socket.socket) for sock in seen), (
        f"compat.session_handing_new_sockets_to: urllib3 no longer makes its sockets in _new_conn ({seen})"
    )


# =========================================================================== paramiko, pyinfra: lost connections


@pytest.fixture(autouse=True)
def restored_afterwards(monkeypatch):
    """Whatever a test wraps is put back as it was (monkeypatch restores what it saw)."""
    from pyinfra.connectors.ssh import SSHConnector

    for owner, name in (
        (Transport, "open_channel"),
        (SSHConnector, "put_file"),
        (SSHConnector, "get_file"),
    ):
        monkeypatch.setattr(owner, name, getattr(owner, name))


def session_opened_while_the_peer_vanishes() -> None:
    """Opens an SSH session to an in-process paramiko server that goes away (its socket shut
    down) while it is answering the request, as a hypervisor powered off mid-run does."""
    import paramiko

    class Server(paramiko.ServerInterface):
        def __init__(self):
            self.asked = threading.Event()
            self.release = threading.Event()

        def get_allowed_auths(self, username):
            return "none"

        def check_auth_none(self, username):
            return paramiko.AUTH_SUCCESSFUL

        def check_channel_request(self, kind, chanid):
            self.asked.set()
            self.release.wait(WAIT_S)
            return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    ours, theirs = socket.socketpair()
    server = Server()
    server_side, client_side = Transport(theirs), Transport(ours)
    try:
        server_side.add_server_key(paramiko.ECDSAKey.generate())
        server_side.start_server(event=threading.Event(), server=server)
        client_side.start_client(timeout=WAIT_S)
        client_side.auth_none("oneadmin")

        def vanish():
            if server.asked.wait(WAIT_S):
                theirs.shutdown(socket.SHUT_RDWR)
            server.release.set()

        threading.Thread(target=vanish, daemon=True).start()
        client_side.open_session(timeout=WAIT_S)
    finally:
        server.release.set()
        client_side.close()
        server_side.close()
        ours.close()
        theirs.close()


def test_lost_connections_wrapper_is_still_needed_paramiko_raises_a_bare_eoferror(monkeypatch):
    monkeypatch.setattr(Transport, "open_channel", inspect.unwrap(Transport.open_channel))
    try:
        session_opened_while_the_peer_vanishes()
    except EOFError:
        return
    except SSHException as error:
        pytest.fail(
            "compat.report_lost_connections_as_host_failures: paramiko now raises SSHException "
            f"({error}) for a peer that vanished (paramiko/paramiko#385 fixed?): its open_channel "
            "wrapper may go"
        )
    pytest.fail("compat.report_lost_connections_as_host_failures: the vanished peer raised nothing")


def test_a_vanished_host_is_an_ssh_error_pyinfra_fails_that_host_for():
    compat.report_lost_connections_as_host_failures()
    with pytest.raises(SSHException, match="SSH connection lost: the host closed it"):
        session_opened_while_the_peer_vanishes()


def test_the_wrapping_is_done_once():
    from pyinfra.connectors.ssh import SSHConnector

    compat.report_lost_connections_as_host_failures()
    wrapped = (Transport.open_channel, SSHConnector.put_file, SSHConnector.get_file)
    compat.report_lost_connections_as_host_failures()
    assert (Transport.open_channel, SSHConnector.put_file, SSHConnector.get_file) == wrapped


def test_other_errors_pass_through_unchanged(monkeypatch):
    def refused(self, kind, *args, **kwargs):
        raise SSHException("Administratively prohibited")

    monkeypatch.setattr(Transport, "open_channel", refused)
    compat.report_lost_connections_as_host_failures()
    with pytest.raises(SSHException, match="Administratively prohibited"):
        Transport.open_channel(object.__new__(Transport), "session")


def test_an_upload_that_cannot_open_its_channel_fails_that_host_only(monkeypatch):
    """pyinfra's ConnectError from a file transfer on a lost connection is not among the
    errors pyinfra fails one host for: it becomes the SSHException that is."""
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.ssh import SSHConnector

    def no_sftp(self, *args, **kwargs):
        raise ConnectError("Unable to establish SFTP connection.")

    monkeypatch.setattr(SSHConnector, "put_file", no_sftp)
    monkeypatch.setattr(SSHConnector, "get_file", no_sftp)
    compat.report_lost_connections_as_host_failures()
    for method in (SSHConnector.put_file, SSHConnector.get_file):
        with pytest.raises(SSHException, match="Unable to establish SFTP connection"):
            method(object.__new__(SSHConnector), "src", "dest")


def run_operation_on_this_machine(operation, **global_arguments):
    """Runs `operation` through pyinfra's own executor on @local: (what escaped run_ops or
    None, the names of the hosts pyinfra failed)."""
    from pyinfra.api import Config, Inventory, State
    from pyinfra.api.connect import connect_all
    from pyinfra.api.exceptions import PyinfraError
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops

    state = State(Inventory((["@local"], {})), Config())
    connect_all(state)
    add_op(state, operation, **global_arguments)
    try:
        run_ops(state)
    except PyinfraError as error:
        if not state.failed_hosts:  # pyinfra stops once every host failed; anything else escaped
            return error, []
    except Exception as error:  # noqa: BLE001 - what escaped is the answer under test
        return error, [host.name for host in state.failed_hosts]
    return None, [host.name for host in state.failed_hosts]


def test_lost_connections_wrapper_is_still_needed_pyinfra_lets_connect_error_stop_the_run(
    monkeypatch,
):
    from pyinfra.api import FileUploadCommand, operation
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.local import LocalConnector

    @operation(is_idempotent=False)
    def upload():
        yield FileUploadCommand(io.BytesIO(b"never written"), "/nonexistent/compat-test")

    def raising(error):
        def put_file(self, *args, **kwargs):
            raise error

        return put_file

    monkeypatch.setattr(LocalConnector, "put_file", raising(SSHException("connection lost")))
    escaped, failed = run_operation_on_this_machine(upload)
    assert escaped is None and failed == ["@local"], (
        "compat.report_lost_connections_as_host_failures: pyinfra no longer fails one host for an "
        f"SSHException ({escaped!r}), the error the wrappers raise"
    )
    monkeypatch.setattr(
        LocalConnector, "put_file", raising(ConnectError("Unable to establish SFTP connection."))
    )
    escaped, failed = run_operation_on_this_machine(upload)
    assert isinstance(escaped, ConnectError), (
        "compat.report_lost_connections_as_host_failures: pyinfra now fails one host for its own "
        f"ConnectError (failed: {failed}): the put_file/get_file wrappers may go"
    )


# =========================================================================== pyinfra


def test_connector_arguments_reach_a_callback_of_the_running_operation():
    from pyinfra.api import FunctionCommand, operation

    seen: list[dict] = []

    def callback(state, host):
        seen.append(compat.connector_arguments_of_running_operation(state, host))
        return True

    @operation(is_idempotent=False)
    def calls_back():
        yield FunctionCommand(callback, (), {})

    escaped, failed = run_operation_on_this_machine(calls_back, _sudo=True, _env={"LC_ALL": "C"})
    assert escaped is None and failed == [], escaped
    assert (
        len(seen) == 1 and seen[0].get("_sudo") is True and seen[0].get("_env") == {"LC_ALL": "C"}
    ), (
        "compat.connector_arguments_of_running_operation: pyinfra's executor no longer keeps the running "
        f"operation's arguments where it is read ({seen})"
    )


def test_connector_arguments_outside_an_operation_are_none():
    from pyinfra.api import Config, Inventory, State

    inventory = Inventory((["hv1"], {}))
    state = State(inventory, Config())
    assert compat.connector_arguments_of_running_operation(state, inventory.get_host("hv1")) == {}


def test_connector_arguments_are_still_needed_pyinfra_calls_back_without_them():
    from pyinfra.api import Config, FunctionCommand, Inventory, State

    calls = []

    def callback(state, host, *args, **kwargs):
        calls.append((args, kwargs))
        return True

    inventory = Inventory((["hv1"], {}))
    state = State(inventory, Config())
    FunctionCommand(callback, (), {}).execute(state, inventory.get_host("hv1"), {"_sudo": True})
    assert calls == [((), {})], (
        "compat.connector_arguments_of_running_operation: pyinfra now hands a callback its connector "
        f"arguments ({calls}): use those instead"
    )


def test_run_is_dry_reads_the_flag_as_pyinfras_command_line_does():
    assert compat.run_is_dry(["pyinfra", "--dry", "inventory.py", "deploy.py"])
    assert compat.run_is_dry(["pyinfra", "inventory.py", "deploy.py", "--dry"])
    assert not compat.run_is_dry(["pyinfra", "-y", "inventory.py", "deploy.py"])
    assert not compat.run_is_dry(["--dry"])  # the program's own name is not an argument


def test_run_is_dry_is_still_needed_pyinfra_keeps_the_flag_to_its_command_line():
    # Read in a child: importing pyinfra_cli monkey-patches the interpreter for gevent, which
    # the tests that run after this one in the same process must not inherit.
    probe = (
        "import json\n"
        "from pyinfra.api import Config\n"
        "from pyinfra_cli.cli import cli\n"
        "options = sorted(o for p in cli.params for o in getattr(p, 'opts', ()))\n"
        "held = [name for name in dir(Config()) if 'dry' in name.lower()]\n"
        "print(json.dumps({'options': options, 'held': held}))\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    found = json.loads(child.stdout.strip().splitlines()[-1])
    assert "--dry" in found["options"], (
        "compat.run_is_dry: pyinfra's command line no longer has --dry"
    )
    assert not found["held"], (
        f"compat.run_is_dry: pyinfra's Config now holds the dry flag ({found['held']}): "
        "read it there instead of the command line"
    )


def test_parse_image_reference_reads_references_as_the_deploy_expects():
    bare = compat.parse_image_reference("hubblo/scaphandre")
    assert (bare.tag, bare.digest, bare.registry_host, bare.registry_port) == (
        "latest",
        None,
        None,
        None,
    ), (
        f"compat.parse_image_reference: pyinfra no longer reads a bare reference as tag 'latest' ({bare})"
    )
    full = compat.parse_image_reference(
        "registry.example:5000/energy/scaphandre:1.0.2@sha256:" + "a" * 64
    )
    assert (full.tag, full.digest, full.registry_host, full.registry_port) == (
        "1.0.2",
        "sha256:" + "a" * 64,
        "registry.example",
        5000,
    ), f"compat.parse_image_reference: {full}"
    with pytest.raises(ValueError, match="cannot be empty"):
        compat.parse_image_reference("")


@pytest.mark.parametrize(
    "existing",
    [[], [{"Id": "c0ffee", "State": {"Status": "exited"}}]],
    ids=["no container", "a stopped container"],
)
def test_docker_container_absent_is_still_needed_pyinfra_starts_what_it_removes(existing):
    from pyinfra.api import Config, Host, Inventory, State
    from pyinfra.context import ctx_host, ctx_state
    from pyinfra.operations import docker

    inventory = Inventory((["hv1"], {}))
    state = State(inventory, Config())
    host = inventory.get_host("hv1")

    def commands(**arguments) -> list[str]:
        with (
            ctx_state.use(state),
            ctx_host.use(host),
            mock.patch.object(Host, "get_fact", return_value=existing),
        ):
            return [
                str(command)
                for command in docker.container._inner(container="scaphandre", **arguments)
            ]

    with_default_start = commands(present=False)
    assert any("start" in command for command in with_default_start), (
        "compat.DOCKER_CONTAINER_ABSENT: pyinfra's docker.container no longer starts a container it "
        f"removes ({with_default_start}): start=False may go"
    )
    removed = commands(**compat.DOCKER_CONTAINER_ABSENT)
    assert not any("start" in command for command in removed), removed
    assert bool(removed) == bool(existing), removed


# =========================================================================== ruamel.yaml, ruamel.yaml.clib


def test_libyaml_parser_is_the_private_parser_ruamel_uses_itself():
    import ruamel.yaml.main

    parser = compat.libyaml_parser()
    assert parser is not None, "ruamel.yaml.clib is pinned in requirements.txt: install it"
    assert ruamel.yaml.main.CParser is parser, (
        "compat.libyaml_parser: ruamel.yaml now takes libyaml's parser from elsewhere than _ruamel_yaml"
    )
    for method in ("check_event", "peek_event", "get_event", "dispose"):
        assert callable(getattr(parser, method, None)), (
            f"compat.libyaml_parser: CParser has no {method}() any more"
        )


def test_libyaml_composer_is_still_needed_ruamels_round_trip_loader_parses_in_python():
    from ruamel.yaml import YAML

    assert YAML(typ="rt").Parser is not compat.libyaml_parser(), (
        "compat.compose_with_libyaml: ruamel.yaml's round-trip loader now parses with libyaml itself: "
        "the libyaml composer may go"
    )


def test_composer_steps_compat_overrides_keep_their_signatures():
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.resolver import Resolver

    expected = {
        Composer.__init__: ["self", "loader"],
        Composer.compose_node: ["self", "parent", "index"],
        Composer.compose_scalar_node: ["self", "anchor"],
        Composer.compose_document: ["self"],
        Resolver.resolve: ["self", "kind", "value", "implicit"],
    }
    for method, names in expected.items():
        assert parameters(method) == names, (
            f"compat._composers: ruamel.yaml's {method.__qualname__} changed its signature"
        )
    for name in ("parser", "resolver"):
        assert isinstance(inspect.getattr_static(Composer, name), property), (
            f"compat._composers: ruamel.yaml's Composer.{name} is no longer a property a plain attribute can stand for"
        )


SAMPLE = """\
defaults: &defaults
  scrape_interval: 15s
  honor_labels: true
scrape_configs:
  - job_name: 'node'
    <<: *defaults
    metrics_path: >-
      /first
      /second
    static_configs:
      - targets: ["localhost:9100", 'db:9100']
  - *defaults
"""


def composed(root, alias_spans) -> tuple:
    """Every node's kind, tag, value, style and positions, and the alias spans by position."""
    from ruamel.yaml.nodes import MappingNode, ScalarNode

    seen: dict[int, int] = {}
    rows: list = []

    def walk(node) -> int:
        if id(node) in seen:
            return seen[id(node)]
        seen[id(node)] = number = len(rows)
        rows.append(None)
        if isinstance(node, ScalarNode):
            content = node.value
        elif isinstance(node, MappingNode):
            content = tuple((walk(key), walk(value)) for key, value in node.value)
        else:
            content = tuple(walk(item) for item in node.value)
        rows[number] = (
            type(node).__name__,
            str(node.tag),
            content,
            node.style if isinstance(node, ScalarNode) else node.flow_style,
            node.start_mark.index,
            node.end_mark.index,
        )
        return number

    walk(root)
    return tuple(rows), sorted(alias_spans.values())


def test_libyaml_composes_what_ruamel_composes_with_the_alias_spans():
    through_libyaml = compat.compose_with_libyaml(SAMPLE)
    assert through_libyaml is not None, "compat.compose_with_libyaml gave way on a plain file"
    nodes, spans = composed(*through_libyaml)
    assert (nodes, spans) == composed(*compat.compose_with_ruamel(SAMPLE)), (
        "compat._composers: libyaml and ruamel.yaml's own parser no longer compose the same nodes"
    )
    assert [SAMPLE[start:end] for start, end in spans] == ["*defaults", "*defaults"], spans
    assert "/first /second" in [row[2] for row in nodes], "folded value not read as YAML folds it"


def test_fold_marks_are_still_there_to_take_out():
    from ruamel.yaml import YAML

    text = "a: >-\n  x\n  y\n"
    assert "\a" in YAML(typ="rt").compose(text).value[0][1].value, (
        "compat._composers: ruamel.yaml no longer marks folds with BEL in composed nodes: "
        "the alias-recording composer's replace may go"
    )
    for accelerated in (True, False):
        assert compat.compose_yaml(text, accelerated=accelerated)[0].value[0][1].value == "x y"


def test_libyaml_still_calls_a_plain_style_empty():
    parser = compat.libyaml_parser()("a: b\n")
    try:
        styles = []
        while parser.check_event():
            event = parser.get_event()
            if type(event).__name__ == "ScalarEvent":
                styles.append(event.style)
    finally:
        parser.dispose()
    assert styles == ["", ""], (
        f"compat._composers: libyaml's plain scalar style is now {styles}: its fix-up may go"
    )
    assert compat.compose_with_libyaml("a: b\n")[0].value[0][1].style is None


def test_resolved_tags_still_have_the_suffix_they_are_shared_by():
    from ruamel.yaml.nodes import ScalarNode
    from ruamel.yaml.resolver import Resolver

    resolver = Resolver()
    integer, other_integer, text = (
        resolver.resolve(ScalarNode, value, (True, False)) for value in ("1", "2", "a")
    )
    assert (
        isinstance(integer.suffix, str) and integer.suffix == other_integer.suffix != text.suffix
    ), (
        f"compat._composers: ruamel.yaml's Tag no longer has the suffix its resolver interns by ({integer!r})"
    )
    assert (str(integer), str(text)) == ("tag:yaml.org,2002:int", "tag:yaml.org,2002:str")


@pytest.mark.parametrize("text", ["a: 1\t# comment\n", "a: 1\t\n", "a:\t1\n"])
def test_separating_tabs_are_still_refused_by_ruamel(text):
    from ruamel.yaml import YAML
    from ruamel.yaml.scanner import ScannerError

    try:
        YAML(typ="rt").compose(text)
    except ScannerError:
        pass
    else:
        pytest.fail(
            f"compat.compose_yaml: ruamel.yaml now reads the tab in {text!r}: "
            "its tab replacement may go"
        )
    root, _ = compat.compose_yaml(text)
    value = root.value[0][1]
    assert value.value == "1" and text[value.start_mark.index] == "1", "positions are the file's"


@contextlib.contextmanager
def events_of(text: str):
    parser = compat.libyaml_parser()(text)
    try:
        yield parser
    finally:
        parser.dispose()


def test_libyaml_still_reads_differently_where_the_libyaml_composer_gives_way():
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    flow = "targets: [localhost:9090]\n"
    assert YAML(typ="rt").compose(flow) is not None
    with events_of(flow) as parser:
        try:
            while parser.check_event():
                parser.get_event()
        except YAMLError:
            pass
        else:
            pytest.fail("compat._composers: libyaml now reads [localhost:9090] as YAML 1.2 does")
    tagged = "x: !!map &job\n  k: v\n"
    ruamel_start = YAML(typ="rt").compose(tagged).value[0][1].start_mark.index
    with events_of(tagged) as parser:
        events = []
        while parser.check_event():
            events.append(parser.get_event())
    libyaml_start = next(
        event.start_mark.index for event in events if getattr(event, "anchor", None)
    )
    assert ruamel_start != libyaml_start, (
        "compat._composers: libyaml and ruamel.yaml now start a tagged, anchored node at the same place: "
        "the libyaml composer's give-up for it may go"
    )
