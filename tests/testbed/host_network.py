"""A hypervisor's VM-networking state as the test bed reads it, and which of its
firewall rules are Docker's own.

What a deploy must leave as it found it on a bridged KVM host: IP forwarding,
the iptables/ip6tables FORWARD policy, the filter and nat rules that are not
Docker's, the bridges and the bridge-netfilter settings. Docker's own lines are
left out of the rules (an engine the operator installed adds and rewrites them
at every start); a line is Docker's when it

* declares a chain named DOCKER* or appends to one (``-N DOCKER-USER``,
  ``-A DOCKER-ISOLATION-STAGE-1 ...``);
* jumps or goes to a DOCKER* chain from anywhere (``-A FORWARD -j DOCKER-USER``,
  ``-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER``);
* names one of Docker's bridges as in- or out-interface: ``docker0`` or a
  user-defined network's ``br-<12 hex digits>`` (``-A FORWARD -i docker0 ! -o
  docker0 -j ACCEPT``, ``-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE``);
* masquerades traffic from inside such a bridge's subnet, the subnet being read
  from the MASQUERADE rule above (the hairpin rules of published ports:
  ``-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp --dport 80 -j MASQUERADE``).

Everything else is the operator's, including a rule an operator wrote in the
built-in chains for Docker's sake. Chain policies are reported apart from rules.
Only what iptables-save's `-S` view shows is compared: native nftables tables of
the operator are outside this picture.
"""

from __future__ import annotations

import ipaddress
import re
import shlex

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
TABLES = ("filter", "nat")
TOOLS = ("iptables", "ip6tables")
DOCKER_BRIDGE = re.compile(r"^(docker0|br-[0-9a-f]{12})$")
SECTION = re.compile(r"^### (\S+)$")

# One shell run in the host prints every section; "### name" starts each.
COLLECT_SCRIPT = "\n".join(
    [
        "echo '### ipv4_forward'; cat /proc/sys/net/ipv4/ip_forward",
        "echo '### ipv6_forward_all'; cat /proc/sys/net/ipv6/conf/all/forwarding",
        *(
            f"echo '### {tool}.{table}'; {tool} -w 5 -t {table} -S || echo '!failed'"
            for tool in TOOLS
            for table in TABLES
        ),
        "echo '### bridges'; ip -o link show type bridge | awk -F': ' '{print $2}' | cut -d@ -f1",
        (
            "echo '### bridge_nf'; for f in /proc/sys/net/bridge/bridge-nf-*; do"
            ' [ -e "$f" ] && echo "${f##*/} $(cat "$f")"; done'
        ),
    ]
)


class NetworkStateError(RuntimeError):
    """The host's network state could not be read (a command failed or printed nothing)."""


def split_sections(output: str) -> dict[str, list[str]]:
    """The collector's output as {section name: non-empty lines}."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        match = SECTION.match(line)
        if match:
            current = sections.setdefault(match.group(1), [])
        elif current is not None and line.strip():
            current.append(line.strip())
    return sections


def option_values(words: list[str], *options: str) -> list[str]:
    """Values following any of options in a rule's words (negations `!` skipped)."""
    values = []
    for index, word in enumerate(words[:-1]):
        if word in options:
            values.append(words[index + 1])
    return values


def docker_subnets(rules: list[str]) -> list[Network]:
    """Subnets of Docker's bridges, from their `-s SUBNET ! -o BRIDGE -j MASQUERADE` rules."""
    subnets = []
    for rule in rules:
        words = shlex.split(rule)
        if "MASQUERADE" in option_values(words, "-j") and any(
            DOCKER_BRIDGE.match(name) for name in option_values(words, "-o")
        ):
            for source in option_values(words, "-s"):
                try:
                    subnets.append(ipaddress.ip_network(source, strict=False))
                except ValueError:
                    continue
    return subnets


def is_docker_rule(rule: str, subnets: list[Network] = ()) -> bool:
    """True when an `iptables -S` line is Docker's own (module docstring lists the cases)."""
    words = shlex.split(rule)
    if len(words) < 2:
        return False
    if words[0] in ("-N", "-A") and words[1].startswith("DOCKER"):
        return True
    if any(target.startswith("DOCKER") for target in option_values(words, "-j", "-g")):
        return True
    if any(DOCKER_BRIDGE.match(name) for name in option_values(words, "-i", "-o")):
        return True
    if "MASQUERADE" in option_values(words, "-j"):
        for source in option_values(words, "-s"):
            try:
                network = ipaddress.ip_network(source, strict=False)
            except ValueError:
                continue
            if any(network.version == s.version and network.subnet_of(s) for s in subnets):
                return True
    return False


def policies(lines: list[str]) -> dict[str, str]:
    """Built-in chain policies from `-P CHAIN POLICY` lines."""
    return {
        words[1]: words[2]
        for words in (line.split() for line in lines)
        if len(words) == 3 and words[0] == "-P"
    }


def operator_rules(lines: list[str]) -> list[str]:
    """The rules (no policies) of one table that are not Docker's, in iptables' order."""
    rules = [line for line in lines if not line.startswith("-P ")]
    subnets = docker_subnets(rules)
    return [rule for rule in rules if not is_docker_rule(rule, subnets)]


def single_int(sections: dict[str, list[str]], name: str) -> int:
    """A section holding one integer (a sysctl)."""
    lines = sections.get(name, [])
    if len(lines) != 1 or not lines[0].isdigit():
        raise NetworkStateError(f"could not read {name}: {lines!r}")
    return int(lines[0])


def parse_network_state(output: str) -> dict:
    """The state dict network_state() returns, from COLLECT_SCRIPT's output."""
    sections = split_sections(output)
    state = {
        "ipv4_forward": single_int(sections, "ipv4_forward"),
        "ipv6_forward_all": single_int(sections, "ipv6_forward_all"),
        "policies": {},
        "rules": {},
    }
    for tool in TOOLS:
        state["policies"][tool], state["rules"][tool] = {}, {}
        for table in TABLES:
            lines = sections.get(f"{tool}.{table}", [])
            if not lines or "!failed" in lines:
                raise NetworkStateError(f"{tool} -t {table} -S failed or printed nothing")
            state["policies"][tool][table] = policies(lines)
            state["rules"][tool][table] = operator_rules(lines)
    state["iptables_forward_policy"] = state["policies"]["iptables"]["filter"].get("FORWARD")
    state["ip6tables_forward_policy"] = state["policies"]["ip6tables"]["filter"].get("FORWARD")
    state["bridges"] = sorted(sections.get("bridges", []))
    state["bridge_nf"] = {
        name: int(value) for name, value in (line.split() for line in sections.get("bridge_nf", []))
    }
    return state
