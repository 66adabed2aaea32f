"""TEST DOUBLE: the reload side of a Prometheus server, for the deploy's reload command run
on this machine (tests/unit/local_pyinfra_host.py).

It serves /metrics over HTTP on 127.0.0.1 with Prometheus' two reload gauges,
prometheus_config_last_reload_successful and
prometheus_config_last_reload_success_timestamp_seconds (in the exposition format
Prometheus writes, e.g. 1.7963075320330613e+09), among other lines. A reload is asked the
way the deploy asks a real one, by SIGHUP through systemctl: the systemctl test double
appends a line to `hup_file` for each signal, and the double answers the next read of
/metrics after one, as Prometheus would once done, according to its mode:

  reload  the gauges say a successful reload `delay_s` after the signal
  reject  successful goes to 0 (success time unchanged), and the journal file gets the
          error lines Prometheus 2 logs for a rule file it cannot read
  stuck   nothing changes (a Prometheus that never gets to it)
  frozen  /metrics never answers within the probe's time (a stopped process: the
          kernel accepts the connection, nobody reads it); bounded by `hang_s`

Every read of /metrics is counted. With `earlier_reload_on_read=N`, the Nth read shows a
successful reload one second before it: another reload that ended just before the signal.
"""

from __future__ import annotations

import socketserver
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

MODES = ("reload", "reject", "stuck", "frozen")
REJECTION_LOG = [
    (
        'ts=2026-01-01T00:00:00.000Z caller=main.go:1192 level=info msg="Loading configuration file" '
        "filename=/etc/prometheus/prometheus.yml"
    ),
    (
        'ts=2026-01-01T00:00:00.001Z caller=manager.go:1015 level=error component="rule manager" '
        'msg="loading groups failed" err="/etc/prometheus/scaphandre_rules.yml: open '
        '/etc/prometheus/scaphandre_rules.yml: permission denied"'
    ),
    (
        'ts=2026-01-01T00:00:00.001Z caller=main.go:1218 level=error msg="Failed to apply configuration" '
        'err="error loading rules, previous rule set restored"'
    ),
]


class _Server(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class PrometheusReloadDouble:
    def __init__(
        self,
        hup_file: Path,
        journal_file: Path,
        mode: str = "reload",
        delay_s: float = 0.0,
        hang_s: float = 5.0,
        earlier_reload_on_read: int | None = None,
    ):
        self.hup_file = hup_file
        self.journal_file = journal_file
        self.mode = mode
        self.delay_s = delay_s
        self.hang_s = hang_s
        self.earlier_reload_on_read = earlier_reload_on_read
        self.successful = 1
        self.success_at = time.time() - 3600
        self.reads = 0
        self._handled = 0
        self._lock = threading.Lock()
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path != "/metrics":
                    self.send_error(404)
                    return
                body = double._metrics()
                if body is None:
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args):
                pass

        self._server = _Server(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> PrometheusReloadDouble:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def signals(self) -> int:
        return len(self.hup_file.read_text().splitlines()) if self.hup_file.exists() else 0

    def _metrics(self) -> str | None:
        with self._lock:
            self.reads += 1
            mode = self.mode
            if mode == "frozen":
                pass
            elif self.reads == self.earlier_reload_on_read:
                self.successful, self.success_at = 1, time.time() - 1
            elif self.signals() > self._handled:
                signalled = self.hup_file.stat().st_mtime
                if mode == "reload" and time.time() >= signalled + self.delay_s:
                    self._handled = self.signals()
                    self.successful, self.success_at = 1, time.time()
                elif mode == "reject":
                    self._handled = self.signals()
                    self.successful = 0
                    with self.journal_file.open("a") as journal:
                        journal.write("\n".join(REJECTION_LOG) + "\n")
        if mode == "frozen":
            time.sleep(self.hang_s)
            return None
        return (
            "# HELP prometheus_config_last_reload_success_timestamp_seconds Timestamp of the last successful "
            "configuration reload.\n"
            "# TYPE prometheus_config_last_reload_success_timestamp_seconds gauge\n"
            f"prometheus_config_last_reload_success_timestamp_seconds {self.success_at:.16e}\n"
            "# HELP prometheus_config_last_reload_successful Whether the last configuration reload attempt was "
            "successful.\n"
            "# TYPE prometheus_config_last_reload_successful gauge\n"
            f"prometheus_config_last_reload_successful {self.successful}\n"
            'prometheus_build_info{version="2.42.0"} 1\n'
        )
