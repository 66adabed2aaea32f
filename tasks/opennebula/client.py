"""The OpenNebula XML-RPC API, from the machine running pyinfra: where it is, with which
credentials, and the one `one.hostpool.info` call a run makes (through pyone).

Guarantees:
- Endpoint and credentials follow OpenNebula's own (Ruby client) conventions, with explicit
  values from group data taking precedence.
- The session secret ("user:password") and any credentials written into the endpoint URL
  (`http://user:pass@proxy/RPC2`) never appear in a repr, a message, or a chained
  exception: every error raised here is built from our own text plus redacted server text,
  and URLs are shown with their user part replaced by `***`.
- The credentials go to the endpoint named and nowhere else: a redirect is refused, never
  followed (an XML-RPC POST carries the session in its body).
- `fetch_host_pool` makes exactly one XML-RPC call, whatever the number of inventory hosts,
  and the whole call (connecting, sending, reading the whole reply) ends within the timeout.
- The error classes say what happened: OneUnreachableError only when the API could not be
  talked to at all (the one case the monitor-database fallback may cover).
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import threading
import urllib.parse
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tasks import compat
from tasks.opennebula.pool import OneHost, OpenNebulaError

if TYPE_CHECKING:
    import requests

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
_FIX_TLS = (
    "set one_xmlrpc_ca_file (or REQUESTS_CA_BUNDLE) to the PEM file of the CA that signed "
    "oned's certificate, or fix the certificate"
)
# A gateway in front of oned answers these when oned itself is down or not answering.
_GATEWAY_DOWN = {502, 503, 504}


def redact_url(url: str) -> str:
    """The URL with any user part (`user:password@`) replaced by `***@`.

    Works on text that is not a valid URL too: everything between the scheme and the
    last `@` is hidden, so a password holding `/` or `@` does not leak either.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return url
    return f"{scheme}://***@{rest.rpartition('@')[2]}"


def _url_secrets(url: str) -> list[str]:
    """The pieces of a URL's user part worth hiding wherever they turn up, longest first."""
    _scheme, separator, rest = url.partition("://")
    if not separator or "@" not in rest:
        return []
    userinfo = rest.rpartition("@")[0]
    password = userinfo.partition(":")[2]
    pieces = {userinfo, password, urllib.parse.unquote(password), urllib.parse.unquote(userinfo)}
    return sorted((piece for piece in pieces if piece), key=len, reverse=True)


@dataclass(frozen=True, repr=False)
class OneEndpoint:
    """Where and how to reach OpenNebula. repr/str never show the session secret nor the
    user part of the URL."""

    url: str
    session: str
    timeout: float
    auth_source: str
    ca_file: str | None = field(default=None)

    @property
    def user(self) -> str:
        """The OpenNebula user name (the part of the session before the first colon)."""
        return self.session.split(":", 1)[0]

    @property
    def display_url(self) -> str:
        """The URL as every message shows it: without credentials."""
        return redact_url(self.url)

    def __repr__(self) -> str:
        return (
            f"OneEndpoint(url={self.display_url!r}, user={self.user!r}, timeout={self.timeout!r}, "
            f"auth_source={self.auth_source!r}, ca_file={self.ca_file!r})"
        )

    __str__ = __repr__


class OneAuthError(OpenNebulaError):
    """Credentials missing, unreadable, malformed, or rejected by the API."""


class OneUnreachableError(OpenNebulaError):
    """The API could not be talked to at all: connection refused, no answer within the
    timeout, a name that does not resolve, no route, or a gateway saying oned is down."""


class OneProtocolError(OpenNebulaError):
    """Something answered, but not as OpenNebula's XML-RPC API: garbage, a web page, an
    HTTP error or a redirect."""


class OneTlsError(OpenNebulaError):
    """The HTTPS endpoint's certificate could not be verified."""


# --------------------------------------------------------------------------- endpoint


def resolve_endpoint(
    *,
    one_xmlrpc: str | None = None,
    one_auth_file: str | None = None,
    timeout: float | str | None = None,
    ca_file: str | None = None,
    environ: Mapping[str, str] = os.environ,
    home: str | None = None,
    system_auth_file: str | None = None,
) -> OneEndpoint:
    """Return the endpoint to use, following OpenNebula's conventions.

    Explicit arguments (group data) win; otherwise $ONE_XMLRPC / $ONE_AUTH /
    $ONE_XMLRPC_TIMEOUT, then OpenNebula's defaults. `ca_file` (one_xmlrpc_ca_file)
    names the CA to verify an https endpoint with; without it requests' own CA bundle
    is used, or $REQUESTS_CA_BUNDLE. Raises OneAuthError or OpenNebulaError with the
    fix when something is missing or malformed.
    """
    url = _resolve_url(one_xmlrpc, environ)
    auth_path, auth_source = _resolve_auth_file(one_auth_file, environ, home, system_auth_file)
    session = _read_session(auth_path, auth_source)
    return OneEndpoint(
        url=url,
        session=session,
        timeout=_resolve_timeout(timeout, environ),
        auth_source=auth_source,
        ca_file=_resolve_ca_file(ca_file),
    )


def _resolve_url(one_xmlrpc: str | None, environ: Mapping[str, str]) -> str:
    """Return an http(s) URL from the argument, $ONE_XMLRPC or the default."""
    if one_xmlrpc:
        url, origin = one_xmlrpc.strip(), "one_xmlrpc"
    elif environ.get("ONE_XMLRPC", "").strip():
        url, origin = environ["ONE_XMLRPC"].strip(), "$ONE_XMLRPC"
    else:
        return DEFAULT_XMLRPC_URL
    if not _is_http_url(url):
        raise OpenNebulaError(
            f"{origin} is {redact_url(url)!r}, not an http(s) URL: set it to oned's XML-RPC endpoint, "
            f"e.g. {DEFAULT_XMLRPC_URL}"
        )
    return url


def _is_http_url(url: str) -> bool:
    """True for an http(s) URL with a host (and a valid port, IPv6 address in brackets)."""
    if not re.match(r"^https?://[^/\s]+", url) or re.search(r"\s", url):
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number or out of range
    except ValueError:  # e.g. "Invalid IPv6 URL" for http://[::1/RPC2
        return False
    return bool(parts.hostname)


def _resolve_ca_file(ca_file: str | None) -> str | None:
    """The CA file to verify an https endpoint with, which must exist when it is named."""
    if not ca_file:
        return None
    path = os.path.expanduser(ca_file)
    if not os.path.isfile(path):
        raise OpenNebulaError(
            f"one_xmlrpc_ca_file {path} does not exist or is not a file: set it to the PEM file "
            "of the CA that signed oned's certificate"
        )
    return path


def _resolve_auth_file(
    one_auth_file: str | None,
    environ: Mapping[str, str],
    home: str | None,
    system_auth_file: str | None,
) -> tuple[str, str]:
    """Return (path, human description) of the credentials file to read.

    An explicitly named file ($ONE_AUTH or one_auth_file) must exist: silently using
    another identity would be worse than failing.
    """
    if one_auth_file:
        path = os.path.expanduser(one_auth_file)
        if not os.path.isfile(path):
            raise OneAuthError(
                f"one_auth_file {path} does not exist or is not a file: "
                "fix one_auth_file in group data (a file holding user:password)"
            )
        return path, f"one_auth_file ({path})"
    env_path = environ.get("ONE_AUTH", "")
    if env_path:
        if not os.path.isfile(env_path):
            raise OneAuthError(
                f"$ONE_AUTH names {env_path}, which does not exist or is not a file: "
                "fix or unset ONE_AUTH (it must name a file holding user:password)"
            )
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
        "or set one_auth_file in group data"
    )


def _read_session(path: str, source: str) -> str:
    """Return "user:password" from the first line of the file; never echo its content."""
    try:
        # utf-8-sig: a file saved by a Windows editor starts with a byte order mark.
        with open(path, encoding="utf-8-sig") as handle:
            first_line = handle.readline().strip()
    except OSError as error:
        raise OneAuthError(
            f"cannot read OpenNebula credentials from {source}: {error.strerror}; "
            "check the file's permissions"
        ) from None
    except UnicodeDecodeError:
        raise OneAuthError(
            f"OpenNebula credentials file {source} is not text: "
            "it must hold user:password on its first line"
        ) from None
    user, sep, password = first_line.partition(":")
    if not sep or not user.strip() or not password:
        raise OneAuthError(
            f"OpenNebula credentials file {source} is malformed: "
            "its first line must be user:password"
        )
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
            f"{origin} is {raw!r}: it must be a positive number of seconds, e.g. 30"
        )
    return seconds


# --------------------------------------------------------------------------- fetch


def fetch_host_pool(endpoint: OneEndpoint) -> list[OneHost]:
    """Return every host OpenNebula knows, from exactly one `one.hostpool.info` call.

    Raises OneAuthError, OneUnreachableError, OneProtocolError, OneTlsError or
    OpenNebulaError (never with a secret).
    """
    import pyone  # imported here so pure matching works without the client installed

    url = endpoint.display_url
    try:
        document = _host_pool_document(_make_client(endpoint))
    except compat.UnsupportedLibraryVersion as error:
        raise OpenNebulaError(str(error)) from None
    except pyone.OneAuthenticationException:
        raise OneAuthError(
            f"OpenNebula API at {url} refused the credentials of user "
            f"'{endpoint.user}' (from {endpoint.auth_source}): check the password in that file"
        ) from None
    except pyone.OneAuthorizationException as error:
        raise OneAuthError(
            f"OpenNebula API at {url} did not allow user '{endpoint.user}' "
            f"(from {endpoint.auth_source}) to list hosts ({_redact(error, endpoint)}): "
            "use an account allowed to list hosts, e.g. oneadmin"
        ) from None
    except pyone.OneException as error:
        raise OpenNebulaError(
            f"OpenNebula API at {url} answered one.hostpool.info with an error: "
            f"{_redact(error, endpoint)}"
        ) from None
    # Transport and parsing failures, mapped one by one; anything else still becomes an
    # OpenNebulaError naming the endpoint, with every secret taken out.
    except Exception as error:  # noqa: BLE001
        raise _transport_error(error, endpoint) from None
    return _hosts_from_document(document, endpoint)


def _host_pool_document(server: Any) -> object:
    """The HOST_POOL document of one `one.hostpool.info` call, as the text oned sent.

    The call goes through pyone (its session, its request, its XML-RPC fault handling, our
    bounded transport); only pyone's last step is left out (see compat.raw_reply): binding
    the document to its generated classes, which for a cloud of 10,000 hosts costs seconds
    of CPU for five fields per host. oned's failures become pyone's exceptions by oned's
    error codes, as pyone maps them.
    """
    reply = compat.raw_reply(server, "one.hostpool.info")
    # oned answers [success, document or message, error code, ...]; anything else raises
    # TypeError/IndexError/KeyError here, which is reported as a reply that is not oned's.
    success, body, code = reply[0], reply[1], reply[2]
    if not success:
        raise _oned_error(code)(body)
    return body


def _make_client(endpoint: OneEndpoint) -> Any:
    """A pyone XML-RPC client whose one request is bounded in time and never redirected."""
    return compat.one_server(endpoint.url, endpoint.session, _bounded_transport_class()(endpoint))


def _oned_error(code: Any) -> type[Exception]:
    """pyone's exception class for an oned error code (include/Request.h), as pyone maps them."""
    import pyone

    by_code: dict[int, type[Exception]] = {
        0x0100: pyone.OneAuthenticationException,
        0x0200: pyone.OneAuthorizationException,
        0x0400: pyone.OneNoExistsException,
        0x0800: pyone.OneActionException,
        0x1000: pyone.OneApiException,
        0x2000: pyone.OneInternalException,
    }
    unknown: type[Exception] = pyone.OneException
    return by_code.get(code, unknown)


class _DeadlinePassed(Exception):
    """The whole call took longer than the endpoint's timeout."""


class _Redirected(Exception):
    """The endpoint answered with a redirect, which is not followed."""

    def __init__(self, status: int, location: str):
        super().__init__(status)
        self.status = status
        self.location = location


class _Watchdog:
    """Shuts down every socket of one call when its deadline passes, so that no slow
    server (one byte at a time) can keep the call going: a blocked read then ends at once.

    A timer thread (a greenlet under the pyinfra CLI, which patches threading) does it.
    """

    def __init__(self, seconds: float):
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def watch(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._timer.cancel()


def _shut(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):  # already closed: nothing left to stop
        sock.shutdown(socket.SHUT_RDWR)


def _bounded_transport_class() -> type[Any]:
    """Build (lazily, pyone being optional for pure logic) pyone's transport, bounded in time
    and refusing redirects.

    pyone's own transport gives requests no timeout (which then blocks forever) and follows
    redirects with the credentials; its `timeout` argument only calls socket.setdefaulttimeout()
    (process-wide, so it would also change pyinfra's SSH sockets). So no timeout is given to
    pyone and this transport takes the place of its own (see compat.one_server).
    """
    import requests

    # pyone's class, untyped: mypy cannot check what this one inherits.
    base = compat.pyone_requests_transport()

    class BoundedRequestsTransport(base):  # type: ignore[misc,valid-type]
        """pyone's requests-based XML-RPC transport: the whole request within the
        endpoint's timeout, the CA file it names, and no redirect followed."""

        def __init__(self, endpoint: OneEndpoint):
            super().__init__()
            self.timeout = endpoint.timeout
            self.set_https(endpoint.url.startswith("https"))
            # None: requests' own bundle, or $REQUESTS_CA_BUNDLE, which requests reads itself.
            self.set_https_verify(endpoint.ca_file or True)

        def request(
            self, host: str, handler: str, request_body: bytes, verbose: bool = False
        ) -> Any:
            # The URL as pyone's transport builds it (with a method of its own that is private).
            url = f"{'https' if self.use_https else 'http'}://{host}/{handler.lstrip('/')}"
            with _Watchdog(self.timeout) as watchdog:
                session = compat.session_handing_new_sockets_to(watchdog.watch)
                try:
                    response = session.post(
                        url,
                        data=request_body,
                        headers=self.headers,
                        verify=self.https_verify,
                        timeout=self.timeout,
                        allow_redirects=False,
                    )
                except requests.RequestException:
                    if watchdog.expired:
                        raise _DeadlinePassed() from None
                    raise
                finally:
                    session.close()
            if 300 <= response.status_code < 400:
                raise _Redirected(response.status_code, response.headers.get("Location", ""))
            if response.status_code != 200:
                raise xmlrpc.client.ProtocolError(
                    redact_url(url), response.status_code, response.reason or "", {}
                )
            return self.parse_response(response)

        def parse_response(self, response: requests.Response) -> Any:
            """The XML-RPC reply, decoded in a tenth of the time xmlrpc.client's own parser
            takes for a large host pool (see compat.decode_xmlrpc_reply)."""
            return compat.decode_xmlrpc_reply(response.content)

    return BoundedRequestsTransport


def _transport_error(error: BaseException, endpoint: OneEndpoint) -> OpenNebulaError:
    """Map a transport/parsing failure of the one call to an operator-facing error."""
    import requests

    url = endpoint.display_url
    if isinstance(error, (_DeadlinePassed, requests.Timeout, socket.timeout, TimeoutError)):
        return OneUnreachableError(
            f"OpenNebula API at {url} did not answer within {endpoint.timeout:g} s: {_FIX_ENDPOINT}"
        )
    if isinstance(error, _Redirected):
        return OneProtocolError(
            f"OpenNebula API at {url} answered with a redirect (HTTP {error.status}) to "
            f"{_redirect_target(error.location, endpoint)}, which is not followed: the credentials "
            "would go with it; set ONE_XMLRPC / one_xmlrpc to the endpoint that answers itself"
        )
    if isinstance(error, requests.exceptions.SSLError):
        return OneTlsError(
            f"OpenNebula API at {url}: TLS verification failed ({_tls_reason(error)}): {_FIX_TLS}"
        )
    if isinstance(error, requests.ConnectionError):
        return OneUnreachableError(
            f"OpenNebula API at {url} could not be reached ({_connection_reason(error)}): "
            f"{_FIX_ENDPOINT}"
        )
    if isinstance(error, requests.RequestException):
        return OpenNebulaError(
            f"OpenNebula API at {url} could not be queried ({type(error).__name__}): "
            f"{_FIX_ENDPOINT}"
        )
    if isinstance(error, xmlrpc.client.ProtocolError):
        if error.errcode in _GATEWAY_DOWN:
            return OneUnreachableError(
                f"OpenNebula API at {url} answered HTTP {error.errcode} from a gateway: oned behind it "
                f"is down or not answering; {_FIX_ENDPOINT}"
            )
        fix = (
            f"{_FIX_ENDPOINT} and healthy (see oned.log)"
            if error.errcode >= 500
            else _FIX_NOT_XMLRPC
        )
        return OneProtocolError(
            f"OpenNebula API at {url} answered HTTP {error.errcode} instead of XML-RPC: {fix}"
        )
    if isinstance(
        error,
        (
            xml.parsers.expat.ExpatError,
            xmlrpc.client.ResponseError,
            TypeError,
            IndexError,
            KeyError,
            ValueError,
        ),
    ):
        return OneProtocolError(
            f"OpenNebula API at {url} sent a reply that is not OpenNebula XML-RPC: "
            f"{_FIX_NOT_XMLRPC}"
        )
    return OpenNebulaError(
        f"OpenNebula API at {url} failed unexpectedly ({type(error).__name__}: "
        f"{_redact(error, endpoint)}): {_FIX_ENDPOINT}"
    )


def _redirect_target(location: str, endpoint: OneEndpoint) -> str:
    """The host a redirect points to, never its path or credentials."""
    target = urllib.parse.urljoin(endpoint.url, location or "")
    try:
        parts = urllib.parse.urlsplit(target)
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable location"
    if not host:
        return "an unreadable location"
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port}" if port else shown


def _tls_reason(error: BaseException) -> str:
    """What the TLS layer said, e.g. "self-signed certificate" (never the URL)."""
    text = str(error)
    found = re.search(r"certificate verify failed: ([^()'\"\]]+)", text)
    if found:
        return "certificate verify failed: " + found.group(1).strip()
    found = re.search(r"\[SSL: ([A-Z_]+)\]", text)
    return found.group(1).lower().replace("_", " ") if found else "TLS handshake failed"


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
    """Return the text of a server/library message with every secret removed, on one line."""
    text = str(error)
    password = endpoint.session.partition(":")[2]
    for secret in (endpoint.session, password, *_url_secrets(endpoint.url)):
        if secret:
            text = text.replace(secret, "***")
    return " ".join(text.split())


def _hosts_from_document(document: object, endpoint: OneEndpoint) -> list[OneHost]:
    """The hosts of the HOST_POOL document (fails, naming the endpoint, if it is not one)."""
    from tasks.opennebula.pool_xml import PoolDocumentError, hosts_from_pool_document

    url = endpoint.display_url
    if not isinstance(document, str) or not document.startswith("<"):
        raise OneProtocolError(
            f"OpenNebula API at {url} answered one.hostpool.info with {type(document).__name__}, "
            f"not a HOST_POOL: {_FIX_NOT_XMLRPC}"
        )
    try:
        return hosts_from_pool_document(document.encode("utf-8"))
    except PoolDocumentError as error:
        if error.kind == "not-a-pool":
            raise OneProtocolError(
                f"OpenNebula API at {url} answered one.hostpool.info with {_redact(error, endpoint)}, "
                f"not a HOST_POOL: {_FIX_NOT_XMLRPC}"
            ) from None
        if error.kind == "no-id":
            raise OpenNebulaError(
                f"OpenNebula API at {url} returned a HOST_POOL entry without a numeric ID: "
                "check that the endpoint is a supported OpenNebula version (6.x/7.x)"
            ) from None
        raise OneProtocolError(
            f"OpenNebula API at {url} returned a host pool that is not valid HOST_POOL XML: "
            "check that the endpoint is a supported OpenNebula version (6.x/7.x)"
        ) from None
