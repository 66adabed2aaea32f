"""What the Prometheus step reads on a server."""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from typing import Any

from pyinfra.api import FactBase

from tasks.text_file import LiveFile, live_file_lines, parse_live_file

# A Prometheus binary answers `--version` with this first line (Debian's and upstream's builds alike).
VERSION_LINE_START = "prometheus, version "


def _first_executable(variable: str, paths: Sequence[str]) -> str:
    """Shell that sets `variable` to the first executable of `paths` (left unchanged when none is)."""
    if not paths:
        return ":"
    listed = " ".join(shlex.quote(path) for path in paths)
    return f'for candidate in {listed}; do if [ -x "$candidate" ]; then {variable}=$candidate; break; fi; done'


class PrometheusServer(FactBase[dict[str, Any]]):
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
            (
                "config=''; service=''; unit_binary=''; binary=''; binary_source=''; promtool=''; version=''; "
                "unit_args=''; main_args=''"
            ),
            *choose,
            (
                'if [ -n "$service" ] && command -v systemctl >/dev/null 2>&1; then '
                'exec_start=$(systemctl show -p ExecStart "$service" 2>/dev/null); '
                "unit_binary=$(printf '%s\\n' \"$exec_start\" | sed -n 's/^.*path=\\([^ ;]*\\).*$/\\1/p' | head -n 1); "
                "unit_args=$(printf '%s\\n' \"$exec_start\" "
                "| sed -n 's/^.*argv\\[\\]=\\([^;]*\\) ;.*$/\\1/p' | head -n 1); "
                'pid=$(systemctl show -p MainPID --value "$service" 2>/dev/null); '
                'if [ -n "$pid" ] && [ "$pid" != 0 ] && [ -r "/proc/$pid/cmdline" ]; then '
                'main_args=$(base64 -w 0 < "/proc/$pid/cmdline"); fi; fi'
            ),
            (
                'if [ -n "$unit_binary" ] && [ -x "$unit_binary" ] '
                f'&& "$unit_binary" --version 2>&1 | head -n 1 | grep -q {shlex.quote("^" + VERSION_LINE_START)}; '
                "then binary=$unit_binary; binary_source=unit; fi"
            ),
            'if [ -z "$binary" ]; then '
            + _first_executable("binary", binaries)
            + '; if [ -n "$binary" ]; then binary_source=list; fi; fi',
            (
                'if [ -n "$binary" ] && [ -x "$(dirname -- "$binary")/promtool" ]; then '
                'promtool="$(dirname -- "$binary")/promtool"; fi'
            ),
            'if [ -z "$promtool" ]; then ' + _first_executable("promtool", promtools) + "; fi",
            'if [ -n "$binary" ]; then version=$("$binary" --version 2>&1 | head -n 1); fi',
            (
                "printf 'config=%s\\nservice=%s\\nunit_binary=%s\\nbinary=%s\\nbinary_source=%s\\npromtool=%s\\n"
                'version=%s\\nunit_args=%s\\nmain_args=%s\\n\' "$config" "$service" "$unit_binary" "$binary" '
                '"$binary_source" "$promtool" "$version" "$unit_args" "$main_args"'
            ),
        ]
        return "\n".join(lines)

    def process(self, output: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = dict.fromkeys(
            (
                "config",
                "service",
                "unit_binary",
                "binary",
                "binary_source",
                "promtool",
                "version",
                "unit_args",
                "main_args",
            ),
            "",
        )
        for line in output:
            key, _, value = line.partition("=")
            if key in found:
                found[key] = value.strip()
        found["unit_args"] = tuple(found["unit_args"].split())
        raw = (
            base64.b64decode(found["main_args"]).decode("utf-8", "surrogateescape")
            if found["main_args"]
            else ""
        )
        found["main_args"] = tuple(arg for arg in raw.split("\0") if arg)
        return found


class PrometheusConfigFile(FactBase[LiveFile | dict[str, Any] | None]):
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

    def command(
        self,
        path: str,
        record: str,
        fingerprint: str,
        original: str,
        known_sha256: str = "",
        reload_pending: str = "",
    ) -> str:
        return "\n".join(
            [
                (
                    f"r={shlex.quote(record)}; want={shlex.quote(fingerprint)}; "
                    f"o={shlex.quote(original)}; known={shlex.quote(known_sha256)}; "
                    f"pending={shlex.quote(reload_pending)}"
                ),
                *live_file_lines(path),
                'if [ -e "$o" ]; then echo original=1; fi',
                'if [ -f "$r" ]; then echo record_exists=1; fi',
                'if [ -n "$pending" ] && [ -e "$pending" ]; then echo reload_pending=1; fi',
                (
                    'if [ -n "$want" ] && [ -f "$r" ] && [ "$(head -n 1 -- "$r")" = "$sha $want" ]; then '
                    "echo record=current; exit 0; fi"
                ),
                'if [ -n "$known" ] && [ "$sha" = "$known" ]; then exit 0; fi',
                "echo content:",
                'base64 < "$p"',
            ]
        )

    def process(self, output: list[str]) -> LiveFile | dict[str, Any] | None:
        return parse_live_file(output)
