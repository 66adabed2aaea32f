"""Which firewall lines the test bed counts as Docker's when it reads a hypervisor's
VM-networking state (tests/testbed/host_network.py), on rule sets as Docker's engines
and an OpenNebula operator really write them."""

from __future__ import annotations

import pytest

from tests.testbed.host_network import (
    NetworkStateError,
    docker_subnets,
    is_docker_rule,
    operator_rules,
    parse_network_state,
    policies,
)

# An operator's own rules on a KVM node with OpenNebula security groups.
OPERATOR_FILTER = [
    "-N opennebula",
    "-N one-3-0-i",
    "-A FORWARD -m physdev --physdev-is-bridged -j opennebula",
    "-A opennebula -m physdev --physdev-out one-3-0 --physdev-is-bridged -j one-3-0-i",
    '-A INPUT -s 10.0.0.0/8 -m comment --comment "admins reach docker0 hosts" -j ACCEPT',
    "-A INPUT -i br0 -p tcp -m tcp --dport 22 -j ACCEPT",
]
OPERATOR_NAT = ["-A POSTROUTING -s 192.168.100.0/24 -o eth0 -j MASQUERADE"]

# Debian's docker.io 20.10 at its defaults, with one published port.
DOCKER_20_FILTER = [
    "-N DOCKER",
    "-N DOCKER-ISOLATION-STAGE-1",
    "-N DOCKER-ISOLATION-STAGE-2",
    "-N DOCKER-USER",
    "-A FORWARD -j DOCKER-USER",
    "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
    "-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
    "-A FORWARD -o docker0 -j DOCKER",
    "-A FORWARD -i docker0 ! -o docker0 -j ACCEPT",
    "-A FORWARD -i docker0 -o docker0 -j ACCEPT",
    "-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 8080 -j ACCEPT",
    "-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2",
    "-A DOCKER-ISOLATION-STAGE-1 -j RETURN",
    "-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP",
    "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
    "-A DOCKER-USER -j RETURN",
]
DOCKER_20_NAT = [
    "-N DOCKER",
    "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
    "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
    "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
    "-A POSTROUTING -s 172.18.0.0/16 ! -o br-0123456789ab -j MASQUERADE",
    "-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 8080 -j MASQUERADE",
    "-A POSTROUTING -s 172.18.0.5/32 -d 172.18.0.5/32 -p tcp -m tcp --dport 443 -j MASQUERADE",
    "-A DOCKER -i docker0 -j RETURN",
    "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:8080",
]
# Docker 28's newer chains; and the embedded-DNS rules every container of a
# user-defined network (every test host) has.
DOCKER_28_FILTER = [
    "-N DOCKER-BRIDGE",
    "-N DOCKER-CT",
    "-N DOCKER-FORWARD",
    "-A FORWARD -j DOCKER-FORWARD",
    "-A DOCKER-FORWARD -j DOCKER-CT",
    "-A DOCKER-CT -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
]
EMBEDDED_DNS_NAT = [
    "-N DOCKER_OUTPUT",
    "-A OUTPUT -d 127.0.0.11/32 -j DOCKER_OUTPUT",
    "-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp -m udp --dport 53 -j DNAT --to-destination 127.0.0.11:43596",
]


@pytest.mark.parametrize(
    "rule", DOCKER_20_FILTER + DOCKER_20_NAT + DOCKER_28_FILTER + EMBEDDED_DNS_NAT
)
def test_dockers_own_lines_are_recognised(rule):
    assert is_docker_rule(rule, docker_subnets(DOCKER_20_NAT))


@pytest.mark.parametrize("rule", OPERATOR_FILTER + OPERATOR_NAT)
def test_operator_lines_are_kept_even_beside_docker(rule):
    assert operator_rules(DOCKER_20_FILTER + DOCKER_20_NAT + [rule]) == [rule]


def test_hairpin_masquerade_is_dockers_only_inside_a_docker_subnet():
    foreign = "-A POSTROUTING -s 10.1.0.7/32 -d 10.1.0.7/32 -p tcp -m tcp --dport 80 -j MASQUERADE"
    assert operator_rules([*DOCKER_20_NAT, foreign]) == [foreign]
    assert operator_rules(DOCKER_20_NAT) == []


def test_policies_are_reported_apart_from_rules():
    lines = ["-P INPUT ACCEPT", "-P FORWARD DROP", "-P OUTPUT ACCEPT", *OPERATOR_FILTER]
    assert policies(lines) == {"INPUT": "ACCEPT", "FORWARD": "DROP", "OUTPUT": "ACCEPT"}
    assert operator_rules(lines) == OPERATOR_FILTER


def collector_output(
    ip6_filter: str = "-P INPUT ACCEPT\n-P FORWARD ACCEPT\n-P OUTPUT ACCEPT",
) -> str:
    nat_policies = "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT"
    return (
        "\n".join(
            [
                "### ipv4_forward",
                "1",
                "### ipv6_forward_all",
                "0",
                "### iptables.filter",
                "-P INPUT ACCEPT",
                "-P FORWARD DROP",
                "-P OUTPUT ACCEPT",
                *DOCKER_20_FILTER,
                *OPERATOR_FILTER,
                "### iptables.nat",
                nat_policies,
                *DOCKER_20_NAT,
                *EMBEDDED_DNS_NAT,
                "### ip6tables.filter",
                ip6_filter,
                "### ip6tables.nat",
                nat_policies,
                "### bridges",
                "docker0",
                "br0",
                "### bridge_nf",
                "bridge-nf-call-iptables 1",
                "bridge-nf-call-ip6tables 1",
            ]
        )
        + "\n"
    )


def test_collected_state_is_parsed_into_the_documented_shape():
    state = parse_network_state(collector_output())
    assert state["ipv4_forward"] == 1 and state["ipv6_forward_all"] == 0
    assert state["iptables_forward_policy"] == "DROP"
    assert state["ip6tables_forward_policy"] == "ACCEPT"
    assert state["rules"]["iptables"] == {"filter": OPERATOR_FILTER, "nat": []}
    assert state["rules"]["ip6tables"] == {"filter": [], "nat": []}
    assert state["bridges"] == ["br0", "docker0"]
    assert state["bridge_nf"] == {"bridge-nf-call-iptables": 1, "bridge-nf-call-ip6tables": 1}


def test_a_failed_iptables_call_is_an_error_not_an_empty_rule_set():
    with pytest.raises(NetworkStateError, match="ip6tables -t filter"):
        parse_network_state(collector_output(ip6_filter="!failed"))
    with pytest.raises(NetworkStateError, match="ipv4_forward"):
        parse_network_state(collector_output().replace("### ipv4_forward\n1\n", ""))
