"""Whether a Docker engine's firewall stops VM traffic (tasks/docker_engine/vm_traffic.py),
from the output the deploy's fact and the verification suite collect on a hypervisor."""

from __future__ import annotations

import subprocess

import pytest

from tasks.docker_engine.vm_traffic import (
    COLLECT_COMMAND,
    docker_blocks_vm_traffic,
    parse_vm_traffic_state,
)

# Debian's docker.io 20.10 at its defaults on a bridged KVM node that had forwarding off.
DOCKER_AT_DEFAULTS = """### iptables FORWARD
-P FORWARD DROP
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
### iptables DOCKER-USER
-N DOCKER-USER
-A DOCKER-USER -j RETURN
### ip6tables FORWARD
-P FORWARD ACCEPT
### ip6tables DOCKER-USER
### bridge-nf
bridge-nf-call-iptables 1
bridge-nf-call-ip6tables 1
### bridges
br0
docker0
""".splitlines()


def with_lines(lines: list[str], after: str, *added: str) -> list[str]:
    index = lines.index(after) + 1
    return [*lines[:index], *added, *lines[index:]]


def replaced(lines: list[str], old: str, new: str) -> list[str]:
    return [new if line == old else line for line in lines]


def test_docker_at_its_defaults_blocks_the_vm_bridge_and_the_message_names_cause_and_fix():
    problem = docker_blocks_vm_traffic(parse_vm_traffic_state(DOCKER_AT_DEFAULTS))
    assert problem.startswith(
        "the iptables FORWARD policy is DROP (Docker sets it when it turns IP forwarding on itself)"
    )
    assert (
        "net.bridge.bridge-nf-call-iptables=1" in problem
        and "VMs on br0 cannot reach each other" in problem
    )
    assert "iptables -I DOCKER-USER -i br0 -o br0 -j ACCEPT" in problem
    assert '"ip-forward": false' in problem and "iptables -P FORWARD ACCEPT" in problem
    assert "docker0" not in problem.split("Fix:")[0], "Docker's own bridge carries no VM"


@pytest.mark.parametrize(
    "change",
    [
        lambda lines: replaced(lines, "-P FORWARD DROP", "-P FORWARD ACCEPT"),
        lambda lines: replaced(lines, "bridge-nf-call-iptables 1", "bridge-nf-call-iptables 0"),
        lambda lines: [
            line for line in lines if not line.startswith("bridge-nf-call")
        ],  # br_netfilter not loaded
        lambda lines: replaced(lines, "br0", "docker0"),  # no VM bridge at all
        lambda lines: with_lines(lines, "-N DOCKER-USER", "-A DOCKER-USER -i br0 -o br0 -j ACCEPT"),
        lambda lines: with_lines(
            lines, "-N DOCKER-USER", "-A DOCKER-USER -m physdev --physdev-is-bridged -j ACCEPT"
        ),
    ],
    ids=[
        "policy-accept",
        "bridge-nf-off",
        "br-netfilter-absent",
        "no-vm-bridge",
        "docker-user-accepts-br0",
        "docker-user-accepts-bridged",
    ],
)
def test_nothing_is_reported_when_vm_traffic_gets_through(change):
    assert docker_blocks_vm_traffic(parse_vm_traffic_state(change(DOCKER_AT_DEFAULTS))) is None


def test_an_operators_own_drop_policy_without_docker_chains_is_not_dockers_doing():
    own = [line for line in DOCKER_AT_DEFAULTS if "DOCKER" not in line and "docker0" not in line]
    assert docker_blocks_vm_traffic(parse_vm_traffic_state(own)) is None


def test_an_accept_rule_for_another_bridge_does_not_hide_the_blocked_one():
    lines = with_lines(
        DOCKER_AT_DEFAULTS, "-N DOCKER-USER", "-A DOCKER-USER -i br1 -o br1 -j ACCEPT"
    )
    lines = with_lines(lines, "br0", "br1")
    problem = docker_blocks_vm_traffic(parse_vm_traffic_state(lines))
    assert "VMs on br0 cannot" in problem


def test_ipv6_is_reported_too_when_docker_set_its_policy():
    lines = replaced(DOCKER_AT_DEFAULTS, "-P FORWARD ACCEPT", "-P FORWARD DROP")
    lines = with_lines(lines, "### ip6tables DOCKER-USER", "-N DOCKER-USER")
    problem = docker_blocks_vm_traffic(parse_vm_traffic_state(lines))
    assert problem.startswith("the iptables and ip6tables FORWARD policy is DROP")
    assert "ip6tables -I DOCKER-USER -i br0 -o br0 -j ACCEPT" in problem


def test_the_collect_command_is_valid_shell_and_prints_every_section():
    done = subprocess.run(
        ["sh", "-n", "-c", COLLECT_COMMAND], capture_output=True, text=True, timeout=10, check=False
    )
    assert done.returncode == 0, done.stderr
    for section in (
        "iptables FORWARD",
        "iptables DOCKER-USER",
        "ip6tables FORWARD",
        "bridge-nf",
        "bridges",
    ):
        assert f"echo '### {section}'" in COLLECT_COMMAND
