"""A rerun on a hypervisor the deploy already set up: the facts it reads, each once.

Every fact is one SSH round trip per host (pyinfra keeps none between calls), and the
hypervisor's steps run on every rerun: this pins how many there are.
"""

from __future__ import annotations

from collections import Counter

from tasks.docker_engine import ensure_docker_engine
from tasks.install_record import install_ledger
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre
from tests.unit.hypervisor_facts import default_fingerprint, host_facts, inspect_of
from tests.unit.pyinfra_harness import FactTable, planned_command_objects, record_facts

RECORDED = {
    "format": 1,
    "engine": {"package_manager": "apt", "packages": ["docker.io"]},
    "daemon_json": {"settings": {"iptables": False}, "previous": {}},
    "images": ["hubblo/scaphandre:1.0.2"],
}


def hypervisor_steps(settings) -> None:
    """The hypervisor part of deploy.py."""
    ledger = install_ledger()
    enable_rapl(settings)
    ensure_docker_engine(settings, ledger)
    run_scaphandre(settings, ledger)


def deployed_hypervisor() -> FactTable:
    return FactTable(
        {
            **host_facts(rapl=True, docker=True),
            "SystemdStatus": {"docker.service": True},
            "SystemdEnabled": {"docker.service": True},
            **record_facts(RECORDED),
            "DockerImage": [{"Id": "sha256:1"}],
            "DockerContainer": [inspect_of(default_fingerprint())],
        }
    )


def planned_by_pyinfra(facts: FactTable) -> list[str]:
    """The facts read while pyinfra plans the steps, as pyinfra's prepare pass reads them."""
    planned_command_objects(hypervisor_steps, facts)
    return facts.asked_while_planning


def test_a_rerun_reads_each_fact_once():
    asked = Counter(planned_by_pyinfra(deployed_hypervisor()))
    assert (
        asked
        == {
            "InstallRecordFile": 1,  # the install record, with the host's lock taken in the same round trip
            "RaplProbe": 1,  # CPU vendor, kernel, RAPL exposed
            "File": 1,
            "Directory": 2,  # pyinfra's files.template: the modules-load file
            "DockerEngineInstalled": 1,
            "SystemdEnabled": 1,
            # pyinfra's systemd.service, then the engine check (planned before it is known
            # whether it runs)
            "SystemdStatus": 2,
            "DockerContainer": 1,
        }
    )
