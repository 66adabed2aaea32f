"""Hypervisor faults as plans: a taken port, a Docker engine that is stopped or will not
start, RAPL that stays hidden. pyinfra's API computes what would run from given facts
(tests/unit/pyinfra_harness.py); the same cases run for real in tests/e2e/test_faults.py."""

from __future__ import annotations

import pytest

from tasks.docker_engine import ensure_docker_engine
from tasks.hypervisor_plan import port_listeners, port_taken_message, publishes_port, scaphandre_spec
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre
from tests.unit.pyinfra_harness import all_commands, default_data, planned_commands
from tests.unit.test_deploy_plans import host_facts, inspect_of

def by_operation(planned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Operation name without its @deploy prefix ("Enable RAPL | Load RAPL modules") -> commands."""
    return {name.split(" | ")[-1]: commands for name, commands in planned.items()}


PYTHON_ON_8080 = 'LISTEN 0      5            0.0.0.0:8080      0.0.0.0:*    users:(("python3",pid=4242,fd=3))'
PROXY_ON_8080 = 'LISTEN 0      4096         0.0.0.0:8080      0.0.0.0:*    users:(("docker-proxy",pid=77,fd=4))'
SSHD = 'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=1,fd=3))'
V6_ON_8080 = 'LISTEN 0      5               [::]:8080         [::]:*    users:(("node",pid=9,fd=20))'
LOOPBACK_ON_8080 = 'LISTEN 0      5          127.0.0.1:8080      0.0.0.0:*    users:(("nginx",pid=31,fd=6),("nginx",pid=32,fd=6))'


# --- a port already taken ---------------------------------------------------------


def test_port_listeners_names_process_pid_and_address():
    assert port_listeners([SSHD, PYTHON_ON_8080], 8080) == ["python3 (pid 4242) on 0.0.0.0:8080"]


def test_port_listeners_is_empty_when_the_port_is_free():
    assert port_listeners([SSHD, PYTHON_ON_8080], 9100) == []
    assert port_listeners([], 8080) == []


def test_port_listeners_reads_ipv6_and_several_processes():
    assert port_listeners([V6_ON_8080], 8080) == ["node (pid 9) on [::]:8080"]
    assert port_listeners([LOOPBACK_ON_8080], 8080) == ["nginx (pid 31), nginx (pid 32) on 127.0.0.1:8080"]


def test_a_socket_on_another_specific_address_does_not_conflict():
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="192.0.2.5") == []
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="127.0.0.1") != []
    assert port_listeners([PYTHON_ON_8080], 8080, listen_address="192.0.2.5") != []


def test_a_listener_without_a_process_name_is_still_reported():
    assert port_listeners(["LISTEN 0 5 0.0.0.0:8080 0.0.0.0:*"], 8080) == ["an unnamed process on 0.0.0.0:8080"]


def test_the_message_names_port_holder_setting_and_that_the_container_was_kept():
    message = port_taken_message(9100, ["python3 (pid 4242) on 0.0.0.0:9100"], "scaphandre")
    assert "TCP port 9100" in message and "python3 (pid 4242)" in message
    assert "scaphandre_port" in message and "left as it was" in message


def test_a_running_container_holding_the_port_is_not_a_conflict():
    running = inspect_of("x")
    assert publishes_port(running, 8080)
    assert not publishes_port({**running, "State": {"Status": "exited"}}, 8080)
    assert not publishes_port(running, 9100)
    assert not publishes_port(None, 8080)


def test_a_taken_port_fails_the_host_instead_of_creating_the_container():
    facts = {"DockerContainer": [], "ListeningTcpSockets": [SSHD, PYTHON_ON_8080]}
    commands = all_commands(planned_commands(run_scaphandre, facts))
    assert len(commands) == 1 and commands[0].startswith("call _log_failure")
    assert "TCP port 8080" in commands[0] and "python3 (pid 4242)" in commands[0]


def test_a_taken_new_port_keeps_the_working_container():
    fingerprint = scaphandre_spec(default_data()).fingerprint
    facts = {"DockerContainer": [inspect_of(fingerprint)], "ListeningTcpSockets": [PROXY_ON_8080, SSHD,
             PYTHON_ON_8080.replace("8080", "9100")]}
    commands = all_commands(planned_commands(run_scaphandre, facts, data={"scaphandre_port": 9100}))
    assert not any("docker container rm" in c for c in commands)
    assert len(commands) == 1 and "TCP port 9100" in commands[0]


def test_the_containers_own_port_does_not_block_its_recreation():
    fingerprint = scaphandre_spec(default_data()).fingerprint
    facts = {"DockerContainer": [inspect_of(fingerprint)], "ListeningTcpSockets": [PROXY_ON_8080]}
    commands = all_commands(planned_commands(run_scaphandre, facts, data={"scaphandre_qemu": False}))
    assert commands[0] == "docker container rm -f scaphandre"


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


# --- RAPL that stays hidden ------------------------------------------------------------


def test_modules_are_persisted_only_after_rapl_showed():
    planned = list(by_operation(planned_commands(enable_rapl, host_facts())))
    assert planned.index("Load RAPL modules") < planned.index("Check RAPL is exposed")
    assert planned.index("Check RAPL is exposed") < planned.index("Persist RAPL modules in modules-load.d")


@pytest.mark.parametrize("distro_name, hint", [("Debian", "not bare metal"), ("Ubuntu", "linux-modules-extra")])
def test_hidden_rapl_fails_with_the_likely_cause(distro_name, hint):
    linux = {"name": distro_name, "major": 12, "minor": None, "release_meta": {"ID": distro_name.lower()}}
    check = by_operation(planned_commands(enable_rapl, host_facts(linux=linux)))["Check RAPL is exposed"]
    assert "test -e /sys/class/powercap/intel-rapl:0" in check[0]
    assert "RAPL is not exposed" in check[0] and hint in check[0]
