"""The simulated cloud for the end-to-end scenarios: test bed hosts, the OpenNebula
API simulator (test double) listing them with IDs out of inventory order, and an
inventory file an operator would write for them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.doubles.one_api_simulator import OneApiSimulator
from tests.e2e.cloud import (
    PrometheusApi,
    bed_port,
    bed_prefix,
    bed_with_opennebula,
    render_discovery_inventory,
    render_inventory,
)
from tests.testbed.bed import TestBed

PREFIX = bed_prefix("sotb-e2e")
SSH_PORT_BASE = bed_port(2241)
PROMETHEUS_API_PORT = bed_port(9191)

# IDs deliberately not in inventory order, and three ways of matching:
# hv1 registered by FQDN, hv2 by its short name, hv3 under another NAME (found by TEMPLATE/HOSTNAME).
INITIAL_POOL = [
    {"id": 2, "name": "lxc-node", "hostname": "lxc-node", "im_mad": "lxc", "state": 4},
    {"id": 7, "name": "hv1.cloud.test", "hostname": "hv1", "im_mad": "kvm", "state": 2},
    {"id": 3, "name": "hv2", "hostname": "hv2", "im_mad": "kvm", "state": 2},
    {"id": 12, "name": "kvm-node-c", "hostname": "hv3", "im_mad": "kvm", "state": 2},
    {"id": 30, "name": "hv-retired", "hostname": "hv-retired", "im_mad": "kvm", "state": 4},
]


@dataclass
class SimulatedCloud:
    bed: TestBed
    simulator: OneApiSimulator
    state_dir: Path
    password: str
    hypervisors: list[str] = field(default_factory=lambda: ["hv1", "hv2", "hv3"])
    pool: list[dict] = field(default_factory=lambda: [dict(h) for h in INITIAL_POOL])
    prometheus_data: dict = field(default_factory=dict)
    host_data: dict = field(default_factory=dict)  # inventory name -> extra host data

    @property
    def inventory(self) -> Path:
        return self.state_dir / "inventory.py"

    @property
    def discovery_inventory(self) -> Path:
        return self.state_dir / "inventory_discovered.py"

    @property
    def one_ids(self) -> dict[str, str]:
        by_hostname = {h["hostname"]: str(h["id"]) for h in self.pool}
        return {name: by_hostname[name] for name in self.hypervisors}

    @property
    def prometheus(self) -> PrometheusApi:
        return PrometheusApi(self.bed.prometheus_url)

    def vm_ids(self, host: str) -> list[int]:
        """OpenNebula IDs of the simulated VMs running on `host`."""
        return self.bed.vm_ids(host)

    def write_inventory(self) -> None:
        render_inventory(
            self.inventory,
            self.bed,
            self.hypervisors,
            self.host_data,
            prometheus_data=self.prometheus_data,
        )
        render_discovery_inventory(self.discovery_inventory, self.bed)

    def publish_ssh_ports(self) -> None:
        """Each bed host's SSH port as a TEMPLATE attribute, for discovery's connection pattern."""
        for host in self.pool:
            if host["hostname"] in self.bed.hosts:
                host["template"] = {"SSH_PORT": self.bed.hosts[host["hostname"]].ssh_port}
        self.simulator.set_hosts(self.pool)

    def add_hypervisor(self, name: str, one_id: int) -> None:
        self.bed.add_hypervisor(name)
        self.pool.append(
            {"id": one_id, "name": name, "hostname": name, "im_mad": "kvm", "state": 2}
        )
        self.publish_ssh_ports()
        self.hypervisors.append(name)
        self.write_inventory()


@pytest.fixture(scope="module")
def cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("cloud")
    with bed_with_opennebula(
        PREFIX, state_dir, ("hv1", "hv2", "hv3"), SSH_PORT_BASE, PROMETHEUS_API_PORT, INITIAL_POOL
    ) as (bed, simulator, password):
        simulated = SimulatedCloud(
            bed=bed, simulator=simulator, state_dir=state_dir, password=password
        )
        simulated.publish_ssh_ports()
        simulated.write_inventory()
        yield simulated
