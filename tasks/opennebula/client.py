"""The OpenNebula XML-RPC API, from the machine running pyinfra: where it is, with which
credentials, and the one `one.hostpool.info` call a run makes (through pyone).

Guarantees:
- Endpoint and credentials follow OpenNebula's own (Ruby client) conventions, with explicit
  values from group data taking precedence.
- The session secret ("user:password") never appears in a repr, a message, or a chained
  exception: every error raised here is built from our own text plus redacted server text.
- `fetch_host_pool` makes exactly one XML-RPC call, whatever the number of inventory hosts.
"""

from __future__ import annotations

import os
import re
import socket
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field

from tasks.opennebula.pool import HOST_STATE_NAMES, HostPool, OneHost, OpenNebulaError

DEFAULT_XMLRPC_URL = "http://localhost:2633/RPC2"
DEFAULT_TIMEOUT_S = 30.0
# OpenNebula's last-resort credentials file (oneadmin's home on the frontend). A module
# constant so tests can point it elsewhere; resolve_endpoint also takes it as a parameter.
SYSTEM_ONE_AUTH_FILE = "/var/lib/one/.one/one_auth"

_FIX_ENDPOINT = "check ONE_XMLRPC / one_xmlrpc and that oned is running"
_FIX_NOT_XMLRPC = (
    "check that ONE_XMLRPC / one_xmlrpc points to oned's XML-RPC endpoint "
    "(e.g. http://FRONTEND:2633/RPC2), not to Sunstone or a proxy page"
)


@dataclass(frozen=True)
class OneEndpoint:
    """Where and how to reach OpenNebula. repr/str never show the session secret."""

    url: str
    session: str = field(repr=False)
    timeout: float
    auth_source: str

    @property
    def user(self) -> str:
        """The OpenNebula user name (the part of the session before the first colon)."""
        return self.session.split(":", 1)[0]


class OneAuthError(OpenNebulaError):
    """Credentials missing, unreadable, malformed, or rejected by the API."""


class OneUnreachableError(OpenNebulaError):
    """The API could not be talked to: refused, timed out, DNS, or not XML-RPC."""


# --------------------------------------------------------------------------- endpoint


def resolve_endpoint(*, one_xmlrpc: str | None = None, one_auth_file: str | None = None,
                     timeout: float | str | None = None,
                     environ: Mapping[str, str] = os.environ, home: str | None = None,
                     system_auth_file: str | None = None) -> OneEndpoint:
    """Return the endpoint to use, following OpenNebula's conventions.

    Explicit arguments (group data) win; otherwise $ONE_XMLRPC / $ONE_AUTH /
    $ONE_XMLRPC_TIMEOUT, then OpenNebula's defaults. Raises OneAuthError or
    OpenNebulaError with the fix when something is missing or malformed.
    """
    url = _resolve_url(one_xmlrpc, environ)
    auth_path, auth_source = _resolve_auth_file(one_auth_file, environ, home, system_auth_file)
    session = _read_session(auth_path, auth_source)
    return OneEndpoint(url=url, session=session,
                       timeout=_resolve_timeout(timeout, environ), auth_source=auth_source)


def _resolve_url(one_xmlrpc: str | None, environ: Mapping[str, str]) -> str:
    """Return an http(s) URL from the argument, $ONE_XMLRPC or the default."""
    if one_xmlrpc:
        url, origin = one_xmlrpc.strip(), "one_xmlrpc"
    elif environ.get("ONE_XMLRPC", "").strip():
        url, origin = environ["ONE_XMLRPC"].strip(), "$ONE_XMLRPC"
    else:
        return DEFAULT_XMLRPC_URL
    if not re.match(r"^https?://[^/\s]+", url):
        raise OpenNebulaError(
            f"{origin} is {url!r}, not an http(s) URL: set it to oned's XML-RPC endpoint, "
            f"e.g. {DEFAULT_XMLRPC_URL}")
    return url


def _resolve_auth_file(one_auth_file: str | None, environ: Mapping[str, str],
                       home: str | None, system_auth_file: str | None) -> tuple[str, str]:
    """Return (path, human description) of the credentials file to read.

    An explicitly named file ($ONE_AUTH or one_auth_file) must exist: silently using
    another identity would be worse than failing.
    """
    if one_auth_file:
        path = os.path.expanduser(one_auth_file)
        if not os.path.isfile(path):
            raise OneAuthError(
                f"one_auth_file {path} does not exist or is not a file: "
                "fix one_auth_file in group data (a file holding user:password)")
        return path, f"one_auth_file ({path})"
    env_path = environ.get("ONE_AUTH", "")
    if env_path:
        if not os.path.isfile(env_path):
            raise OneAuthError(
                f"$ONE_AUTH names {env_path}, which does not exist or is not a file: "
                "fix or unset ONE_AUTH (it must name a file holding user:password)")
        return env_path, f"$ONE_AUTH ({env_path})"
    home_dir = home or environ.get("HOME") or os.path.expanduser("~")
    user_path = os.path.join(home_dir, ".one", "one_auth")
    if os.path.isfile(user_path):
        return user_path, f"~/.one/one_auth ({user_path})"
    sys_path = system_auth_file or SYSTEM_ONE_AUTH_FILE
    if os.path.isfile(sys_path):
        return sys_path, sys_path
    raise OneAuthError(
        f"no OpenNebula credentials found: $ONE_AUTH is unset, {user_path} and {sys_path} "
        "do not exist; create ~/.one/one_auth holding user:password, set ONE_AUTH, "
        "or set one_auth_file in group data")


def _read_session(path: str, source: str) -> str:
    """Return "user:password" from the first line of the file; never echo its content."""
    try:
        with open(path, encoding="utf-8") as handle:
            first_line = handle.readline().strip()
    except OSError as error:
        raise OneAuthError(
            f"cannot read OpenNebula credentials from {source}: {error.strerror}; "
            "check the file's permissions") from None
    except UnicodeDecodeError:
        raise OneAuthError(
            f"OpenNebula credentials file {source} is not text: "
            "it must hold user:password on its first line") from None
    user, sep, password = first_line.partition(":")
    if not sep or not user.strip() or not password:
        raise OneAuthError(
            f"OpenNebula credentials file {source} is malformed: "
            "its first line must be user:password")
    return first_line


def _resolve_timeout(timeout: float | str | None, environ: Mapping[str, str]) -> float:
    """Return a positive number of seconds from the argument, $ONE_XMLRPC_TIMEOUT or the default."""
    if timeout is not None and timeout != "":
        raw, origin = timeout, "one_xmlrpc_timeout"
    elif environ.get("ONE_XMLRPC_TIMEOUT", "").strip():
        raw, origin = environ["ONE_XMLRPC_TIMEOUT"].strip(), "$ONE_XMLRPC_TIMEOUT"
    else:
        return DEFAULT_TIMEOUT_S
    try:
        seconds = float(raw)
    except (TypeError, ValueError):
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise OpenNebulaError(
            f"{origin} is {raw!r}: it must be a positive number of seconds, e.g. 30")
    return seconds


# --------------------------------------------------------------------------- fetch


def fetch_host_pool(endpoint: OneEndpoint) -> list[OneHost]:
    """Return every host OpenNebula knows, from exactly one `one.hostpool.info` call.

    Raises OneAuthError, OneUnreachableError or OpenNebulaError (never with the secret).
    """
    import pyone  # imported here so pure matching works without the client installed

    server = _make_client(endpoint)
    try:
        reply = server.hostpool.info()
    except pyone.OneAuthenticationException:
        raise OneAuthError(
            f"OpenNebula API at {endpoint.url} refused the credentials of user "
            f"'{endpoint.user}' (from {endpoint.auth_source}): check the password in that file"
        ) from None
    except pyone.OneAuthorizationException as error:
        raise OneAuthError(
            f"OpenNebula API at {endpoint.url} did not allow user '{endpoint.user}' "
            f"(from {endpoint.auth_source}) to list hosts ({_redact(error, endpoint)}): "
            "use an account allowed to list hosts, e.g. oneadmin") from None
    except pyone.OneException as error:
        raise OpenNebulaError(
            f"OpenNebula API at {endpoint.url} answered one.hostpool.info with an error: "
            f"{_redact(error, endpoint)}") from None
    except Exception as error:  # transport and parsing failures, mapped one by one
        raise _transport_error(error, endpoint) from None
    return _hosts_from_reply(reply, endpoint)


def _make_client(endpoint: OneEndpoint):
    """Return a pyone XML-RPC client whose HTTP requests honour endpoint.timeout.

    pyone's own `timeout` argument only calls socket.setdefaulttimeout() (process-wide, so
    it would also change pyinfra's SSH sockets), and its requests-based transport passes
    no timeout to requests, which then blocks forever. So no timeout is given to pyone and
    its transport is replaced by one that passes the timeout to each request.
    """
    import pyone

    server = pyone.OneServer(endpoint.url, session=endpoint.session, protocol="xmlrpc")
    transport = _timeout_transport_class()(endpoint.timeout)
    transport.set_https(endpoint.url.startswith("https"))
    transport.set_https_verify(True)
    # xmlrpc.client.ServerProxy keeps its transport in this name-mangled attribute.
    if not hasattr(server, "_ServerProxy__transport"):
        raise OpenNebulaError("unsupported pyone version: cannot apply the API timeout")
    server._ServerProxy__transport = transport
    return server


def _timeout_transport_class():
    """Build (lazily, pyone being optional for pure logic) pyone's transport with a timeout."""
    import requests
    from pyone.server_xrpc import RequestsTransport

    class TimeoutRequestsTransport(RequestsTransport):
        """pyone's requests-based XML-RPC transport, with a per-request timeout."""

        def __init__(self, timeout: float):
            super().__init__()
            self.timeout = timeout

        def request(self, host, handler, request_body, verbose=False):
            url = self._build_url(host, handler)
            response = requests.post(url, data=request_body, headers=self.headers,
                                     verify=self.https_verify, timeout=self.timeout)
            if response.status_code != 200:
                raise xmlrpc.client.ProtocolError(url, response.status_code,
                                                  response.reason or "", response.headers)
            return self.parse_response(response)

    return TimeoutRequestsTransport


def _transport_error(error: BaseException, endpoint: OneEndpoint) -> OpenNebulaError:
    """Map a transport/parsing failure of the one call to an operator-facing error."""
    import requests
    from lxml import etree
    from pyone.bindings import supbind

    url = endpoint.url
    if isinstance(error, (requests.Timeout, socket.timeout, TimeoutError)):
        return OneUnreachableError(
            f"OpenNebula API at {url} did not answer within {endpoint.timeout:g} s: "
            f"{_FIX_ENDPOINT}")
    if isinstance(error, requests.ConnectionError):
        return OneUnreachableError(
            f"OpenNebula API at {url} could not be reached ({_connection_reason(error)}): "
            f"{_FIX_ENDPOINT}")
    if isinstance(error, requests.RequestException):
        return OneUnreachableError(
            f"OpenNebula API at {url} could not be queried ({type(error).__name__}): "
            f"{_FIX_ENDPOINT}")
    if isinstance(error, xmlrpc.client.ProtocolError):
        fix = (f"{_FIX_ENDPOINT} and healthy (see oned.log)" if error.errcode >= 500
               else _FIX_NOT_XMLRPC)
        return OneUnreachableError(
            f"OpenNebula API at {url} answered HTTP {error.errcode} instead of XML-RPC: {fix}")
    if isinstance(error, (xml.parsers.expat.ExpatError, xmlrpc.client.ResponseError,
                          TypeError, IndexError, KeyError, ValueError)):
        return OneUnreachableError(
            f"OpenNebula API at {url} sent a reply that is not OpenNebula XML-RPC: "
            f"{_FIX_NOT_XMLRPC}")
    if isinstance(error, (etree.XMLSyntaxError, supbind.GDSParseError)):
        return OpenNebulaError(
            f"OpenNebula API at {url} returned a host pool that is not valid HOST_POOL XML: "
            "check that the endpoint is a supported OpenNebula version (6.x/7.x)")
    return OpenNebulaError(
        f"OpenNebula API at {url} failed unexpectedly ({type(error).__name__}: "
        f"{_redact(error, endpoint)}): {_FIX_ENDPOINT}")


def _connection_reason(error: BaseException) -> str:
    """Short cause of a connection failure, from the exception chain's text."""
    text = str(error)
    if "Connection refused" in text or "Errno 111" in text:
        return "connection refused"
    if "Name or service not known" in text or "NameResolution" in text or "getaddrinfo" in text:
        return "host name does not resolve"
    if "No route to host" in text or "unreachable" in text.lower():
        return "no route to host"
    return "connection failed"


def _redact(error: BaseException | str, endpoint: OneEndpoint) -> str:
    """Return the text of a server/library message with the secret removed, on one line."""
    text = str(error)
    password = endpoint.session.partition(":")[2]
    for secret in (endpoint.session, password):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _hosts_from_reply(reply, endpoint: OneEndpoint) -> list[OneHost]:
    """Convert pyone's HOST_POOL binding into OneHost entries (fails if it is not a pool)."""
    from pyone.bindings import supbind

    if not isinstance(reply, supbind.HOST_POOL):
        raise OneUnreachableError(
            f"OpenNebula API at {endpoint.url} answered one.hostpool.info with "
            f"{type(reply).__name__}, not a HOST_POOL: {_FIX_NOT_XMLRPC}")
    try:
        return HostPool(_one_host(entry) for entry in reply.HOST)
    except (TypeError, ValueError):
        raise OpenNebulaError(
            f"OpenNebula API at {endpoint.url} returned a HOST_POOL entry without a numeric ID: "
            "check that the endpoint is a supported OpenNebula version (6.x/7.x)") from None


def _one_host(entry) -> OneHost:
    """Return the OneHost for one pyone HOST binding."""
    state = int(entry.STATE) if entry.STATE is not None else -1
    return OneHost(
        id=int(entry.ID),
        name=entry.NAME or "",
        hostname=_template_value(entry.TEMPLATE, "HOSTNAME"),
        im_mad=entry.IM_MAD or "",
        state=state,
        state_name=HOST_STATE_NAMES.get(state, f"UNKNOWN({state})"),
        template=_template_scalars(entry.TEMPLATE),
    )


def _template_scalars(template) -> tuple[tuple[str, str], ...]:
    """The TEMPLATE attributes that hold one value, as sorted (key, value) pairs."""
    if not isinstance(template, Mapping):
        return ()
    pairs = ((key, _template_value(template, key)) for key in template if not isinstance(template[key], Mapping))
    return tuple(sorted((str(key), value) for key, value in pairs if value is not None))


def _template_value(template, key: str) -> str | None:
    """Return a single TEMPLATE attribute as a stripped string, or None when absent/empty."""
    if not isinstance(template, Mapping):
        return None
    value = template.get(key)
    if isinstance(value, list):  # a repeated attribute: xmltodict gives a list
        value = value[0] if value else None
    if value is None:
        return None
    text = str(value).strip()
    return text or None


