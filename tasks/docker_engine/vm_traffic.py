"""Does a Docker engine's firewall stop VM traffic on this hypervisor? Plain functions of
what COLLECT_COMMAND prints, shared by the deploy (a warning) and the verification
suite (a failing check).

An engine that turned IP forwarding on itself sets the iptables (and, since Docker 27,
ip6tables) FORWARD policy to DROP. With bridge netfilter on
(net.bridge.bridge-nf-call-iptables=1, as with OpenNebula's security groups), frames
crossing a Linux bridge go through that FORWARD chain, so VMs on the bridge stop
reaching each other and the network, unless Docker's DOCKER-USER chain lets them
through. Only bridges that are not Docker's own (docker0, br-<id>) carry VMs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

TOOLS = (("iptables", "bridge-nf-call-iptables"), ("ip6tables", "bridge-nf-call-ip6tables"))
DOCKER_BRIDGE = re.compile(r"^(docker0|br-[0-9a-f]{12})$")
SECTION = re.compile(r"^### (.+)$")

# Root reads every table; `-w 5` waits for a concurrent iptables user instead of failing.
COLLECT_COMMAND = "; ".join(
    [
        *(
            f"echo '### {tool} FORWARD'; {tool} -w 5 -S FORWARD 2>/dev/null; "
            f"echo '### {tool} DOCKER-USER'; {tool} -w 5 -S DOCKER-USER 2>/dev/null"
            for tool, _ in TOOLS
        ),
        (
            "echo '### bridge-nf'; for f in /proc/sys/net/bridge/bridge-nf-call-iptables "
            '/proc/sys/net/bridge/bridge-nf-call-ip6tables; do [ -r "$f" ] && echo "${f##*/} $(cat "$f")"; done'
        ),
        "echo '### bridges'; ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1",
        "true",
    ]
)


@dataclass(frozen=True)
class FirewallFamily:
    """One of iptables / ip6tables as it bears on bridged traffic."""

    forward_policy: str | None = None
    docker_manages_it: bool = False  # Docker's chains are there (an engine with iptables on)
    docker_user_rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class VmTrafficState:
    families: dict[str, FirewallFamily] = field(default_factory=dict)
    bridge_nf: dict[str, int] = field(default_factory=dict)
    bridges: tuple[str, ...] = ()

    @property
    def vm_bridges(self) -> list[str]:
        return [name for name in self.bridges if not DOCKER_BRIDGE.match(name)]


def parse_vm_traffic_state(lines: list[str]) -> VmTrafficState:
    """The state from COLLECT_COMMAND's output lines."""
    sections: dict[str, list[str]] = {}
    current: list[str] = []
    for line in lines:
        match = SECTION.match(line.strip())
        if match:
            current = sections.setdefault(match.group(1), [])
        elif line.strip():
            current.append(line.strip())
    families = {}
    for tool, _ in TOOLS:
        forward = sections.get(f"{tool} FORWARD", [])
        docker_user = sections.get(f"{tool} DOCKER-USER", [])
        policy = next(
            (
                line.split()[2]
                for line in forward
                if line.startswith("-P FORWARD ") and len(line.split()) == 3
            ),
            None,
        )
        jumps_to_docker = any(re.search(r"\s-[jg]\s+DOCKER", line) for line in forward)
        families[tool] = FirewallFamily(
            forward_policy=policy,
            docker_manages_it=jumps_to_docker or bool(docker_user),
            docker_user_rules=tuple(line for line in docker_user if line.startswith("-A ")),
        )
    bridge_nf = {}
    for line in sections.get("bridge-nf", []):
        name, _, value = line.partition(" ")
        if value.strip().isdigit():
            bridge_nf[name] = int(value)
    return VmTrafficState(families, bridge_nf, tuple(sections.get("bridges", [])))


def _lets_bridge_through(rule: str, bridge: str) -> bool:
    """True when a DOCKER-USER rule accepts traffic within `bridge` (or all bridged traffic)."""
    words = rule.split()
    if "ACCEPT" not in words or words[words.index("ACCEPT") - 1] not in ("-j", "--jump"):
        return False
    if "--physdev-is-bridged" in words:
        return True
    interfaces = {
        (words[i], words[i + 1]) for i in range(len(words) - 1) if words[i] in ("-i", "-o")
    }
    return ("-i", bridge) in interfaces and ("-o", bridge) in interfaces


def docker_blocks_vm_traffic(state: VmTrafficState) -> str | None:
    """What stops VM traffic and how to fix it, in one sentence; None when nothing does.

    Blocked means: a FORWARD policy of DROP, in a family Docker manages and bridge
    netfilter passes bridged frames to, and a VM bridge DOCKER-USER does not let through.
    """
    blocked_families, blocked_bridges = [], []
    for tool, sysctl in TOOLS:
        family = state.families.get(tool, FirewallFamily())
        if (
            family.forward_policy != "DROP"
            or not family.docker_manages_it
            or state.bridge_nf.get(sysctl) != 1
        ):
            continue
        bridges = [
            b
            for b in state.vm_bridges
            if not any(_lets_bridge_through(rule, b) for rule in family.docker_user_rules)
        ]
        if bridges:
            blocked_families.append((tool, sysctl))
            blocked_bridges += [b for b in bridges if b not in blocked_bridges]
    if not blocked_families:
        return None
    tools = " and ".join(tool for tool, _ in blocked_families)
    sysctls = ", ".join(f"net.bridge.{sysctl}=1" for _, sysctl in blocked_families)
    bridge_names = ", ".join(blocked_bridges)
    first = blocked_bridges[0]
    fixes = "; ".join(
        f"{tool} -I DOCKER-USER -i {first} -o {first} -j ACCEPT" for tool, _ in blocked_families
    )
    policies = "; ".join(f"{tool} -P FORWARD ACCEPT" for tool, _ in blocked_families)
    return (
        f"the {tools} FORWARD policy is DROP (Docker sets it when it turns IP forwarding on itself) while bridge "
        f"netfilter is on ({sysctls}), so VMs on {bridge_names} cannot reach each other or the network. "
        f"Fix: let bridged traffic through Docker's DOCKER-USER chain ({fixes}; for each VM bridge, persisted "
        "with your firewall tooling); or, when no container needs Docker's own networking, give the engine "
        '"iptables": false, "ip6tables": false, "ip-forward": false and "bridge": "none" in '
        f"/etc/docker/daemon.json, restart it and set the policy back ({policies})"
    )
