"""The OpenNebula client never lets a secret out (tasks/opennebula/client.py), as properties:
for any password, any credentials written into the endpoint URL and any failure the
transport can meet — simulated here without a network, by a stand-in for requests'
transport adapter that fails, echoes the request (which carries the session) or
redirects — no exception text, repr or printed traceback holds a secret."""

from __future__ import annotations

import traceback
import xmlrpc.client

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.opennebula.client import OneEndpoint, fetch_host_pool, resolve_endpoint
from tasks.opennebula.pool import OpenNebulaError

# Secrets carry a prefix no message of ours holds, so a hit is a leak, not a coincidence.
SAFE = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.!~*+,;="
passwords = st.text(alphabet=SAFE + ":", min_size=6, max_size=24).map(lambda text: "Pw9" + text)
proxy_passwords = st.text(alphabet=SAFE, min_size=6, max_size=24).map(lambda text: "Px9" + text)


def visible_texts(error: BaseException) -> list[str]:
    return [str(error), repr(error), "".join(traceback.format_exception(error))]


def assert_hidden(error: BaseException, *secrets: str) -> None:
    for text in visible_texts(error):
        for secret in secrets:
            assert secret not in text, f"secret shown in: {text[:300]}"


def _response(
    request, status: int, body: bytes = b"", headers: dict | None = None, reason: str = ""
) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response._content = body
    response.headers.update(headers or {})
    response.reason = reason
    response.url = request.url
    response.request = request
    return response


def _fault(request) -> bytes:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return xmlrpc.client.dumps(
        xmlrpc.client.Fault(1, f"cannot parse {body}"), methodresponse=True
    ).encode()


def _oned_failure(request) -> bytes:
    body = request.body.decode() if isinstance(request.body, bytes) else request.body
    return xmlrpc.client.dumps(
        ([False, f"[one.hostpool.info] not allowed: {body}", 0x0200, -1, 0],), methodresponse=True
    ).encode()


def _unexpected(request, secret_url):
    raise RuntimeError(f"unexpected for {secret_url}: {request.body!r}")


# How the stand-in transport answers: each sees the prepared request (URL with its user part,
# body holding the session) and puts them wherever a careless client would show them.
FAILURES = {
    "refused": lambda request: (_ for _ in ()).throw(
        requests.ConnectionError(f"refused {request.url} {request.body!r}")
    ),
    "timeout": lambda request: (_ for _ in ()).throw(
        requests.Timeout(f"timed out {request.url} {request.body!r}")
    ),
    "tls": lambda request: (_ for _ in ()).throw(
        requests.exceptions.SSLError(f"bad cert {request.url}")
    ),
    "other-request-error": lambda request: (_ for _ in ()).throw(
        requests.exceptions.InvalidURL(request.url)
    ),
    "unexpected": lambda request: _unexpected(request, request.url),
    "echo": lambda request: _response(request, 200, request.body),
    "fault": lambda request: _response(request, 200, _fault(request)),
    "oned-failure": lambda request: _response(request, 200, _oned_failure(request)),
    "redirect": lambda request: _response(
        request, 307, headers={"Location": request.url + "?" + str(request.body)}
    ),
    "http500": lambda request: _response(request, 500, request.body, reason=str(request.body)),
    "gateway": lambda request: _response(request, 503, request.body, reason=request.url),
}


@pytest.fixture
def stand_in_transport(monkeypatch):
    """Replaces requests' HTTP adapter (what sends bytes) by the chosen failure."""
    chosen = {}
    monkeypatch.setattr(
        requests.adapters.HTTPAdapter,
        "send",
        lambda self, request, **kwargs: FAILURES[chosen["failure"]](request),
    )
    return chosen


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    password=passwords,
    proxy_password=proxy_passwords,
    user=st.sampled_from(["oneadmin", "serveradmin"]),
    failure=st.sampled_from(sorted(FAILURES)),
    scheme=st.sampled_from(["http", "https"]),
    with_proxy_credentials=st.booleans(),
)
def test_no_failure_of_the_call_shows_a_secret(
    stand_in_transport, password, proxy_password, user, failure, scheme, with_proxy_credentials
):
    userinfo = f"proxy:{proxy_password}@" if with_proxy_credentials else ""
    endpoint = OneEndpoint(
        url=f"{scheme}://{userinfo}one.example.test:2633/RPC2",
        session=f"{user}:{password}",
        timeout=5,
        auth_source="one_auth_file (/test/one_auth)",
    )
    stand_in_transport["failure"] = failure
    with pytest.raises(OpenNebulaError) as caught:
        fetch_host_pool(endpoint)
    assert_hidden(caught.value, password, proxy_password, f"proxy:{proxy_password}")
    assert "\n" not in str(caught.value)
    assert_hidden(OpenNebulaError(repr(endpoint)), password, proxy_password)


@settings(max_examples=150, deadline=None)
@given(
    password=passwords,
    proxy_password=proxy_passwords,
    prefix=st.sampled_from(["", "\ufeff", " "]),
    url=st.sampled_from(
        ["http://{u}[::1/RPC2", "http://{u}h:x/RPC2", "ftp://{u}h/RPC2", "http://{u}h:2633/RPC2"]
    ),
    content=st.sampled_from(["{p}", "user:{p}", "\xff{p}", "user:{p}\n", ":{p}"]),
    timeout=st.sampled_from([None, "soon", 0, 5]),
)
def test_resolving_any_endpoint_never_shows_a_secret(
    tmp_path_factory, password, proxy_password, prefix, url, content, timeout
):
    auth_file = tmp_path_factory.mktemp("auth") / "one_auth"
    auth_file.write_bytes(
        (prefix + content.format(p=password)).encode("utf-8", "surrogateescape")
        if "\xff" not in content
        else b"\xff" + password.encode()
    )
    one_xmlrpc = url.format(u=f"proxy:{proxy_password}@")
    try:
        endpoint = resolve_endpoint(
            one_xmlrpc=one_xmlrpc, one_auth_file=str(auth_file), timeout=timeout, environ={}
        )
    except OpenNebulaError as error:
        assert_hidden(error, password, proxy_password)
        assert "\n" not in str(error)
    else:
        assert_hidden(OpenNebulaError(repr(endpoint)), password, proxy_password)
