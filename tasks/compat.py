"""Every place the deploy goes past a library's public interface, or works around one of its bugs.

Each entry says what it works around, for which versions (the ones requirements.txt pins),
and the upstream report (or that none is filed); tests/unit/test_compat.py has a test for
each that fails, naming the entry, when the library changes under it: a private name gone
or changed, or the upstream bug fixed so that the workaround is no longer needed.

Judged public, so used directly elsewhere: pyinfra's `operation._inner` (its documented way
for one operation to call another), `pyinfra.api` and its exceptions, facts and operations,
`pyinfra.context.ctx_state` (listed in pyinfra's API reference), lxml's iterparse and element
API (pool_xml), requests' HTTPAdapter subclass hooks and urllib3's `ConnectionCls`, expat's
`buffer_text`, ruamel.yaml's YAML/Composer/nodes/resolver classes.

Libraries are imported where used: importing this module loads none of them (a deploy
that edits no prometheus.yml never loads ruamel.yaml, pure logic needs no pyone).
"""

from __future__ import annotations

import functools
import re
import sys
import types
import xml.parsers.expat
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import socket

    import requests
    from pyinfra.api.host import Host
    from pyinfra.api.state import State
    from ruamel.yaml.nodes import Node
    from ruamel.yaml.tag import Tag

# Where each alias is written: (id(parent), position in a sequence or id(key node) in a
# mapping) -> (start, end) of the `*name`.
AliasSpans = dict[tuple[int, int], tuple[int, int]]


class UnsupportedLibraryVersion(RuntimeError):
    """A library no longer has what an entry here relies on; the message names the library,
    the entry and the version to install."""


def _changed(library: str, entry: str, what: str) -> UnsupportedLibraryVersion:
    return UnsupportedLibraryVersion(
        f"{library} {what} (needed by {entry}): install the version pinned in requirements.txt"
    )


# =========================================================================== pyone 7.3.80


def one_server(url: str, session: str, transport: object) -> Any:
    """pyone's XML-RPC client for `url` with `session`, whose every request `transport` makes.

    Works around: pyone's own transport (pyone.server_xrpc.RequestsTransport) posts with
    requests and no timeout, so an endpoint that accepts the connection and never answers
    holds the run for ever, and it follows redirects, taking the session (in the request
    body) elsewhere; pyone's `timeout` option only calls socket.setdefaulttimeout(), which is
    process-wide (pyinfra's SSH sockets too). pyone offers no way in: OneServerXRPC hands its
    own `transport=` to xmlrpc.client.ServerProxy, so a `transport=` among OneServer's options
    is a duplicate keyword (TypeError). The transport is therefore replaced where ServerProxy
    keeps it, its name-mangled `_ServerProxy__transport` (what `server("transport")` returns).
    Versions: pyone 7.3.80 over Python 3.11's xmlrpc.client.
    Upstream: none filed that we found (OpenNebula/one tracks pyone).
    """
    import pyone

    server = pyone.OneServer(url, session=session, protocol="xmlrpc")
    if not hasattr(server, "_ServerProxy__transport"):
        raise _changed(
            "pyone",
            "compat.one_server",
            "no longer keeps its transport in xmlrpc.client.ServerProxy",
        )
    server._ServerProxy__transport = transport
    return server


def pyone_requests_transport() -> type[Any]:
    """pyone's requests-based XML-RPC transport class, the base of the deploy's bounded one
    (its headers, `set_https` and `set_https_verify`).

    Reaches into: pyone.server_xrpc, the XML-RPC implementation behind the OneServer factory
    (not itself documented); used so that requests look like pyone's own.
    Versions: pyone 7.3.80.
    Upstream: nothing to file.
    """
    from pyone.server_xrpc import RequestsTransport

    transport: type[Any] = RequestsTransport
    return transport


def raw_reply(server: Any, method: str, *params: Any) -> list[Any]:
    """oned's reply to `method` as XML-RPC decodes it, [success, body, error code, ...], the
    body being the text oned sent.

    Works around: pyone binds every document oned returns to its generated classes (an
    object for every field of every host: seconds of CPU and hundreds of MB for 10,000
    hosts), with no option to leave that out. The call still goes through pyone: its session
    prefix (`_cast_parms`) and its request with XML-RPC fault handling (`_do_request`, the step
    pyone's own test fixtures replace); only the binding, in its private `__response`, is skipped.
    Versions: pyone 7.3.80.
    Upstream: none filed that we found.
    """
    for name in ("_do_request", "_cast_parms"):
        if not callable(getattr(server, name, None)):
            raise _changed("pyone", "compat.raw_reply", f"no longer has OneServerXRPC.{name}")
    reply: list[Any] = server._do_request(method, server._cast_parms(params))
    return reply


def decode_xmlrpc_reply(content: bytes) -> Any:
    """An XML-RPC reply decoded as xmlrpc.client decodes it (a fault raised as xmlrpc.client.Fault).

    Works around: xmlrpc.client's parser hands its decoder the text between two escapes one
    piece at a time, and a host pool arrives as one string escaped for XML: millions of Python
    calls for a large cloud (about a second for 10,000 hosts, where this takes a tenth). Here
    an expat parser with `buffer_text` hands over each run of text at once.
    Reaches into: xmlrpc.client.Unmarshaller, undocumented (xmlrpc.client.loads builds on it):
    its start/end/data handlers and its xml(encoding, standalone) call.
    Versions: Python 3.11.
    Upstream: python/cpython#87726 (open) asks the same of the standard library's expat users.
    """
    unmarshaller = xmlrpc.client.Unmarshaller()
    parser = xml.parsers.expat.ParserCreate(None, None)
    parser.buffer_text = True
    parser.StartElementHandler = unmarshaller.start
    parser.EndElementHandler = unmarshaller.end
    parser.CharacterDataHandler = unmarshaller.data
    # What xmlrpc.client's own parser tells it: no declared encoding (typeshed wants a str).
    unmarshaller.xml(None, None)  # type: ignore[arg-type]
    parser.Parse(content, True)
    return unmarshaller.close()


# =========================================================================== requests 2.34.2, urllib3 2.8.0


def session_handing_new_sockets_to(watch: Callable[[Any], None]) -> requests.Session:
    """A requests Session that hands `watch` the socket of every connection it opens, as soon
    as it is made (before any TLS handshake or byte of the request), direct or through an
    HTTP proxy, so that a watchdog can shut it down when a deadline passes.

    Works around: requests (and urllib3 under it) bound connecting and each read, never a
    whole request: a server sending a byte now and then keeps one going for ever; and
    neither tells which socket a request uses.
    Reaches into: urllib3's HTTPConnection._new_conn() (private: it makes the socket),
    overridden in subclasses that reach the pools through PoolManager.pool_classes_by_scheme
    (an undocumented attribute). HTTPAdapter.init_poolmanager/proxy_manager_for and
    HTTPConnectionPool.ConnectionCls are the documented hooks for subclassing. SOCKS proxies
    use pools of their own and are left as they are.
    Versions: requests 2.34.2 with urllib3 2.8.0 (pinned for this).
    Upstream: psf/requests#4276 (closed) asked for a limit on a whole request; none exists.
    """
    import requests
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class WatchedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watch(sock)
            return sock

    class WatchedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            sock = super()._new_conn()
            watch(sock)  # the TLS layer reads from this socket: shutting it down ends it too
            return sock

    class WatchedHTTPPool(HTTPConnectionPool):
        ConnectionCls = WatchedHTTPConnection

    class WatchedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = WatchedHTTPSConnection

    watched = {"http": WatchedHTTPPool, "https": WatchedHTTPSPool}

    class WatchedAdapter(requests.adapters.HTTPAdapter):
        def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = watched

        def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = watched
            return manager

    session = requests.Session()
    session.mount("http://", WatchedAdapter())
    session.mount("https://", WatchedAdapter())
    return session


# =========================================================================== paramiko 4.0.0, pyinfra 3.10.0


def report_lost_connections_as_host_failures() -> None:
    """Guarantees that a host whose SSH connection drops in the middle of the run fails
    alone, the others going on.

    Works around: pyinfra fails one host when its connection raises an OSError or
    paramiko's SSHException, but two other errors of a lost connection escape it and stop
    every host with "An internal exception occurred": paramiko's Transport.open_channel
    re-raises the bare EOFError its reader thread saw when the other side vanished (a
    hypervisor powered off mid-run), met while pyinfra reads a fact inside an operation;
    and pyinfra's own ConnectError when a file upload or download cannot open its SFTP
    channel. Both are raised here as the SSHException pyinfra fails one host for, with the
    same text, by wrapping those methods once per process (idempotent).
    Versions: paramiko 4.0.0, pyinfra 3.10.0.
    Upstream: paramiko/paramiko#385 (open: open_session raises EOFError instead of
    SSHException), pyinfra-dev/pyinfra#1220 (open, the same EOFError stopping a run, left to
    paramiko); for pyinfra's ConnectError none is filed.
    """
    from paramiko import SSHException, Transport
    from pyinfra.api.exceptions import ConnectError
    from pyinfra.connectors.ssh import SSHConnector

    _raise_as(
        Transport,
        "open_channel",
        EOFError,
        SSHException,
        lambda error: "SSH connection lost: the host closed it",
    )
    for method in ("put_file", "get_file"):
        _raise_as(SSHConnector, method, ConnectError, SSHException, str)


def _raise_as(
    owner: type,
    name: str,
    caught: type[BaseException],
    raised: type[BaseException],
    message: Callable[[BaseException], str],
) -> None:
    original = getattr(owner, name)
    if getattr(original, "_raises_ssh_errors", False):
        return

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return original(*args, **kwargs)
        except caught as error:
            raise raised(message(error)) from None

    wrapper._raises_ssh_errors = True  # type: ignore[attr-defined]  # marks it wrapped, once
    setattr(owner, name, wrapper)


# =========================================================================== pyinfra 3.10.0


def connector_arguments_of_running_operation(state: State, host: Host) -> dict[str, Any]:
    """The connector arguments (_sudo, _su_user, _env, _shell_executable ...) of the operation
    `host` is running, for commands a callback of that operation runs itself, so that they run
    as pyinfra runs the operation's own; empty outside an operation.

    Works around: pyinfra calls a FunctionCommand's callback with `state` and `host` only,
    without the connector arguments it runs the operation's commands with.
    Reaches into: Host.executing_op_hash (set by pyinfra's executor while it runs an
    operation), State.get_op_data_for_host(...).global_arguments and
    pyinfra.api.arguments.CONNECTOR_ARGUMENT_KEYS: what the executor itself reads.
    Versions: pyinfra 3.10.0.
    Upstream: pyinfra-dev/pyinfra#544 (closed) asked for it for python.call; 3.10 still
    calls the callback without them.
    """
    from pyinfra.api.arguments import CONNECTOR_ARGUMENT_KEYS

    if not host.executing_op_hash:
        return {}
    given: Mapping[str, Any] = state.get_op_data_for_host(
        host, host.executing_op_hash
    ).global_arguments
    return {key: given[key] for key in CONNECTOR_ARGUMENT_KEYS if key in given}


def run_is_dry(argv: list[str] | None = None) -> bool:
    """Whether this run is `pyinfra --dry`, which changes nothing (the deploy then takes no
    host lock and writes no record).

    Works around: pyinfra keeps --dry to its command line. Neither State nor Config holds
    it, and click's context of the CLI command is not visible from the greenlets that load
    the deploy, so the flag is read from the process' arguments, as click reads it (an
    exact `--dry`, click taking no abbreviations). A run through pyinfra's API is not dry.
    Versions: pyinfra 3.10.0.
    Upstream: none filed.
    """
    return "--dry" in (sys.argv if argv is None else argv)[1:]


def parse_image_reference(image: str) -> Any:
    """pyinfra's reading of a Docker image reference, [host[:port]/][namespace/]repository
    [:tag][@digest] (a reference without tag or digest reads as tag 'latest'), with its
    `registry_host`, `registry_port`, `tag` and `digest`; ValueError for one it cannot read.

    Reaches into: pyinfra.operations.util.docker, the helper of pyinfra's docker operations,
    not part of its documented API; used so that the deploy reads a reference exactly as
    the docker operations it runs do.
    Versions: pyinfra 3.10.0.
    Upstream: nothing to file.
    """
    from pyinfra.operations.util.docker import parse_image_reference as parse

    return parse(image)


# The arguments of pyinfra's docker.container that remove a container.
# Works around: docker.container, told present=False, still starts the container when
# `start` is left at its default (True): after removing a stopped container, or for one that
# is not there, it yields `docker container start`, which fails the host.
# Versions: pyinfra 3.10.0. Upstream: none filed that we found.
DOCKER_CONTAINER_ABSENT = types.MappingProxyType({"present": False, "start": False})


# ===================================================== ruamel.yaml 0.19.1, ruamel.yaml.clib 0.2.15
#
# compose_yaml gives the nodes of a YAML file with the exact position of everything written,
# and where each alias is written. ruamel.yaml's round-trip composer does this through its
# own pure-Python scanner and parser (about 20-40 s per megabyte); libyaml's compiled parser,
# from ruamel.yaml.clib, feeds the same composer several times faster (about 3 s per
# megabyte). ruamel.yaml only uses libyaml for its loaders that do not round-trip, never under its
# round-trip composer, and gives it no public name: both are done here by hand.


@functools.cache
def libyaml_parser() -> Any:
    """libyaml's compiled scanner and parser (ruamel.yaml.clib's private `_ruamel_yaml.CParser`,
    imported as ruamel.yaml's own main module imports it), or None when ruamel.yaml.clib is
    not installed: ruamel.yaml's own parser then answers, the same, slower."""
    try:
        from _ruamel_yaml import CParser  # type: ignore[import-not-found]  # compiled, no stubs
    except ImportError:
        return None
    return CParser


# Tabs between a token and the end of its line (before a comment, or trailing) and right
# after a key's ':' are plain separation that YAML 1.2 and Prometheus' reader accept.
# Works around: ruamel.yaml's scanner refuses them ("found character '\t' that cannot start
# any token"); they become spaces, one for one, so every position stays that of the file.
# Versions: ruamel.yaml 0.19.1. Upstream: ruamel.yaml's tracker (on SourceForge) was not
# searched; PyYAML, whose scanner ruamel.yaml's derives from, has it as yaml/pyyaml#450 (open).
_SEPARATING_TABS = re.compile(
    r"(?<=\S)[ \t]*\t[ \t]*(?=(?:#[^\r\n]*)?(?:\r\n|\r|\n|$))|(?<=\S:)[ \t]*\t[ \t]*"
)

# A document end marker: YAML 1.1 and 1.2 readers disagree on what may follow one.
_DOCUMENT_END = re.compile(r"^\.\.\.(?:[ \t\r\n]|$)", re.MULTILINE)


def compose_yaml(text: str, *, accelerated: bool = True) -> tuple[Node | None, AliasSpans]:
    """The root node of `text` (ruamel.yaml's round-trip nodes, with their positions in
    `text`) and where each alias is written: (id(parent), position in a sequence or id(key
    node) in a mapping) -> (start, end) of the `*name`.

    The composed graph reuses the anchored node for an alias, and that node's marks point at
    the anchor: an alias's own place is only known from here. libyaml composes when it is
    installed and `accelerated`; ruamel.yaml's own parser whenever libyaml cannot answer for
    certain (the result is the same, only slower), and for every error. Raises ruamel.yaml's
    YAMLError for text that is not YAML, RecursionError for values nested too deeply.
    """
    if "\t" in text:
        text = _SEPARATING_TABS.sub(lambda match: " " * len(match.group()), text)
    composed = compose_with_libyaml(text) if accelerated else None
    return composed if composed is not None else compose_with_ruamel(text)


def compose_with_ruamel(text: str) -> tuple[Node | None, AliasSpans]:
    """compose_yaml through ruamel.yaml's own scanner and parser."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="rt")
    yaml.Composer = _composers().alias_recording
    return yaml.compose(text), yaml.composer.alias_spans


def compose_with_libyaml(text: str) -> tuple[Node | None, AliasSpans] | None:
    """compose_yaml through libyaml, or None where ruamel.yaml's own parser must answer (see
    the libyaml composer in _composers for what libyaml is not trusted with)."""
    from ruamel.yaml.error import YAMLError

    if libyaml_parser() is None or "\ufeff" in text or "\t" in text or _DOCUMENT_END.search(text):
        return None
    composer = _composers().libyaml(text)
    try:
        return composer.get_single_node(), composer.alias_spans
    except (YAMLError, _LibyamlGaveUp):
        return None
    finally:
        composer.parser.dispose()


class _LibyamlGaveUp(Exception):
    """The text holds something libyaml and YAML 1.2 may read differently."""


@functools.cache
def _composers() -> types.SimpleNamespace:
    """The composer classes, built on first use (ruamel.yaml is imported then)."""
    from ruamel.yaml.composer import Composer
    from ruamel.yaml.events import AliasEvent
    from ruamel.yaml.resolver import Resolver

    class AliasRecordingComposer(Composer):
        """ruamel.yaml's composer, also noting where each alias (`*name`) is written.

        Reaches into: Composer.compose_node(parent, index) and compose_scalar_node(anchor),
        the undocumented steps of ruamel.yaml's composer, and its parser's event queue.
        Works around: ruamel.yaml's round-trip scanner marks each fold of a folded scalar
        (`>`) with a BEL character, which its constructor takes out again for its
        FoldedScalarString; composed nodes keep it. YAML text cannot hold a BEL, so every
        one is a fold mark.
        Versions: ruamel.yaml 0.19.1. Upstream: nothing to file (the marks are ruamel's design).
        """

        def __init__(self, loader: Any = None) -> None:
            super().__init__(loader=loader)
            self.alias_spans: dict[tuple[int, int], tuple[int, int]] = {}

        def compose_node(self, parent: Any, index: Any) -> Any:
            if index is not None and self.parser.check_event(AliasEvent):
                event = self.parser.peek_event()
                slot = index if isinstance(index, int) else id(index)
                self.alias_spans[(id(parent), slot)] = (
                    event.start_mark.index,
                    event.end_mark.index,
                )
            return super().compose_node(parent, index)

        def compose_scalar_node(self, anchor: Any) -> Any:
            node = super().compose_scalar_node(anchor)
            if node.style == ">" and "\a" in node.value:
                node.value = node.value.replace("\a", "")
            return node

    class InterningResolver(Resolver):
        """YAML 1.2's implicit types, each tag one shared object: ruamel.yaml makes a Tag per
        node and works its text out again for each.

        Reaches into: Tag.suffix, and shares the Tag Resolver.resolve returns between nodes
        (nothing in the composer changes a node's tag).
        Versions: ruamel.yaml 0.19.1. Upstream: nothing to file.
        """

        _tags: ClassVar[dict[str, Tag]] = {}

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
            tag = super().resolve(kind, value, implicit)
            shared = self._tags.get(tag.suffix)
            if shared is None:
                str(tag)  # works its text out once
                shared = self._tags.setdefault(tag.suffix, tag)
            return shared

    class LibyamlComposer(AliasRecordingComposer):
        """The alias-recording composer over libyaml's compiled parser: the same nodes at the
        same positions, several times faster on large files.

        Reaches into: ruamel.yaml.clib's private `_ruamel_yaml.CParser` (its events,
        dispose()); Composer's `parser` and `resolver`, properties that look through the
        loader at every event, shadowed by plain attributes (the composer is its own loader,
        with the `max_depth` Composer reads from a loader; 0: no limit).
        Works around: libyaml reads YAML 1.1 and ruamel.yaml YAML 1.2, and they differ in
        places: where they could part this composer gives up (_LibyamlGaveUp) and ruamel.yaml's
        own parser answers: any error (libyaml refuses, say, `[localhost:9090]`, which YAML 1.2
        and Prometheus read), a %YAML/%TAG directive (which would change how values resolve),
        a byte-order mark inside the text (not counted in libyaml's positions), a tab that is
        not plain separation (libyaml takes some for spaces where YAML 1.2 refuses them), a
        document end marker, and a node with both a tag and an anchor (ruamel.yaml starts it
        at the anchor, libyaml at the tag). libyaml calls a plain scalar's style '',
        ruamel.yaml None.
        Versions: ruamel.yaml 0.19.1, ruamel.yaml.clib 0.2.15.
        Upstream: nothing to file (two readers of two YAML versions).
        """

        parser: Any = None
        resolver: Any = None

        def __init__(self, text: str) -> None:
            super().__init__(loader=self)
            self.max_depth = 0
            self.parser = libyaml_parser()(text)
            # YAML 1.2's implicit types, as ruamel.yaml's round-trip loader reads a file without directives.
            self.resolver = InterningResolver(loadumper=self)

        def compose_document(self) -> Any:
            start = self.parser.peek_event()
            if start.version is not None or start.tags:
                raise _LibyamlGaveUp()
            return super().compose_document()

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.parser.peek_event()
            if (
                getattr(event, "anchor", None) is not None
                and getattr(event, "tag", None) is not None
            ):
                raise _LibyamlGaveUp()
            return super().compose_node(parent, index)

        def compose_scalar_node(self, anchor: Any) -> Any:
            node = super().compose_scalar_node(anchor)
            if node.style == "":
                node.style = None
            return node

    return types.SimpleNamespace(
        alias_recording=AliasRecordingComposer,
        libyaml=LibyamlComposer,
        interning_resolver=InterningResolver,
    )
