"""The Docker engine step (tasks/docker_engine): installed only where none is, configured
before its first start to leave host networking alone, from the right source per
distribution, started and checked, recorded (an intent before any change, confirmed
after), and taken away again by remove.py only when the deploy installed it, daemon.json
given back as it was; as pyinfra's API plans it from given facts."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re

import pytest

from tasks.docker_engine import ensure_docker_engine, remove_docker_engine
from tasks.docker_engine.daemon_config import render_daemon_json
from tasks.docker_engine.vm_traffic import parse_vm_traffic_state
from tasks.install_record import install_ledger
from tasks.install_record.record import RECORD_DIR, RECORD_FILE
from tasks.text_file import LiveFile, in_place_script, spool_path
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
from tests.unit.pyinfra_harness import (
    all_commands,
    on_hypervisor,
    planned_command_objects,
    planned_commands,
    planned_uploads,
    record_facts,
    render,
    uploaded_text,
    uploads_by_operation,
)

DAEMON_JSON = "/etc/docker/daemon.json"
OURS = {"iptables": False, "ip6tables": False, "ip-forward": False, "bridge": "none"}
OURS_TEXT = render_daemon_json(OURS)
deploy_engine = on_hypervisor(ensure_docker_engine)
INTENT = "Record what the deploy is about to install (daemon.json as it was, the packages absent)"
CONFIGURE = "Configure the Docker engine to leave host networking alone (daemon.json)"
CONFIRM = "Confirm in the record what the deploy installed"


def by_operation(planned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Operation name without its @deploy prefix ("Docker engine | Install ...") -> commands."""
    return {name.split(" | ")[-1]: commands for name, commands in planned.items()}


def record_put(first: bool) -> list[str]:
    """The commands that write the record: staged beside it, then moved over it (its
    directory made first when the host had no record yet)."""
    staged = f"{RECORD_FILE}.scaphandre-new"
    return [
        *([f"[ -d {RECORD_DIR} ] || install -d -m 700 {RECORD_DIR}"] if first else []),
        f"upload {staged}",
        (
            f"chmod 600 {staged} && mv -f {staged} {RECORD_FILE} && "
            f"{{ ! command -v restorecon >/dev/null 2>&1 || restorecon {RECORD_FILE}; }}"
        ),
    ]


def in_place(path: str, new: bool = False) -> list[str]:
    """The commands that replace a file in place (tests/unit/test_text_file.py runs that script for real)."""
    spool = spool_path(path)
    return [
        f"umask 077 && mkdir -p {RECORD_DIR} && chmod 0700 {RECORD_DIR}",
        f"upload {spool}",
        in_place_script(path, spool, new=new),
    ]


def daemon_json_facts(content: bytes | None, link: bool = False) -> dict:
    """daemon.json as the FileBytes fact reads it (None: no file)."""
    if content is None:
        return {f"FileBytes:{DAEMON_JSON}": None}
    return {
        f"FileBytes:{DAEMON_JSON}": LiveFile(
            link=link,
            target="/srv/docker/daemon.json" if link else DAEMON_JSON,
            regular=True,
            uid=0,
            gid=0,
            mode="600" if link else "644",
            sha256=hashlib.sha256(content).hexdigest(),
            content=content,
        )
    }


APT_INSTALL = [
    "apt-get update",
    "touch /var/lib/apt/periodic/update-success-stamp",
    (
        'DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::="--force-confdef" '
        '-o Dpkg::Options::="--force-confold" install --no-install-recommends docker.io'
    ),
]
DNF_REPO = [
    "mkdir -p /etc/yum.repos.d",
    "upload /etc/yum.repos.d/docker-ce.repo",
    "chmod 644 /etc/yum.repos.d/docker-ce.repo",
]
DNF_INSTALL = ["dnf install -y docker-ce docker-ce-cli containerd.io"]
START = ["systemctl start docker.service", "systemctl enable docker.service"]

DEBIAN_FAMILY_PLAN = [
    (INTENT, record_put(first=True)),
    (CONFIGURE, in_place(DAEMON_JSON, new=True)),
    ("Install the Docker engine", APT_INSTALL),
    (CONFIRM, record_put(first=False)),
    ("Enable and start Docker", START),
]
RHEL_FAMILY_PLAN = [
    (INTENT, record_put(first=True)),
    (CONFIGURE, in_place(DAEMON_JSON, new=True)),
    ("Add Docker's dnf repository", DNF_REPO),
    ("Install the Docker engine", DNF_INSTALL),
    (CONFIRM, record_put(first=False)),
    ("Enable and start Docker", START),
]


# --- every supported OS family, command by command ----------------------------------


@pytest.mark.parametrize(
    "linux, expected",
    [
        (DEBIAN_12, DEBIAN_FAMILY_PLAN),
        (UBUNTU_2204, DEBIAN_FAMILY_PLAN),
        (UBUNTU_2404, DEBIAN_FAMILY_PLAN),
        (ALMA_8, RHEL_FAMILY_PLAN),
        (ALMA_9, RHEL_FAMILY_PLAN),
        (RHEL_9, RHEL_FAMILY_PLAN),
        (ROCKY_9, RHEL_FAMILY_PLAN),
    ],
    ids=["debian12", "ubuntu2204", "ubuntu2404", "almalinux8", "almalinux9", "rhel9", "rocky9"],
)
def test_each_supported_os_gets_exactly_these_commands_with_no_extra_setting(linux, expected):
    planned = by_operation(planned_commands(deploy_engine, host_facts(linux=linux)))
    check = planned.pop("Check the Docker engine runs")
    assert list(planned.items()) == expected
    assert len(check) == 1 and "journalctl -u docker.service" in check[0]


@pytest.mark.parametrize(
    "linux", [ALMA_8, ALMA_9, RHEL_9, ROCKY_9], ids=["almalinux8", "almalinux9", "rhel9", "rocky9"]
)
def test_the_rhel_family_gets_dockers_own_rhel_repository_by_default(linux):
    repo = planned_uploads(deploy_engine, host_facts(linux=linux))[
        "/etc/yum.repos.d/docker-ce.repo"
    ]
    assert "baseurl=https://download.docker.com/linux/rhel/$releasever/$basearch/stable\n" in repo
    assert "gpgkey=https://download.docker.com/linux/rhel/gpg\n" in repo and "gpgcheck=1\n" in repo


@pytest.mark.parametrize(
    "linux, directory, codename",
    [
        (DEBIAN_12, "debian", "bookworm"),
        (UBUNTU_2204, "ubuntu", "jammy"),
        (UBUNTU_2404, "ubuntu", "noble"),
    ],
    ids=["debian12", "ubuntu2204", "ubuntu2404"],
)
def test_docker_ce_on_request_comes_from_dockers_own_repository_by_default(
    linux, directory, codename
):
    planned = by_operation(
        planned_commands(
            deploy_engine, host_facts(linux=linux), data={"docker_install_source": "docker-ce"}
        )
    )
    assert planned["Add Docker's apt repository"] == [
        (
            f"echo 'deb [signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/{directory} "
            f"{codename} stable' >> /etc/apt/sources.list.d/docker.list"
        )
    ]
    assert any(
        f"https://download.docker.com/linux/{directory}/gpg" in command
        for command in planned["Download Docker's repository key"]
    )
    assert planned["Install the Docker engine"][-1].endswith(
        "install docker-ce docker-ce-cli containerd.io"
    )


def test_a_mirror_is_one_setting_away():
    repo = planned_uploads(
        deploy_engine,
        host_facts(linux=ROCKY_9),
        data={"docker_ce_repo_url": "https://mirror.example.test/docker/linux/"},
    )
    assert (
        "baseurl=https://mirror.example.test/docker/linux/rhel/$releasever/$basearch/stable\n"
        in repo["/etc/yum.repos.d/docker-ce.repo"]
    )


@pytest.mark.parametrize(
    "url",
    [
        "https://deploy:S3cr3t-t0ken@mirror.example.test/linux",
        "https://S3cr3t-t0ken@mirror.example.test/linux",
    ],
    ids=["user-and-token", "token"],
)
def test_credentials_in_the_repository_url_are_refused_naming_each_package_managers_own_way(url):
    planned = planned_commands(
        deploy_engine, host_facts(linux=ALMA_9), data={"docker_ce_repo_url": url}
    )
    commands = all_commands(planned)
    assert len(commands) == 1 and commands[0].startswith("call log_failure"), (
        "the host fails before anything runs"
    )
    message = commands[0]
    assert "setting docker_ce_repo_url holds credentials (user:token@)" in message
    assert "for apt, a file in /etc/apt/auth.conf.d/" in message
    assert "for dnf, the repository's username= and password= options" in message
    assert "S3cr3t-t0ken" not in message and "deploy:" not in message
    assert (
        planned_uploads(deploy_engine, host_facts(linux=ALMA_9), data={"docker_ce_repo_url": url})
        == {}
    )


def test_the_intent_holds_daemon_json_as_it_was_and_the_packages_absent_before_anything_changes():
    uploads = uploads_by_operation(deploy_engine, host_facts(linux=ALMA_9))
    intent = json.loads(uploads[INTENT][f"{RECORD_FILE}.scaphandre-new"])
    assert intent == {
        "format": 2,
        "engine": {
            "package_manager": "dnf",
            "packages": ["docker-ce", "docker-ce-cli", "containerd.io"],
            "done": False,
        },
        "daemon_json": {
            "settings": OURS,
            "previous_file": {"present": False},
            "written_sha256": hashlib.sha256(OURS_TEXT.encode()).hexdigest(),
            "done": False,
        },
        "repository_files": ["/etc/yum.repos.d/docker-ce.repo"],
    }
    assert uploads[CONFIGURE][spool_path(DAEMON_JSON)] == OURS_TEXT.encode()
    confirmed = json.loads(uploads[CONFIRM][f"{RECORD_FILE}.scaphandre-new"])
    assert confirmed["engine"] == {
        "package_manager": "dnf",
        "packages": ["docker-ce", "docker-ce-cli", "containerd.io"],
    }
    assert (
        "done" not in confirmed["daemon_json"]
        and confirmed["repository_files"] == intent["repository_files"]
    )
    names = list(uploads)
    assert names.index(INTENT) < names.index(CONFIGURE) < names.index(CONFIRM)


def test_repository_files_that_were_there_are_not_recorded_as_the_deploys():
    facts = {**host_facts(linux=ALMA_9), "File:/etc/yum.repos.d/docker-ce.repo": {"mode": 644}}
    record = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert "repository_files" not in record


def test_packages_the_host_already_had_are_not_recorded_as_the_deploys():
    facts = {**host_facts(linux=ALMA_9), "RpmPackages": {"containerd.io": {"1.7.0"}}}
    record = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert record["engine"] == {
        "package_manager": "dnf",
        "packages": ["docker-ce", "docker-ce-cli"],
    }


# --- daemon.json already there (no engine yet) ---------------------------------------

OPERATORS = b'{\n    "log-driver": "journald",\n    "iptables": true\n}\n'


def test_an_existing_daemon_json_is_merged_and_its_exact_bytes_recorded():
    uploads = uploads_by_operation(deploy_engine, {**host_facts(), **daemon_json_facts(OPERATORS)})
    written = json.loads(uploads[CONFIGURE][spool_path(DAEMON_JSON)])
    assert written == {"log-driver": "journald", **OURS}
    assert list(written) == ["log-driver", "iptables", "ip6tables", "ip-forward", "bridge"]
    daemon = json.loads(uploads[INTENT][f"{RECORD_FILE}.scaphandre-new"])["daemon_json"]
    assert daemon["previous"] == {"iptables": True}
    assert daemon["previous_file"] == {
        "present": True,
        "base64": base64.b64encode(OPERATORS).decode(),
    }


def test_a_symlinked_daemon_json_is_written_through_its_link():
    planned = by_operation(
        planned_commands(deploy_engine, {**host_facts(), **daemon_json_facts(OPERATORS, link=True)})
    )
    assert planned[CONFIGURE] == in_place(DAEMON_JSON)
    assert 'target=$(readlink -f -- "$live")' in planned[CONFIGURE][-1]
    assert (
        'chown --reference="$target"' in planned[CONFIGURE][-1]
        and 'chmod --reference="$target"' in planned[CONFIGURE][-1]
    )


@pytest.mark.parametrize(
    "content, why",
    [
        (b'{"log-driver": "journald",', "is not valid JSON"),
        (b'["iptables"]', "holds a JSON list, not an object"),
        (b'{"log-driver": "\xe9"}', "is not UTF-8 text"),
    ],
)
def test_an_unparseable_daemon_json_fails_the_host_untouched_and_installs_nothing(content, why):
    facts = {**host_facts(), **daemon_json_facts(content)}
    commands = all_commands(planned_commands(deploy_engine, facts))
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert f"{DAEMON_JSON} {why}" in commands[0]
    assert "left it untouched" in commands[0] and "installed no Docker engine" in commands[0]
    assert planned_uploads(deploy_engine, facts) == {}, "nothing recorded, nothing written"


def test_a_daemon_json_linked_to_nothing_fails_the_host_naming_the_link():
    facts = {**host_facts(), f"FileBytes:{DAEMON_JSON}": {"dangling": "/srv/docker/daemon.json"}}
    commands = all_commands(planned_commands(deploy_engine, facts))
    assert (
        len(commands) == 1
        and "is a symbolic link to /srv/docker/daemon.json, which does not exist" in commands[0]
    )


# --- a run cut between its intent and its confirmation (each point where it can stop) ------

INTENDED = {
    "format": 2,
    "engine": {"package_manager": "apt", "packages": ["docker.io"], "done": False},
    "daemon_json": {
        "settings": OURS,
        "previous": {"iptables": True},
        "previous_file": {"present": True, "base64": base64.b64encode(OPERATORS).decode()},
        "written_sha256": hashlib.sha256(
            render_daemon_json({"log-driver": "journald", **OURS}).encode()
        ).hexdigest(),
        "done": False,
    },
}
MERGED = render_daemon_json({"log-driver": "journald", **OURS}).encode()


def test_cut_before_daemon_json_was_written_the_next_run_records_the_same_and_writes_it():
    facts = {**host_facts(), **record_facts(INTENDED), **daemon_json_facts(OPERATORS)}
    uploads = uploads_by_operation(deploy_engine, facts)
    assert INTENT not in uploads, "the intent is already recorded, as it was"
    assert uploads[CONFIGURE][spool_path(DAEMON_JSON)] == MERGED
    confirmed = json.loads(uploads[CONFIRM][f"{RECORD_FILE}.scaphandre-new"])
    assert confirmed["daemon_json"]["previous_file"] == INTENDED["daemon_json"]["previous_file"]


def test_cut_after_daemon_json_was_written_the_deploys_values_never_become_the_previous_ones():
    """The file now holds the deploy's values; what the operator had stays what the intent recorded."""
    facts = {**host_facts(), **record_facts(INTENDED), **daemon_json_facts(MERGED)}
    planned = by_operation(planned_commands(deploy_engine, facts))
    assert planned[CONFIGURE] == [], "daemon.json is already as wanted"
    assert INTENT not in planned
    confirmed = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert confirmed["daemon_json"]["previous"] == {"iptables": True}
    assert base64.b64decode(confirmed["daemon_json"]["previous_file"]["base64"]) == OPERATORS
    assert confirmed["engine"] == {"package_manager": "apt", "packages": ["docker.io"]}


def test_cut_mid_installation_keeps_every_package_that_was_absent_before():
    """containerd.io got installed before the run stopped: it is still the deploy's."""
    intended = {
        **INTENDED,
        "engine": {
            "package_manager": "dnf",
            "done": False,
            "packages": ["docker-ce", "docker-ce-cli", "containerd.io"],
        },
    }
    facts = {
        **host_facts(linux=ALMA_9),
        **record_facts(intended),
        **daemon_json_facts(MERGED),
        "RpmPackages": {"containerd.io": {"1.7.0"}},
    }
    confirmed = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert confirmed["engine"]["packages"] == ["docker-ce", "docker-ce-cli", "containerd.io"]


def test_cut_after_the_installation_the_engine_is_still_the_deploys_and_is_confirmed(caplog):
    facts = {
        **running_engine(VmTrafficFirewall=parse_vm_traffic_state(DOCKER_DROPS_BRIDGED)),
        **record_facts(INTENDED),
    }
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        planned = by_operation(planned_commands(deploy_engine, facts))
    assert [name for name, commands in planned.items() if commands] == [CONFIRM]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], (
        "not reported as the operator's engine"
    )
    confirmed = json.loads(planned_uploads(deploy_engine, facts)[f"{RECORD_FILE}.scaphandre-new"])
    assert confirmed["engine"] == {"package_manager": "apt", "packages": ["docker.io"]}
    assert "done" not in confirmed["daemon_json"]


def test_remove_after_a_cut_before_daemon_json_was_written_leaves_it_as_it_is():
    facts = running_engine(
        DebPackages={"docker.io": {"20.10"}},
        **record_facts(INTENDED),
        **daemon_json_facts(OPERATORS),
    )
    planned = by_operation(planned_commands(remove_engine, facts))
    assert not [name for name in planned if DAEMON_JSON in name], planned
    assert planned["Remove the Docker engine"][0].endswith("remove docker.io")


# --- an engine that is already there ------------------------------------------------

DOCKER_DROPS_BRIDGED = [
    "### iptables FORWARD",
    "-P FORWARD DROP",
    "-A FORWARD -j DOCKER-USER",
    "### iptables DOCKER-USER",
    "-N DOCKER-USER",
    "-A DOCKER-USER -j RETURN",
    "### ip6tables FORWARD",
    "-P FORWARD ACCEPT",
    "### ip6tables DOCKER-USER",
    "### bridge-nf",
    "bridge-nf-call-iptables 1",
    "bridge-nf-call-ip6tables 1",
    "### bridges",
    "br0",
    "docker0",
]
# As the versions before format 2 recorded it: still read (its daemon.json given back key by key).
ENGINE_RECORDED = {
    "format": 1,
    "engine": {"package_manager": "apt", "packages": ["docker.io"]},
    "daemon_json": {"settings": OURS, "previous": {}},
}


def running_engine(**extra) -> dict:
    return {
        **host_facts(docker=True),
        "SystemdStatus": {"docker.service": True},
        "SystemdEnabled": {"docker.service": True},
        **extra,
    }


def test_an_operators_engine_is_left_alone_daemon_json_unread_and_nothing_recorded():
    facts = running_engine(
        **daemon_json_facts(b'{"broken'), VmTrafficFirewall=parse_vm_traffic_state([])
    )
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
    assert (
        "iptables FORWARD policy is DROP" in warnings[0]
        and "net.bridge.bridge-nf-call-iptables=1" in warnings[0]
    )
    assert (
        "VMs on br0" in warnings[0]
        and "iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT" in warnings[0]
    )


def test_the_deploys_own_engine_gets_no_warning(caplog):
    facts = running_engine(
        VmTrafficFirewall=parse_vm_traffic_state(DOCKER_DROPS_BRIDGED),
        **record_facts(ENGINE_RECORDED),
    )
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        assert all_commands(planned_commands(deploy_engine, facts)) == []
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_stopped_engine_is_started_then_checked_with_its_journal_on_failure():
    planned = by_operation(planned_commands(deploy_engine, host_facts(docker=True)))
    assert planned["Enable and start Docker"] == START
    check = planned["Check the Docker engine runs"]
    assert len(check) == 1
    assert (
        "journalctl -u docker.service" in check[0]
        and "daemon.json" in check[0]
        and "rerun" in check[0]
    )


def test_a_running_engine_is_neither_started_nor_checked():
    assert all_commands(planned_commands(deploy_engine, running_engine())) == []


def test_an_installed_engine_is_not_replaced_but_started():
    planned = by_operation(planned_commands(deploy_engine, host_facts(linux=ALMA_9, docker=True)))
    assert list(planned) == ["Enable and start Docker", "Check the Docker engine runs"]
    assert planned["Enable and start Docker"] == START


# --- hosts that cannot get an engine ----------------------------------------------------

HOST_NAME = re.compile(r"\b[\w-]+\.(com|org|net|io|de|fr)\b", re.IGNORECASE)


@pytest.mark.parametrize(
    "linux, data, guide",
    [
        (ALMA_9, {}, "Install Docker Engine on RHEL"),
        (RHEL_9, {}, "Install Docker Engine on RHEL"),
        (DEBIAN_12, {"docker_install_source": "docker-ce"}, "Install Docker Engine on Debian"),
        (UBUNTU_2204, {"docker_install_source": "docker-ce"}, "Install Docker Engine on Ubuntu"),
    ],
    ids=["almalinux9", "rhel9", "debian12-docker-ce", "ubuntu2204-docker-ce"],
)
def test_without_docker_ce_repo_url_the_host_fails_saying_what_to_set_and_where_docker_documents_it(
    linux, data, guide
):
    """Docker's own repository is the default: only an operator who unsets it gets here."""
    data = {**data, "docker_ce_repo_url": None}
    commands = all_commands(planned_commands(deploy_engine, host_facts(linux=linux), data=data))
    assert len(commands) == 1 and commands[0].startswith("call log_failure"), commands
    message = commands[0]
    assert "docker_ce_repo_url is not set" in message and "base URL" in message
    assert f"'{guide}', section 'Set up the repository'" in message
    assert "\n" not in message and not HOST_NAME.search(message), (
        "one line, and no host name written in it"
    )


def test_unsupported_os_fails_the_host():
    commands = all_commands(planned_commands(deploy_engine, host_facts(linux=ALPINE)))
    assert len(commands) == 1 and "not supported" in commands[0]


def test_an_unreadable_install_record_fails_the_host_naming_the_file():
    facts = {**host_facts(), **record_facts("{not json")}
    commands = all_commands(planned_commands(lambda settings: install_ledger(), facts))
    assert len(commands) == 1 and RECORD_FILE in commands[0] and "cannot be read" in commands[0]


# --- remove.py with remove_docker_engine ----------------------------------------------------


def remove_engine(settings) -> None:
    remove_docker_engine(install_ledger())


def recorded_engine(previous: bytes | None, written: bytes) -> dict:
    """The record after a deploy installed the engine over daemon.json `previous` (None: no file)."""
    previous_file = (
        {"present": False}
        if previous is None
        else {"present": True, "base64": base64.b64encode(previous).decode()}
    )
    return {
        "format": 2,
        "engine": {"package_manager": "apt", "packages": ["docker.io"]},
        "daemon_json": {
            "settings": OURS,
            "previous": {},
            "previous_file": previous_file,
            "written_sha256": hashlib.sha256(written).hexdigest(),
        },
        "images": ["hubblo/scaphandre:1.0.2"],
    }


def removal_plan(record: dict, daemon_json: bytes | None, link: bool = False):
    """remove.py's plan, planned once: operation -> commands, and operation -> uploads."""
    facts = running_engine(
        DebPackages={"docker.io": {"20.10.24"}},
        **record_facts(record),
        **daemon_json_facts(daemon_json, link=link),
    )
    planned = {
        name.split(" | ")[-1]: commands
        for name, commands in planned_command_objects(remove_engine, facts).items()
    }
    uploads = {
        name: {c.dest: uploaded_text(c) for c in commands if uploaded_text(c) is not None}
        for name, commands in planned.items()
    }
    return {name: [render(c) for c in commands] for name, commands in planned.items()}, uploads


GIVE_BACK = f"Give {DAEMON_JSON} back as it was before the deploy"


def test_the_deploys_engine_is_removed_and_a_daemon_json_it_created_goes():
    planned, _ = removal_plan(
        {**recorded_engine(None, OURS_TEXT.encode()), "images": []}, OURS_TEXT.encode()
    )
    assert planned["Remove the Docker engine"] == [
        (
            "DEBIAN_FRONTEND=noninteractive apt-get -y -o "
            'Dpkg::Options::="--force-confdef" -o Dpkg::Options::="--force-confold" '
            "remove docker.io"
        )
    ]
    assert planned[f"Remove {DAEMON_JSON} (there was none before the deploy)"] == [
        f"rm -f -- {DAEMON_JSON}"
    ]
    assert planned["Forget the Docker engine in the record"] == [
        f"rm -f -- {RECORD_FILE} && {{ rmdir -- {RECORD_DIR} 2>/dev/null || true; }}"
    ]
    names = list(planned)
    assert names.index("Remove the Docker engine") < names.index(
        f"Remove {DAEMON_JSON} (there was none before the deploy)"
    )


@pytest.mark.parametrize(
    "previous",
    [b"", b"{}", b"{}\n", OPERATORS, b'{"iptables":true,  "mtu": 1400}\r\n'],
    ids=["empty-file", "braces", "braces-newline", "indented-4", "compact-crlf"],
)
def test_daemon_json_still_as_the_deploy_wrote_it_is_given_back_byte_for_byte(previous, caplog):
    settings = json.loads(previous or b"{}")
    written = render_daemon_json({**settings, **OURS}).encode()
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        planned, uploads = removal_plan(recorded_engine(previous, written), written)
    assert planned[GIVE_BACK] == in_place(DAEMON_JSON)
    assert uploads[GIVE_BACK][spool_path(DAEMON_JSON)] == previous
    assert not [r for r in caplog.records if DAEMON_JSON in r.getMessage()]


def test_a_symlinked_daemon_json_is_given_back_through_its_link_and_never_deleted():
    planned, uploads = removal_plan(recorded_engine(OPERATORS, MERGED), MERGED, link=True)
    assert (
        planned[GIVE_BACK] == in_place(DAEMON_JSON)
        and uploads[GIVE_BACK][spool_path(DAEMON_JSON)] == OPERATORS
    )
    planned, uploads = removal_plan(
        recorded_engine(None, OURS_TEXT.encode()), OURS_TEXT.encode(), link=True
    )
    assert not [name for name in planned if name.startswith(f"Remove {DAEMON_JSON}")]
    assert uploads[GIVE_BACK][spool_path(DAEMON_JSON)] == b"{}\n", (
        "the link stays; what it points to loses our keys"
    )


@pytest.mark.parametrize(
    "edited, kept",
    [
        (
            {"log-driver": "journald", **OURS, "ip-forward": True},
            {"log-driver": "journald", "iptables": True, "ip-forward": True},
        ),
        (
            {"log-driver": "journald", **OURS, "mtu": 1400},
            {"log-driver": "journald", "iptables": True, "mtu": 1400},
        ),
    ],
    ids=["changed-one-of-ours", "added-a-key"],
)
def test_daemon_json_changed_since_loses_only_the_deploys_keys_and_the_host_says_so(
    edited, kept, caplog
):
    record = recorded_engine(OPERATORS, MERGED)
    record["daemon_json"]["previous"] = {"iptables": True}
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        _planned, uploads = removal_plan(record, render_daemon_json(edited).encode())
    assert json.loads(uploads[GIVE_BACK][spool_path(DAEMON_JSON)]) == kept
    notes = [r.getMessage() for r in caplog.records if DAEMON_JSON in r.getMessage()]
    assert (
        len(notes) == 1
        and "changed since the deploy wrote it" in notes[0]
        and "your edits kept" in notes[0]
    )


def test_a_record_of_an_earlier_version_gives_daemon_json_back_key_by_key():
    current = {"log-driver": "journald", **OURS}
    record = {**ENGINE_RECORDED, "daemon_json": {"settings": OURS, "previous": {"iptables": True}}}
    planned, uploads = removal_plan(record, json.dumps(current).encode())
    assert json.loads(uploads[GIVE_BACK][spool_path(DAEMON_JSON)]) == {
        "log-driver": "journald",
        "iptables": True,
    }
    assert planned["Forget the Docker engine in the record"] == [
        f"rm -f -- {RECORD_FILE} && {{ rmdir -- {RECORD_DIR} 2>/dev/null || true; }}"
    ]


def test_dnf_engines_and_docker_repository_files_are_removed_with_dnf():
    recorded = {
        "format": 2,
        "engine": {"package_manager": "dnf", "packages": ["docker-ce", "docker-ce-cli"]},
        "repository_files": ["/etc/yum.repos.d/docker-ce.repo"],
    }
    facts = running_engine(
        RpmPackages={"docker-ce": {"28.5"}, "docker-ce-cli": {"28.5"}},
        **record_facts(recorded),
        **{"File:/etc/yum.repos.d/docker-ce.repo": {"mode": 644}},
    )
    planned = by_operation(planned_commands(remove_engine, facts))
    assert planned["Remove the Docker engine"] == ["dnf remove -y docker-ce docker-ce-cli"]
    assert planned["Remove /etc/yum.repos.d/docker-ce.repo"] == [
        "rm -f /etc/yum.repos.d/docker-ce.repo"
    ]


def test_an_engine_that_was_there_before_is_never_removed_and_the_host_says_so(caplog):
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(planned_commands(remove_engine, running_engine()))
    assert commands == []
    assert any("not installed by this deploy: it stays" in r.getMessage() for r in caplog.records)
