"""The Docker engine step (tasks/docker_engine): installed only where none is, from the
right source per distribution, started and checked, as pyinfra's API plans it."""

from __future__ import annotations

import pytest

from tasks.docker_engine import ensure_docker_engine
from tests.unit.hypervisor_facts import ALMA_9, ALPINE, DEBIAN_12, UBUNTU_2404, host_facts
from tests.unit.pyinfra_harness import all_commands, planned_commands

def by_operation(planned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Operation name without its @deploy prefix ("Enable RAPL | Load RAPL modules") -> commands."""
    return {name.split(" | ")[-1]: commands for name, commands in planned.items()}


# --- Docker engine --------------------------------------------------------------


@pytest.mark.parametrize("linux", [DEBIAN_12, UBUNTU_2404], ids=["debian12", "ubuntu2404"])
def test_debian_family_gets_the_distro_docker_io(linux):
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=linux)))
    install = [c for c in commands if "apt-get" in c and " install " in c]
    assert install and "docker.io" in install[0]
    assert any(c.startswith("apt-get update") for c in commands)
    assert "systemctl start docker.service" in commands
    assert "systemctl enable docker.service" in commands


def test_ubuntu_on_request_gets_docker_ce_from_dockers_repository():
    data = {"docker_install_source": "docker-ce", "docker_ce_repo_url": "https://repo.example.test/linux"}
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=UBUNTU_2404), data=data))
    assert any("repo.example.test/linux/ubuntu noble stable" in c for c in commands)
    install = [c for c in commands if "apt-get" in c and " install " in c]
    assert install and "docker-ce" in install[0] and "docker.io" not in install[0]


def test_almalinux_gets_docker_ce_with_dnf():
    data = {"docker_ce_repo_url": "https://repo.example.test/linux"}
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=ALMA_9), data=data))
    assert "upload /etc/yum.repos.d/docker-ce.repo" in commands
    install = [c for c in commands if c.startswith("dnf install")]
    assert install and "docker-ce" in install[0] and "containerd.io" in install[0]
    assert "systemctl start docker.service" in commands


def test_almalinux_without_a_docker_ce_repository_fails_naming_the_setting():
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=ALMA_9)))
    assert len(commands) == 1 and "docker_ce_repo_url" in commands[0]


def test_unsupported_os_fails_the_host():
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=ALPINE)))
    assert len(commands) == 1 and "not supported" in commands[0]


def test_an_installed_engine_is_not_replaced_but_started():
    commands = all_commands(planned_commands(ensure_docker_engine, host_facts(linux=ALMA_9, docker=True)))
    assert not any("install" in c for c in commands)
    assert "systemctl start docker.service" in commands


# --- Docker engine stopped, or unable to start -------------------------------------------


def test_a_stopped_engine_is_started_then_checked_with_its_journal_on_failure():
    planned = by_operation(planned_commands(ensure_docker_engine, host_facts(docker=True)))
    commands = all_commands(planned)
    assert "systemctl start docker.service" in commands
    check = planned["Check the Docker engine runs"]
    assert len(check) == 1
    assert "journalctl -u docker.service" in check[0] and "daemon.json" in check[0] and "rerun" in check[0]


def test_a_running_engine_is_neither_started_nor_checked():
    facts = {**host_facts(docker=True), "SystemdStatus": {"docker.service": True}, "SystemdEnabled": {"docker.service": True}}
    assert all_commands(planned_commands(ensure_docker_engine, facts)) == []
