"""The energy sync step (tasks/energy_sync) as pyinfra's API plans it from given facts: what
is installed where, owned by whom, when systemd is reloaded and the sync tried, when the
host fails instead, how removal orders its work, and that the step costs nothing when off.
The same step runs for real in tests/e2e/test_energy_write_back.py."""

from __future__ import annotations

import hashlib
import json

import pytest
from pyinfra.api.util import get_template

from tasks.energy_sync import install_energy_sync, plan, remove_energy_sync
from tasks.install_record import InstallLedger
from tasks.install_record.facts import FoundFile
from tasks.install_record.record import RECORD_FILE, FileEntry, InstallRecord, sha256_of
from tasks.settings import Settings, SettingsError
from tests.unit.pyinfra_harness import (
    FactTable,
    all_commands,
    default_data,
    planned_commands,
    uploads_by_operation,
)

ON = {"energy_sync": True}
ONEADMIN_FRONTEND = {
    "user": "oneadmin",
    "group": "oneadmin",
    "python": "/usr/bin/python3",
    "credentials": "readable",
    "config_dir": "yes",
}
ROOT_SERVER = {
    "user": "root",
    "group": "root",
    "python": "/usr/bin/python3",
    "credentials": "readable",
    "config_dir": "no",
}
UNITS = (plan.SERVICE_PATH, plan.TIMER_PATH)
EVERY_FILE = {*UNITS, plan.SCRIPT_PATH, plan.CONFIG_PATH}


def settings_with(**data) -> Settings:
    return Settings.from_data(default_data() | ON | data)


def rendered_files(settings: Settings, account: plan.ServiceAccount) -> dict[str, str]:
    """What the deploy writes for these settings, rendered as pyinfra renders a template."""
    units = plan.unit_variables(settings, account, "/usr/bin/python3")
    return {
        plan.SCRIPT_PATH: plan.SCRIPT_SOURCE.read_text(),
        plan.CONFIG_PATH: get_template(str(plan.CONFIG_TEMPLATE)).render(
            plan.config_variables(settings)
        ),
        plan.SERVICE_PATH: get_template(str(plan.SERVICE_TEMPLATE)).render(units),
        plan.TIMER_PATH: get_template(str(plan.TIMER_TEMPLATE)).render(units),
    }


def recorded(installed: dict[str, str]) -> InstallRecord:
    """The record after the deploy wrote these files."""
    return InstallRecord(
        files={path: FileEntry(sha256=sha256_of(text.encode())) for path, text in installed.items()}
    )


def found_files(installed: dict[str, str]) -> dict[str, FoundFile]:
    return {
        path: FoundFile("file", sha256=sha256_of(text.encode())) for path, text in installed.items()
    }


def server_facts(
    found: dict = ONEADMIN_FRONTEND,
    installed: dict[str, str] | None = None,
    timer_running: bool = False,
) -> FactTable:
    """A Prometheus server as pyinfra would read it: `installed` maps each file of the sync
    already there to its content, written with the owners and modes the deploy gives."""
    account = plan.service_account(found)
    owners = {
        plan.SCRIPT_PATH: ("root", 755),
        plan.CONFIG_PATH: (account.group, int(account.config_mode)),
        plan.SERVICE_PATH: ("root", 644),
        plan.TIMER_PATH: ("root", 644),
    }
    facts: dict = {
        "EnergySyncFrontend": found,
        "File": None,
        "Directory": None,
        "Sha1File": None,
        "SystemdStatus": {plan.TIMER_UNIT: timer_running},
        "SystemdEnabled": {plan.TIMER_UNIT: timer_running},
    }
    if installed:
        facts[f"Directory:{plan.SCRIPT_DIR}"] = {"mode": 755, "user": "root", "group": "root"}
    for path, content in (installed or {}).items():
        group, mode = owners[path]
        facts[f"File:{path}"] = {"mode": mode, "user": "root", "group": group, "size": len(content)}
        facts[f"Sha1File:{path}"] = hashlib.sha1(
            content.encode(), usedforsecurity=False
        ).hexdigest()
    table = FactTable(facts)
    table.installed = dict(installed or {})
    return table


def installing(facts: FactTable):
    """The step as deploy.py calls it, on a server where the deploy wrote `facts.installed`."""

    def run(settings: Settings) -> None:
        install_energy_sync(
            settings, InstallLedger(recorded(facts.installed)), found_files(facts.installed)
        )

    return run


def install_plan(facts: FactTable, **data) -> dict[str, list[str]]:
    return planned_commands(
        installing(facts),
        facts,
        data=ON | data,
        groups=("prometheus",),
        name="prom1",
        as_executed=True,
    )


def step(planned: dict[str, list[str]], words: str) -> list[str]:
    [commands] = [commands for name, commands in planned.items() if words in name]
    return commands


def changed_steps(planned: dict[str, list[str]]) -> list[str]:
    return [name.split(" | ")[-1] for name, commands in planned.items() if commands]


# --------------------------------------------------------------------------- off


def test_off_reads_no_fact_and_plans_nothing():
    facts = server_facts()
    planned = planned_commands(installing(facts), facts, groups=("prometheus",), name="prom1")
    assert facts.asked == [] and all_commands(planned) == []


def test_every_file_is_recorded_as_the_deploys_before_it_is_written_and_confirmed_after():
    facts = server_facts()
    uploads = uploads_by_operation(
        installing(facts), facts, data=ON, groups=("prometheus",), name="prom1"
    )
    names = list(uploads)
    intent = json.loads(
        uploads["Record the energy sync's files the deploy is about to write"][
            f"{RECORD_FILE}.scaphandre-new"
        ]
    )
    texts = rendered_files(settings_with(), plan.ServiceAccount("oneadmin", "oneadmin"))
    assert intent["files"] == {
        path: {"writing": sha256_of(text.encode())} for path, text in texts.items()
    }
    confirmed = json.loads(
        uploads["Confirm in the record the energy sync's files the deploy wrote"][
            f"{RECORD_FILE}.scaphandre-new"
        ]
    )
    assert confirmed["files"] == {
        path: {"sha256": sha256_of(text.encode())} for path, text in texts.items()
    }
    assert (
        names.index("Record the energy sync's files the deploy is about to write")
        < names.index("Install the energy sync script")
        < names.index(f"Install {plan.TIMER_UNIT}")
        < names.index("Confirm in the record the energy sync's files the deploy wrote")
    )
    for path, text in texts.items():
        assert next(upload for upload in uploads.values() if path in upload)[path] == text


# --------------------------------------------------------------------------- install


def test_a_fresh_frontend_gets_script_config_and_units_owned_as_documented():
    planned = install_plan(server_facts())
    assert step(planned, "Directory for the energy sync script") == [
        f"mkdir -p {plan.SCRIPT_DIR}",
        f"chmod 755 {plan.SCRIPT_DIR}",
        f"chown root:root {plan.SCRIPT_DIR}",
    ]
    assert step(planned, "Install the energy sync script") == [
        f"upload {plan.SCRIPT_PATH}",
        f"chown root:root {plan.SCRIPT_PATH}",
        f"chmod 755 {plan.SCRIPT_PATH}",
    ]
    assert step(planned, "Write the energy sync's config") == [
        f"upload {plan.CONFIG_PATH}",
        f"chown root:oneadmin {plan.CONFIG_PATH}",
        f"chmod 640 {plan.CONFIG_PATH}",
    ]
    for unit in UNITS:
        assert step(planned, f"Install {unit.rsplit('/', 1)[1]}") == [
            f"upload {unit}",
            f"chown root:root {unit}",
            f"chmod 644 {unit}",
        ]
    assert step(planned, "Reload systemd") == ["systemctl daemon-reload"]
    assert step(planned, "Enable and start") == [
        "systemctl start scaphandre-energy-sync.timer",
        "systemctl enable scaphandre-energy-sync.timer",
    ]
    assert not [name for name in planned if "Create /etc/one" in name], (
        "an existing /etc/one is left as it is"
    )


def test_the_trial_run_is_a_bounded_dry_run_as_oneadmin_before_the_timer_starts():
    planned = install_plan(server_facts())
    [trial] = step(planned, "Try the energy sync once (--dry-run, as oneadmin)")
    assert (
        f"timeout --kill-after=5 300 runuser -u oneadmin -- /usr/bin/python3 {plan.SCRIPT_PATH} "
        f"--config {plan.CONFIG_PATH} --dry-run"
    ) in trial
    assert "exit 1" in trial and "the timer is not started until a trial run passes" in trial
    assert step(planned, "Show the trial run's status line") == ["call _show_status()"]
    names = changed_steps(planned)
    assert (
        names.index("Reload systemd for the energy sync's units")
        < names.index("Try the energy sync once (--dry-run, as oneadmin)")
        < names.index("Enable and start scaphandre-energy-sync.timer")
    )


def test_without_oneadmin_root_runs_it_and_alone_reads_the_config_and_etc_one_is_created():
    planned = install_plan(server_facts(ROOT_SERVER))
    assert step(planned, "Create /etc/one") == [
        "mkdir -p /etc/one",
        "chmod 755 /etc/one",
        "chown root:root /etc/one",
    ]
    assert step(planned, "Write the energy sync's config")[1:] == [
        f"chown root:root {plan.CONFIG_PATH}",
        f"chmod 600 {plan.CONFIG_PATH}",
    ]
    [trial] = step(planned, "Try the energy sync once (--dry-run, as root)")
    assert "runuser" not in trial and f"300 /usr/bin/python3 {plan.SCRIPT_PATH}" in trial


def test_the_service_unit_runs_as_the_service_account_with_the_python_found():
    oneadmin = rendered_files(settings_with(), plan.ServiceAccount("oneadmin", "oneadmin"))[
        plan.SERVICE_PATH
    ]
    root = rendered_files(settings_with(), plan.ServiceAccount("root", "root"))[plan.SERVICE_PATH]
    assert "\nUser=oneadmin\n" in oneadmin and "User=" not in root
    platform = get_template(str(plan.SERVICE_TEMPLATE)).render(
        plan.unit_variables(
            settings_with(), plan.ServiceAccount("root", "root"), "/usr/libexec/platform-python"
        )
    )
    assert (
        f"ExecStart=/usr/libexec/platform-python {plan.SCRIPT_PATH} --config {plan.CONFIG_PATH}"
        in platform
    )


def test_the_config_names_the_credentials_file_and_the_settings_never_a_secret():
    settings = settings_with(
        energy_sync_interval_s=120,
        energy_sync_threshold_kwh=0.05,
        energy_sync_one_xmlrpc="http://one-frontend:2633/RPC2",
    )
    config = rendered_files(settings, plan.ServiceAccount("oneadmin", "oneadmin"))[plan.CONFIG_PATH]
    assert "one_auth_file = /var/lib/one/.one/one_auth\n" in config
    assert "interval_s = 120\n" in config and "threshold_kwh = 0.05\n" in config
    assert "one_xmlrpc = http://one-frontend:2633/RPC2\n" in config
    assert "password" not in config.lower().replace("user:password", "")


def test_a_rerun_with_nothing_changed_plans_nothing_no_reload_no_trial():
    settings = settings_with()
    installed = rendered_files(settings, plan.ServiceAccount("oneadmin", "oneadmin"))
    planned = install_plan(server_facts(installed=installed, timer_running=True))
    assert changed_steps(planned) == []


def test_a_new_threshold_rewrites_the_config_and_tries_it_without_touching_systemd():
    installed = rendered_files(settings_with(), plan.ServiceAccount("oneadmin", "oneadmin"))
    planned = install_plan(
        server_facts(installed=installed, timer_running=True), energy_sync_threshold_watts=5
    )
    assert changed_steps(planned) == [
        "Record the energy sync's files the deploy is about to write",
        "Write the energy sync's config /etc/one/scaphandre-energy-sync.conf",
        "Confirm in the record the energy sync's files the deploy wrote",
        "Try the energy sync once (--dry-run, as oneadmin)",
        "Show the trial run's status line",
    ]


def test_a_new_interval_reloads_systemd_and_restarts_the_running_timer():
    installed = rendered_files(settings_with(), plan.ServiceAccount("oneadmin", "oneadmin"))
    planned = install_plan(
        server_facts(installed=installed, timer_running=True),
        energy_sync_interval_s=600,
        energy_sync_max_age_s=1800,
    )
    assert changed_steps(planned) == [
        "Record the energy sync's files the deploy is about to write",
        "Write the energy sync's config /etc/one/scaphandre-energy-sync.conf",
        "Install scaphandre-energy-sync.service",
        "Install scaphandre-energy-sync.timer",
        "Confirm in the record the energy sync's files the deploy wrote",
        "Reload systemd for the energy sync's units",
        "Try the energy sync once (--dry-run, as oneadmin)",
        "Show the trial run's status line",
        "Enable and start scaphandre-energy-sync.timer",
    ]
    assert step(planned, "Enable and start") == ["systemctl restart scaphandre-energy-sync.timer"]
    assert "timeout --kill-after=5 600 " in step(planned, "Try the energy sync")[0]


def test_a_stopped_timer_is_started_only_after_a_trial_run():
    installed = rendered_files(settings_with(), plan.ServiceAccount("oneadmin", "oneadmin"))
    planned = install_plan(server_facts(installed=installed, timer_running=False))
    assert changed_steps(planned) == [
        "Try the energy sync once (--dry-run, as oneadmin)",
        "Show the trial run's status line",
        "Enable and start scaphandre-energy-sync.timer",
    ]


@pytest.mark.parametrize(
    "found, says",
    [
        (
            {"credentials": "unreadable"},
            (
                "energy_sync_one_auth_file /var/lib/one/.one/one_auth is not readable by "
                "oneadmin, the user the energy sync runs as: give oneadmin read access"
            ),
        ),
        (
            {"credentials": "missing"},
            "energy_sync_one_auth_file /var/lib/one/.one/one_auth does not exist on this server",
        ),
        ({"python": ""}, "the energy sync needs Python 3.6 or later on this server and found none"),
    ],
    ids=["credentials-unreadable", "credentials-missing", "no-python"],
)
def test_what_stops_the_sync_fails_the_host_before_anything_is_written(found, says):
    facts = server_facts({**ONEADMIN_FRONTEND, **found})
    commands = all_commands(install_plan(facts))
    assert len(commands) == 1 and commands[0].startswith("call log_failure") and says in commands[0]
    assert facts.asked == ["EnergySyncFrontend"]


def test_the_credentials_check_runs_as_the_service_user_not_as_root():
    from tasks.energy_sync.facts import EnergySyncFrontend

    command = EnergySyncFrontend().command("/var/lib/one/.one/one_auth")
    assert 'runuser -u "$user" -- test -r /var/lib/one/.one/one_auth' in command
    assert "id -u oneadmin" in command and "id -gn oneadmin" in command


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "key, value, says",
    [
        ("energy_sync_interval_s", 30, "not a whole number from 60 to 86400"),
        ("energy_sync_interval_s", 90.5, "not a whole number from 60 to 86400"),
        ("energy_sync_threshold_percent", 101, "not a number from 0 to 100"),
        ("energy_sync_timeout_s", 0, "not a number from 1 to 3600"),
        ("energy_sync_refresh_s", -1, "not a whole number"),
        ("energy_sync_prometheus_url", "127.0.0.1:9090", "not an http(s) URL"),
        (
            "energy_sync_one_xmlrpc",
            "http://oneadmin:secret@localhost:2633/RPC2",
            "holds credentials",
        ),
        (
            "energy_sync_one_xmlrpc",
            "http://localhost:2633/RPC2\nprometheus_url = x",
            "no control characters",
        ),
        ("energy_sync_one_auth_file", "one_auth", "not an absolute path"),
        (
            "energy_sync_one_auth_file",
            "/root/.one/one_auth",
            "under /root, which the energy sync service does not see",
        ),
        ("energy_sync_one_auth_file", "/tmp/one_auth", "under /tmp"),
        ("energy_sync", "yes", "not True or False"),
        ("energy_sync_max_age_s", 60, "not a whole number from 120 to 172800"),
        ("energy_sync_max_age_s", 900.0, "not a whole number"),
        ("energy_sync_host_max_power_w", 10000, "not a number from 1 to 9999"),
        ("energy_sync_host_max_power_w", 0, "not a number from 1 to 9999"),
        ("energy_sync_vm_max_power_w", "2000", "not a number from 1 to 9999"),
    ],
)
def test_bad_energy_sync_settings_are_refused_naming_the_key(key, value, says):
    with pytest.raises(SettingsError) as refused:
        settings_with(**{key: value})
    assert f"setting {key} " in str(refused.value) and says in str(refused.value)


@pytest.mark.parametrize(
    "data, says",
    [
        (
            {"energy_sync_interval_s": 600},
            (
                "setting energy_sync_max_age_s is 900, less than twice energy_sync_interval_s "
                "(600): one run finding no sample would already remove the values; set it to "
                "1200 or more"
            ),
        ),
        ({"energy_sync_max_age_s": 599}, "set it to 600 or more"),
        (
            {"energy_sync_vm_max_power_w": 3000, "energy_sync_host_max_power_w": 2500},
            (
                "setting energy_sync_vm_max_power_w (3000) is above "
                "energy_sync_host_max_power_w (2500): a VM's power is a share of its host's"
            ),
        ),
    ],
)
def test_the_max_age_and_the_ceilings_are_checked_against_each_other(data, says):
    with pytest.raises(SettingsError) as refused:
        settings_with(**data)
    assert says in str(refused.value)
    assert (
        settings_with(energy_sync_interval_s=600, energy_sync_max_age_s=1200).energy_sync_max_age_s
        == 1200
    )


def test_the_config_carries_the_max_age_and_the_ceilings():
    settings = settings_with(
        energy_sync_max_age_s=1200,
        energy_sync_host_max_power_w=7500.5,
        energy_sync_vm_max_power_w=3000,
    )
    config = rendered_files(settings, plan.ServiceAccount("oneadmin", "oneadmin"))[plan.CONFIG_PATH]
    assert "max_age_s = 1200\nhost_max_power_w = 7500.5\nvm_max_power_w = 3000\n" in config


def test_the_sync_needs_the_recording_rules():
    with pytest.raises(SettingsError, match="energy_sync needs prometheus_rules"):
        settings_with(prometheus_rules=False)
    assert not Settings.from_data(default_data() | {"prometheus_rules": False}).energy_sync


def test_the_secret_in_a_refused_url_is_not_repeated():
    with pytest.raises(SettingsError) as refused:
        settings_with(energy_sync_prometheus_url="http://admin:S3cret-word@localhost:9090")
    assert "S3cret-word" not in str(refused.value)


# --------------------------------------------------------------------------- removal


def removal_facts(
    installed=EVERY_FILE, found: dict = ONEADMIN_FRONTEND, changed=(), listed=None
) -> FactTable:
    """A server where the deploy wrote `installed` (the record lists `listed`, all of them by
    default), `changed` edited by the operator since."""
    contents = {path: f"written by the deploy: {path}" for path in installed}

    def files_at(paths, with_content=()):
        return {
            index: FoundFile(
                "file",
                sha256=sha256_of(contents[path].encode() + (b"!" if path in changed else b"")),
                head="# Managed by the Scaphandre-on-OpenNebula deploy (pyinfra)",
            )
            for index, path in enumerate(paths)
            if path in contents
        }

    table = FactTable(
        {
            "EnergySyncInstalled": {**found, "installed": set(installed)},
            "SystemdStatus": {plan.TIMER_UNIT: True},
            "SystemdEnabled": {plan.TIMER_UNIT: True},
            "File": {"mode": 644, "user": "root", "group": "root", "size": 1},
            "Directory": {"mode": 755, "user": "root", "group": "root"},
            "FilesAt": files_at,
        }
    )
    table.record = InstallRecord(
        files={
            path: FileEntry(sha256=sha256_of(contents[path].encode()))
            for path in (installed if listed is None else listed)
        }
    )
    return table


def removal_plan(facts: FactTable, **data) -> dict[str, list[str]]:
    return planned_commands(
        lambda settings: remove_energy_sync(settings, InstallLedger(facts.record)),
        facts,
        data=data,
        groups=("prometheus",),
        name="prom1",
        as_executed=True,
    )


def test_removal_stops_the_timer_removes_the_attributes_then_the_files():
    commands = all_commands(removal_plan(removal_facts()))
    removal = next(c for c in commands if "--remove-attributes" in c)
    order = [
        commands.index(c)
        for c in (
            "systemctl stop scaphandre-energy-sync.timer",
            "systemctl disable scaphandre-energy-sync.timer",
            "systemctl stop scaphandre-energy-sync.service",
            removal,
            f"rm -f {plan.SCRIPT_PATH}",
            f"rm -f {plan.CONFIG_PATH}",
            f"rm -f {plan.SERVICE_PATH}",
            f"rm -f {plan.TIMER_PATH}",
            "systemctl daemon-reload",
            f"rmdir -- {plan.SCRIPT_DIR} 2>/dev/null || true",
        )
    ]
    assert order == sorted(order)
    assert (
        f"runuser -u oneadmin -- /usr/bin/python3 {plan.SCRIPT_PATH} --config {plan.CONFIG_PATH} "
        "--remove-attributes"
    ) in removal
    assert f"timeout --kill-after=5 {plan.REMOVAL_TIMEOUT_S} " in removal
    assert "left installed (its timer stopped) so that a rerun of remove.py can finish" in removal


def test_removal_runs_whether_or_not_energy_sync_is_on_now():
    off = all_commands(removal_plan(removal_facts()))
    on = all_commands(removal_plan(removal_facts(), energy_sync=True))
    assert off == on and any("--remove-attributes" in c for c in off)


def test_removal_where_nothing_is_installed_plans_nothing():
    facts = removal_facts(installed=())
    assert all_commands(removal_plan(facts)) == [] and facts.asked == ["EnergySyncInstalled"]


def test_removal_keeps_a_file_changed_since_and_says_so(caplog):
    import logging

    facts = removal_facts(changed={plan.CONFIG_PATH})
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(removal_plan(facts))
    assert f"rm -f {plan.CONFIG_PATH}" not in commands and f"rm -f {plan.SCRIPT_PATH}" in commands
    assert any(
        f"{plan.CONFIG_PATH} stays: it changed since the deploy wrote it" in r.getMessage()
        for r in caplog.records
    )


def test_removal_touches_nothing_the_record_does_not_list(caplog):
    import logging

    facts = removal_facts(listed=())
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(removal_plan(facts))
    assert commands == [], "no timer stopped, no attribute removed, no file deleted"
    assert any(
        "carries the deploy's header but the record" in r.getMessage() for r in caplog.records
    )


def test_units_without_script_or_config_are_removed_without_touching_opennebula():
    commands = all_commands(removal_plan(removal_facts(installed=UNITS)))
    assert not any("--remove-attributes" in c for c in commands)
    assert f"rm -f {plan.SERVICE_PATH}" in commands and "systemctl daemon-reload" in commands


def test_removal_without_python_fails_the_host_and_keeps_the_files():
    commands = all_commands(removal_plan(removal_facts(found={**ONEADMIN_FRONTEND, "python": ""})))
    assert commands[-1].startswith("call log_failure") and "no Python 3.6 or later" in commands[-1]
    assert not any(c.startswith("rm ") for c in commands)
    assert "systemctl stop scaphandre-energy-sync.timer" in commands, (
        "the timer is stopped all the same"
    )


# --------------------------------------------------------------------------- pure parts


def test_status_line_is_the_last_status_among_the_lines():
    lines = [
        (
            "not fresh (no current power sample on its host in the last 300 s), values kept until there is none "
            "for 900 s: host 3 (kvm1)"
        ),
        (
            "status: would write 2 (1 host, 1 VM), unchanged 0, not fresh 1, expired 0, refused 0, conflicts 0, "
            "not in OpenNebula 0, failed 0"
        ),
    ]
    assert plan.status_line(lines) == lines[1] and plan.status_line(["nothing"]) is None


def test_the_bounded_run_reports_overrun_and_failure_distinctly():
    command = plan.trial_run_command(
        settings_with(), plan.ServiceAccount("root", "root"), "/usr/bin/python3"
    )
    assert "[ $status -eq 124 ] || [ $status -eq 137 ]" in command
    assert "did not finish within 300 s" in command and "(--dry-run) failed:" in command


@pytest.mark.parametrize(
    "data",
    [
        {},
        {
            "energy_sync_interval_s": 120,
            "energy_sync_max_age_s": 240,
            "energy_sync_host_max_power_w": 800.5,
            "energy_sync_vm_max_power_w": 400,
        },
    ],
)
def test_the_script_reads_the_rendered_config_as_the_settings_say(tmp_path, data):
    """The deploy's settings and the script's own checks agree: what one accepts, the other reads alike."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", plan.SCRIPT_SOURCE)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    settings = settings_with(**data)
    config = tmp_path / "sync.conf"
    config.write_text(
        rendered_files(settings, plan.ServiceAccount("oneadmin", "oneadmin"))[plan.CONFIG_PATH]
    )
    read = script.load_settings(str(config))
    assert {key: getattr(read, key) for key in script.DEFAULT_SETTINGS} == {
        key: getattr(settings, f"energy_sync_{key}") for key in script.DEFAULT_SETTINGS
    }
