"""The RAPL step (tasks/rapl): modules chosen from CPU vendor and kernel, loaded, checked and
persisted, as pyinfra's API plans them from given facts."""

from __future__ import annotations

import os
import subprocess

import pytest

from tasks.rapl import enable_rapl as enable_rapl_step
from tasks.rapl.facts import RaplHost, RaplProbe
from tests.unit.hypervisor_facts import UBUNTU_2404, host_facts
from tests.unit.pyinfra_harness import all_commands, on_hypervisor, planned_commands

enable_rapl = on_hypervisor(enable_rapl_step, ledger=False)


def by_operation(planned: dict[str, list[str]]) -> dict[str, list[str]]:
    """Operation name without its @deploy prefix ("Enable RAPL | Load RAPL modules") -> commands."""
    return {name.split(" | ")[-1]: commands for name, commands in planned.items()}


@pytest.mark.parametrize(
    "vendor, kernel, modules",
    [
        ("GenuineIntel", "6.1.0-18-amd64", "intel_rapl_common intel_rapl_msr"),
        ("GenuineIntel", "4.18.0-553.el8_10.x86_64", "intel_rapl"),
        ("AuthenticAMD", "5.15.0-91-generic", "intel_rapl_common intel_rapl_msr"),
    ],
)
def test_rapl_modules_are_persisted_and_loaded(vendor, kernel, modules):
    planned = planned_commands(enable_rapl, host_facts(vendor=vendor, kernel=kernel))
    commands = all_commands(planned)
    assert "upload /etc/modules-load.d/scaphandre-rapl.conf" in commands
    assert f"modprobe -a {modules}" in commands
    assert any("test -e /sys/class/powercap/intel-rapl:0" in c for c in commands)


def test_amd_on_an_old_kernel_fails_the_host_naming_the_kernel():
    commands = all_commands(
        planned_commands(enable_rapl, host_facts(vendor="AuthenticAMD", kernel="5.4.0-150"))
    )
    assert len(commands) == 1
    assert commands[0].startswith("call log_failure")
    assert "5.11" in commands[0] and "5.4.0-150" in commands[0]


def test_rapl_already_exposed_loads_nothing():
    commands = all_commands(planned_commands(enable_rapl, host_facts(rapl=True)))
    assert not any(c.startswith("modprobe") for c in commands)
    assert not any("test -e" in c for c in commands)


def test_ubuntu_without_rapl_names_linux_modules_extra():
    commands = all_commands(planned_commands(enable_rapl, host_facts(linux=UBUNTU_2404)))
    assert any("linux-modules-extra" in c for c in commands)


def test_module_override_wins():
    planned = planned_commands(
        enable_rapl, host_facts(vendor="Unknown"), data={"rapl_modules": ["my_rapl"]}
    )
    assert "modprobe -a my_rapl" in all_commands(planned)


# --- RAPL that stays hidden ------------------------------------------------------------


def test_modules_are_persisted_only_after_rapl_showed():
    planned = list(by_operation(planned_commands(enable_rapl, host_facts())))
    assert planned.index("Load RAPL modules") < planned.index("Check RAPL is exposed")
    assert planned.index("Check RAPL is exposed") < planned.index(
        "Persist RAPL modules in modules-load.d"
    )


@pytest.mark.parametrize(
    "distro_name, hint", [("Debian", "not bare metal"), ("Ubuntu", "linux-modules-extra")]
)
def test_hidden_rapl_fails_with_the_likely_cause(distro_name, hint):
    linux = {
        "name": distro_name,
        "major": 12,
        "minor": None,
        "release_meta": {"ID": distro_name.lower()},
    }
    check = by_operation(planned_commands(enable_rapl, host_facts(linux=linux)))[
        "Check RAPL is exposed"
    ]
    assert "test -e /sys/class/powercap/intel-rapl:0" in check[0]
    assert "RAPL is not exposed" in check[0] and hint in check[0]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (
            ["vendor_id\t: GenuineIntel", "kernel=6.1.0-18-amd64", "exposed=yes"],
            RaplHost("GenuineIntel", "6.1.0-18-amd64", True),
        ),
        (
            ["vendor_id\t: AuthenticAMD", "kernel=5.4.0-150-generic", "exposed=no"],
            RaplHost("AuthenticAMD", "5.4.0-150-generic", False),
        ),
        (
            ["kernel=6.8.0-arm64", "exposed=no"],
            RaplHost("", "6.8.0-arm64", False),
        ),  # no vendor_id line (ARM)
    ],
)
def test_the_rapl_probe_reads_vendor_kernel_and_exposure_from_one_command(output, expected):
    assert RaplProbe().process(output) == expected


def test_the_rapl_probe_command_runs_in_a_plain_shell():
    output = subprocess.run(
        ["sh", "-c", RaplProbe().command()], capture_output=True, text=True, check=True
    ).stdout
    found = RaplProbe().process(output.splitlines())
    assert found.kernel == os.uname().release
    assert found.exposed == os.path.exists("/sys/class/powercap/intel-rapl:0")
