"""Whether Prometheus has loaded the new configuration (tasks/prometheus/reload.py): where it
serves /metrics, what a probe of it said, the verdict, and the message when the server does
not confirm. The command that produces these on a server is tested in test_prometheus.py
(run here against a Prometheus reload double) and end to end in
tests/e2e/test_prometheus_servers.py."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks.prometheus.reload import (
    MetricsEndpoint,
    Outcome,
    Probe,
    judge,
    metrics_endpoint,
    not_confirmed_message,
    parse_probe,
    parse_report,
    relevant_journal_lines,
)

OPENNEBULA_UNIT = (
    "/usr/bin/prometheus",
    "--config.file=/etc/one/prometheus/prometheus.yml",
    "--storage.tsdb.path=/var/lib/prometheus/data/",
)

# ------------------------------------------------------------------------- where /metrics is


@pytest.mark.parametrize(
    "args, expected",
    [
        (OPENNEBULA_UNIT, MetricsEndpoint("127.0.0.1", 9090, "/metrics")),
        (
            ("prometheus", "--web.listen-address=:9091"),
            MetricsEndpoint("127.0.0.1", 9091, "/metrics"),
        ),
        (
            ("prometheus", "--web.listen-address", "0.0.0.0:9092"),
            MetricsEndpoint("127.0.0.1", 9092, "/metrics"),
        ),
        (
            ("prometheus", "--web.listen-address=[::]:9093"),
            MetricsEndpoint("::1", 9093, "/metrics"),
        ),
        (
            ("prometheus", "--web.listen-address=[2001:db8::7]:9094"),
            MetricsEndpoint("2001:db8::7", 9094, "/metrics"),
        ),
        (
            ("prometheus", "--web.listen-address=192.0.2.5:9095"),
            MetricsEndpoint("192.0.2.5", 9095, "/metrics"),
        ),
        (
            ("prometheus", "--web.listen-address=localhost:9096"),
            MetricsEndpoint("localhost", 9096, "/metrics"),
        ),
        # Prometheus 3 takes the flag more than once: it serves on each, the first will do.
        (
            ("prometheus", "--web.listen-address=:9097", "--web.listen-address=:9098"),
            MetricsEndpoint("127.0.0.1", 9097, "/metrics"),
        ),
        (
            ("prometheus", "--web.route-prefix=/prom/"),
            MetricsEndpoint("127.0.0.1", 9090, "/prom/metrics"),
        ),
        (
            ("prometheus", "--web.external-url=https://frontend.example.org/prometheus"),
            MetricsEndpoint("127.0.0.1", 9090, "/prometheus/metrics"),
        ),
        (
            (
                "prometheus",
                "--web.external-url=https://frontend.example.org/prometheus",
                "--web.route-prefix=/",
            ),
            MetricsEndpoint("127.0.0.1", 9090, "/metrics"),
        ),
        (
            ("prometheus", "--web.external-url=http://frontend:9090/"),
            MetricsEndpoint("127.0.0.1", 9090, "/metrics"),
        ),
    ],
)
def test_where_prometheus_serves_its_metrics(args, expected):
    assert metrics_endpoint(args, ()) == expected


def test_the_running_process_wins_over_the_unit_whose_args_may_be_unexpanded():
    debian_unit = ("/usr/bin/prometheus", "$ARGS")
    running = ("/usr/bin/prometheus", "--web.listen-address=127.0.0.1:9190")
    assert metrics_endpoint(running, debian_unit) == MetricsEndpoint("127.0.0.1", 9190, "/metrics")
    assert metrics_endpoint((), ("/usr/bin/prometheus", "--web.listen-address=:9191")).port == 9191
    assert metrics_endpoint((), ()) == MetricsEndpoint("127.0.0.1", 9090, "/metrics")


@pytest.mark.parametrize("listen", ["9090", "host:http", ":0", ":70000", "[::1]"])
def test_an_address_that_cannot_be_read_names_the_flag(listen):
    with pytest.raises(ValueError, match=re.escape(f"from --web.listen-address={listen}")):
        metrics_endpoint(("prometheus", f"--web.listen-address={listen}"), ())


def test_urls_show_ipv6_in_brackets():
    assert MetricsEndpoint("::1", 9090, "/metrics").url == "http://[::1]:9090/metrics"
    assert MetricsEndpoint("127.0.0.1", 9090, "/p/metrics").url == "http://127.0.0.1:9090/p/metrics"


# ------------------------------------------------------------------------- what a probe said

PROMETHEUS_2_READ = [
    "HTTP/1.0 200 OK",
    "prometheus_config_last_reload_success_timestamp_seconds 1.7963075320330613e+09",
    "prometheus_config_last_reload_successful 1",
    "exit=0",
]


def test_a_probe_reads_the_gauges_as_prometheus_writes_them():
    probe = parse_probe(PROMETHEUS_2_READ)
    assert probe == Probe(
        status="HTTP/1.0 200 OK", successful=1.0, success_at=1796307532.0330613, exit_code=0
    )
    assert probe.read and probe.problem() == ""


@pytest.mark.parametrize(
    "lines, problem",
    [
        (
            [
                "probe: connect: Connection refused",
                "probe: line 1: /dev/tcp/127.0.0.1/9090: Connection refused",
                "exit=7",
            ],
            "Connection refused",
        ),
        (["exit=124"], "no answer within 2 s"),
        (["HTTP/1.0 401 Unauthorized", "exit=0"], "it answered HTTP/1.0 401 Unauthorized"),
        (
            ["HTTP/1.0 200 OK", "exit=0"],
            "no prometheus_config_last_reload_successful in what it answered",
        ),
        (["exit=1"], "no answer (probe exit code 1)"),
    ],
)
def test_a_probe_without_gauges_says_why(lines, problem):
    probe = parse_probe(lines)
    assert not probe.read and probe.problem() == problem


# ------------------------------------------------------------------------- the verdict

SIGNAL = 1_796_307_600.5


def gauges(successful: float, at: float) -> Probe:
    return Probe(status="HTTP/1.0 200 OK", successful=successful, success_at=at, exit_code=0)


@pytest.mark.parametrize(
    "before, after, outcome",
    [
        (gauges(1, SIGNAL - 60), gauges(1, SIGNAL + 0.01), Outcome.CONFIRMED),
        (gauges(1, SIGNAL - 60), gauges(1, SIGNAL), Outcome.CONFIRMED),
        (
            gauges(0, SIGNAL - 60),
            gauges(1, SIGNAL + 2),
            Outcome.CONFIRMED,
        ),  # an earlier failure, now fixed
        (
            Probe(exit_code=124),
            gauges(1, SIGNAL + 2),
            Outcome.CONFIRMED,
        ),  # Prometheus restarted meanwhile
        (gauges(1, SIGNAL - 60), gauges(1, SIGNAL - 60), Outcome.WAITING),  # not yet
        (
            gauges(1, SIGNAL - 60),
            gauges(1, SIGNAL - 0.2),
            Outcome.WAITING,
        ),  # another reload, just before ours
        (gauges(1, SIGNAL - 60), gauges(0, SIGNAL - 60), Outcome.FAILED),
        (
            gauges(0, SIGNAL - 60),
            gauges(0, SIGNAL - 60),
            Outcome.WAITING,
        ),  # failed before: no telling yet
        (Probe(exit_code=124), gauges(0, SIGNAL - 60), Outcome.WAITING),
        (gauges(1, SIGNAL - 60), Probe(exit_code=124), Outcome.WAITING),
    ],
)
def test_the_verdict(before, after, outcome):
    assert judge(before, after, SIGNAL) is outcome


timestamps = st.floats(min_value=SIGNAL - 10**6, max_value=SIGNAL + 10**6)
probes = st.one_of(
    st.builds(gauges, st.sampled_from([0.0, 1.0]), timestamps),
    st.builds(Probe, exit_code=st.sampled_from([7, 124])),
)


@given(before=probes, after=probes)
def test_only_a_successful_reload_at_or_after_the_signal_confirms(before, after):
    outcome = judge(before, after, SIGNAL)
    assert (outcome is Outcome.CONFIRMED) == (after.successful == 1 and after.success_at >= SIGNAL)
    if outcome is Outcome.FAILED:  # only a gauge seen going from 1 to 0
        assert before.successful == 1 and after.successful == 0


# ------------------------------------------------------------------------- the journal and the message

PROMETHEUS_2_REJECTED = [
    "opennebula-prometheus.service: Sent signal SIGHUP to main process 45 (prometheus) on client request.",
    (
        'ts=2026-12-03T14:19:06.009Z caller=main.go:1192 level=info msg="Loading configuration file" '
        "filename=/etc/one/prometheus/prometheus.yml"
    ),
    (
        'ts=2026-12-03T14:19:06.010Z caller=manager.go:1015 level=error component="rule manager" msg="loading groups '
        'failed" err="/etc/one/prometheus/scaphandre_rules.yml: open /etc/one/prometheus/scaphandre_rules.yml: '
        'permission denied"'
    ),
    (
        'ts=2026-12-03T14:19:06.010Z caller=main.go:1218 level=error msg="Failed to apply configuration" '
        'err="error loading rules, previous rule set restored"'
    ),
]
PROMETHEUS_3_REJECTED = [
    'time=2026-12-03T14:19:06.009Z level=INFO source=main.go:1475 msg="Loading configuration file"',
    (
        'time=2026-12-03T14:19:06.010Z level=ERROR source=manager.go:197 msg="loading groups failed" '
        'component="rule manager" err="open /etc/prometheus/scaphandre_rules.yml: permission denied"'
    ),
]


def test_the_journal_shows_prometheus_errors_first_else_its_last_lines():
    assert relevant_journal_lines(PROMETHEUS_2_REJECTED) == PROMETHEUS_2_REJECTED[2:]
    assert relevant_journal_lines(PROMETHEUS_3_REJECTED) == PROMETHEUS_3_REJECTED[1:]
    quiet = [f"line {n}" for n in range(20)]
    assert relevant_journal_lines(quiet, limit=3) == ["line 17", "line 18", "line 19"]
    assert relevant_journal_lines(["", "  "]) == []


def test_a_password_in_a_url_of_the_journal_is_not_shown():
    line = (
        'ts=x level=error msg="Error sending alert" err="Post \\"https://alerts:S3cr3t!@am.example.org:9093/api\\"'
        ': dial tcp: i/o timeout"'
    )
    (shown,) = relevant_journal_lines([line])
    assert "S3cr3t" not in shown and "https://alerts:<secret>@am.example.org:9093/api" in shown


def message(outcome: Outcome, after: Probe, journal=(), main_process: str = "45 S") -> str:
    return not_confirmed_message(
        outcome,
        service="opennebula-prometheus",
        changed_path="/etc/one/prometheus/prometheus.yml",
        url="http://127.0.0.1:9090/metrics",
        after=after,
        timeout_s=60,
        main_process=main_process,
        journal=journal,
    )


def test_a_rejected_reload_is_told_with_prometheus_own_error():
    text = message(Outcome.FAILED, gauges(0, SIGNAL - 60), PROMETHEUS_2_REJECTED)
    first, *rest = text.splitlines()
    assert first == (
        "Prometheus (opennebula-prometheus) failed to load the new /etc/one/prometheus/prometheus.yml: "
        "prometheus_config_last_reload_successful went to 0 at http://127.0.0.1:9090/metrics after the "
        "reload signal, so the new configuration is not (or not wholly) in effect."
    )
    assert rest[0] == "journalctl -u opennebula-prometheus since the reload signal:"
    assert "permission denied" in rest[1] and "previous rule set restored" in rest[2]
    assert rest[-1].startswith("Fix: correct what the journal names (then rerun the deploy")


def test_a_stuck_reload_names_the_timeout_setting_the_stopped_process_and_the_silent_journal():
    text = message(Outcome.WAITING, Probe(exit_code=124), main_process="45 T")
    assert text.splitlines()[0] == (
        "Prometheus (opennebula-prometheus) did not confirm loading the new /etc/one/prometheus/prometheus.yml "
        "within 60 s (prometheus_reload_timeout_s): its /metrics gave no reload gauges (no answer within 2 s); its "
        "main process (PID 45) is stopped at http://127.0.0.1:9090/metrics."
    )
    assert "journalctl -u opennebula-prometheus shows nothing since the reload signal" in text
    assert "needs a larger prometheus_reload_timeout_s" in text


def test_a_reload_not_yet_done_or_still_failing_says_what_prometheus_reports():
    assert "it reports no successful reload since the signal" in message(
        Outcome.WAITING, gauges(1, SIGNAL - 60)
    )
    assert (
        "it reports its last reload failed (prometheus_config_last_reload_successful 0)"
        in message(Outcome.WAITING, gauges(0, SIGNAL - 60), PROMETHEUS_3_REJECTED)
    )


def test_a_metrics_endpoint_behind_tls_or_a_login_points_to_the_setting_that_skips_the_check():
    text = message(Outcome.WAITING, parse_probe(["HTTP/1.0 400 Bad Request", "exit=0"]))
    assert "it answered HTTP/1.0 400 Bad Request" in text
    assert "set prometheus_reload_timeout_s to 0 for it to reload without confirmation" in text


def test_the_report_of_the_reload_command():
    report = parse_report(
        [
            "signalled 1796307600.500000000",
            *(f"before {line}" for line in PROMETHEUS_2_READ),
            "after HTTP/1.0 200 OK",
            "after prometheus_config_last_reload_success_timestamp_seconds 1.7963076005e+09",
            "after prometheus_config_last_reload_successful 1",
            "after exit=0",
            "main_process 45 S",
            *(f"journal {line}" for line in PROMETHEUS_2_REJECTED[:2]),
        ]
    )
    assert report.signalled_at == SIGNAL and report.main_process == "45 S"
    assert (
        report.before.success_at == 1796307532.0330613 and report.after.success_at == 1796307600.5
    )
    assert not report.ran_out and report.journal == tuple(PROMETHEUS_2_REJECTED[:2])
    assert judge(report.before, report.after, report.signalled_at) is Outcome.CONFIRMED
    stuck = parse_report(["signalled 1796307600.5", "before exit=124", "after exit=124"])
    assert stuck.ran_out and not stuck.not_running
    assert parse_report(["not_running"]).not_running
    assert parse_report(["signal_error Failed to kill unit x: access denied"]).signal_error == (
        "Failed to kill unit x: access denied"
    )
