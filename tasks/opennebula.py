"""OpenNebula host-ID lookup: endpoint/credential resolution, one pool fetch, host matching.

Pure logic plus the pyone client call; this module never imports pyinfra, so the deploy
and the unit tests share the same code.

Guarantees:
- Endpoint and credentials follow OpenNebula's own (Ruby client) conventions, with explicit
  values from group data taking precedence.
- The session secret ("user:password") never appears in a repr, a message, or a chained
  exception: every error raised here is built from our own text plus redacted server text.
- `fetch_host_pool` makes exactly one XML-RPC call (`one.hostpool.info`), whatever the number
  of inventory hosts.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
import socket
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_XMLRPC_URL = "http://localhost:2633/RPC2"
DEFAULT_TIMEOUT_S = 30.0
# OpenNebula's last-resort credentials file (oneadmin's home on the frontend). A module
# constant so tests can point it elsewhere; resolve_endpoint also takes it as a parameter.
SYSTEM_ONE_AUTH_FILE = "/var/lib/one/.one/one_auth"

# Host STATE numbers as oned defines them (include/Host.h, share/doc/xsd/host.xsd).
HOST_STATE_NAMES: dict[int, str] = {
    0: "INIT",
    1: "MONITORING_MONITORED",
    2: "MONITORED",
    3: "ERROR",
    4: "DISABLED",
    5: "MONITORING_ERROR",
    6: "MONITORING_INIT",
    7: "MONITORING_DISABLED",
    8: "OFFLINE",
}

_FIX_ENDPOINT = "check ONE_XMLRPC / one_xmlrpc and that oned is running"
_FIX_NOT_XMLRPC = (
    "check that ONE_XMLRPC / one_xmlrpc points to oned's XML-RPC endpoint "
    "(e.g. http://FRONTEND:2633/RPC2), not to Sunstone or a proxy page"
)


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class OneHost:
    """One entry of OpenNebula's HOST_POOL, reduced to what the deploy needs."""

    id: int
    name: str
    hostname: str | None
    im_mad: str
    state: int
    state_name: str
    # Single-valued TEMPLATE attributes, e.g. (("HOSTNAME", "kvm1"), ("SSH_PORT", "22")).
    template: tuple[tuple[str, str], ...] = field(default=(), compare=False)

    def template_value(self, key: str) -> str | None:
        return dict(self.template).get(key)


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


@dataclass(frozen=True)
class HostQuery:
    """What is known about one inventory host when looking it up in the pool."""

    inventory_name: str
    one_host_id: int | None = None
    one_host_name: str | None = None
    node_hostname: str | None = None


class OpenNebulaError(Exception):
    """Operator-facing, one-line error naming the endpoint/host and what to fix."""


class OneAuthError(OpenNebulaError):
    """Credentials missing, unreadable, malformed, or rejected by the API."""


class OneUnreachableError(OpenNebulaError):
    """The API could not be talked to: refused, timed out, DNS, or not XML-RPC."""


class HostMatchError(OpenNebulaError):
    """No OpenNebula host, or more than one, matches an inventory host."""

    def __init__(self, message: str, *, inventory_name: str | None = None,
                 candidates: Sequence[OneHost] = (), closest_names: Sequence[str] = ()):
        super().__init__(message)
        self.inventory_name = inventory_name
        self.candidates = tuple(candidates)
        self.closest_names = tuple(closest_names)


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


# --------------------------------------------------------------------------- matching


def match_host(pool: Sequence[OneHost], *, inventory_name: str, one_host_id: int | None = None,
               one_host_name: str | None = None, node_hostname: str | None = None) -> OneHost:
    """Return the one OpenNebula host that this inventory host is, or raise HostMatchError.

    Order (DESIGN part 4): one_host_id, one_host_name, inventory name vs NAME, node's
    hostname vs TEMPLATE/HOSTNAME. Each name level tries exact, case-insensitive, then
    short-vs-FQDN; two candidates at one level is an error, never a guess.
    """
    if one_host_id is not None and one_host_id != "":
        return _match_by_id(pool, inventory_name, one_host_id)
    if one_host_name:
        return _match_by_name(pool, inventory_name, one_host_name)
    levels = [("NAME", inventory_name, lambda host: host.name)]
    if node_hostname:
        levels.append(("TEMPLATE/HOSTNAME", node_hostname, lambda host: host.hostname))
    for label, wanted, key in levels:
        for same in (_same_exact, _same_ignoring_case, _same_short_vs_fqdn):
            found = _candidates(pool, label, key, same, wanted)
            if len(found) == 1:
                return found[0]
            if found:
                raise _ambiguous(inventory_name, label, wanted, found)
    raise _no_match(pool, inventory_name, node_hostname)


def match_hosts(pool: Sequence[OneHost], hosts: Sequence[HostQuery]
                ) -> tuple[dict[str, OneHost], dict[str, HostMatchError]]:
    """Match many inventory hosts; one host's failure never stops the others.

    Two inventory hosts resolving to the same OpenNebula host would give two scrape
    targets the same host_id label, so both are reported as errors instead.
    """
    matches: dict[str, OneHost] = {}
    errors: dict[str, HostMatchError] = {}
    for query in hosts:
        try:
            matches[query.inventory_name] = match_host(
                pool, inventory_name=query.inventory_name, one_host_id=query.one_host_id,
                one_host_name=query.one_host_name, node_hostname=query.node_hostname)
        except HostMatchError as error:
            errors[query.inventory_name] = error
    for inventory_name, error in _shared_matches(matches).items():
        del matches[inventory_name]
        errors[inventory_name] = error
    return matches, errors


def _shared_matches(matches: Mapping[str, OneHost]) -> dict[str, HostMatchError]:
    """Return an error for every inventory host that shares its OpenNebula host with another."""
    by_id: dict[int, list[str]] = {}
    for inventory_name, host in matches.items():
        by_id.setdefault(host.id, []).append(inventory_name)
    errors = {}
    for host_id, names in by_id.items():
        if len(names) < 2:
            continue
        host = matches[names[0]]
        for inventory_name in names:
            errors[inventory_name] = HostMatchError(
                f"inventory hosts {', '.join(sorted(names))} all match OpenNebula host "
                f"{_describe(host)}: set one_host_id in the host data of the ones that are "
                "different machines, or remove the duplicate from the inventory",
                inventory_name=inventory_name, candidates=[host])
    return errors


def _match_by_id(pool: Sequence[OneHost], inventory_name: str, one_host_id) -> OneHost:
    """Return the pool entry with this ID, or explain that OpenNebula has none."""
    try:
        wanted = int(one_host_id)
    except (TypeError, ValueError):
        raise HostMatchError(
            f"inventory host '{inventory_name}': one_host_id is {one_host_id!r}, not a number: "
            "set one_host_id to the ID shown by `onehost list`",
            inventory_name=inventory_name) from None
    for host in pool:
        if host.id == wanted:
            return host
    known = ", ".join(_describe(host) for host in sorted(pool, key=lambda h: h.id)[:10])
    raise HostMatchError(
        f"inventory host '{inventory_name}': one_host_id {wanted} is not an OpenNebula host "
        f"(known: {known or 'none'}): fix one_host_id in its host data",
        inventory_name=inventory_name)


def _match_by_name(pool: Sequence[OneHost], inventory_name: str, one_host_name: str) -> OneHost:
    """Return the pool entry whose NAME is exactly one_host_name, or explain."""
    found = [host for host in pool if host.name == one_host_name]
    if len(found) == 1:
        return found[0]
    if found:
        raise _ambiguous(inventory_name, "NAME", one_host_name, found)
    closest = _closest_names(pool, one_host_name)
    raise HostMatchError(
        f"inventory host '{inventory_name}': one_host_name '{one_host_name}' is not an "
        f"OpenNebula host NAME{_closest_hint(closest, pool)}: fix one_host_name "
        "(or set one_host_id) in its host data",
        inventory_name=inventory_name, closest_names=closest)


class HostPool(list):
    """The host pool, with name indexes built on first use.

    Matching every inventory host against a plain list scans the whole pool per
    host (quadratic in the cloud's size); with the indexes each lookup is a
    dictionary hit. The indexes answer exactly what the _same_* predicates do.
    """

    def index(self, label: str, key) -> dict:
        cache = self.__dict__.setdefault("_indexes", {})
        if label not in cache:
            cache[label] = _build_index(self, key)
        return cache[label]


def _build_index(pool: Sequence[OneHost], key) -> dict:
    index: dict = {"exact": {}, "lower": {}, "short": {}, "fqdn_label": {}}
    for host in pool:
        value = key(host)
        if not value:
            continue
        index["exact"].setdefault(value, []).append(host)
        lowered = value.lower()
        index["lower"].setdefault(lowered, []).append(host)
        if _is_ip(value):
            continue
        if "." in lowered:
            index["fqdn_label"].setdefault(lowered.split(".", 1)[0], []).append(host)
        else:
            index["short"].setdefault(lowered, []).append(host)
    return index


def _candidates(pool: Sequence[OneHost], label: str, key, same, wanted: str) -> list[OneHost]:
    """The pool entries whose `key` is the `same` as wanted, through HostPool's indexes when it has them."""
    if not isinstance(pool, HostPool):
        return [host for host in pool if key(host) and same(wanted, key(host))]
    index = pool.index(label, key)
    if same is _same_exact:
        return list(index["exact"].get(wanted, []))
    if same is _same_ignoring_case:
        return list(index["lower"].get(wanted.lower(), []))
    if _is_ip(wanted):
        return []
    wanted_l = wanted.lower()
    if "." in wanted_l:
        return list(index["short"].get(wanted_l.split(".", 1)[0], []))
    return list(index["fqdn_label"].get(wanted_l, []))


def _same_exact(wanted: str, candidate: str) -> bool:
    return wanted == candidate


def _same_ignoring_case(wanted: str, candidate: str) -> bool:
    # DNS names are case-insensitive; admins register hosts either way.
    return wanted.lower() == candidate.lower()


def _same_short_vs_fqdn(wanted: str, candidate: str) -> bool:
    """True when exactly one side is a short name equal to the other's first DNS label.

    Two different FQDNs (hv1.a vs hv1.b) are different machines, and IP addresses
    have no "short" form, so neither matches here.
    """
    wanted_l, candidate_l = wanted.lower(), candidate.lower()
    if "." in wanted_l and "." not in candidate_l:
        same = wanted_l.split(".", 1)[0] == candidate_l
    elif "." in candidate_l and "." not in wanted_l:
        same = candidate_l.split(".", 1)[0] == wanted_l
    else:
        return False
    # Only names that line up pay for the IP check (it raises for every non-IP name).
    return same and not _is_ip(wanted) and not _is_ip(candidate)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _describe(host: OneHost) -> str:
    return f"{host.name} (ID {host.id})"


def _ambiguous(inventory_name: str, label: str, wanted: str,
               found: Sequence[OneHost]) -> HostMatchError:
    listed = ", ".join(_describe(host) for host in sorted(found, key=lambda h: h.id))
    return HostMatchError(
        f"inventory host '{inventory_name}' is ambiguous: '{wanted}' matches the "
        f"{label} of several OpenNebula hosts: {listed}; set one_host_id in its host data",
        inventory_name=inventory_name, candidates=found)


def _no_match(pool: Sequence[OneHost], inventory_name: str,
              node_hostname: str | None) -> HostMatchError:
    closest = _closest_names(pool, inventory_name)
    tried = f"NAME '{inventory_name}'"
    if node_hostname:
        tried += f" nor TEMPLATE/HOSTNAME '{node_hostname}'"
    return HostMatchError(
        f"inventory host '{inventory_name}' is not known to OpenNebula (no host matches by "
        f"{tried}){_closest_hint(closest, pool)}: register it with `onehost create`, or set "
        "one_host_id / one_host_name in its host data",
        inventory_name=inventory_name, closest_names=closest)


def _closest_names(pool: Sequence[OneHost], wanted: str, limit: int = 3) -> list[str]:
    """Return up to `limit` pool NAMEs most similar to `wanted` (case-insensitive)."""
    by_lower: dict[str, str] = {}
    for host in pool:
        by_lower.setdefault(host.name.lower(), host.name)
    close = difflib.get_close_matches(wanted.lower(), list(by_lower), n=limit, cutoff=0.4)
    return [by_lower[name] for name in close]


def _closest_hint(closest: Sequence[str], pool: Sequence[OneHost]) -> str:
    if closest:
        return "; closest OpenNebula names: " + ", ".join(closest)
    if not pool:
        return "; OpenNebula has no hosts at all"
    return f"; no similar name among OpenNebula's {len(pool)} hosts"


# --------------------------------------------------------------------------- fallback


_MONITOR_DB = re.compile(r"^status_[A-Za-z0-9]+_(\d+)\.db$")


def monitor_db_host_id(file_names: Iterable[str]) -> int | None:
    """Return the host ID encoded in OpenNebula's monitor DB name on the node, if unique.

    Names come from /var/tmp/one/im/ (e.g. "status_kvm_12.db" -> 12); sqlite side files
    (-journal, -wal) and unrelated names are ignored. Several IDs -> OpenNebulaError.
    """
    ids = set()
    for name in file_names:
        found = _MONITOR_DB.match(os.path.basename(name.strip()))
        if found:
            ids.add(int(found.group(1)))
    if not ids:
        return None
    if len(ids) > 1:
        listed = ", ".join(str(host_id) for host_id in sorted(ids))
        raise OpenNebulaError(
            f"/var/tmp/one/im/ on this host holds monitor databases of several OpenNebula "
            f"host IDs ({listed}), probably left over from an earlier registration: "
            "set one_host_id in its host data")
    return ids.pop()
