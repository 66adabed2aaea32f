"""What the Prometheus step reads on a server."""

from __future__ import annotations

import base64
import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from pyinfra.api import FactBase

# A Prometheus binary answers `--version` with this first line (Debian's and upstream's builds alike).
VERSION_LINE_START = "prometheus, version "


def _first_executable(variable: str, paths: Sequence[str]) -> str:
    """Shell that sets `variable` to the first executable of `paths` (left unchanged when none is)."""
    if not paths:
        return ":"
    listed = " ".join(shlex.quote(path) for path in paths)
    return f'for candidate in {listed}; do if [ -x "$candidate" ]; then {variable}=$candidate; break; fi; done'


class PrometheusServer(FactBase):
    """Which Prometheus this host runs, in one round trip.

    The config file and service are the settings' (when given) or the first candidate whose
    config exists. The binary is the one that service's systemd unit runs (ExecStart), when it
    answers `--version` as Prometheus; otherwise the first of `binaries` that exists. promtool
    is the one beside that binary, else the first of `promtools`. The version is that binary's.

    Returns a dict with keys config, service, unit_binary (what the unit runs, '' when it names
    none), binary, binary_source ('unit', 'list' or ''), promtool and version ('' when not found),
    and the command line Prometheus was given, for where it listens: unit_args (the unit's
    ExecStart, unexpanded) and main_args (the running main process', () when none runs).
    """

    def command(
        self,
        candidates: Sequence[tuple[str, str]],
        binaries: Sequence[str],
        promtools: Sequence[str],
        config_file: str | None = None,
        service: str | None = None,
    ) -> str:
        if config_file and service:
            choose = [f"config={shlex.quote(config_file)}; service={shlex.quote(service)}"]
        else:
            choose = [
                f'if [ -z "$config" ] && [ -e {shlex.quote(path)} ]; then '
                f"config={shlex.quote(path)}; service={shlex.quote(unit)}; fi"
                for path, unit in candidates
            ]
        lines = [
            "config=''; service=''; unit_binary=''; binary=''; binary_source=''; promtool=''; version=''; "
            "unit_args=''; main_args=''",
            *choose,
            'if [ -n "$service" ] && command -v systemctl >/dev/null 2>&1; then '
            'exec_start=$(systemctl show -p ExecStart "$service" 2>/dev/null); '
            "unit_binary=$(printf '%s\\n' \"$exec_start\" | sed -n 's/^.*path=\\([^ ;]*\\).*$/\\1/p' | head -n 1); "
            "unit_args=$(printf '%s\\n' \"$exec_start\" | sed -n 's/^.*argv\\[\\]=\\([^;]*\\) ;.*$/\\1/p' | head -n 1); "
            'pid=$(systemctl show -p MainPID --value "$service" 2>/dev/null); '
            'if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/cmdline" ]; then '
            'main_args=$(base64 -w 0 < "/proc/$pid/cmdline"); fi; fi',
            'if [ -n "$unit_binary" ] && [ -x "$unit_binary" ] '
            f'&& "$unit_binary" --version 2>&1 | head -n 1 | grep -q {shlex.quote("^" + VERSION_LINE_START)}; '
            "then binary=$unit_binary; binary_source=unit; fi",
            'if [ -z "$binary" ]; then ' + _first_executable("binary", binaries)
            + '; if [ -n "$binary" ]; then binary_source=list; fi; fi',
            'if [ -n "$binary" ] && [ -x "$(dirname -- "$binary")/promtool" ]; then '
            'promtool="$(dirname -- "$binary")/promtool"; fi',
            'if [ -z "$promtool" ]; then ' + _first_executable("promtool", promtools) + "; fi",
            'if [ -n "$binary" ]; then version=$("$binary" --version 2>&1 | head -n 1); fi',
            "printf 'config=%s\\nservice=%s\\nunit_binary=%s\\nbinary=%s\\nbinary_source=%s\\npromtool=%s\\n"
            "version=%s\\nunit_args=%s\\nmain_args=%s\\n' \"$config\" \"$service\" \"$unit_binary\" \"$binary\" "
            '"$binary_source" "$promtool" "$version" "$unit_args" "$main_args"',
        ]
        return "\n".join(lines)

    def process(self, output) -> dict:
        found: dict = dict.fromkeys(("config", "service", "unit_binary", "binary", "binary_source", "promtool",
                                     "version", "unit_args", "main_args"), "")
        for line in output:
            key, _, value = line.partition("=")
            if key in found:
                found[key] = value.strip()
        found["unit_args"] = tuple(found["unit_args"].split())
        raw = base64.b64decode(found["main_args"]).decode("utf-8", "surrogateescape") if found["main_args"] else ""
        found["main_args"] = tuple(arg for arg in raw.split("\0") if arg)
        return found


@dataclass(frozen=True)
class LiveFile:
    """A file the deploy replaces, as read on the server.

    `content` is None when the record in the deploy's state says this very file (same
    SHA-256) already holds what the deploy wants (`record_current`), or when the file
    still has the SHA-256 the caller already holds the bytes of: nothing needs reading
    then. `complete` is False when the bytes received do not have the SHA-256 the
    server computed (a file that changed while it was read).
    """

    link: bool  # the path is a symbolic link (the target is what gets replaced)
    target: str  # the path with every link resolved
    regular: bool  # a regular file (through the link); False for a directory, a device ...
    uid: int
    gid: int
    mode: str  # octal, as stat prints it
    sha256: str
    content: bytes | None
    record_current: bool
    record_exists: bool
    original_exists: bool
    reload_pending: bool = False  # an earlier reload for this file was never confirmed by Prometheus

    @property
    def complete(self) -> bool:
        return self.content is None or hashlib.sha256(self.content).hexdigest() == self.sha256


class PrometheusConfigFile(FactBase):
    """A file the deploy edits, read as bytes with its stat, in one round trip.

    Returns None when nothing is at `path`, a dict {'dangling': target} for a symbolic
    link to nothing, else a LiveFile. The content is sent base64-encoded, so every byte
    arrives (a NUL or an invalid UTF-8 sequence included), and is left out when `record`
    holds "<this file's SHA-256> <fingerprint>" (the deploy wrote or checked this very
    file for that fingerprint before; an empty fingerprint never matches), or when the
    file's SHA-256 is `known_sha256` (pyinfra runs an operation twice, once to plan and
    once to execute: the second time the bytes need not travel again). Whether the marker
    `reload_pending` exists (a reload Prometheus never confirmed) comes with it.
    """

    def command(self, path: str, record: str, fingerprint: str, original: str, known_sha256: str = "",
                reload_pending: str = "") -> str:
        return "\n".join([
            f"p={shlex.quote(path)}; r={shlex.quote(record)}; want={shlex.quote(fingerprint)}; "
            f"o={shlex.quote(original)}; known={shlex.quote(known_sha256)}; pending={shlex.quote(reload_pending)}",
            'if [ ! -e "$p" ]; then if [ -L "$p" ]; then printf \'dangling=\'; '
            'readlink -- "$p" | base64 -w 0; echo; else echo absent=1; fi; exit 0; fi',
            'if [ -L "$p" ]; then echo link=1; else echo link=0; fi',
            'printf \'target=\'; readlink -f -- "$p" | tr -d \'\\n\' | base64 -w 0; echo',
            'if [ ! -f "$p" ]; then echo regular=0; exit 0; fi',
            "stat -L --printf 'uid=%u\\ngid=%g\\nmode=%a\\n' -- \"$p\"",
            'sha=$(sha256sum < "$p"); sha=${sha%% *}; echo "sha256=$sha"',
            'if [ -e "$o" ]; then echo original=1; fi',
            'if [ -f "$r" ]; then echo record_exists=1; fi',
            'if [ -n "$pending" ] && [ -e "$pending" ]; then echo reload_pending=1; fi',
            'if [ -n "$want" ] && [ -f "$r" ] && [ "$(head -n 1 -- "$r")" = "$sha $want" ]; then '
            "echo record=current; exit 0; fi",
            'if [ -n "$known" ] && [ "$sha" = "$known" ]; then exit 0; fi',
            "echo content:",
            'base64 < "$p"',
        ])

    def process(self, output) -> LiveFile | dict | None:
        fields: dict[str, str] = {}
        lines = list(output)
        content_lines: list[str] | None = None
        for position, line in enumerate(lines):
            if line == "content:":
                content_lines = lines[position + 1 :]
                break
            key, _, value = line.partition("=")
            fields[key] = value.strip()
        if "absent" in fields:
            return None
        if "dangling" in fields:
            return {"dangling": base64.b64decode(fields["dangling"]).decode("utf-8", "replace")}
        target = base64.b64decode(fields.get("target", "")).decode("utf-8", "surrogateescape")
        return LiveFile(
            link=fields.get("link") == "1",
            target=target,
            regular=fields.get("regular") != "0",
            uid=int(fields.get("uid") or -1),
            gid=int(fields.get("gid") or -1),
            mode=fields.get("mode", ""),
            sha256=fields.get("sha256", ""),
            content=None if content_lines is None else base64.b64decode("".join(content_lines)),
            record_current=fields.get("record") == "current",
            record_exists=fields.get("record_exists") == "1",
            original_exists=fields.get("original") == "1",
            reload_pending=fields.get("reload_pending") == "1",
        )
