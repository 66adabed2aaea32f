"""End to end: the exporter image pulled from a private registry that needs a login.

The bed gets its own registry (Debian's docker-registry with htpasswd auth, a test
double of a site's registry, reachable as registry:5000 on the bed network); the
stand-in exporter image is pushed to it; the deploy logs in with the pull secret
from a file and the container runs from the pulled image.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.e2e.cloud import bed_port, bed_prefix, bed_with_opennebula, render_inventory, run_pyinfra
from tests.testbed.bed import BED_LABEL

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
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def registry_cloud(tmp_path_factory):
    state_dir = tmp_path_factory.mktemp("registry")
    pool = [{"id": 17, "name": "hv1", "hostname": "hv1", "im_mad": "kvm", "state": 2}]
    with bed_with_opennebula(PREFIX, state_dir, ("hv1",), SSH_PORT_BASE, PROMETHEUS_API_PORT, pool) as (bed, _, _):
        docker("build", "-q", "-t", REGISTRY_IMAGE, str(CONTEXT), timeout=600)
        secret = "pull-" + os.urandom(8).hex()
        (state_dir / "pull_secret").write_text(secret + "\n")
        htpasswd = docker("run", "--rm", REGISTRY_IMAGE, "htpasswd", "-Bbn", PULL_USER, secret)
        (state_dir / "htpasswd").write_text(htpasswd)
        docker("run", "-d", "--name", f"{PREFIX}-registry", "--label", f"{BED_LABEL}={PREFIX}",
               "--network", bed.network, "--network-alias", "registry",
               "-p", f"127.0.0.1:{REGISTRY_PORT}:5000",
               "-v", f"{state_dir / 'htpasswd'}:/etc/docker/registry/htpasswd:ro", REGISTRY_IMAGE)
        # This machine's own Docker client pushes with a throw-away config: no login left behind.
        client = {"DOCKER_CONFIG": str(state_dir / "docker-client")}
        pushed = f"127.0.0.1:{REGISTRY_PORT}/{IMAGE_PATH}"
        docker("tag", "scaphandre-test-double:1.0.2", pushed)
        try:
            for _ in range(30):  # the registry needs a moment to listen; bounded
                login = subprocess.run(["docker", "login", "-u", PULL_USER, "--password-stdin", f"127.0.0.1:{REGISTRY_PORT}"],
                                       input=secret, capture_output=True, text=True, timeout=30,
                                       env={**os.environ, **client})
                if login.returncode == 0:
                    break
                subprocess.run(["sleep", "1"], timeout=5)
            assert login.returncode == 0, login.stderr
            docker("push", pushed, env=client, timeout=600)
        finally:
            subprocess.run(["docker", "rmi", pushed], capture_output=True, timeout=60)
        inventory = render_inventory(state_dir / "inventory.py", bed, ["hv1"], {"hv1": {
            "scaphandre_image": f"registry:5000/{IMAGE_PATH}",
            "scaphandre_registry_username": PULL_USER,
            "scaphandre_registry_password_file": str(state_dir / "pull_secret"),
        }})
        yield bed, inventory, secret


def test_the_image_is_pulled_after_a_login_whose_secret_is_never_shown(registry_cloud):
    bed, inventory, secret = registry_cloud
    run = run_pyinfra(inventory, "-v")
    assert run.returncode == 0, run.output[-6000:]
    assert secret not in run.output, "the pull secret appeared in pyinfra's output"
    image = bed.exec("hv1", "docker", "inspect", "-f", "{{.Config.Image}} {{.State.Status}}", "scaphandre").stdout
    assert image.split() == [f"registry:5000/{IMAGE_PATH}", "running"]

    again = run_pyinfra(inventory)
    assert again.returncode == 0 and again.changed_hosts() == {}, "no second login or pull on a rerun"
    assert secret not in again.output


def test_a_wrong_pull_secret_fails_the_host_without_showing_it(registry_cloud, tmp_path):
    bed, inventory, secret = registry_cloud
    bed.exec("hv1", "sh", "-c", "docker rm -f scaphandre && docker logout registry:5000 && "
             f"docker rmi registry:5000/{IMAGE_PATH}")
    wrong = "wrong-" + os.urandom(6).hex()
    (tmp_path / "wrong").write_text(wrong)
    text = inventory.read_text().replace(str(inventory.parent / "pull_secret"), str(tmp_path / "wrong"))
    bad_inventory = tmp_path / "inventory.py"
    bad_inventory.write_text(text)
    run = run_pyinfra(bad_inventory)
    assert run.returncode != 0
    assert "hv1" in run.failed_hosts()
    assert wrong not in run.output and secret not in run.output
    assert "unauthorized" in run.output.lower() or "incorrect username or password" in run.output.lower(), run.output[-3000:]
