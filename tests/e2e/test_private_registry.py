"""End to end: the exporter image pulled from a private registry that needs a login.

The bed gets its own registry (Debian's docker-registry with htpasswd auth, a test
double of a site's registry, reachable as registry:5000 on the bed network); the
stand-in exporter image is pushed to it; the deploy logs in with the pull secret
from a file and the container runs from the pulled image. No secret (the pull secret, the
OpenNebula password) shows in pyinfra's output even at -vvv, in a file on a host (but the
credential store `docker login` writes) or in a process list; a rotated pull secret is
applied on the next run. Each scenario sets up the login state it needs itself.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.cloud import bed_port, bed_prefix, bed_with_opennebula, render_inventory, run_pyinfra
from tests.testbed.bed import BED_LABEL, TestBed

pytestmark = pytest.mark.e2e

PREFIX = bed_prefix("sotb-reg")
SSH_PORT_BASE = bed_port(2701)
PROMETHEUS_API_PORT = bed_port(9197)
REGISTRY_PORT = bed_port(5797)  # published on 127.0.0.1 so this machine can push to it
REGISTRY_IMAGE = "sotb-registry:bookworm"
CONTEXT = Path(__file__).resolve().parents[1] / "testbed" / "contexts" / "registry"
PULL_USER = "puller"
IMAGE_PATH = "opennebula/scaphandre-test-double:1.0.2-private"


def docker(*args: str, env: dict | None = None, timeout: int = 300) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@dataclass
class RegistryCloud:
    bed: TestBed
    inventory: Path
    state_dir: Path
    secret: str  # the pull secret the registry accepts now (a scenario may rotate it)
    one_password: str  # the OpenNebula API password of the run

    @property
    def password_file(self) -> Path:
        return self.state_dir / "pull_secret"

    def set_registry_password(self, secret: str) -> None:
        """The registry accepts `secret` only (htpasswd rewritten, registry restarted)."""
        htpasswd = docker("run", "--rm", REGISTRY_IMAGE, "htpasswd", "-Bbn", PULL_USER, secret)
        (self.state_dir / "htpasswd").write_text(htpasswd)
        docker("restart", f"{PREFIX}-registry", timeout=120)
        wait_for_registry()
        self.secret = secret


def wait_for_registry(timeout_s: float = 30) -> None:
    """Until the registry answers its API (401 without credentials); bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{REGISTRY_PORT}/v2/", timeout=5)
            return
        except urllib.error.HTTPError as refused:
            if refused.code == 401:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"the registry did not answer within {timeout_s:.0f}s")


@pytest.fixture(scope="module")
def registry_cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("registry")
    pool = [{"id": 17, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2}]
    with bed_with_opennebula(
        PREFIX, state_dir, ("hv1",), SSH_PORT_BASE, PROMETHEUS_API_PORT, pool
    ) as (bed, _, one_password):
        docker("build", "-q", "-t", REGISTRY_IMAGE, str(CONTEXT), timeout=600)
        secret = "pull-" + os.urandom(8).hex()
        (state_dir / "pull_secret").write_text(secret + "\n")
        htpasswd = docker("run", "--rm", REGISTRY_IMAGE, "htpasswd", "-Bbn", PULL_USER, secret)
        (state_dir / "htpasswd").write_text(htpasswd)
        docker(
            "run",
            "-d",
            "--name",
            f"{PREFIX}-registry",
            "--label",
            f"{BED_LABEL}={PREFIX}",
            "--network",
            bed.network,
            "--network-alias",
            "registry",
            "-p",
            f"127.0.0.1:{REGISTRY_PORT}:5000",
            "-v",
            f"{state_dir / 'htpasswd'}:/etc/docker/registry/htpasswd:ro",
            REGISTRY_IMAGE,
        )
        # This machine's own Docker client pushes with a throw-away config: no login left behind.
        client = {"DOCKER_CONFIG": str(state_dir / "docker-client")}
        pushed = f"127.0.0.1:{REGISTRY_PORT}/{IMAGE_PATH}"
        docker("tag", "scaphandre-test-double:1.0.2", pushed)
        try:
            wait_for_registry()
            login = subprocess.run(
                [
                    "docker",
                    "login",
                    "-u",
                    PULL_USER,
                    "--password-stdin",
                    f"127.0.0.1:{REGISTRY_PORT}",
                ],
                input=secret,
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, **client},
                check=False,
            )
            assert login.returncode == 0, login.stderr
            docker("push", pushed, env=client, timeout=600)
        finally:
            subprocess.run(["docker", "rmi", pushed], capture_output=True, timeout=60, check=False)
        inventory = render_inventory(
            state_dir / "inventory.py",
            bed,
            ["hv1"],
            {
                "hv1": {
                    "scaphandre_image": f"registry:5000/{IMAGE_PATH}",
                    "scaphandre_registry_username": PULL_USER,
                    "scaphandre_registry_password_file": str(state_dir / "pull_secret"),
                }
            },
        )
        yield RegistryCloud(bed, inventory, state_dir, secret, one_password)


def forget_the_login_and_the_image(bed) -> None:
    """hv1 as before its first deploy: no container, no image, no login, no marker."""
    bed.exec(
        "hv1",
        "sh",
        "-c",
        "docker rm -f scaphandre; docker logout registry:5000; "
        f"docker rmi registry:5000/{IMAGE_PATH}; rm -rf /var/lib/scaphandre-deploy; true",
    )


def test_the_image_is_pulled_after_a_login_whose_secret_is_never_shown(registry_cloud):
    bed, secret = registry_cloud.bed, registry_cloud.secret
    forget_the_login_and_the_image(bed)
    run = run_pyinfra(registry_cloud.inventory, "-v")
    assert run.returncode == 0, run.output[-6000:]
    assert secret not in run.output, "the pull secret appeared in pyinfra's output"
    image = bed.exec(
        "hv1", "docker", "inspect", "-f", "{{.Config.Image}} {{.State.Status}}", "scaphandre"
    ).stdout
    assert image.split() == [f"registry:5000/{IMAGE_PATH}", "running"]

    again = run_pyinfra(registry_cloud.inventory)
    assert again.returncode == 0 and again.changed_hosts() == {}, (
        "no second login or pull on a rerun"
    )
    assert secret not in again.output


# A TEST DOUBLE on hv1 only: holds `docker login` three seconds, so that the process list
# can be sampled while it runs, then hands over to the real client.
SLOW_LOGIN = """#!/bin/sh
# TEST DOUBLE wrapper (tests/e2e/test_private_registry.py): slows `docker login` down.
if [ "$1" = login ]; then sleep 3; fi
exec /usr/bin/docker "$@"
"""


class ProcessListSampler(threading.Thread):
    """Samples `ps -eo args` on a host every 0.2 s until stopped (at most 600 samples)."""

    def __init__(self, bed, host: str):
        super().__init__(daemon=True)
        self.bed, self.host = bed, host
        self.samples: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and len(self.samples) < 600:
            listed = self.bed.exec(self.host, "ps", "-eo", "args", check=False, timeout=30)
            self.samples.append(listed.stdout)
            self.stop.wait(0.2)


def test_at_vvv_neither_password_shows_in_the_output_the_files_or_the_process_list(registry_cloud):
    bed = registry_cloud.bed
    secrets = {
        "registry password": registry_cloud.secret,
        "registry auth (base64 of user:password)": base64.b64encode(
            f"{PULL_USER}:{registry_cloud.secret}".encode()
        ).decode(),
        "OpenNebula password": registry_cloud.one_password,
    }
    forget_the_login_and_the_image(bed)
    bed.exec(
        "hv1",
        "sh",
        "-c",
        "cat > /usr/local/bin/docker && chmod 755 /usr/local/bin/docker",
        input=SLOW_LOGIN,
    )
    sampler = ProcessListSampler(bed, "hv1")
    sampler.start()
    try:
        run = run_pyinfra(registry_cloud.inventory, "-vvv")
    finally:
        sampler.stop.set()
        sampler.join(timeout=60)
        bed.exec("hv1", "rm", "-f", "/usr/local/bin/docker")

    assert run.returncode == 0, run.output[-6000:]
    assert "docker login" in run.output, "-vvv shows the commands, the login among them"
    assert any("docker login" in sample for sample in sampler.samples), (
        "the sampler saw the login running"
    )
    for what, secret in secrets.items():
        assert secret not in run.output, f"the {what} is in pyinfra's -vvv output"
        for sample in sampler.samples:
            assert secret not in sample, f"the {what} is in hv1's process list: {sample}"
    # On the hosts: nowhere but the credential store `docker login` itself writes.
    search = (
        'dirs=""; for d in /etc /root /var/tmp /tmp /opt /var/log /var/lib/docker/containers '
        '/var/lib/scaphandre-deploy; do [ -d "$d" ] && dirs="$dirs $d"; done; '
        'timeout 60 grep -rlsF -e "$1" -e "$2" -e "$3" $dirs | grep -vx /root/.docker/config.json; true'
    )
    for host in ("hv1", bed.prometheus_name):
        found = bed.exec(
            host, "sh", "-c", search, "grep-secrets", *secrets.values(), timeout=120
        ).stdout
        assert found == "", f"a secret is in these files on {host}: {found}"
    stored = bed.exec("hv1", "cat", "/root/.docker/config.json").stdout
    assert '"registry:5000"' in stored, (
        "docker login stored its credentials where Docker reads them"
    )


def test_a_rotated_password_is_applied_on_the_next_run(registry_cloud):
    bed = registry_cloud.bed
    first = run_pyinfra(registry_cloud.inventory)
    assert first.returncode == 0, first.output[-4000:]
    rotated = "rotated-" + os.urandom(8).hex()
    registry_cloud.set_registry_password(rotated)
    registry_cloud.password_file.write_text(rotated + "\n")

    run = run_pyinfra(registry_cloud.inventory)
    assert run.returncode == 0, run.output[-4000:]
    assert any(name.endswith("Log in to registry:5000") for name in run.changed_hosts()), (
        run.changed_hosts()
    )
    assert rotated not in run.output
    # The stored login is the new one: the registry refuses the old password now.
    pulled = bed.exec(
        "hv1", "docker", "pull", f"registry:5000/{IMAGE_PATH}", check=False, timeout=300
    )
    assert pulled.returncode == 0, pulled.stderr
    again = run_pyinfra(registry_cloud.inventory)
    assert again.returncode == 0 and again.changed_hosts() == {}, (
        "the same password is not sent again"
    )


def test_a_wrong_pull_secret_fails_the_host_without_showing_it(registry_cloud, tmp_path):
    bed, inventory = registry_cloud.bed, registry_cloud.inventory
    forget_the_login_and_the_image(bed)
    wrong = "wrong-" + os.urandom(6).hex()
    (tmp_path / "wrong").write_text(wrong)
    text = inventory.read_text().replace(str(registry_cloud.password_file), str(tmp_path / "wrong"))
    bad_inventory = tmp_path / "inventory.py"
    bad_inventory.write_text(text)
    run = run_pyinfra(bad_inventory)
    assert run.returncode != 0
    assert "hv1" in run.failed_hosts()
    assert wrong not in run.output and registry_cloud.secret not in run.output
    assert (
        "unauthorized" in run.output.lower()
        or "incorrect username or password" in run.output.lower()
    ), run.output[-3000:]
