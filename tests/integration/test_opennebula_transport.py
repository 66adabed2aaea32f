"""The OpenNebula client's transport, over real sockets on 127.0.0.1: redirects refused,
credentials in the endpoint URL never shown, HTTPS verified (with one_xmlrpc_ca_file or
REQUESTS_CA_BUNDLE), the whole call bounded by the timeout even against a server that
answers one byte at a time, and the error class telling an unreachable API from one
that answered wrongly (which decides whether the monitor-database fallback may run)."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import socket
import socketserver
import ssl
import threading
import time
import traceback
from contextlib import contextmanager

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyinfra.api import State
from pyinfra.context import ctx_state

from tasks.opennebula import OpenNebulaLookupError, host_pool
from tasks.opennebula.client import (
    OneEndpoint,
    OneProtocolError,
    OneTlsError,
    OneUnreachableError,
    fetch_host_pool,
)
from tasks.opennebula.pool import OpenNebulaError
from tests.doubles.one_api_simulator import OneApiSimulator

PASSWORD = "Transport-Pa55-never-shown"
PROXY_PASSWORD = "Proxy-Pa55-never-shown"
HOSTS = [{"id": 3, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2}]


def endpoint_for(url: str, timeout: float = 5.0, ca_file: str | None = None) -> OneEndpoint:
    return OneEndpoint(
        url=url,
        session=f"oneadmin:{PASSWORD}",
        timeout=timeout,
        auth_source="one_auth_file (/test/one_auth)",
        ca_file=ca_file,
    )


def assert_no_secret(error: BaseException, *secrets: str) -> None:
    for text in (str(error), repr(error)):
        for secret in (PASSWORD, PROXY_PASSWORD, *secrets):
            assert secret not in text
    assert "\n" not in str(error)


# --------------------------------------------------------------------------- misbehaving servers (test doubles)


class _QuietHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002
        pass


@contextmanager
def loopback_server(handler_class):
    """TEST DOUBLE: an HTTP server on 127.0.0.1 with the given handler; yields (url, requests seen)."""
    seen: list[bytes] = []

    class Handler(handler_class):
        def do_POST(self):
            length = int(self.headers.get("content-length", 0) or 0)
            seen.append(self.rfile.read(length) if length else b"")
            self.answer()

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True
        block_on_close = False

    server = Server(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
    )
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/RPC2", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def redirecting_to(location: str, status: int):
    class Redirect(_QuietHandler):
        def answer(self):
            self.send_response(status)
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect


def dripping(part: str, seconds_per_byte: float = 0.2, total_s: float = 12.0):
    """Answers one byte at a time: the status line and headers (part="headers") or,
    after prompt headers, the body (part="body"). Bounded: it gives up after total_s."""

    class Drip(_QuietHandler):
        def answer(self):
            body = b"<?xml version='1.0'?><methodResponse>" + b" " * 4096
            head = (
                b"HTTP/1.0 200 OK\r\nContent-Type: text/xml\r\n"
                b"X-Padding: "
                + b"x" * 400
                + b"\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
            )
            slow, fast = (head, b"") if part == "headers" else (body, head)
            deadline = time.monotonic() + total_s
            try:
                self.wfile.write(fast)
                self.wfile.flush()
                for byte in slow:
                    if time.monotonic() > deadline:
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(seconds_per_byte)
            except OSError:  # the client gave up: what the test wants
                return

    return Drip


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_refused_and_the_credentials_never_follow_it(status):
    with loopback_server(redirecting_to("http://unused", status)) as (target_url, target_seen):
        location = target_url.replace("http://", f"http://eve:{PROXY_PASSWORD}@")
        with (
            loopback_server(redirecting_to(location, status)) as (url, seen),
            pytest.raises(OneProtocolError) as caught,
        ):
            fetch_host_pool(endpoint_for(url))
    assert len(seen) == 1 and target_seen == [], "the redirect must not be followed"
    message = str(caught.value)
    port = target_url.split(":")[2].split("/")[0]
    assert f"redirect (HTTP {status}) to 127.0.0.1:{port}, which is not followed" in message
    assert "eve" not in message and "/RPC2 " not in message.split("to 127.0.0.1")[1]
    assert_no_secret(caught.value)


# --------------------------------------------------------------------------- credentials in the URL


def test_credentials_written_into_one_xmlrpc_are_never_shown():
    url = f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:{closed_port()}/RPC2"
    with pytest.raises(OneUnreachableError) as caught:
        fetch_host_pool(endpoint_for(url))
    assert "http://***@127.0.0.1:" in str(caught.value) and "proxyuser" not in str(caught.value)
    assert_no_secret(caught.value)
    assert PROXY_PASSWORD not in repr(endpoint_for(url)) and "proxyuser" not in repr(
        endpoint_for(url)
    )


def test_credentials_in_one_xmlrpc_reach_the_server_as_basic_auth():
    """The user part is not dropped: a proxy in front of oned gets it (and only it)."""
    authorization = []

    class Recorder(_QuietHandler):
        def answer(self):
            authorization.append(self.headers.get("Authorization"))
            self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with loopback_server(Recorder) as (url, _), pytest.raises(OneProtocolError, match="HTTP 500"):
        fetch_host_pool(endpoint_for(url.replace("http://", f"http://proxyuser:{PROXY_PASSWORD}@")))
    assert authorization and authorization[0].startswith("Basic ")


# --------------------------------------------------------------------------- HTTPS


@pytest.fixture(scope="module")
def self_signed(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (its own CA), as PEM files."""
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oned test double")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return cert_file, context


@pytest.fixture
def https_simulator(self_signed):
    _, context = self_signed
    with OneApiSimulator(HOSTS, password=PASSWORD, tls_context=context) as simulator:
        yield simulator


def test_a_self_signed_certificate_is_a_tls_failure_naming_the_setting(
    https_simulator, monkeypatch
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with pytest.raises(OneTlsError) as caught:
        fetch_host_pool(endpoint_for(https_simulator.url))
    message = str(caught.value)
    assert message.startswith(f"OpenNebula API at {https_simulator.url}: TLS verification failed")
    assert "self-signed certificate" in message and "one_xmlrpc_ca_file" in message
    assert "could not be reached" not in message
    assert_no_secret(caught.value)


def test_one_xmlrpc_ca_file_trusts_the_servers_ca(https_simulator, self_signed, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    hosts = fetch_host_pool(endpoint_for(https_simulator.url, ca_file=str(self_signed[0])))
    assert [host.id for host in hosts] == [3]


def test_requests_ca_bundle_is_honoured(https_simulator, self_signed, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(self_signed[0]))
    assert [host.id for host in fetch_host_pool(endpoint_for(https_simulator.url))] == [3]


# --------------------------------------------------------------------------- the whole call within the timeout


@pytest.mark.parametrize("part", ["headers", "body"])
def test_a_server_answering_one_byte_at_a_time_is_cut_off_at_the_timeout(part):
    with loopback_server(dripping(part)) as (url, seen):
        started = time.monotonic()
        with pytest.raises(OneUnreachableError) as caught:
            fetch_host_pool(endpoint_for(url, timeout=1.5))
        elapsed = time.monotonic() - started
    assert seen, "the request reached the server"
    assert 1.4 <= elapsed < 3.0, f"the call took {elapsed:.1f}s for a 1.5 s timeout"
    assert "did not answer within 1.5 s" in str(caught.value)
    assert_no_secret(caught.value)


def test_a_fast_answer_is_not_cut_by_the_watchdog():
    """The timer is cancelled with the call: a later call on the same thread is unaffected."""
    with OneApiSimulator(HOSTS, password=PASSWORD) as simulator:
        for _ in range(3):
            assert len(fetch_host_pool(endpoint_for(simulator.url, timeout=0.5))) == 1
        time.sleep(0.7)
        assert len(fetch_host_pool(endpoint_for(simulator.url, timeout=0.5))) == 1


# --------------------------------------------------------------------------- what the fallback may cover


@pytest.fixture
def auth_file(tmp_path):
    path = tmp_path / "one_auth"
    path.write_text(f"oneadmin:{PASSWORD}\n")
    return str(path)


def lookup_error(url: str, auth_file: str, timeout: float = 2) -> OpenNebulaLookupError:
    with ctx_state.use(State()), pytest.raises(OpenNebulaLookupError) as caught:
        host_pool(url, auth_file, timeout)
    assert_no_secret(caught.value)
    return caught.value


def test_a_refused_connection_and_a_hanging_api_count_as_unreachable(auth_file):
    assert lookup_error(f"http://127.0.0.1:{closed_port()}/RPC2", auth_file).api_unreachable
    with OneApiSimulator(HOSTS, password=PASSWORD, mode="hang", hang_s=4) as simulator:
        assert lookup_error(simulator.url, auth_file, timeout=1).api_unreachable


@pytest.mark.parametrize(
    "status, unreachable", [(502, True), (503, True), (504, True), (500, False), (404, False)]
)
def test_only_a_gateway_saying_oned_is_down_counts_as_unreachable(auth_file, status, unreachable):
    class Status(_QuietHandler):
        def answer(self):
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    with loopback_server(Status) as (url, _):
        error = lookup_error(url, auth_file)
    assert error.api_unreachable is unreachable and f"HTTP {status}" in str(error)


@pytest.mark.parametrize("mode", ["garbage", "html"])
def test_a_reply_that_is_not_xml_rpc_is_not_unreachable(auth_file, mode):
    with OneApiSimulator(HOSTS, password=PASSWORD, mode=mode) as simulator:
        assert not lookup_error(simulator.url, auth_file).api_unreachable


def test_wrong_credentials_are_not_unreachable(tmp_path):
    wrong = tmp_path / "wrong_auth"
    wrong.write_text("oneadmin:wrong-password\n")
    with OneApiSimulator(HOSTS, password=PASSWORD) as simulator:
        error = lookup_error(simulator.url, str(wrong))
    assert not error.api_unreachable and "refused the credentials" in str(error)


def test_a_tls_failure_is_not_unreachable(https_simulator, auth_file, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    assert not lookup_error(https_simulator.url, auth_file).api_unreachable


# --------------------------------------------------------------------------- secrets, as a property over loopback


@pytest.fixture(scope="module")
def shared_simulator():
    with OneApiSimulator(HOSTS, password=PASSWORD, hang_s=3) as simulator:
        yield simulator


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    password=st.text(alphabet="abcdefghijkLMNOP0123456789-_.:", min_size=6, max_size=20).map(
        lambda t: "Pw9" + t
    ),
    proxy_password=st.text(alphabet="abcdefghijkLMNOP0123456789-_.", min_size=6, max_size=20).map(
        lambda t: "Px9" + t
    ),
    mode=st.sampled_from(["ok", "garbage", "html", "http500", "hang"]),
)
def test_no_answer_of_the_simulator_shows_a_secret(
    shared_simulator, password, proxy_password, mode
):
    """The simulator knows PASSWORD only: every generated password is refused, and each
    fault mode answers its own way; nothing shown holds either secret."""
    url = shared_simulator.url.replace("http://", f"http://proxy:{proxy_password}@")
    endpoint = OneEndpoint(
        url=url,
        session=f"oneadmin:{password}",
        timeout=1,
        auth_source="one_auth_file (/test/one_auth)",
    )
    shared_simulator.set_mode(mode)
    try:
        with pytest.raises(OpenNebulaError) as caught:
            fetch_host_pool(endpoint)
    finally:
        shared_simulator.set_mode("ok")
    for text in (
        str(caught.value),
        repr(caught.value),
        "".join(traceback.format_exception(caught.value)),
        repr(endpoint),
    ):
        assert password not in text and proxy_password not in text
