"""What a deploy must have left on every hypervisor.

Each test runs once per host of group `hypervisors`; its id names the host and
every failure message starts with it, in terms an operator can act on.
"""

from __future__ import annotations

import json
import re

import pytest

from tasks.docker_engine.vm_traffic import (
    COLLECT_COMMAND,
    docker_blocks_vm_traffic,
    parse_vm_traffic_state,
)
from tasks.host_failure import UnsupportedHostError
from tasks.rapl.plan import MODULES_LOAD_FILE, RAPL_ZONE, rapl_modules
from tasks.scaphandre.spec import ScaphandreSpec, host_port, listening_addresses, scaphandre_spec
from tests.verify import Node, fetch_url

POWER_METRIC = "scaph_host_power_microwatts"


def container_name(node: Node) -> str:
    return node.settings.scaphandre_container_name


def spec(node: Node) -> ScaphandreSpec:
    """The container the deploy runs on this host, from its settings."""
    return scaphandre_spec(node.settings)


def inspect_container(node: Node) -> dict:
    """`docker inspect` of the Scaphandre container, or a test failure saying it is missing."""
    name = container_name(node)
    result = node.host.run("docker inspect --type container %s", name)
    if result.rc != 0:
        pytest.fail(
            f"{node.name}: container {name} does not exist ({result.stderr.strip()[:200]})",
            pytrace=False,
        )
    return json.loads(result.stdout)[0]


def expected_modules(node: Node) -> list[str]:
    """The RAPL modules the deploy persists: rapl_modules, else chosen from CPU vendor and kernel."""
    configured = node.settings.rapl_modules
    if configured:
        return list(configured)
    vendor = node.host.run(
        "sed -n 's/^vendor_id[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1"
    )
    kernel = node.host.run("uname -r")
    try:
        return rapl_modules(vendor.stdout.strip(), kernel.stdout.strip())
    except UnsupportedHostError as error:
        pytest.fail(f"{node.name}: {error}", pytrace=False)


def test_rapl_exposed(hypervisor: Node):
    """RAPL's package zone exists and its energy counter reads as a number."""
    assert hypervisor.host.file(RAPL_ZONE).is_directory, (
        f"{hypervisor.name}: RAPL is not exposed: {RAPL_ZONE} is missing "
        "(RAPL modules not loaded, not bare metal, or no RAPL on this CPU)"
    )
    energy = hypervisor.host.run("cat %s", f"{RAPL_ZONE}/energy_uj")
    assert energy.rc == 0, (
        f"{hypervisor.name}: cannot read {RAPL_ZONE}/energy_uj: {energy.stderr.strip()}"
    )
    assert energy.stdout.strip().isdigit(), (
        f"{hypervisor.name}: {RAPL_ZONE}/energy_uj holds {energy.stdout.strip()!r}, not an energy counter"
    )


def test_rapl_modules_persisted(hypervisor: Node):
    """/etc/modules-load.d lists the RAPL modules, so they load again after a reboot."""
    conf = hypervisor.host.file(MODULES_LOAD_FILE)
    assert conf.is_file, (
        f"{hypervisor.name}: {MODULES_LOAD_FILE} is missing: RAPL modules would not load at boot"
    )
    listed = [
        line.strip()
        for line in conf.content_string.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    wanted = expected_modules(hypervisor)
    missing = [module for module in wanted if module not in listed]
    assert not missing, (
        f"{hypervisor.name}: {MODULES_LOAD_FILE} does not list {', '.join(missing)} (it lists {listed or 'nothing'})"
    )


def test_docker_active_and_enabled(hypervisor: Node):
    """The Docker engine runs now and starts at boot."""
    docker = hypervisor.host.service("docker")
    assert docker.is_running, f"{hypervisor.name}: docker.service is not running"
    assert docker.is_enabled, (
        f"{hypervisor.name}: docker.service is not enabled: it would not start after a reboot"
    )


def test_container_running(hypervisor: Node):
    state = inspect_container(hypervisor).get("State") or {}
    assert state.get("Running"), (
        f"{hypervisor.name}: container {container_name(hypervisor)} is not running "
        f"(status {state.get('Status')}, exit code {state.get('ExitCode')}); "
        f"see `docker logs {container_name(hypervisor)}` on the host"
    )
    assert not state.get("Restarting"), (
        f"{hypervisor.name}: container {container_name(hypervisor)} keeps restarting"
    )


def test_container_image(hypervisor: Node):
    wanted = hypervisor.settings.scaphandre_image
    image = (inspect_container(hypervisor).get("Config") or {}).get("Image")
    assert image == wanted, (
        f"{hypervisor.name}: container {container_name(hypervisor)} runs image {image}, not the configured {wanted}"
    )


def test_container_restart_policy(hypervisor: Node):
    """The restart policy brings the exporter back after a reboot or a crash."""
    wanted = hypervisor.settings.scaphandre_restart_policy
    policy = (
        (inspect_container(hypervisor).get("HostConfig") or {}).get("RestartPolicy") or {}
    ).get("Name")
    assert policy == wanted, (
        f"{hypervisor.name}: container {container_name(hypervisor)} has restart policy {policy!r}, "
        f"not the configured {wanted!r}"
    )


def test_container_mounts(hypervisor: Node):
    """/proc and the powercap tree (and the Docker socket for --containers) are bind-mounted."""
    mounts = inspect_container(hypervisor).get("Mounts") or []
    present = {f"{m.get('Source')}:{m.get('Destination')}" for m in mounts}
    missing = [bind for bind in spec(hypervisor).volumes if bind not in present]
    assert not missing, (
        f"{hypervisor.name}: container {container_name(hypervisor)} lacks the mounts {', '.join(missing)} "
        f"(has {', '.join(sorted(present)) or 'none'})"
    )


def test_container_on_host_network(hypervisor: Node):
    """The container shares the host's network: Docker publishes no port (no docker-proxy, no NAT)."""
    host_config = inspect_container(hypervisor).get("HostConfig") or {}
    network, published = host_config.get("NetworkMode"), host_config.get("PortBindings") or {}
    assert network == "host" and not any(published.values()), (
        f"{hypervisor.name}: container {container_name(hypervisor)} runs on network {network!r} "
        f"with published ports {published or 'none'}, not on the host network; rerun the deploy to recreate it"
    )


def test_exporter_listens_on_its_address(hypervisor: Node):
    """Scaphandre itself listens on scaphandre_listen_address:scaphandre_port (its -a and -p)."""
    settings = hypervisor.settings
    wanted = settings.scaphandre_listen_address
    pids = hypervisor.host.run("docker top %s -eo pid", container_name(hypervisor)).stdout.split()[
        1:
    ]
    sockets = hypervisor.host.run("ss -Hltnp").stdout.splitlines()
    found = listening_addresses(
        sockets, settings.scaphandre_port, {int(pid) for pid in pids if pid.isdigit()}
    )
    shown = (
        ", ".join(host_port(address, settings.scaphandre_port) for address in found) or "nowhere"
    )
    assert wanted in found, (
        f"{hypervisor.name}: Scaphandre in container {container_name(hypervisor)} should listen on "
        f"{host_port(wanted, settings.scaphandre_port)}; it listens on {shown}"
    )


def test_metrics_served(hypervisor: Node):
    """/metrics answers on the host with a host power value."""
    url = spec(hypervisor).metrics_url
    ok, body = fetch_url(hypervisor, url)
    assert ok, f"{hypervisor.name}: {url} does not answer: {body}"
    value = re.search(rf"^{POWER_METRIC}(?:{{[^}}]*}})?\s+(\S+)", body, re.MULTILINE)
    assert value, (
        f"{hypervisor.name}: {url} answers but has no {POWER_METRIC} (is RAPL visible in the container?)"
    )
    # A malformed sample would make Prometheus reject the whole scrape.
    assert re.fullmatch(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?|NaN|[-+]?Inf", value.group(1)), (
        f"{hypervisor.name}: {POWER_METRIC} has the value {value.group(1)!r}, not a number"
    )


def test_vm_traffic_not_blocked_by_docker(hypervisor: Node):
    """No Docker engine's firewall drops the traffic of VMs on the host's Linux bridges (a FORWARD
    policy of DROP with bridge netfilter on, and no DOCKER-USER rule letting the bridge through)."""
    collected = hypervisor.host.run(COLLECT_COMMAND)
    problem = docker_blocks_vm_traffic(parse_vm_traffic_state(collected.stdout.splitlines()))
    assert problem is None, f"{hypervisor.name}: {problem}"
