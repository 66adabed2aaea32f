"""Facts that simulated hypervisors report to the plan tests: what pyinfra would read on
Debian, Ubuntu and the RHEL family, and what `docker inspect` says of a container."""

from __future__ import annotations

from tasks.rapl.facts import RaplHost
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


# As pyinfra's LinuxDistribution fact reads each system's /etc/os-release.
DEBIAN_12 = distro("Debian", 12, "debian", "bookworm")
UBUNTU_2204 = distro("Ubuntu", 22, "ubuntu", "jammy", "debian")
UBUNTU_2404 = distro("Ubuntu", 24, "ubuntu", "noble", "debian")
ALMA_8 = distro("AlmaLinux", 8, "almalinux", id_like="rhel centos fedora")
ALMA_9 = distro("AlmaLinux", 9, "almalinux", id_like="rhel centos fedora")
RHEL_9 = distro("RedHat", 9, "rhel", id_like="fedora")
ROCKY_9 = distro("Rocky Linux", 9, "rocky", id_like="rhel centos fedora")
ALPINE = distro("Alpine", 3, "alpine")


def host_facts(
    linux=DEBIAN_12, vendor="GenuineIntel", kernel="6.1.0-18-amd64", rapl=False, docker=False
):
    return {
        "LinuxDistribution": linux,
        "RaplProbe": RaplHost(vendor, kernel, rapl),
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


def inspect_of(fingerprint: str) -> dict:
    """What `docker inspect` reports for a container created by the default spec."""
    return {
        "Name": "/scaphandre",
        "State": {"Status": "running", "Pid": 4321},
        "Config": {
            "Image": "hubblo/scaphandre:1.0.2",
            "Cmd": ["prometheus", "-a", "0.0.0.0", "-p", "8080", "--qemu", "--containers"],
            "Labels": {"org.opennebula-scaphandre.spec": fingerprint},
        },
        "HostConfig": {
            "Binds": [
                "/proc:/proc",
                "/sys/class/powercap:/sys/class/powercap",
                "/var/run/docker.sock:/var/run/docker.sock",
            ],
            "NetworkMode": "host",
            "PortBindings": {},
            "Privileged": True,
            "RestartPolicy": {"Name": "unless-stopped"},
            "CapAdd": None,
        },
    }


def earlier_version_inspect(fingerprint: str) -> dict:
    """`docker inspect` of a container an earlier version of the deploy made: on Docker's
    default bridge, port 8080 published through docker-proxy."""
    inspect = inspect_of(fingerprint)
    inspect["HostConfig"] = {
        **inspect["HostConfig"],
        "NetworkMode": "default",
        "PortBindings": {"8080/tcp": [{"HostIp": "", "HostPort": "8080"}]},
    }
    return inspect


def default_fingerprint() -> str:
    return scaphandre_spec(Settings.from_data(default_data())).fingerprint
