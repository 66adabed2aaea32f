"""What the deploy's operations would run on Debian 12, Ubuntu 24.04 and AlmaLinux 9
hosts, and on hosts it must refuse, computed by pyinfra's API from given facts."""

from __future__ import annotations

import pytest

from tasks.docker_engine import ensure_docker_engine
from tasks.rapl import enable_rapl
from tasks.scaphandre import run_scaphandre
from tests.unit.pyinfra_harness import all_commands, planned_commands


def distro(name, major, os_id, codename="", id_like=""):
    return {
        "name": name,
        "major": major,
        "minor": None,
        "release_meta": {"ID": os_id, "VERSION_CODENAME": codename, "ID_LIKE": id_like},
    }


DEBIAN_12 = distro("Debian", 12, "debian", "bookworm")
UBUNTU_2404 = distro("Ubuntu", 24, "ubuntu", "noble", "debian")
ALMA_9 = distro("AlmaLinux", 9, "almalinux", id_like="rhel centos fedora")
ALPINE = distro("Alpine", 3, "alpine")


def host_facts(linux=DEBIAN_12, vendor="GenuineIntel", kernel="6.1.0-18-amd64", rapl=False, docker=False):
    return {
        "LinuxDistribution": linux,
        "CpuVendor": vendor,
        "KernelVersion": kernel,
        "RaplExposed": rapl,
        "DockerEngineInstalled": docker,
        "KernelModules": {},
        "File": None,
        "Directory": None,
        "Sha1File": None,
        "DebPackages": {},
        "RpmPackages": {},
        "AptSources": [],
        "SystemdStatus": {"docker.service": False},
        "SystemdEnabled": {"docker.service": False},
    }


# --- RAPL --------------------------------------------------------------------


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
    commands = all_commands(planned_commands(enable_rapl, host_facts(vendor="AuthenticAMD", kernel="5.4.0-150")))
    assert len(commands) == 1
    assert commands[0].startswith("call _log_failure")
    assert "5.11" in commands[0] and "5.4.0-150" in commands[0]


def test_rapl_already_exposed_loads_nothing():
    commands = all_commands(planned_commands(enable_rapl, host_facts(rapl=True)))
    assert not any(c.startswith("modprobe") for c in commands)
    assert not any("test -e" in c for c in commands)


def test_ubuntu_without_rapl_names_linux_modules_extra():
    commands = all_commands(planned_commands(enable_rapl, host_facts(linux=UBUNTU_2404)))
    assert any("linux-modules-extra" in c for c in commands)


def test_module_override_wins():
    planned = planned_commands(enable_rapl, host_facts(vendor="Unknown"), data={"rapl_modules": ["my_rapl"]})
    assert "modprobe -a my_rapl" in all_commands(planned)


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


# --- Scaphandre container -------------------------------------------------------------


def inspect_of(create_command: str) -> dict:
    """What `docker inspect` reports for a container created by the default spec."""
    return {
        "State": {"Status": "running"},
        "Config": {
            "Image": "hubblo/scaphandre:1.0.2",
            "Cmd": ["prometheus", "-a", "0.0.0.0", "-p", "8080", "--qemu", "--containers"],
            "Labels": {"org.opennebula-scaphandre.spec": create_command},
        },
        "HostConfig": {
            "Binds": [
                "/proc:/proc",
                "/sys/class/powercap:/sys/class/powercap",
                "/var/run/docker.sock:/var/run/docker.sock",
            ],
            "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "8080"}]},
            "Privileged": True,
            "RestartPolicy": {"Name": "unless-stopped"},
            "CapAdd": None,
        },
    }


def default_fingerprint() -> str:
    from tasks.hypervisor_plan import scaphandre_spec
    from tests.unit.pyinfra_harness import default_data

    return scaphandre_spec(default_data()).fingerprint


def test_a_missing_container_is_created_with_the_documented_spec():
    commands = all_commands(planned_commands(run_scaphandre, {"DockerContainer": []}))
    create = next(c for c in commands if c.startswith("docker container create"))
    for expected in (
        "--name scaphandre",
        "-p 0.0.0.0:8080:8080",
        "-v /proc:/proc",
        "-v /sys/class/powercap:/sys/class/powercap",
        "-v /var/run/docker.sock:/var/run/docker.sock",
        "--restart unless-stopped",
        "--privileged",
        "hubblo/scaphandre:1.0.2 prometheus -a 0.0.0.0 -p 8080 --qemu --containers",
    ):
        assert expected in create
    assert "docker container start scaphandre" in commands
    assert any("/dev/tcp/127.0.0.1/8080" in c and "docker logs --tail 20 scaphandre" in c for c in commands)


def test_a_matching_container_is_left_alone():
    facts = {"DockerContainer": [inspect_of(default_fingerprint())]}
    assert all_commands(planned_commands(run_scaphandre, facts)) == []


@pytest.mark.parametrize(
    "data",
    [
        {"scaphandre_image": "hubblo/scaphandre:1.0.1"},
        {"scaphandre_port": 9100},
        {"scaphandre_qemu": False},
        {"scaphandre_privileged": False},
        {"scaphandre_extra_docker_args": ["--memory=256m"]},
    ],
)
def test_a_changed_spec_recreates_the_container(data):
    facts = {"DockerContainer": [inspect_of(default_fingerprint())]}
    commands = all_commands(planned_commands(run_scaphandre, facts, data=data))
    assert commands[0] == "docker container rm -f scaphandre"
    assert commands[1].startswith("docker container create")


def test_the_narrower_security_set_replaces_privileged():
    commands = all_commands(planned_commands(run_scaphandre, {"DockerContainer": []}, data={"scaphandre_privileged": False}))
    create = next(c for c in commands if c.startswith("docker container create"))
    assert "--privileged" not in create
    assert "--cap-add=SYS_PTRACE" in create and "--security-opt=apparmor=unconfined" in create


@pytest.mark.parametrize(
    "data, key",
    [({"scaphandre_image": "hubblo/scaphandre:latest"}, "scaphandre_image"),
     ({"scaphandre_image": "hubblo/scaphandre"}, "scaphandre_image"),
     ({"scaphandre_port": "http"}, "scaphandre_port"),
     ({"scaphandre_restart_policy": "no"}, "scaphandre_restart_policy")],
)
def test_bad_settings_fail_the_host_naming_the_key(data, key):
    commands = all_commands(planned_commands(run_scaphandre, {"DockerContainer": []}, data=data))
    assert len(commands) == 1 and key in commands[0]
