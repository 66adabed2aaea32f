"""Files on a Prometheus server are the deploy's only if it created them
(tasks/install_record/ownership.py and the Prometheus and energy sync steps): the
Prometheus step run for real on files under tmp_path (the real promtool, a systemctl
test double, the record in tmp_path), and plans from given facts for the energy sync's
files and for each point where a run can be cut."""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from pathlib import Path
from unittest import mock

import pyinfra
import pytest

from tasks import install_record
from tasks.cloud import CloudView, Hypervisor
from tasks.energy_sync import plan as energy_sync_plan
from tasks.host_state import read_host_state
from tasks.install_record import install_ledger, lock, ownership
from tasks.install_record.facts import FoundFile
from tasks.install_record.record import FileEntry, InstallRecord, parse_install_record, sha256_of
from tasks.opennebula.pool import OneHost
from tasks.prometheus import (
    RULES_FILE,
    configure_prometheus,
    prometheus_server,
    remove_prometheus_job,
)
from tasks.prometheus.rules import rules_for_job
from tasks.settings import Settings
from tests.unit.local_pyinfra_host import run_here
from tests.unit.pyinfra_harness import all_commands, default_data, planned_commands, record_facts
from tests.unit.test_prometheus import PROMETHEUS_DOUBLE, server  # noqa: F401 (the fixture)

OWNER = (4242, 4243)
HV1 = Hypervisor(
    "hv1",
    "hv1:8080",
    OneHost(id=7, name="hv1", hostname="hv1", im_mad="kvm", state=2, state_name="MONITORED"),
    None,
)
CLOUD = CloudView((HV1,))
OPERATORS_RULES = b"# my own alerts\ngroups:\n  - name: mine\n    rules: []\n"
RULES_TEXT = rules_for_job(RULES_FILE.read_text()).encode()


class PrometheusHost:
    """A Prometheus server's files under one directory, and the deploy and remove.py run on it."""

    def __init__(self, root: Path, prometheus_double):
        self.root, self.server = root, prometheus_double
        self.etc = root / "etc" / "prometheus"
        self.etc.mkdir(parents=True)
        self.config.write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        self.binary = root / "usr" / "bin" / "prometheus"
        self.binary.parent.mkdir(parents=True)
        self.binary.write_text(PROMETHEUS_DOUBLE.format(version="2.42.0"))
        self.binary.chmod(0o755)
        self.record = root / "var" / "installed.json"

    @property
    def config(self) -> Path:
        return self.etc / "prometheus.yml"

    @property
    def targets(self) -> Path:
        return self.etc / "scaphandre_targets.yml"

    @property
    def rules(self) -> Path:
        return self.etc / "scaphandre_rules.yml"

    def settings(self, **data) -> Settings:
        return Settings.from_data(
            default_data()
            | {
                "prometheus_config_file": str(self.config),
                "prometheus_service": "prometheus",
                "prometheus_binaries": [str(self.binary)],
                "promtool_binaries": ["/usr/bin/promtool"],
                "prometheus_reload_timeout_s": 0,
            }
            | data
        )  # no Prometheus here to confirm a reload

    def run(self, script: str, **data):
        settings = self.settings(**data)

        def steps():
            with mock.patch.object(
                sys, "argv", ["pyinfra", "--dry"]
            ):  # no lock: tests/unit/test_host_lock.py's
                if script == "deploy.py":
                    state = read_host_state(settings)
                    ledger = install_ledger(read=state.record)
                else:
                    ledger = install_ledger()
            if script == "deploy.py":
                found = prometheus_server(settings, CLOUD, ledger, state.prometheus)
                if found:
                    configure_prometheus(settings, pyinfra.inventory, found, ledger)
            else:
                remove_prometheus_job(settings, ledger)

        return run_here(steps, fake_bin=self.server.fake_bin)

    def recorded(self) -> InstallRecord:
        return parse_install_record(self.record.read_bytes() if self.record.exists() else None)


@pytest.fixture
def prometheus(tmp_path, server, monkeypatch) -> PrometheusHost:  # noqa: F811 (the fixture)
    found = PrometheusHost(tmp_path / "host", server)
    for module in (install_record, lock, ownership):
        monkeypatch.setattr(module, "RECORD_FILE", str(found.record))
    monkeypatch.setattr(install_record, "RECORD_DIR", str(found.record.parent))
    return found


def install(path: Path, content: bytes, mode: int = 0o640) -> None:
    path.write_bytes(content)
    os.chown(path, *OWNER)
    path.chmod(mode)


def owner_and_mode(path: Path) -> tuple[int, int, int]:
    info = path.stat()
    return info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode)


# --------------------------------------------------------------------------- run for real


def test_the_operators_rules_file_fails_the_server_untouched_before_anything_is_written(prometheus):
    install(prometheus.rules, OPERATORS_RULES)
    config_before = prometheus.config.read_bytes()
    run = prometheus.run("deploy.py")
    assert run.failure == (
        f"{prometheus.rules} is a file the deploy did not write (its record {prometheus.record} does not list it): it "
        "is left as it is and nothing was changed on this server; set prometheus_rules_file to another path (or "
        "prometheus_rules to False), or move the file away"
    )
    assert prometheus.rules.read_bytes() == OPERATORS_RULES and owner_and_mode(
        prometheus.rules
    ) == (*OWNER, 0o640)
    assert not prometheus.targets.exists() and prometheus.config.read_bytes() == config_before
    assert not prometheus.record.exists() and prometheus.server.reloads() == 0


def test_another_rules_path_is_one_setting_away_and_remove_py_leaves_the_operators_file(prometheus):
    install(prometheus.rules, OPERATORS_RULES)
    elsewhere = prometheus.etc / "scaphandre" / "rules.yml"
    elsewhere.parent.mkdir()
    deployed = prometheus.run("deploy.py", prometheus_rules_file=str(elsewhere))
    assert deployed.failure is None, deployed.failure
    assert elsewhere.read_bytes() == RULES_TEXT
    assert set(prometheus.recorded().files) == {str(prometheus.targets), str(elsewhere)}
    assert all(entry.writing is None for entry in prometheus.recorded().files.values()), "confirmed"

    removed = prometheus.run("remove.py", prometheus_rules_file=str(elsewhere))
    assert removed.failure is None, removed.failure
    assert not elsewhere.exists() and not prometheus.targets.exists()
    assert prometheus.rules.read_bytes() == OPERATORS_RULES and owner_and_mode(
        prometheus.rules
    ) == (*OWNER, 0o640)
    assert not prometheus.record.exists() and not prometheus.record.parent.exists()


def test_remove_py_keeps_a_file_changed_since_the_deploy_wrote_it_and_says_so(prometheus, caplog):
    assert prometheus.run("deploy.py").failure is None
    edited = prometheus.rules.read_bytes() + b"# tuned by hand\n"
    prometheus.rules.write_bytes(edited)
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        removed = prometheus.run("remove.py")
    assert removed.failure is None, removed.failure
    assert prometheus.rules.read_bytes() == edited and not prometheus.targets.exists()
    assert f"warning: {prometheus.rules} stays: it changed since the deploy wrote it" in caplog.text
    assert prometheus.recorded().empty, "forgotten: the file is the operator's now"


def test_a_file_the_record_lists_is_the_deploys_to_update(prometheus):
    assert prometheus.run("deploy.py").failure is None
    first = prometheus.targets.read_bytes()
    prometheus.targets.write_text(
        "# Managed by the Scaphandre-on-OpenNebula deploy (pyinfra)\n[]\n"
    )
    assert prometheus.run("deploy.py").failure is None
    assert prometheus.targets.read_bytes() == first
    assert prometheus.recorded().files[str(prometheus.targets)] == FileEntry(
        sha256=sha256_of(first)
    )


def test_files_an_earlier_version_wrote_are_adopted_and_said_so(prometheus, caplog):
    """A server deployed before the record listed files: each carries the deploy's header."""
    earlier_rules = RULES_TEXT.replace(b"groups:", b"# an older rule set\ngroups:", 1)
    install(prometheus.rules, earlier_rules, mode=0o644)
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        run = prometheus.run("deploy.py")
    assert run.failure is None, run.failure
    assert (
        f"{prometheus.rules} was written by an earlier version of the deploy (its header, or exactly what this "
        "run writes there): adopted into the record"
    ) in caplog.text
    assert prometheus.rules.read_bytes() == RULES_TEXT, "then updated like any file of the deploy's"
    assert prometheus.recorded().files[str(prometheus.rules)] == FileEntry(
        sha256=sha256_of(RULES_TEXT)
    )


def test_a_json_targets_file_holding_exactly_what_the_run_writes_is_adopted_and_any_other_refused(
    prometheus,
):
    """A .json targets file carries no header: only its exact bytes tell it is the deploy's."""
    targets = prometheus.etc / "scaphandre_targets.json"
    assert prometheus.run("deploy.py", prometheus_targets_file=str(targets)).failure is None
    written = targets.read_bytes()
    prometheus.record.unlink()  # as on a server deployed before the record listed files
    again = prometheus.run("deploy.py", prometheus_targets_file=str(targets))
    assert again.failure is None, again.failure
    assert prometheus.recorded().files[str(targets)] == FileEntry(sha256=sha256_of(written))

    prometheus.record.unlink()
    targets.write_bytes(b'[{"targets": ["mine:9100"], "labels": {}}]\n')
    refused = prometheus.run("deploy.py", prometheus_targets_file=str(targets))
    assert refused.failure and f"{targets} is a file the deploy did not write" in refused.failure
    assert targets.read_bytes() == b'[{"targets": ["mine:9100"], "labels": {}}]\n'


def test_a_no_op_rerun_writes_nothing_not_even_the_record(prometheus):
    assert prometheus.run("deploy.py").failure is None
    record = prometheus.record.read_bytes()
    again = prometheus.run("deploy.py")
    assert again.failure is None and again.commands == [], again.commands
    assert prometheus.record.read_bytes() == record
    # One round trip, the host's one read (its real shell, run here): the record, the server,
    # every file the deploy writes and prometheus.yml's record answer it, and no operation is
    # planned to read anything more.
    assert again.facts == ["HostState"], again.facts


# --------------------------------------------------------------------------- plans: intents, energy sync

FOUND_2_42 = {
    "config": "/etc/prometheus/prometheus.yml",
    "service": "prometheus",
    "unit_binary": "/usr/bin/prometheus",
    "binary": "/usr/bin/prometheus",
    "binary_source": "unit",
    "promtool": "/usr/bin/promtool",
    "version": "prometheus, version 2.42.0+ds (branch: debian/sid)",
}
TARGETS, RULES = "/etc/prometheus/scaphandre_targets.yml", "/etc/prometheus/scaphandre_rules.yml"


def deploy_steps(settings) -> None:
    state = read_host_state(settings)
    ledger = install_ledger(read=state.record)
    found = prometheus_server(settings, CLOUD, ledger, state.prometheus)
    if found:
        configure_prometheus(settings, pyinfra.inventory, found, ledger)


def files_at(present: dict[str, FoundFile]):
    return lambda paths, with_content=(): {
        index: present[path] for index, path in enumerate(paths) if path in present
    }


def plan(present: dict[str, FoundFile], record: dict | None = None, **data) -> dict[str, list[str]]:
    facts = {
        "PrometheusServer": FOUND_2_42,
        "FilesAt": files_at(present),
        "PrometheusConfigFile": None,
        **record_facts(record),
    }
    return {
        name.split(" | ")[-1]: commands
        for name, commands in planned_commands(
            deploy_steps, facts, data=data, groups=("prometheus",), name="prom1"
        ).items()
    }


@pytest.mark.parametrize(
    "path",
    [
        energy_sync_plan.SCRIPT_PATH,
        energy_sync_plan.CONFIG_PATH,
        energy_sync_plan.SERVICE_PATH,
        energy_sync_plan.TIMER_PATH,
    ],
    ids=["script", "config", "service", "timer"],
)
def test_an_operators_file_at_an_energy_sync_path_fails_the_server_before_anything(path):
    planned = plan({path: FoundFile("file", sha256="1" * 64, head="[Unit]\n")}, energy_sync=True)
    commands = all_commands(planned)
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert (
        f"{path} is a file the deploy did not write (its record /var/lib/scaphandre-opennebula/installed.json "
        "does not list it): it is left as it is and nothing was changed on this server; the energy sync's files "
        "have fixed paths (its script, config, service and timer units): move that file away, or set energy_sync "
        "to False on this server"
    ) in commands[0]


def test_something_that_is_not_a_file_at_a_deploy_path_is_refused():
    commands = all_commands(plan({TARGETS: FoundFile("other")}))
    assert (
        len(commands) == 1
        and f"{TARGETS} is something that is not a regular file the deploy did not write"
        in commands[0]
        and "set prometheus_targets_file to another path" in commands[0]
    )


def test_the_files_are_recorded_before_they_are_written_and_confirmed_before_the_job():
    planned = plan({})
    names = [name for name, commands in planned.items() if commands]
    assert names[:4] == [
        "Record the files the deploy is about to write",
        "Write the Scaphandre scrape targets",
        f"Write the Scaphandre recording and alerting rules to {RULES}",
        "Confirm in the record the files the deploy wrote",
    ]


@pytest.mark.parametrize("cut", ["before-the-write", "after-the-write"])
def test_a_run_cut_between_intent_and_confirmation_leaves_the_files_the_deploys(cut):
    """The record says what the deploy was writing; the file holds the old bytes or the new."""
    old, new = sha256_of(b"old"), sha256_of(RULES_TEXT)
    record = {"format": 2, "files": {RULES: {"sha256": old, "writing": new}}}
    found = FoundFile("file", sha256=old if cut == "before-the-write" else new, head="groups:\n")
    planned = plan({RULES: found}, record)
    assert not planned.get(
        "Check the files the deploy writes here are its own | Check the files the deploy "
        "writes here are its own"
    ), "not refused as the operator's"
    assert not any(command.startswith("call log_failure") for command in all_commands(planned))
    assert bool(planned.get(f"Write the Scaphandre recording and alerting rules to {RULES}")) is (
        cut == "before-the-write"
    )
    delete, warning = ownership.removal(
        RULES, found, parse_install_record(json.dumps(record).encode())
    )
    assert delete and warning is None, "and remove.py takes it away either way"
