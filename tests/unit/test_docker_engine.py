"""The Docker engine step (tasks/docker_engine): installed only where none is, configured
before its first start to leave host networking alone, from the right source per
distribution, started and checked, recorded, and taken away again by remove.py only
when the deploy installed it; as pyinfra's API plans it from given facts."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tasks.docker_engine import ensure_docker_engine, remove_docker_engine
from tasks.docker_engine.daemon_config import render_daemon_json
from tasks.docker_engine.vm_traffic import parse_vm_traffic_state
from tasks.install_record import install_ledger
from tasks.install_record.record import RECORD_DIR, RECORD_FILE
from tests.unit.hypervisor_facts import (
    ALMA_8,
    ALMA_9,
    ALPINE,
    DEBIAN_12,
    RHEL_9,
    ROCKY_9,
    UBUNTU_2204,
    UBUNTU_2404,
    host_facts,
)
from tests.unit.pyinfra_harness import all_commands, planned_commands, planned_uploads, with_ledger

DAEMON_JSON = "/etc/docker/daemon.json"
OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}
REPO_URL = {"docker_ce_repo_url": "https://repo.example.test/linux"}
deploy_engine = with_ledger(ensure_docker_engine)


def by_operation(planned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Operation name without its @deploy prefix ("Docker engine | Install ...") -> commands."""
    return {name.split(" | ")[-1]: commands for name, commands in planned.items()}


def put(path: str, mode: str, directory_mode: str) -> list[str]:
    """The commands that write a computed file: staged beside it, then moved over it."""
    directory, staged = path.rsplit("/", 1)[0], f"{path}.scaphandre-new"
    return [
        f"[ -d {directory} ] || install -d -m {directory_mode} {directory}",
        f"upload {staged}",
        f"chmod {mode} {staged} && mv -f {staged} {path} && "
        f"{{ ! command -v restorecon >/dev/null 2>&1 || restorecon {path}; }}",
    ]


DAEMON_JSON_PUT = put(DAEMON_JSON, "644", "755")
RECORD_PUT = put(RECORD_FILE, "600", "700")
APT_INSTALL = [
    "apt-get update",
    "touch /var/lib/apt/periodic/update-success-stamp",
    'DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::="--force-confdef" '
    '-o Dpkg::Options::="--force-confold" install --no-install-recommends docker.io',
]
DNF_REPO = ["mkdir -p /etc/yum.repos.d", "upload /etc/yum.repos.d/docker-ce.repo", "chmod 644 /etc/yum.repos.d/docker-ce.repo"]
DNF_INSTALL = ["dnf install -y docker-ce docker-ce-cli containerd.io"]
START = ["systemctl start docker.service", "systemctl enable docker.service"]

DEBIAN_FAMILY_PLAN = [
    ("Configure the Docker engine to leave host networking alone (daemon.json)", DAEMON_JSON_PUT),
    ("Record the daemon.json settings the deploy made", RECORD_PUT),
    ("Install the Docker engine", APT_INSTALL),
    ("Record the Docker engine packages the deploy installed", RECORD_PUT),
    ("Enable and start Docker", START),
]
RHEL_FAMILY_PLAN = [
    ("Configure the Docker engine to leave host networking alone (daemon.json)", DAEMON_JSON_PUT),
    ("Record the daemon.json settings the deploy made", RECORD_PUT),
    ("Add Docker's dnf repository", DNF_REPO),
    ("Record Docker's repository files", RECORD_PUT),
    ("Install the Docker engine", DNF_INSTALL),
    ("Record the Docker engine packages the deploy installed", RECORD_PUT),
    ("Enable and start Docker", START),
]


# --- every supported OS family, command by command ----------------------------------


@pytest.mark.parametrize(
    "linux, data, expected",
    [
        (DEBIAN_12, {}, DEBIAN_FAMILY_PLAN),
        (UBUNTU_2204, {}, DEBIAN_FAMILY_PLAN),
        (UBUNTU_2404, {}, DEBIAN_FAMILY_PLAN),
        (ALMA_8, REPO_URL, RHEL_FAMILY_PLAN),
        (ALMA_9, REPO_URL, RHEL_FAMILY_PLAN),
        (RHEL_9, REPO_URL, RHEL_FAMILY_PLAN),
        (ROCKY_9, REPO_URL, RHEL_FAMILY_PLAN),
    ],
    ids=["debian12", "ubuntu2204", "ubuntu2404", "almalinux8", "almalinux9", "rhel9", "rocky9"],
)
def test_each_supported_os_gets_exactly_these_commands(linux, data, expected):
    planned = by_operation(planned_commands(deploy_engine, host_facts(linux=linux), data=data))
    check = planned.pop("Check the Docker engine runs")
    assert list(planned.items()) == expected
    assert len(check) == 1 and "journalctl -u docker.service" in check[0]


@pytest.mark.parametrize("linux", [DEBIAN_12, UBUNTU_2404, ALMA_9], ids=["debian12", "ubuntu2404", "almalinux9"])
def test_daemon_json_holds_exactly_the_network_settings_before_the_engine_is_installed(linux):
    uploads = planned_uploads(deploy_engine, host_facts(linux=linux), data=REPO_URL)
    assert json.loads(uploads[f"{DAEMON_JSON}.scaphandre-new"]) == OURS
    record = json.loads(uploads[f"{RECORD_FILE}.scaphandre-new"])
    assert record["daemon_json"] == {"settings": OURS, "previous": {}}
    assert record["engine"]["packages"] == (["docker.io"] if linux != ALMA_9 else
                                            ["docker-ce", "docker-ce-cli", "containerd.io"])
    names = list(by_operation(planned_commands(deploy_engine, host_facts(linux=linux), data=REPO_URL)))
    assert names.index("Configure the Docker engine to leave host networking alone (daemon.json)") < names.index(
        "Install the Docker engine"), "the package's own start must find daemon.json"


def test_ubuntu_on_request_gets_docker_ce_from_dockers_repository_and_records_its_files():
    data = {"docker_install_source": "docker-ce", **REPO_URL}
    planned = by_operation(planned_commands(deploy_engine, host_facts(linux=UBUNTU_2404), data=data))
    assert planned["Add Docker's apt repository"] == [
        "echo 'deb [signed-by=/etc/apt/keyrings/docker.asc] https://repo.example.test/linux/ubuntu noble stable' "
        ">> /etc/apt/sources.list.d/docker.list"]
    assert any("https://repo.example.test/linux/ubuntu/gpg" in c for c in planned["Download Docker's repository key"])
    install = planned["Install the Docker engine"][-1]
    assert install.endswith("install docker-ce docker-ce-cli containerd.io")
    record = json.loads(planned_uploads(deploy_engine, host_facts(linux=UBUNTU_2404), data=data)[
        f"{RECORD_FILE}.scaphandre-new"])
    assert record["repository_files"] == ["/etc/apt/sources.list.d/docker.list", "/etc/apt/keyrings/docker.asc"]


def test_repository_files_that_were_there_are_not_recorded_as_the_deploys():
    facts = {**host_facts(linux=ALMA_9), "File:/etc/yum.repos.d/docker-ce.repo": {"mode": 644}}
    record = json.loads(planned_uploads(deploy_engine, facts, data=REPO_URL)[f"{RECORD_FILE}.scaphandre-new"])
    assert "repository_files" not in record


def test_packages_the_host_already_had_are_not_recorded_as_the_deploys():
    facts = {**host_facts(linux=ALMA_9), "RpmPackages": {"containerd.io": {"1.7.0"}}}
    record = json.loads(planned_uploads(deploy_engine, facts, data=REPO_URL)[f"{RECORD_FILE}.scaphandre-new"])
    assert record["engine"] == {"package_manager": "dnf", "packages": ["docker-ce", "docker-ce-cli"]}


# --- daemon.json already there (no engine yet) ---------------------------------------


def test_an_existing_daemon_json_is_merged_and_its_previous_values_recorded():
    existing = ['{', '  "log-driver": "journald",', '  "iptables": true', '}']
    facts = {**host_facts(), f"FileContents:{DAEMON_JSON}": existing}
    uploads = planned_uploads(deploy_engine, facts)
    written = json.loads(uploads[f"{DAEMON_JSON}.scaphandre-new"])
    assert written == {"log-driver": "journald", **OURS}
    assert list(written) == ["log-driver", "iptables", "ip6tables", "ip-forward", "bridge"]
    assert json.loads(uploads[f"{RECORD_FILE}.scaphandre-new"])["daemon_json"]["previous"] == {"iptables": True}


@pytest.mark.parametrize("text, why", [(['{"log-driver": "journald",'], "is not valid JSON"),
                                       (['["iptables"]'], "holds a JSON list, not an object")])
def test_an_unparseable_daemon_json_fails_the_host_untouched_and_installs_nothing(text, why):
    facts = {**host_facts(), f"FileContents:{DAEMON_JSON}": text}
    commands = all_commands(planned_commands(deploy_engine, facts))
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert f"{DAEMON_JSON} {why}" in commands[0]
    assert "left it untouched" in commands[0] and "installed no Docker engine" in commands[0]


def test_a_rerun_after_a_stopped_install_keeps_the_values_recorded_first():
    """The first run wrote daemon.json (iptables was true before) and recorded it, then the install
    failed. The rerun finds the deploy's own values in the file: they must not become 'previous'."""
    earlier = {"format": 1, "daemon_json": {"settings": OURS, "previous": {"iptables": True}}}
    facts = {**host_facts(), f"FileContents:{DAEMON_JSON}": render_daemon_json(OURS).splitlines(),
             f"FileContents:{RECORD_FILE}": [json.dumps(earlier)]}
    planned = by_operation(planned_commands(deploy_engine, facts))
    assert "Configure the Docker engine to leave host networking alone (daemon.json)" in planned
    assert planned["Configure the Docker engine to leave host networking alone (daemon.json)"] == []  # up to date
    assert "Record the daemon.json settings the deploy made" not in planned
    record = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert record["daemon_json"] == {"settings": OURS, "previous": {"iptables": True}}
    assert record["engine"]["packages"] == ["docker.io"]


# --- an engine that is already there ------------------------------------------------

DOCKER_DROPS_BRIDGED = [
    "### iptables FORWARD", "-P FORWARD DROP", "-A FORWARD -j DOCKER-USER",
    "### iptables DOCKER-USER", "-N DOCKER-USER", "-A DOCKER-USER -j RETURN",
    "### ip6tables FORWARD", "-P FORWARD ACCEPT", "### ip6tables DOCKER-USER",
    "### bridge-nf", "bridge-nf-call-iptables 1", "bridge-nf-call-ip6tables 1",
    "### bridges", "br0", "docker0",
]
ENGINE_RECORDED = {"format": 1, "engine": {"package_manager": "apt", "packages": ["docker.io"]},
                   "daemon_json": {"settings": OURS, "previous": {}}}


def running_engine(**extra) -> dict:
    return {**host_facts(docker=True), "SystemdStatus": {"docker.service": True},
            "SystemdEnabled": {"docker.service": True}, **extra}


def test_an_operators_engine_is_left_alone_daemon_json_unread_and_nothing_recorded():
    facts = running_engine(**{f"FileContents:{DAEMON_JSON}": ['{"broken'], "VmTrafficFirewall": parse_vm_traffic_state([])})
    planned = planned_commands(deploy_engine, facts)
    assert all_commands(planned) == []
    assert not any("daemon.json" in name or "Record" in name for name in planned)


def test_an_operators_engine_dropping_vm_traffic_gets_a_warning_naming_cause_and_fix(caplog):
    facts = running_engine(VmTrafficFirewall=parse_vm_traffic_state(DOCKER_DROPS_BRIDGED))
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(planned_commands(deploy_engine, facts))
    assert commands == [], "a warning, not a change and not a failure"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "not installed by this deploy and is left as it is" in warnings[0]
    assert "iptables FORWARD policy is DROP" in warnings[0] and "net.bridge.bridge-nf-call-iptables=1" in warnings[0]
    assert "VMs on br0" in warnings[0] and "iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT" in warnings[0]


def test_the_deploys_own_engine_gets_no_warning(caplog):
    facts = running_engine(VmTrafficFirewall=parse_vm_traffic_state(DOCKER_DROPS_BRIDGED),
                           **{f"FileContents:{RECORD_FILE}": [json.dumps(ENGINE_RECORDED)]})
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        assert all_commands(planned_commands(deploy_engine, facts)) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stopped_engine_is_started_then_checked_with_its_journal_on_failure():
    planned = by_operation(planned_commands(deploy_engine, host_facts(docker=True)))
    assert planned["Enable and start Docker"] == START
    check = planned["Check the Docker engine runs"]
    assert len(check) == 1
    assert "journalctl -u docker.service" in check[0] and "daemon.json" in check[0] and "rerun" in check[0]


def test_a_running_engine_is_neither_started_nor_checked():
    assert all_commands(planned_commands(deploy_engine, running_engine())) == []


def test_an_installed_engine_is_not_replaced_but_started():
    planned = by_operation(planned_commands(deploy_engine, host_facts(linux=ALMA_9, docker=True)))
    assert list(planned) == ["Enable and start Docker", "Check the Docker engine runs"]
    assert planned["Enable and start Docker"] == START


# --- hosts that cannot get an engine ----------------------------------------------------

HOST_NAME = re.compile(r"\b[\w-]+\.(com|org|net|io|de|fr)\b", re.IGNORECASE)


@pytest.mark.parametrize("linux, data, guide", [
    (ALMA_9, {}, "Install Docker Engine on RHEL"),
    (RHEL_9, {}, "Install Docker Engine on RHEL"),
    (DEBIAN_12, {"docker_install_source": "docker-ce"}, "Install Docker Engine on Debian"),
    (UBUNTU_2204, {"docker_install_source": "docker-ce"}, "Install Docker Engine on Ubuntu"),
], ids=["almalinux9", "rhel9", "debian12-docker-ce", "ubuntu2204-docker-ce"])
def test_without_docker_ce_repo_url_the_host_fails_saying_what_to_set_and_where_docker_documents_it(linux, data, guide):
    """Docker's own repository is the default: only an operator who unsets it gets here."""
    data = {**data, "docker_ce_repo_url": None}
    commands = all_commands(planned_commands(deploy_engine, host_facts(linux=linux), data=data))
    assert len(commands) == 1 and commands[0].startswith("call log_failure"), commands
    message = commands[0]
    assert "docker_ce_repo_url is not set" in message and "base URL" in message
    assert f"'{guide}', section 'Set up the repository'" in message
    assert "\n" not in message and not HOST_NAME.search(message), "one line, and no host name written in it"


def test_unsupported_os_fails_the_host():
    commands = all_commands(planned_commands(deploy_engine, host_facts(linux=ALPINE)))
    assert len(commands) == 1 and "not supported" in commands[0]


def test_an_unreadable_install_record_fails_the_host_naming_the_file():
    facts = {**host_facts(), f"FileContents:{RECORD_FILE}": ["{not json"]}
    commands = all_commands(planned_commands(lambda settings: install_ledger(), facts))
    assert len(commands) == 1 and RECORD_FILE in commands[0] and "cannot be read" in commands[0]


# --- remove.py with remove_docker_engine ----------------------------------------------------


def remove_engine(settings) -> None:
    remove_docker_engine(install_ledger())


def test_the_deploys_engine_is_removed_with_its_daemon_json_and_the_record():
    facts = running_engine(DebPackages={"docker.io": {"20.10.24"}},
                           **{f"FileContents:{RECORD_FILE}": [json.dumps(ENGINE_RECORDED)],
                              f"FileContents:{DAEMON_JSON}": [json.dumps(OURS)],
                              f"File:{DAEMON_JSON}": {"mode": 644}, f"File:{RECORD_FILE}": {"mode": 600},
                              f"Directory:{RECORD_DIR}": {"mode": 700}})
    planned = by_operation(planned_commands(remove_engine, facts))
    assert planned["Remove the Docker engine"] == ["DEBIAN_FRONTEND=noninteractive apt-get -y -o "
                                                   'Dpkg::Options::="--force-confdef" -o Dpkg::Options::="--force-confold" '
                                                   "remove docker.io"]
    assert planned[f"Remove {DAEMON_JSON} (it held only the deploy's settings)"] == [f"rm -f {DAEMON_JSON}"]
    assert planned["Forget the Docker engine in the record"] == [f"rm -f {RECORD_FILE}"]
    assert planned["Forget the Docker engine in the record: its directory"] == [f"rm -rf {RECORD_DIR}"]
    names = list(planned)
    assert names.index("Remove the Docker engine") < names.index(f"Remove {DAEMON_JSON} (it held only the deploy's settings)")


def test_removal_gives_daemon_json_back_its_operators_keys_and_values():
    recorded = {**ENGINE_RECORDED, "daemon_json": {"settings": OURS, "previous": {"iptables": True}},
                "images": ["hubblo/scaphandre:1.0.2"]}
    current = {"log-driver": "journald", **OURS, "ip-forward": True}  # the operator changed ip-forward since
    facts = running_engine(**{f"FileContents:{RECORD_FILE}": [json.dumps(recorded)],
                              f"FileContents:{DAEMON_JSON}": [json.dumps(current)]})
    uploads = planned_uploads(remove_engine, facts)
    assert json.loads(uploads[f"{DAEMON_JSON}.scaphandre-new"]) == {
        "log-driver": "journald", "iptables": True, "ip-forward": True}
    assert json.loads(uploads[f"{RECORD_FILE}.scaphandre-new"]) == {"format": 1, "images": ["hubblo/scaphandre:1.0.2"]}


def test_dnf_engines_and_docker_repository_files_are_removed_with_dnf():
    recorded = {"format": 1, "engine": {"package_manager": "dnf", "packages": ["docker-ce", "docker-ce-cli"]},
                "repository_files": ["/etc/yum.repos.d/docker-ce.repo"]}
    facts = running_engine(RpmPackages={"docker-ce": {"28.5"}, "docker-ce-cli": {"28.5"}},
                           **{f"FileContents:{RECORD_FILE}": [json.dumps(recorded)],
                                            "File:/etc/yum.repos.d/docker-ce.repo": {"mode": 644}})
    planned = by_operation(planned_commands(remove_engine, facts))
    assert planned["Remove the Docker engine"] == ["dnf remove -y docker-ce docker-ce-cli"]
    assert planned["Remove /etc/yum.repos.d/docker-ce.repo"] == ["rm -f /etc/yum.repos.d/docker-ce.repo"]


def test_an_engine_that_was_there_before_is_never_removed_and_the_host_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(planned_commands(remove_engine, running_engine()))
    assert commands == []
    assert any("not installed by this deploy: it stays" in r.getMessage() for r in caplog.records)
