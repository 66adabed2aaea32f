"""The Prometheus step (tasks/prometheus): its facts and operations run for real on this
machine against files under tmp_path (tests/unit/local_pyinfra_host.py), with the real
promtool, a systemctl test double that logs what it is asked and a Prometheus reload
double (tests/doubles/prometheus_reload_double.py) that a SIGHUP through it reaches; and
plans computed by pyinfra's API from given facts. The same cases run on real servers in
tests/e2e/test_faults.py and tests/e2e/test_prometheus_servers.py."""

from __future__ import annotations

import ast
import hashlib
import logging
import os
import shlex
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyinfra
import pytest

from tasks.cloud import CloudView, Hypervisor
from tasks.host_state import read_host_state
from tasks.install_record import install_ledger
from tasks.install_record.facts import FoundFile
from tasks.install_record.record import sha256_of
from tasks.opennebula.pool import OneHost
from tasks.prometheus import (
    config_file,
    configure_prometheus,
    operations,
    prometheus_server,
    remove_prometheus_job,
)
from tasks.prometheus.config_file import edit_fingerprint, with_job
from tasks.prometheus.facts import PrometheusServer
from tasks.prometheus.job import scaphandre_job
from tasks.prometheus.operations import prometheus_job, prometheus_job_absent, prometheus_rules
from tasks.prometheus.reload import MetricsEndpoint, metrics_endpoint
from tests.doubles.prometheus_reload_double import PrometheusReloadDouble
from tests.unit.local_pyinfra_host import run_here
from tests.unit.pyinfra_harness import all_commands, planned_commands, record_facts

DATA = Path(__file__).resolve().parents[1] / "data" / "prometheus"
CORPUS = DATA / "corpus"
PROMTOOL = "/usr/bin/promtool"
SERVICE = "prometheus"
OWNER = (4242, 4243)  # a service account's uid and gid, as a packaged prometheus.yml may have

SYSTEMCTL_DOUBLE = """#!/bin/sh
# systemctl test double: logs its arguments; `is-active` answers $SYSTEMCTL_DIR/active (0 when
# absent); `show -p ExecStart UNIT` prints $SYSTEMCTL_DIR/UNIT.execstart, `show -p MainPID
# --value UNIT` $SYSTEMCTL_DIR/mainpid (0 when absent); `kill ... --signal=HUP` adds a line to
# $SYSTEMCTL_DIR/hup, which the Prometheus reload double reads.
printf '%s\\n' "$*" >> "$SYSTEMCTL_DIR/log"
case "$1" in
  is-active) exit "$(cat "$SYSTEMCTL_DIR/active" 2>/dev/null || echo 0)" ;;
  show) for unit; do :; done
        if [ "$3" = MainPID ]; then cat "$SYSTEMCTL_DIR/mainpid" 2>/dev/null || echo 0
        elif [ -f "$SYSTEMCTL_DIR/$unit.execstart" ]; then
          printf 'ExecStart=%s\\n' "$(cat "$SYSTEMCTL_DIR/$unit.execstart")"; else echo 'ExecStart='; fi ;;
  kill) echo HUP >> "$SYSTEMCTL_DIR/hup" ;;
esac
exit 0
"""
# journalctl test double: prints what the reload double logged.
JOURNALCTL_DOUBLE = """#!/bin/sh
cat "$SYSTEMCTL_DIR/journal" 2>/dev/null
exit 0
"""


@dataclass
class Server:
    """A Prometheus server's files under tmp_path, the deploy's state directory moved there."""

    root: Path
    etc: Path
    fake_bin: Path
    systemctl_dir: Path
    prometheus: PrometheusReloadDouble
    reload_timeout_s: int = 5

    @property
    def endpoint(self) -> MetricsEndpoint:
        return MetricsEndpoint("127.0.0.1", self.prometheus.port, "/metrics")

    @property
    def config(self) -> Path:
        return self.etc / "prometheus.yml"

    @property
    def targets(self) -> str:
        return str(self.etc / "scaphandre_targets.yml")

    @property
    def rules(self) -> str:
        return str(self.etc / "scaphandre_rules.yml")

    def job(self, version=(2, 42, 0), **kwargs) -> dict:
        return scaphandre_job(targets_file=self.targets, prometheus_version=version, **kwargs)

    def deploy(
        self,
        job: dict | None = None,
        rule_file: str | None = None,
        config: Path | None = None,
        service: str = SERVICE,
        promtool: str = PROMTOOL,
        reload_for_rules: bool = False,
    ):
        return run_here(
            lambda: prometheus_job(
                name="Add the job",
                config_path=str(config or self.config),
                job=job or self.job(),
                targets_file=self.targets,
                promtool=promtool,
                service=service,
                endpoint=self.endpoint,
                reload_timeout_s=self.reload_timeout_s,
                rule_file=rule_file,
                reload_for_rules=reload_for_rules,
            ),
            fake_bin=self.fake_bin,
        )

    def remove(
        self, config: Path | None = None, service: str = SERVICE, rule_file: str | None = None
    ):
        return run_here(
            lambda: prometheus_job_absent(
                name="Remove the job",
                config_path=str(config or self.config),
                job_name="scaphandre",
                targets_file=self.targets,
                promtool=PROMTOOL,
                service=service,
                endpoint=self.endpoint,
                reload_timeout_s=self.reload_timeout_s,
                rule_file=rule_file,
            ),
            fake_bin=self.fake_bin,
        )

    def systemctl_calls(self) -> list[str]:
        log = self.systemctl_dir / "log"
        return log.read_text().splitlines() if log.exists() else []

    def reloads(self) -> int:
        return sum(
            1
            for call in self.systemctl_calls()
            if call.startswith("kill --kill-whom=main --signal=HUP")
        )

    def leftovers(self) -> list[str]:
        """Staged, check or spool files left behind anywhere under the server's root."""
        return sorted(
            str(path)
            for path in self.root.rglob("*")
            if ".scaphandre-staged." in path.name
            or ".scaphandre-check." in path.name
            or path.name.endswith(".upload")
        )


@pytest.fixture
def server(tmp_path, monkeypatch) -> Server:
    monkeypatch.setattr(operations, "STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setattr(operations, "PROMETHEUS_STATE_DIR", str(tmp_path / "state" / "prometheus"))
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    systemctl_dir = tmp_path / "systemctl"
    systemctl_dir.mkdir()
    for name, text in (("systemctl", SYSTEMCTL_DOUBLE), ("journalctl", JOURNALCTL_DOUBLE)):
        (fake_bin / name).write_text(text)
        (fake_bin / name).chmod(0o755)
    monkeypatch.setenv("SYSTEMCTL_DIR", str(systemctl_dir))
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "scaphandre_targets.yml").write_text("[]\n")
    (etc / "rules.yml").write_text(
        "groups: []\n"
    )  # OpenNebula's own rule file, which its config lists
    with PrometheusReloadDouble(systemctl_dir / "hup", systemctl_dir / "journal") as prometheus:
        yield Server(tmp_path, etc, fake_bin, systemctl_dir, prometheus)


def install(path: Path, content: bytes, mode: int = 0o640, owner: tuple[int, int] = OWNER) -> bytes:
    path.write_bytes(content)
    os.chown(path, *owner)
    path.chmod(mode)
    return content


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


def count_parses(monkeypatch) -> list[int]:
    calls: list[int] = []
    real = config_file._compose
    monkeypatch.setattr(
        config_file, "_compose", lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs)
    )
    config_file._parse.cache_clear()
    return calls


# --------------------------------------------------------------------------- adding the job


def test_the_job_is_spliced_in_checked_and_the_original_kept(server):
    before = install(server.config, (CORPUS / "debian_shipped.yml").read_bytes())
    run = server.deploy()
    assert run.failure is None, run.failure
    assert server.config.read_bytes() == with_job(before, server.job(), None, server.targets)
    assert owner_and_mode(server.config) == (*OWNER, 0o640)
    original = server.etc / "prometheus.yml.scaphandre-original"
    assert original.read_bytes() == before and owner_and_mode(original) == (*OWNER, 0o640)
    assert not list(server.etc.glob("prometheus.yml.scaphandre-backup.*")), (
        "the first change keeps only the original"
    )
    assert server.leftovers() == []
    assert server.reloads() == 1
    (record,) = (server.root / "state" / "prometheus").glob("*.record")
    assert record.read_text() == (
        f"{hashlib.sha256(server.config.read_bytes()).hexdigest()} "
        f"{edit_fingerprint(server.job(), None, server.targets)}\n"
    )
    assert owner_and_mode(server.root / "state")[2] == 0o700


def test_a_rerun_on_the_file_it_wrote_reads_no_yaml_and_changes_nothing(server, monkeypatch):
    install(server.config, (CORPUS / "opennebula_shipped.yml").read_bytes())
    assert server.deploy().failure is None
    written = server.config.read_bytes()
    parses = count_parses(monkeypatch)
    rerun = server.deploy()
    assert rerun.failure is None and rerun.commands == [] and parses == []
    assert set(rerun.facts) == {"PrometheusConfigFile"}
    assert server.config.read_bytes() == written and server.reloads() == 1


def test_loading_the_deploy_leaves_the_editor_and_its_yaml_library_unloaded():
    # A rerun answered by the record never edits: loading the editor (ruamel.yaml and the
    # splice code) is work only a change needs. Run apart so other tests' imports don't count.
    repo = Path(__file__).resolve().parents[2]
    deploy_imports = [
        ast.unparse(node)
        for node in ast.parse((repo / "deploy.py").read_text()).body
        if isinstance(node, (ast.Import, ast.ImportFrom)) and node.module != "__future__"
    ]
    assert any("tasks.prometheus" in line for line in deploy_imports)
    probe = "\n".join(
        [
            *deploy_imports,
            "import sys",
            "print(sorted(m for m in sys.modules if m.startswith(('ruamel', 'tasks.prometheus'))))",
        ]
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "tasks.prometheus.edit_request" in loaded, loaded
    assert "ruamel" not in loaded and "tasks.prometheus.config_file" not in loaded, loaded


def test_an_operator_edit_is_parsed_once_recorded_and_not_reloaded(server, monkeypatch):
    install(server.config, (CORPUS / "opennebula_shipped.yml").read_bytes())
    assert server.deploy().failure is None
    edited = server.config.read_bytes() + b"# the operator's note\n"
    server.config.write_bytes(edited)
    parses = count_parses(monkeypatch)
    rerun = server.deploy()
    assert rerun.failure is None and len(parses) == 1
    assert len(rerun.commands) == 1 and ".record" in rerun.commands[0]
    assert server.config.read_bytes() == edited and server.reloads() == 1
    assert server.deploy().commands == [] and len(parses) == 1, "recorded: no parse the next time"


def test_the_live_file_travels_once_per_run(server):
    install(server.config, (CORPUS / "debian_shipped.yml").read_bytes() + b"#" * 100_000 + b"\n")
    run = server.deploy()
    assert run.failure is None and run.facts == ["PrometheusConfigFile", "PrometheusConfigFile"]
    planned, executed = run.fact_output_sizes
    assert planned > 100_000 * 4 / 3 and executed < 1_000, (
        "pyinfra's second pass reuses the bytes it read"
    )


def test_later_changes_rotate_three_backups_and_never_touch_the_original(server):
    before = install(server.config, (CORPUS / "job_in_middle.yml").read_bytes())
    versions = []
    for interval in ("10s", "20s", "30s", "40s", "50s"):
        assert server.deploy(server.job(scrape_interval=interval)).failure is None
        versions.append(server.config.read_bytes())
    assert (server.etc / "prometheus.yml.scaphandre-original").read_bytes() == before
    backups = [
        (server.etc / f"prometheus.yml.scaphandre-backup.{n}").read_bytes() for n in (1, 2, 3)
    ]
    assert backups == [versions[3], versions[2], versions[1]]
    assert not (server.etc / "prometheus.yml.scaphandre-backup.4").exists()
    assert server.reloads() == 5


def test_the_staged_file_has_the_live_files_owner_and_mode_when_promtool_reads_it(server):
    install(server.config, (CORPUS / "debian_shipped.yml").read_bytes(), mode=0o600)
    seen = server.root / "promtool-saw"
    spy = server.fake_bin / "promtool-spy"
    spy.write_text(
        f'#!/bin/sh\nfor f; do :; done\nstat -c "%a %u %g %n" "$f" > {seen}\nexec {PROMTOOL} "$@"\n'
    )
    spy.chmod(0o755)
    assert server.deploy(promtool=str(spy)).failure is None
    mode, uid, gid, path = seen.read_text().split()
    assert (mode, int(uid), int(gid)) == ("600", *OWNER)
    assert Path(path).parent == server.etc and ".scaphandre-staged." in path
    assert owner_and_mode(server.config) == (*OWNER, 0o600)


def test_a_symlinked_prometheus_yml_is_edited_through_its_link(server):
    real_dir = server.root / "srv" / "prometheus-config"
    real_dir.mkdir(parents=True)
    real = real_dir / "prometheus.yml"
    # A relative rule file that exists beside the link only: Prometheus reads relative paths
    # from the directory of the path it is given, so promtool must check the new file from there.
    before = install(
        real,
        b"global:\n  scrape_interval: 15s\nrule_files: ['local_rules.yml']\nscrape_configs: []\n",
    )
    (server.etc / "local_rules.yml").write_text("groups: []\n")
    server.config.symlink_to(os.path.relpath(real, server.etc))
    assert server.deploy().failure is None
    assert server.config.is_symlink() and server.config.resolve() == real
    assert real.read_bytes() == with_job(before, server.job(), None, server.targets)
    assert owner_and_mode(real) == (*OWNER, 0o640)
    original = server.etc / "prometheus.yml.scaphandre-original"
    assert not original.is_symlink() and original.read_bytes() == before
    assert server.leftovers() == [] and sorted(p.name for p in real_dir.iterdir()) == [
        "prometheus.yml"
    ]


def test_promtools_rejection_leaves_the_live_file_and_nothing_else(server):
    before = install(server.config, b"rule_files: [/nonexistent/rules.yml]\nscrape_configs: []\n")
    run = server.deploy()
    assert run.failure.startswith(
        f"promtool rejected the new {server.config}; the live file is untouched: "
    )
    assert "/nonexistent/rules.yml" in run.failure
    assert server.config.read_bytes() == before and owner_and_mode(server.config) == (*OWNER, 0o640)
    assert server.leftovers() == [] and not list(server.etc.glob("prometheus.yml.scaphandre-*"))
    assert server.reloads() == 0 and not list((server.root / "state").rglob("*.record"))


def test_an_unparseable_prometheus_yml_fails_this_server_and_writes_nothing(server):
    before = install(server.config, (DATA / "broken.yml").read_bytes())
    run = server.deploy()
    assert run.commands == ["call log_failure"]
    assert run.failure.startswith(f"{server.config}: prometheus.yml is not valid YAML (")
    assert "left untouched" in run.failure and "\n" not in run.failure
    assert server.config.read_bytes() == before and server.reloads() == 0


def test_an_empty_prometheus_yml_gets_the_job_through_promtool(server):
    install(server.config, b"")
    run = server.deploy()
    assert run.failure is None and any("check config" in command for command in run.commands)
    assert server.config.read_bytes() == with_job(b"", server.job(), None, server.targets)
    assert (server.etc / "prometheus.yml.scaphandre-original").read_bytes() == b""
    assert server.reloads() == 1


def test_a_file_that_is_not_utf8_is_refused_naming_the_line_and_nothing_is_written(server):
    before = install(
        server.config,
        "global:\n  scrape_interval: 15s\n# Réglages\nscrape_configs: []\n".encode("latin-1"),
    )
    run = server.deploy()
    assert run.commands == ["call log_failure"]
    assert f"{server.config}: prometheus.yml is not valid UTF-8 (line 3" in run.failure
    assert server.config.read_bytes() == before


def test_every_byte_of_the_live_file_arrives(server):
    """A NUL in a comment is named where it is: the file was not cut short on its way."""
    install(server.config, b"global:\n  scrape_interval: 15s\n# a\x00b\nscrape_configs: []\n")
    run = server.deploy()
    assert "(#x0000) on line 3" in run.failure and "left untouched" in run.failure


def test_a_config_file_that_does_not_exist_yet_is_made_with_the_job(server):
    config = server.etc / "new" / "prometheus.yml"
    config.parent.mkdir()
    assert server.deploy(config=config).failure is None
    assert config.read_bytes() == with_job(None, server.job(), None, server.targets)
    assert owner_and_mode(config)[2] == 0o644
    assert not list(config.parent.glob("prometheus.yml.scaphandre-*")), (
        "no original of a file that was not there"
    )


def test_a_stopped_prometheus_is_reported_not_started(server):
    install(server.config, b"scrape_configs: []\n")
    (server.systemctl_dir / "active").write_text("3")
    run = server.deploy()
    assert run.failure == (
        f"Prometheus service prometheus is not running, so it was not reloaded; the new "
        f"{server.config} passed promtool and is used when it starts"
    )
    assert not any(call.startswith(("start", "restart")) for call in server.systemctl_calls())
    assert b"job_name: scaphandre" in server.config.read_bytes()


# --------------------------------------------------------------------------- the reload, confirmed by Prometheus


def pending_markers(server: Server) -> list[Path]:
    return list((server.root / "state").rglob("*.reload-pending"))


def test_the_deploy_succeeds_only_once_prometheus_reports_the_reload(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.delay_s = 1.0  # a reload that takes a while
    started = time.monotonic()
    run = server.deploy()
    assert run.failure is None, run.failure
    assert time.monotonic() - started >= 1.0, "succeeded before Prometheus reported the reload"
    assert server.prometheus.successful == 1 and server.prometheus.success_at >= started - 1
    assert pending_markers(server) == []
    assert server.deploy().commands == [], "confirmed: nothing to do on a rerun"
    assert server.reloads() == 1


def test_the_reload_signals_and_waits_in_one_command_from_the_exact_script(server):
    install(server.config, b"scrape_configs: []\n")
    run = server.deploy()
    assert run.failure is None
    request = operations.ReloadRequest(
        service=SERVICE,
        changed_path=str(server.config),
        endpoint=server.endpoint,
        timeout_s=5,
        marker=operations.config_files(str(server.config)).reload_pending,
    )
    call = run.commands.index("call reload_and_confirm")
    assert run.commands[call + 1 :] == [
        "bash -c " + shlex.quote(operations._reload_script(request)),
        f"rm -f -- {request.marker} && rmdir -- {server.root}/state/prometheus {server.root}/state 2>/dev/null || true",
    ]
    script = operations._reload_script(request)
    assert script.splitlines()[:3] == [
        f"unit=prometheus; marker={request.marker}; wait_s=5",
        f"address=127.0.0.1; port={server.prometheus.port}; path=/metrics",
        "signalled=''; before=''",
    ]
    assert 'systemctl kill --kill-whom=main --signal=HUP "$unit"' in script
    assert (
        subprocess.run(
            ["bash", "-n", "-c", script], capture_output=True, timeout=30, check=False
        ).returncode
        == 0
    )


def test_a_reload_prometheus_rejects_fails_the_server_with_its_journal_and_a_rerun_reloads_again(
    server,
):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.mode = "reject"
    run = server.deploy()
    assert run.failure is not None and server.reloads() == 1
    first, *rest = run.failure.splitlines()
    assert first == (
        f"Prometheus (prometheus) failed to load the new {server.config}: "
        "prometheus_config_last_reload_successful went to 0 at "
        f"{server.endpoint.url} after the reload signal, so the new configuration is not (or not wholly) "
        "in effect."
    )
    assert "journalctl -u prometheus since the reload signal:" in rest[0]
    assert any("loading groups failed" in line and "permission denied" in line for line in rest), (
        rest
    )
    assert b"job_name: scaphandre" in server.config.read_bytes(), "the checked file is in place"
    assert len(pending_markers(server)) == 1
    # Fixed (Prometheus can read its files again): the rerun has nothing to write, but reloads.
    server.prometheus.mode = "reload"
    rerun = server.deploy()
    assert rerun.failure is None and server.reloads() == 2 and pending_markers(server) == []
    assert server.deploy().commands == [] and server.reloads() == 2


def test_a_stuck_reload_fails_the_server_within_the_timeout_naming_the_setting(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.mode = "stuck"
    server.reload_timeout_s = 2
    started = time.monotonic()
    run = server.deploy()
    elapsed = time.monotonic() - started
    assert run.failure is not None and 2 <= elapsed < 8, elapsed
    assert run.failure.startswith(
        f"Prometheus (prometheus) did not confirm loading the new {server.config} within "
        "2 s (prometheus_reload_timeout_s): it reports no successful reload since the "
        "signal at "
    )
    assert "journalctl -u prometheus shows nothing since the reload signal" in run.failure
    assert server.prometheus.reads >= 3, "polled, not read once"
    assert len(pending_markers(server)) == 1


def test_a_frozen_prometheus_is_told_as_such(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.mode = "frozen"
    server.reload_timeout_s = 3
    stopped = subprocess.Popen(
        ["sleep", "60"]
    )  # stands for Prometheus' main process, stopped by SIGSTOP
    try:
        os.kill(stopped.pid, signal.SIGSTOP)
        (server.systemctl_dir / "mainpid").write_text(f"{stopped.pid}\n")
        run = server.deploy()
    finally:
        stopped.kill()
        stopped.wait(timeout=10)
    assert (
        f"its /metrics gave no reload gauges (no answer within 2 s); its main process (PID {stopped.pid}) is "
        "stopped at http://127.0.0.1:"
    ) in run.failure, run.failure


def test_a_prometheus_not_listening_where_the_deploy_reads_is_named(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.__exit__()  # nothing listens on that port any more
    server.reload_timeout_s = 1
    run = server.deploy()
    assert (
        "its /metrics gave no reload gauges (Connection refused) at http://127.0.0.1:"
        in run.failure
    ), run.failure


def test_another_reload_ending_just_before_the_signal_does_not_confirm_ours(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.earlier_reload_on_read = 2  # the first read after the signal
    server.prometheus.delay_s = 0.5
    run = server.deploy()
    assert run.failure is None, run.failure
    waits = [command for command in run.commands if command.startswith("bash -c ")]
    assert len(waits) == 2 and "signalled=1" in waits[1], "waited on, without a second signal"
    assert server.reloads() == 1


def test_a_zero_timeout_signals_without_waiting_and_leaves_no_marker(server):
    install(server.config, b"scrape_configs: []\n")
    server.prometheus.mode = "stuck"
    server.reload_timeout_s = 0
    run = server.deploy()
    assert run.failure is None and server.reloads() == 1 and pending_markers(server) == []
    assert server.prometheus.reads <= 1


def test_remove_reloads_until_confirmed_and_then_leaves_no_state(server):
    install(server.config, (CORPUS / "debian_shipped.yml").read_bytes())
    assert server.deploy().failure is None
    server.prometheus.mode = "reject"
    assert server.remove().failure.startswith("Prometheus (prometheus) failed to load the new ")
    assert b"scaphandre" not in server.config.read_bytes() and len(pending_markers(server)) == 1
    server.prometheus.mode = "reload"
    again = server.remove()
    assert again.failure is None and server.reloads() == 3
    assert not (server.root / "state").exists()
    assert server.remove().commands == []


def test_changed_rules_under_an_unchanged_config_reload_once(server):
    install(server.config, b"scrape_configs: []\n")
    assert server.deploy(rule_file=server.rules).failure is not None, (
        "promtool needs the rules file"
    )
    Path(server.rules).write_text("groups: []\n")
    assert server.deploy(rule_file=server.rules).failure is None and server.reloads() == 1
    run = server.deploy(rule_file=server.rules, reload_for_rules=True)
    assert run.failure is None and server.reloads() == 2
    # Only the reload: one command signals and waits, one clears the marker once confirmed.
    assert run.commands[0] == "call reload_and_confirm" and len(run.commands) == 3, run.commands


def test_the_rules_file_keeps_its_link_owner_and_mode(server):
    real = server.root / "shared" / "scaphandre_rules.yml"
    real.parent.mkdir()
    install(real, b"groups: []\n", mode=0o604)
    Path(server.rules).symlink_to(real)
    rules_text = "groups:\n- name: x\n  rules:\n  - record: a:b\n    expr: up\n"
    run = run_here(
        lambda: prometheus_rules(
            name="Rules", rules_path=server.rules, rules_text=rules_text, promtool=PROMTOOL
        ),
        fake_bin=server.fake_bin,
    )
    assert run.failure is None
    assert Path(server.rules).is_symlink() and real.read_text() == rules_text
    assert owner_and_mode(real) == (*OWNER, 0o604)
    assert server.leftovers() == []


def test_rules_promtool_rejects_never_reach_the_live_file(server):
    install(Path(server.rules), b"groups: []\n")
    run = run_here(
        lambda: prometheus_rules(
            name="Rules", rules_path=server.rules, rules_text="groups: [oops\n", promtool=PROMTOOL
        ),
        fake_bin=server.fake_bin,
    )
    assert run.failure.startswith(
        f"promtool rejected the new {server.rules}; the live file is untouched"
    )
    assert Path(server.rules).read_bytes() == b"groups: []\n" and server.leftovers() == []


# --------------------------------------------------------------------------- remove.py


def test_remove_takes_the_job_out_restores_nothing_and_says_where_the_original_is(server, caplog):
    before = install(server.config, (CORPUS / "debian_shipped.yml").read_bytes())
    Path(server.rules).write_text("groups: []\n")
    assert server.deploy(rule_file=server.rules).failure is None
    deployed = server.config.read_bytes()
    with caplog.at_level(logging.WARNING):
        run = server.remove(rule_file=server.rules)
    assert run.failure is None
    assert server.config.read_bytes() == before, (
        "the job and the rules entry go, nothing else changes"
    )
    assert (server.etc / "prometheus.yml.scaphandre-backup.1").read_bytes() == deployed
    original = server.etc / "prometheus.yml.scaphandre-original"
    assert f"kept as {original}; nothing was restored from it" in caplog.text
    assert not (server.root / "state").exists(), "the deploy's record and state directory go"
    assert server.reloads() == 2 and server.leftovers() == []
    again = server.remove(rule_file=server.rules)
    assert again.failure is None and again.commands == [] and server.reloads() == 2


TWO_SCAPHANDRE_JOBS = (
    b"scrape_configs:\n  - job_name: scaphandre\n    static_configs: [{targets: ['hv1:8080']}]\n"
    b"  - job_name: scaphandre\n    static_configs: [{targets: ['hv2:8080']}]\n"
)
UNEDITABLE = {
    "not-yaml": ((DATA / "broken.yml").read_bytes(), "not valid YAML"),
    "two-scaphandre-jobs": (TWO_SCAPHANDRE_JOBS, "2 scrape jobs named 'scaphandre'"),
    "string-rule-files": (
        (
            b"rule_files: /etc/prometheus/scaphandre_rules.yml\nscrape_configs:\n"
            b"  - job_name: scaphandre\n"
        ),
        "'rule_files' in prometheus.yml is not a list",
    ),
    "not-utf8": ("# Réglages\nscrape_configs: []\n".encode("latin-1"), "not valid UTF-8 (line 1"),
}


@pytest.mark.parametrize("case", list(UNEDITABLE))
def test_remove_fails_a_server_whose_prometheus_yml_it_cannot_edit_with_a_message(server, case):
    content, says = UNEDITABLE[case]
    before = install(server.config, content)
    run = server.remove(rule_file=server.rules)
    assert run.commands == ["call log_failure"]
    assert (
        run.failure.startswith(f"{server.config}: ")
        and says in run.failure
        and "left untouched" in run.failure
    )
    assert "\n" not in run.failure and "Traceback" not in run.failure
    assert server.config.read_bytes() == before and server.reloads() == 0


# --------------------------------------------------------------------------- shell quoting


HOSTILE = "$(touch PWNED1)'$(touch PWNED2)'\"$(touch PWNED3)\"`touch PWNED4`;touch PWNED5"


def test_paths_and_a_service_name_holding_shell_syntax_run_nothing(server, monkeypatch):
    monkeypatch.chdir(server.root)
    odd_dir = server.root / f"etc {HOSTILE}"
    odd_dir.mkdir()
    config = odd_dir / f"prometheus{HOSTILE}.yml"
    before = install(config, (CORPUS / "opennebula_shipped.yml").read_bytes())
    (odd_dir / "rules.yml").write_text("groups: []\n")
    service = f"prometheus{HOSTILE}"
    assert server.deploy(config=config, service=service).failure is None
    assert b"job_name: scaphandre" in config.read_bytes()
    assert f"kill --kill-whom=main --signal=HUP {service}" in server.systemctl_calls()
    assert server.remove(config=config, service=service).failure is None
    assert config.read_bytes() == before
    (server.systemctl_dir / "active").write_text("3")
    assert HOSTILE in server.deploy(config=config, service=service).failure  # the message, quoted
    assert not list(server.root.rglob("PWNED*")), "a hostile name ran a command"


def test_the_fact_commands_run_nothing_either(server, monkeypatch):
    monkeypatch.chdir(server.root)
    hostile = [str(server.root / f"x{HOSTILE}")]
    for command in (
        PrometheusServer().command(
            candidates=[(hostile[0], f"svc{HOSTILE}")], binaries=hostile, promtools=hostile
        ),
        PrometheusServer().command(
            candidates=[],
            binaries=hostile,
            promtools=hostile,
            config_file=hostile[0],
            service=f"svc{HOSTILE}",
        ),
    ):
        subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            timeout=30,
            check=False,
            env={**os.environ, "PATH": f"{server.fake_bin}:{os.environ['PATH']}"},
        )
    assert not list(server.root.rglob("PWNED*"))


# --------------------------------------------------------------------------- which Prometheus


PROMETHEUS_DOUBLE = "#!/bin/sh\necho 'prometheus, version {version} (branch: test double)'\n"


@dataclass
class Machine:
    root: Path
    fake_bin: Path
    systemctl_dir: Path

    def binary(self, path: str, text: str) -> str:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        target.chmod(0o755)
        return str(target)

    def prometheus(self, directory: str, version: str, with_promtool: bool = True) -> str:
        binary = self.binary(f"{directory}/prometheus", PROMETHEUS_DOUBLE.format(version=version))
        if with_promtool:
            self.binary(f"{directory}/promtool", "#!/bin/sh\n")
        return binary

    def config(self, path: str) -> str:
        target = self.root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("scrape_configs: []\n")
        return str(target)

    def unit_runs(self, unit: str, binary: str) -> None:
        (self.systemctl_dir / f"{unit}.execstart").write_text(
            f"{{ path={binary} ; argv[]={binary} --config.file=x ; ignore_errors=no ; start_time=[n/a] }}"
        )

    def found(self, candidates, binaries=(), promtools=(), **overrides) -> dict:
        result: dict = {}

        def read():
            result.update(
                pyinfra.host.get_fact(
                    PrometheusServer,
                    candidates=candidates,
                    binaries=list(binaries),
                    promtools=list(promtools),
                    **overrides,
                )
            )

        run_here(read, fake_bin=self.fake_bin)
        return result


@pytest.fixture
def machine(server) -> Machine:
    return Machine(server.root / "machine", server.fake_bin, server.systemctl_dir)


def test_version_and_promtool_come_from_the_binary_the_service_runs(machine):
    machine.prometheus("/usr/bin", "2.42.0+ds")
    local = machine.prometheus("/usr/local/bin", "3.5.3")
    config = machine.config("/etc/prometheus/prometheus.yml")
    machine.unit_runs("prometheus", local)
    found = machine.found(
        [(config, "prometheus")],
        binaries=[str(machine.root / "usr/bin/prometheus")],
        promtools=[str(machine.root / "usr/bin/promtool")],
    )
    assert found == {
        "config": config,
        "service": "prometheus",
        "unit_binary": local,
        "binary": local,
        "binary_source": "unit",
        "promtool": str(machine.root / "usr/local/bin/promtool"),
        "version": "prometheus, version 3.5.3 (branch: test double)",
        "unit_args": (local, "--config.file=x"),
        "main_args": (),
    }


def test_where_prometheus_listens_is_read_from_its_running_process_and_its_unit(machine):
    """The unit's ExecStart may hold $ARGS, unexpanded; the main process' own command line has
    every argument as given, spaces included."""
    binary = machine.prometheus("/usr/bin", "2.42.0+ds")
    config = machine.config("/etc/prometheus/prometheus.yml")
    (machine.systemctl_dir / "prometheus.execstart").write_text(
        f"{{ path={binary} ; argv[]={binary} $ARGS ; ignore_errors=no ; start_time=[n/a] }}"
    )
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; time.sleep(60)",
            "--web.listen-address=127.0.0.1:9099",
            "--web.external-url=http://a b/prom/",
        ]
    )
    try:
        (machine.systemctl_dir / "mainpid").write_text(f"{process.pid}\n")
        found = machine.found([(config, "prometheus")])
    finally:
        process.kill()
        process.wait(timeout=10)
    assert found["unit_args"] == (binary, "$ARGS")
    assert found["main_args"][-2:] == (
        "--web.listen-address=127.0.0.1:9099",
        "--web.external-url=http://a b/prom/",
    )
    assert metrics_endpoint(found["main_args"], found["unit_args"]) == MetricsEndpoint(
        "127.0.0.1", 9099, "/prom/metrics"
    )


def test_opennebula_and_debian_side_by_side_everything_comes_from_the_chosen_server(machine):
    debian = machine.prometheus("/usr/bin", "2.42.0+ds")
    opennebula = machine.prometheus("/opt/one/bin", "2.53.4")
    one_config = machine.config("/etc/one/prometheus/prometheus.yml")
    debian_config = machine.config("/etc/prometheus/prometheus.yml")
    machine.unit_runs("opennebula-prometheus", opennebula)
    machine.unit_runs("prometheus", debian)
    candidates = [(one_config, "opennebula-prometheus"), (debian_config, "prometheus")]
    found = machine.found(
        candidates, binaries=[debian], promtools=[str(machine.root / "usr/bin/promtool")]
    )
    assert (found["config"], found["service"], found["binary"], found["promtool"]) == (
        one_config,
        "opennebula-prometheus",
        opennebula,
        str(machine.root / "opt/one/bin/promtool"),
    )
    assert "2.53.4" in found["version"]
    chosen = machine.found(
        candidates, binaries=[debian], config_file=debian_config, service="prometheus"
    )
    assert (chosen["config"], chosen["binary"]) == (debian_config, debian) and "2.42.0" in chosen[
        "version"
    ]


def test_the_lists_serve_when_the_unit_names_no_prometheus(machine):
    listed = machine.prometheus("/usr/bin", "2.42.0+ds", with_promtool=False)
    promtool = machine.binary("/opt/tools/promtool", "#!/bin/sh\n")
    wrapper = machine.binary("/usr/local/sbin/run-prometheus", "#!/bin/sh\necho usage\n")
    config = machine.config("/etc/prometheus/prometheus.yml")
    masked = machine.found(
        [(config, "prometheus")], binaries=["/nonexistent/prometheus", listed], promtools=[promtool]
    )
    assert (
        masked["unit_binary"],
        masked["binary"],
        masked["binary_source"],
        masked["promtool"],
    ) == ("", listed, "list", promtool)
    machine.unit_runs("prometheus", wrapper)
    wrapped = machine.found([(config, "prometheus")], binaries=[listed], promtools=[promtool])
    assert (wrapped["unit_binary"], wrapped["binary"], wrapped["binary_source"]) == (
        wrapper,
        listed,
        "list",
    )
    nothing = machine.found([(config, "prometheus")], binaries=["/nonexistent/prometheus"])
    assert (nothing["binary"], nothing["promtool"], nothing["version"]) == ("", "", "")


# --------------------------------------------------------------------------- plans from given facts

FOUND_2_42 = {
    "config": "/etc/prometheus/prometheus.yml",
    "service": "prometheus",
    "unit_binary": "/usr/bin/prometheus",
    "binary": "/usr/bin/prometheus",
    "binary_source": "unit",
    "promtool": "/usr/bin/promtool",
    "version": "prometheus, version 2.42.0+ds (branch: debian/sid)",
}


def configure_steps(cloud: CloudView):
    """The Prometheus part of deploy.py."""

    def run(settings) -> None:
        found = read_host_state(settings)
        ledger = install_ledger(read=found.record)
        server = prometheus_server(settings, cloud, ledger, found.prometheus)
        if server:
            configure_prometheus(settings, pyinfra.inventory, server, ledger)

    return run


NO_HYPERVISORS = CloudView(())


def configure_plan(found: dict, cloud: CloudView = NO_HYPERVISORS, **facts) -> list[str]:
    return all_commands(
        planned_commands(
            configure_steps(cloud),
            {"PrometheusServer": found, **facts},
            groups=("prometheus",),
            name="prom1",
        )
    )


def test_no_prometheus_yml_anywhere_fails_naming_the_settings():
    commands = configure_plan(dict(FOUND_2_42, config="", service=""))
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert "no Prometheus config found" in commands[0]
    assert "prometheus_config_file and prometheus_service" in commands[0]


@pytest.mark.parametrize(
    "found, says",
    [
        (
            {"binary": "", "binary_source": "", "unit_binary": ""},
            "none of prometheus_binaries exists",
        ),
        (
            {"promtool": ""},
            "promtool not found beside /usr/bin/prometheus nor in promtool_binaries",
        ),
        ({"version": "usage: prometheus"}, "cannot read a Prometheus version"),
    ],
)
def test_a_prometheus_that_cannot_be_found_fails_naming_the_setting(found, says):
    commands = configure_plan(dict(FOUND_2_42, **found))
    assert len(commands) == 1 and commands[0].startswith("call log_failure") and says in commands[0]


def test_a_unit_running_something_else_is_named_and_the_listed_binary_used(caplog):
    with caplog.at_level(logging.WARNING):
        configure_plan(
            dict(FOUND_2_42, unit_binary="/usr/local/sbin/run-prometheus", binary_source="list")
        )
    assert (
        "prometheus runs /usr/local/sbin/run-prometheus, which does not answer --version as Prometheus"
        in caplog.text
    )


def test_hypervisors_the_run_could_not_label_are_left_out_and_the_server_still_configured():
    """Two hypervisors on one OpenNebula host fail alone: the others are still listed."""
    hv1 = OneHost(id=7, name="hv1", hostname="hv1", im_mad="kvm", state=2, state_name="MONITORED")
    cloud = CloudView(
        (
            Hypervisor("hv1", "hv1:8080", hv1, None),
            Hypervisor(
                "hv2",
                "hv2:8080",
                None,
                "inventory hosts hv2, hv9 all match OpenNebula host x (ID 3)",
            ),
        )
    )
    commands = configure_plan(
        FOUND_2_42, cloud, PrometheusConfigFile=None, FileContents=None, Sha256File=None
    )
    assert not any(c.startswith("call log_failure") for c in commands)
    assert "upload /etc/prometheus/scaphandre_targets.yml" in commands
    assert any(c.startswith("upload /var/lib/scaphandre-opennebula/prometheus/") for c in commands)
    assert any("check config" in c for c in commands)


def test_the_version_the_service_runs_decides_the_prometheus_3_key(monkeypatch):
    import tasks.prometheus as step

    asked: list[dict] = []
    monkeypatch.setattr(step, "prometheus_job", lambda **kwargs: asked.append(kwargs))
    found_3 = dict(
        FOUND_2_42,
        binary="/usr/local/bin/prometheus",
        unit_binary="/usr/local/bin/prometheus",
        promtool="/usr/local/bin/promtool",
        version="prometheus, version 3.5.3+ds1 (branch: debian/sid)",
    )
    for found, key_expected in ((FOUND_2_42, False), (found_3, True)):
        configure_plan(found, FileContents=None, Sha256File=None)
        job = asked.pop()
        assert ("fallback_scrape_protocol" in job["job"]) is key_expected
        assert job["promtool"] == found["promtool"]


def deployed_facts(reload_pending: bool) -> dict:
    """A server the deploy already configured: targets and rules as wanted, prometheus.yml recorded."""
    import tasks.prometheus as step
    from tasks.prometheus.facts import LiveFile
    from tasks.prometheus.rules import rules_for_job
    from tasks.prometheus.targets import render_targets_file

    rules = rules_for_job(step.RULES_FILE.read_text(), "scaphandre").encode()
    live = LiveFile(
        link=False,
        target="/etc/prometheus/prometheus.yml",
        regular=True,
        uid=0,
        gid=0,
        mode="644",
        sha256="0" * 64,
        content=None,
        record_current=True,
        record_exists=True,
        original_exists=True,
        reload_pending=reload_pending,
    )
    targets = render_targets_file([]).encode()
    present = {
        "/etc/prometheus/scaphandre_targets.yml": FoundFile(
            "file", sha256=sha256_of(targets), content=targets
        ),
        "/etc/prometheus/scaphandre_rules.yml": FoundFile("file", sha256=sha256_of(rules)),
    }
    record = {
        "format": 2,
        "files": {path: {"sha256": found.sha256} for path, found in present.items()},
    }
    return {
        "PrometheusConfigFile": live,
        **record_facts(record),
        "FilesAt": lambda paths, with_content=(): {
            i: present[p] for i, p in enumerate(paths) if p in present
        },
    }


LISTENING_ON_9099 = dict(
    FOUND_2_42,
    unit_args=("/usr/bin/prometheus", "$ARGS"),
    main_args=("/usr/bin/prometheus", "--web.listen-address=0.0.0.0:9099"),
)
MARKER = (
    f"/var/lib/scaphandre-opennebula/prometheus/"
    f"{hashlib.sha256(b'/etc/prometheus/prometheus.yml').hexdigest()[:16]}.reload-pending"
)


def test_a_change_plans_the_confirmed_reload_with_where_prometheus_listens():
    commands = configure_plan(
        LISTENING_ON_9099, FileContents=None, Sha256File=None, PrometheusConfigFile=None
    )
    assert commands[-1] == (
        "call reload_and_confirm(ReloadRequest(service='prometheus', changed_path='/etc/prometheus/prometheus.yml', "
        "endpoint=MetricsEndpoint(address='127.0.0.1', port=9099, path='/metrics'), timeout_s=60, "
        f"marker='{MARKER}'),)"
    )
    assert sum(command.startswith("call reload_and_confirm") for command in commands) == 1


def test_a_noop_rerun_plans_nothing_and_an_unconfirmed_reload_plans_only_the_reload():
    assert configure_plan(LISTENING_ON_9099, **deployed_facts(reload_pending=False)) == []
    assert configure_plan(LISTENING_ON_9099, **deployed_facts(reload_pending=True)) == [
        (
            "call reload_and_confirm(ReloadRequest(service='prometheus', "
            "changed_path='/etc/prometheus/prometheus.yml', "
            "endpoint=MetricsEndpoint(address='127.0.0.1', port=9099, path='/metrics'), timeout_s=60, "
            f"marker='{MARKER}'),)"
        )
    ]


def test_an_address_prometheus_cannot_be_read_at_fails_the_server_unless_no_confirmation_is_asked():
    odd = dict(
        FOUND_2_42, main_args=("/usr/bin/prometheus", "--web.listen-address=prometheus-host")
    )
    commands = configure_plan(odd, FileContents=None, Sha256File=None, PrometheusConfigFile=None)
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert (
        "cannot tell where Prometheus listens from --web.listen-address=prometheus-host (the command line of "
        "prometheus), so a reload cannot be confirmed: set prometheus_reload_timeout_s to 0"
    ) in commands[0]
    unconfirmed = all_commands(
        planned_commands(
            configure_steps(CloudView(())),
            {
                "PrometheusServer": odd,
                "FileContents": None,
                "Sha256File": None,
                "PrometheusConfigFile": None,
            },
            data={"prometheus_reload_timeout_s": 0},
            groups=("prometheus",),
            name="prom1",
        )
    )
    assert "timeout_s=0" in unconfirmed[-1]


def rules_written(monkeypatch, cloud: CloudView, data: dict | None = None) -> list[str]:
    """The rules text each plan of the Prometheus step would write."""
    import tasks.prometheus as step

    written: list[str] = []
    monkeypatch.setattr(
        step, "prometheus_rules", lambda **kwargs: written.append(kwargs["rules_text"])
    )
    planned_commands(
        configure_steps(cloud),
        {
            "PrometheusServer": FOUND_2_42,
            "FileContents": None,
            "Sha256File": None,
            "PrometheusConfigFile": None,
        },
        data=data,
        groups=("prometheus",),
        name="prom1",
    )
    return written


def test_the_rules_carry_every_hypervisors_carbon_intensity_and_the_size_basis(monkeypatch):
    import yaml

    shipped = step_rules_file().read_text()
    hosts = [
        OneHost(
            id=n, name=f"hv{n}", hostname=f"hv{n}", im_mad="kvm", state=2, state_name="MONITORED"
        )
        for n in (7, 9, 12)
    ]
    cloud = CloudView(
        (
            Hypervisor("hv7", "hv7:8080", hosts[0], None, 120.0),
            Hypervisor("hv9", "hv9:8080", hosts[1], None, 'grid_intensity{zone="b"}'),
            Hypervisor("hv12", "hv12:8080", hosts[2], None, None),
        )
    )
    [rules] = rules_written(
        monkeypatch, cloud, {"carbon_intensity_max_age": "2h", "accounting_size_basis": "memory"}
    )
    groups = yaml.safe_load(rules)["groups"]
    assert groups[-1]["name"] == "scaphandre-opennebula-carbon-intensity"
    assert [(r["labels"]["one_host_id"], r["expr"]) for r in groups[-1]["rules"]] == [
        ("7", "vector(120.0)"),
        ("9", 'max(last_over_time(grid_intensity{zone="b"}[2h]))'),
    ]
    assert "opennebula_vm_mem_total_bytes" in rules and rules.startswith(
        shipped.split("groups:")[0]
    )


def test_without_any_intensity_the_rules_are_the_shipped_ones(monkeypatch):
    hv1 = OneHost(id=7, name="hv1", hostname="hv1", im_mad="kvm", state=2, state_name="MONITORED")
    [rules] = rules_written(monkeypatch, CloudView((Hypervisor("hv1", "hv1:8080", hv1, None),)))
    assert rules == step_rules_file().read_text()
    assert (
        "carbon_intensity_gco2e_per_kwh\n" not in rules
        and "scaphandre-opennebula-carbon-intensity" not in rules
    )


def step_rules_file() -> Path:
    import tasks.prometheus as step

    return step.RULES_FILE


def test_remove_plans_nothing_but_a_failure_when_prometheus_cannot_be_found():
    commands = all_commands(
        planned_commands(
            lambda settings: remove_prometheus_job(settings, install_ledger()),
            {"PrometheusServer": dict(FOUND_2_42, config="")},
            groups=("prometheus",),
            name="prom1",
        )
    )
    assert len(commands) == 1 and "no Prometheus config found" in commands[0]
