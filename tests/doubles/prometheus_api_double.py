"""TEST DOUBLE: a small stand-in for Prometheus' instant-query HTTP API (/api/v1/query).

It holds series the test sets (a metric name, labels and (unix time, value) samples) and
evaluates the few PromQL forms the energy sync sends, with Prometheus 3's semantics, at the
query's `time` parameter:

  NAME                                       newest sample in (t - lookback, t]
  timestamp(NAME)                            the time of that sample
  avg_over_time(NAME[Ns])                    mean of the samples in (t - N, t]
  max_over_time(timestamp(NAME)[Ns:])        subquery: at each step (multiples of the
                                             evaluation interval in (t - N, t]) the time of
                                             the newest sample in (step - lookback, step];
                                             the maximum of those
  max by (L, ...) (EXPR) / sum by (...) (EXPR)
  EXPR or EXPR                               the left side's series, then those of the right
                                             side whose labels the left side has not

A series may end with a staleness marker (`stale_at`), as Prometheus writes one when a
series leaves a scrape or a rule's output (its VM stopped or moved, its exporter went away):
from that time on, selectors and timestamp() no longer see the samples before it (range
functions still average them, as Prometheus' do). Without one, a sample stays visible for
the lookback (5 minutes), as one whose target was simply not scraped again.

Functions drop the metric name, as Prometheus does. Anything else is answered like a query
Prometheus cannot parse: HTTP 400 with {"status": "error", "errorType": "bad_data"}, so a
query the double does not know fails loudly instead of returning an empty result.
GET and POST (form-encoded) are both accepted, as by Prometheus. Every query is recorded.

Fault modes (`mode=` or `set_mode`): ok, http500, garbage (HTTP 200, not JSON), hang
(answers after `hang_s`, bounded).
"""

from __future__ import annotations

import json
import math
import re
import socketserver
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer

MODES = ("ok", "http500", "garbage", "hang")
MAX_HANG_S = 30.0
DEFAULT_LOOKBACK_S = 300.0

_METRIC = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_AGGREGATION = re.compile(r"^(max|sum) by \(([a-z_, ]+)\) \((.+)\)$")
_AVG_OVER_TIME = re.compile(rf"^avg_over_time\(({_METRIC})\[(\d+)s\]\)$")
_NEWEST_TIMESTAMP = re.compile(rf"^max_over_time\(timestamp\(({_METRIC})\)\[(\d+)s:\]\)$")
_SELECTOR = re.compile(rf"^({_METRIC})$")
_TIMESTAMP = re.compile(rf"^timestamp\(({_METRIC})\)$")


class UnsupportedQuery(ValueError):
    """The double does not evaluate this PromQL (Prometheus would; the test must not rely on it)."""


@dataclass
class Series:
    name: str
    labels: dict[str, str]
    samples: list[tuple[float, float]] = field(default_factory=list)  # (unix time, value), sorted
    stale_at: float | None = None  # time of the staleness marker that ended it, if any


def steady_samples(
    value: float, start: float, end: float, step: float = 15.0
) -> list[tuple[float, float]]:
    """Samples of a constant value every `step` seconds from start to end (inclusive)."""
    count = int((end - start) // step)
    return [(start + index * step, value) for index in range(count + 1)]


class PrometheusApiDouble:
    """TEST DOUBLE of Prometheus' query API on a loopback port. Usable as a context manager."""

    def __init__(
        self,
        *,
        bind: str = "127.0.0.1",
        port: int = 0,
        lookback_s: float = DEFAULT_LOOKBACK_S,
        evaluation_interval_s: float = 60.0,
        mode: str = "ok",
        hang_s: float = 5.0,
    ):
        self._check_mode(mode)
        self.lookback_s, self.evaluation_interval_s = lookback_s, evaluation_interval_s
        self.mode, self.hang_s = mode, hang_s
        self._bind, self._port = bind, port
        self._lock = threading.Lock()
        self._series: list[Series] = []
        self.queries: list[str] = []
        self._server: HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle

    def start(self) -> PrometheusApiDouble:
        server = _Server((self._bind, self._port), _Handler)
        server.double = self  # type: ignore[attr-defined]
        self._server = server
        host, port = server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=server.serve_forever,
            name="prometheus-double",
            kwargs={"poll_interval": 0.1},
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PrometheusApiDouble:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- state

    def add_series(
        self,
        name: str,
        labels: dict[str, str],
        samples: Iterable[tuple[float, float]],
        stale_at: float | None = None,
    ) -> None:
        """Add (or replace, same name and labels) one series; stale_at ends it with a
        staleness marker at that time (after its last sample)."""
        series = Series(
            name, {key: str(value) for key, value in labels.items()}, sorted(samples), stale_at
        )
        if stale_at is not None and series.samples and stale_at <= series.samples[-1][0]:
            raise ValueError("a staleness marker comes after the series' last sample")
        with self._lock:
            self._series = [
                known
                for known in self._series
                if (known.name, known.labels) != (series.name, series.labels)
            ] + [series]

    def clear(self) -> None:
        with self._lock:
            self._series = []

    def set_mode(self, mode: str) -> None:
        self._check_mode(mode)
        self.mode = mode

    @staticmethod
    def _check_mode(mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")

    # -- evaluation

    def evaluate(self, query: str, at: float) -> list[tuple[dict[str, str], float]]:
        """Return [(labels, value)] of the instant vector `query` at time `at`."""
        query = query.strip()
        alternatives = _split_top_level_or(query)
        if len(alternatives) == 2:
            left = self.evaluate(alternatives[0], at)
            seen = {_label_set(labels) for labels, _ in left}
            return left + [
                row for row in self.evaluate(alternatives[1], at) if _label_set(row[0]) not in seen
            ]
        aggregation = _AGGREGATION.match(query)
        if aggregation:
            operator, by, inner = aggregation.groups()
            return _aggregate(
                operator, [name.strip() for name in by.split(",")], self.evaluate(inner, at)
            )
        with self._lock:
            series = list(self._series)
        if match := _AVG_OVER_TIME.match(query):
            name, window = match.group(1), float(match.group(2))
            return [
                (dict(item.labels), sum(values) / len(values))
                for item in series
                if item.name == name
                for values in [[v for t, v in item.samples if at - window < t <= at]]
                if values
            ]
        if match := _NEWEST_TIMESTAMP.match(query):
            name, window = match.group(1), float(match.group(2))
            return [
                (dict(item.labels), newest)
                for item in series
                if item.name == name
                for newest in [self._newest_over_steps(item, at, window)]
                if newest is not None
            ]
        if match := _TIMESTAMP.match(query):
            return [
                (dict(item.labels), sample[0])
                for item in series
                if item.name == match.group(1)
                for sample in [self._newest(item, at)]
                if sample
            ]
        if match := _SELECTOR.match(query):
            return [
                ({"__name__": item.name, **item.labels}, sample[1])
                for item in series
                if item.name == match.group(1)
                for sample in [self._newest(item, at)]
                if sample
            ]
        raise UnsupportedQuery(f"the test double does not evaluate {query!r}")

    def _newest(self, series: Series, at: float) -> tuple[float, float] | None:
        if series.stale_at is not None and series.stale_at <= at:
            return None  # the marker follows every sample: the newest point at `at` is the marker
        visible = [sample for sample in series.samples if at - self.lookback_s < sample[0] <= at]
        return visible[-1] if visible else None

    def _newest_over_steps(self, series: Series, at: float, window: float) -> float | None:
        step = self.evaluation_interval_s
        first = (int((at - window) // step) + 1) * step  # subquery steps are aligned to the epoch
        newest = None
        for index in range(int((at - first) // step) + 1):
            sample = self._newest(series, first + index * step)
            if sample and (newest is None or sample[0] > newest):
                newest = sample[0]
        return newest

    def answer(self, params: dict[str, list[str]]) -> tuple[int, dict]:
        """HTTP status and JSON body for one /api/v1/query request."""
        query = (params.get("query") or [""])[0]
        with self._lock:
            self.queries.append(query)
        try:
            at = float((params.get("time") or [time.time()])[0])
            rows = self.evaluate(query, at)
        except (UnsupportedQuery, ValueError) as error:
            return 400, {"status": "error", "errorType": "bad_data", "error": str(error)}
        result = [{"metric": labels, "value": [at, _format_value(value)]} for labels, value in rows]
        return 200, {"status": "success", "data": {"resultType": "vector", "result": result}}


def _split_top_level_or(query: str) -> list[str]:
    """[left, right] when `query` is `left or right` outside any parentheses, else [query]."""
    depth = 0
    for index, char in enumerate(query):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0 and query.startswith(" or ", index):
            return [query[:index].strip(), query[index + 4 :].strip()]
    return [query]


def _label_set(labels: dict[str, str]) -> frozenset:
    """How `or` matches series: every label but the metric name."""
    return frozenset((name, value) for name, value in labels.items() if name != "__name__")


def _aggregate(
    operator: str, by: list[str], rows: list[tuple[dict, float]]
) -> list[tuple[dict, float]]:
    groups: dict[tuple, list[float]] = {}
    for labels, value in rows:
        key = tuple((name, labels[name]) for name in by if labels.get(name))
        groups.setdefault(key, []).append(value)
    combine = max if operator == "max" else sum
    return [(dict(key), float(combine(values))) for key, values in groups.items()]


def _format_value(value: float) -> str:
    """Prometheus prints sample values with Go's shortest form: 100, not 100.0; NaN, +Inf, -Inf."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) else repr(value)


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        # A client that gave up on a "hang" answer closed its end: expected, not news.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._respond(urllib.parse.urlsplit(self.path).query)

    def do_POST(self):
        length = int(self.headers.get("content-length", 0) or 0)
        self._respond(self.rfile.read(length).decode("utf-8") if length else "")

    def _respond(self, form: str) -> None:
        double: PrometheusApiDouble = self.server.double  # type: ignore[attr-defined]
        if urllib.parse.urlsplit(self.path).path != "/api/v1/query":
            self._send(404, "text/plain", b"404 page not found\n")
            return
        if double.mode == "hang":
            time.sleep(min(double.hang_s, MAX_HANG_S))
        elif double.mode == "http500":
            self._send(500, "text/plain", b"Internal Server Error\n")
            return
        elif double.mode == "garbage":
            self._send(200, "text/html", b"<html>not the Prometheus API</html>")
            return
        status, body = double.answer(urllib.parse.parse_qs(form))
        self._send(status, "application/json", json.dumps(body).encode("utf-8"))

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # noqa: A002 - tests read the output
        pass
