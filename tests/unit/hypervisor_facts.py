"""Facts that simulated hypervisors report to the plan tests: what pyinfra would read on
Debian, Ubuntu and the RHEL family, and what `docker inspect` says of a container."""

from __future__ import annotations

from tasks.scaphandre.spec import scaphandre_spec
from tasks.settings import Settings
from tests.unit.pyinfra_harness import default_data


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
    return scaphandre_spec(Settings.from_data(default_data())).fingerprint
