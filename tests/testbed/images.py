"""Build the test bed's Docker images locally, from nothing that a registry serves.

Images (all cached: an existing, up-to-date image is never rebuilt):

* ``sotb-base:bookworm`` -- a Debian 12 root file system made by debootstrap and
  imported as an image; every other image starts FROM it.
* ``scaphandre-test-double:1.0.2`` -- the stand-in Scaphandre exporter
  (tests/doubles/scaphandre_double). Its tag is the one the product deploys, so
  its freshness is tracked by a ``sotb.context-hash`` label instead of the tag.
* ``sotb-hypervisor:<hash>`` -- a simulated bare-metal KVM hypervisor.
* ``sotb-prometheus:<hash>`` -- a Prometheus server host (Debian's package).

Variants, built only for a bed that asks for them (``build_variant``):

* ``sotb-hypervisor-docker:<hash>`` -- the hypervisor with Docker's engine already
  installed by its operator at Docker's defaults.
* ``sotb-prometheus-opennebula:<hash>`` -- a Prometheus server shaped like an
  OpenNebula frontend's (opennebula-prometheus.service, /etc/one/prometheus).
* ``sotb-prometheus3:<hash>`` -- Debian's Prometheus 2 package with its service
  running Prometheus 3.5 from /usr/local/bin (needs fetch-prometheus3.sh first).

``<hash>`` covers the build context and the images it is built from, so editing
a context file yields a new tag and therefore a rebuild.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

LOG = logging.getLogger("sotb.images")

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED_DIR = Path(__file__).resolve().parent
CONTEXTS_DIR = TESTBED_DIR / "contexts"
SCAPHANDRE_DOUBLE_DIR = REPO_ROOT / "tests" / "doubles" / "scaphandre_double"
DEFAULT_BUILD_DIR = REPO_ROOT / ".testbed" / "build"

BASE_IMAGE = "sotb-base:bookworm"
SCAPHANDRE_DOUBLE_IMAGE = "scaphandre-test-double:1.0.2"
HYPERVISOR_REPO = "sotb-hypervisor"
PROMETHEUS_REPO = "sotb-prometheus"
CONTEXT_HASH_LABEL = "sotb.context-hash"
PROMETHEUS3_CACHE = REPO_ROOT / ".testbed" / "prometheus3"
PROMETHEUS3_BINARIES = ("prometheus", "promtool")

# Packages the base needs: systemd as PID 1, sshd for pyinfra, python3 for the
# simulation scripts, kmod/procps/iproute2 like any real server, curl/gnupg/
# ca-certificates because the product's Docker step may add a repository.
DEBOOTSTRAP_INCLUDE = (
    "systemd,systemd-sysv,openssh-server,python3,iproute2,kmod,procps,ca-certificates,curl,gnupg"
)

DEBOOTSTRAP_TIMEOUT_S = 900
DOCKER_BUILD_TIMEOUT_S = 900
LOCK_TIMEOUT_S = 1800


class ImageBuildError(RuntimeError):
    """An image could not be built; the message says which and why."""


@dataclass
class BuildTimings:
    """Seconds spent per image in the last build_all() call (0.0 = cache hit)."""

    seconds: dict[str, float] = field(default_factory=dict)


def docker(
    *args: str, timeout: float = 120, check: bool = True, input_bytes: bytes | None = None
) -> subprocess.CompletedProcess:
    """Run the docker CLI; raise with its stderr when check is set and it fails."""
    proc = subprocess.run(
        ["docker", *args], capture_output=True, timeout=timeout, input=input_bytes, check=False
    )
    if check and proc.returncode != 0:
        raise ImageBuildError(
            f"docker {' '.join(args[:3])} ... failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace').strip()[-2000:]}"
        )
    return proc


def image_exists(ref: str) -> bool:
    """True when the local engine has an image with this reference."""
    return docker("image", "inspect", ref, check=False).returncode == 0


def image_id(ref: str) -> str:
    """The local image ID of ref (raises if it does not exist)."""
    return docker("image", "inspect", "-f", "{{.Id}}", ref).stdout.decode().strip()


def image_label(ref: str, label: str) -> str | None:
    """A label's value on a local image, or None when the image or label is absent."""
    proc = docker(
        "image", "inspect", "-f", f'{{{{index .Config.Labels "{label}"}}}}', ref, check=False
    )
    if proc.returncode != 0:
        return None
    value = proc.stdout.decode().strip()
    return value if value and value != "<no value>" else None


def hash_tree(root: Path, extra: tuple[str, ...] = ()) -> str:
    """A short content hash of every file under root (paths + bytes) and extra strings."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if "__pycache__" in path.parts or path.name.startswith("test_"):
            continue  # caches and unit tests do not change the image
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    for item in extra:
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()[:12]


@contextmanager
def build_lock(build_dir: Path) -> Iterator[None]:
    """Serialise image builds of concurrent beds (e2e tests, demo, smoke) on one machine."""
    build_dir.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    with open(build_dir / "build.lock", "w") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ImageBuildError("timed out waiting for another image build") from None
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def build_base(build_dir: Path) -> None:
    """Guarantee BASE_IMAGE exists: debootstrap a bookworm minbase and docker-import it."""
    if image_exists(BASE_IMAGE):
        return
    rootfs = build_dir / "rootfs-bookworm"
    if rootfs.exists():
        shutil.rmtree(rootfs)  # a half-made tree from an interrupted run
    LOG.info("debootstrap into %s (about a minute)", rootfs)
    proc = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={DEBOOTSTRAP_INCLUDE}",
            "bookworm",
            str(rootfs),
        ],
        capture_output=True,
        timeout=DEBOOTSTRAP_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError(
            "debootstrap failed: "
            + proc.stdout.decode(errors="replace")[-2000:]
            + proc.stderr.decode(errors="replace")[-2000:]
        )
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    try:
        imported = subprocess.run(
            ["docker", "import", "-c", 'CMD ["/sbin/init"]', "-", BASE_IMAGE],
            stdin=tar.stdout,
            capture_output=True,
            timeout=600,
            check=False,
        )
    finally:
        tar.stdout.close()
        tar.wait(timeout=600)
    if imported.returncode != 0 or tar.returncode != 0:
        raise ImageBuildError(
            "docker import of the base failed: " + imported.stderr.decode(errors="replace")
        )
    shutil.rmtree(rootfs)  # 340 MB that the image now holds


def docker_build(context: Path, tag: str, context_hash: str) -> None:
    """docker build context as tag, labelled with the context hash."""
    proc = subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "--force-rm",
            "--label",
            f"{CONTEXT_HASH_LABEL}={context_hash}",
            "-t",
            tag,
            str(context),
        ],
        capture_output=True,
        timeout=DOCKER_BUILD_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError(
            f"docker build of {tag} failed:\n"
            + proc.stdout.decode(errors="replace")[-3000:]
            + proc.stderr.decode(errors="replace")[-3000:]
        )


def build_scaphandre_double() -> None:
    """Guarantee SCAPHANDRE_DOUBLE_IMAGE exists and was built from the current sources."""
    context_hash = hash_tree(SCAPHANDRE_DOUBLE_DIR, (image_id(BASE_IMAGE),))
    if image_label(SCAPHANDRE_DOUBLE_IMAGE, CONTEXT_HASH_LABEL) == context_hash:
        return
    docker_build(SCAPHANDRE_DOUBLE_DIR, SCAPHANDRE_DOUBLE_IMAGE, context_hash)


def hypervisor_tag() -> str:
    """The tag the hypervisor image has for the current sources (base + double included)."""
    context_hash = hash_tree(
        CONTEXTS_DIR / "hypervisor", (image_id(BASE_IMAGE), image_id(SCAPHANDRE_DOUBLE_IMAGE))
    )
    return f"{HYPERVISOR_REPO}:{context_hash}"


def prometheus_tag() -> str:
    """The tag the Prometheus host image has for the current sources."""
    context_hash = hash_tree(CONTEXTS_DIR / "prometheus", (image_id(BASE_IMAGE),))
    return f"{PROMETHEUS_REPO}:{context_hash}"


def compile_static(source: Path, output: Path) -> None:
    """Compile a small C program statically so it runs in any image."""
    proc = subprocess.run(
        ["gcc", "-static", "-Os", "-s", "-o", str(output), str(source)],
        capture_output=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildError(f"gcc {source.name} failed: {proc.stderr.decode(errors='replace')}")


def build_hypervisor(build_dir: Path) -> str:
    """Guarantee the hypervisor image for the current sources exists; return its tag.

    The staged context holds the image's files, the VM stand-in compiled here
    and the saved stand-in Scaphandre image that the inner engine loads.
    """
    tag = hypervisor_tag()
    if image_exists(tag):
        return tag
    source = CONTEXTS_DIR / "hypervisor"
    staged = build_dir / "hypervisor-context"
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(source, staged)
    compile_static(source / "qemu_stand_in.c", staged / "qemu-system-x86_64")
    with open(staged / "scaphandre-test-double.tar", "wb") as tar_out:
        proc = subprocess.run(
            ["docker", "save", SCAPHANDRE_DOUBLE_IMAGE],
            stdout=tar_out,
            stderr=subprocess.PIPE,
            timeout=300,
            check=False,
        )
    if proc.returncode != 0:
        raise ImageBuildError(
            "docker save of the stand-in failed: " + proc.stderr.decode(errors="replace")
        )
    docker_build(staged, tag, tag.split(":", 1)[1])
    shutil.rmtree(staged)
    return tag


def build_prometheus() -> str:
    """Guarantee the Prometheus host image for the current sources exists; return its tag."""
    tag = prometheus_tag()
    if not image_exists(tag):
        docker_build(CONTEXTS_DIR / "prometheus", tag, tag.split(":", 1)[1])
    return tag


def remove_stale_tags(repository: str, keep: str) -> None:
    """Remove older hash tags of repository; Docker refuses (and we ignore) any still in use."""
    listed = docker("images", "--format", "{{.Repository}}:{{.Tag}}", repository, check=False)
    for ref in listed.stdout.decode().split():
        if ref != keep:
            docker("rmi", ref, check=False)


@dataclass(frozen=True)
class Variant:
    """An image built FROM one of the two main images, from its own context directory."""

    name: str  # also the context directory under contexts/ and the image repository
    parent: str  # "hypervisor" or "prometheus"
    parent_arg: str  # the Dockerfile's ARG naming the parent image
    staged_files: tuple[tuple[Path, str], ...] = ()  # (file outside the context, name in it)

    @property
    def repository(self) -> str:
        return f"sotb-{self.name}"


VARIANTS = {
    "hypervisor-docker": Variant("hypervisor-docker", "hypervisor", "HYPERVISOR_IMAGE"),
    "prometheus-opennebula": Variant("prometheus-opennebula", "prometheus", "PROMETHEUS_IMAGE"),
    "prometheus3": Variant(
        "prometheus3",
        "prometheus",
        "PROMETHEUS_IMAGE",
        tuple(
            (PROMETHEUS3_CACHE / "root" / "usr" / "bin" / binary, binary)
            for binary in PROMETHEUS3_BINARIES
        ),
    ),
}


def file_digest(path: Path) -> str:
    """sha256 of a file's bytes, read in chunks (the Prometheus binaries are 100 MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def variant_tag(variant: Variant, parent_tag: str) -> str:
    """The tag a variant has for its current context, parent image and staged files."""
    missing = [str(source) for source, _ in variant.staged_files if not source.is_file()]
    if missing:
        raise ImageBuildError(
            f"{variant.repository} needs {', '.join(missing)}: run "
            "bash tests/testbed/fetch-prometheus3.sh (or scripts/setup.sh)"
        )
    extra = (
        image_id(parent_tag),
        *(f"{name}={file_digest(source)}" for source, name in variant.staged_files),
    )
    return f"{variant.repository}:{hash_tree(CONTEXTS_DIR / variant.name, extra)}"


def build_variant_image(variant: Variant, parent_tag: str, build_dir: Path) -> str:
    """Guarantee the variant's image for the current sources exists; return its tag.

    Call with the build lock held and parent_tag current (see build_variant)."""
    tag = variant_tag(variant, parent_tag)
    if image_exists(tag):
        return tag
    staged = build_dir / f"{variant.name}-context"
    if staged.exists():
        shutil.rmtree(staged)
    shutil.copytree(CONTEXTS_DIR / variant.name, staged)
    for source, name in variant.staged_files:
        shutil.copy2(source, staged / name)
    proc = subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "--force-rm",
            "--label",
            f"{CONTEXT_HASH_LABEL}={tag.split(':', 1)[1]}",
            "--build-arg",
            f"{variant.parent_arg}={parent_tag}",
            "-t",
            tag,
            str(staged),
        ],
        capture_output=True,
        timeout=DOCKER_BUILD_TIMEOUT_S,
        check=False,
    )
    shutil.rmtree(staged)
    if proc.returncode != 0:
        raise ImageBuildError(
            f"docker build of {tag} failed:\n"
            + proc.stdout.decode(errors="replace")[-3000:]
            + proc.stderr.decode(errors="replace")[-3000:]
        )
    remove_stale_tags(variant.repository, tag)
    return tag


def build_variant(
    name: str, parents: dict[str, str], build_dir: Path = DEFAULT_BUILD_DIR
) -> tuple[str, float]:
    """Guarantee variant `name` exists for the current sources; return (tag, seconds spent).

    parents maps "hypervisor"/"prometheus" to the tags build_all() returned."""
    if name not in VARIANTS:
        raise ImageBuildError(f"unknown image variant {name!r}; known: {', '.join(VARIANTS)}")
    variant = VARIANTS[name]
    started = time.monotonic()
    with build_lock(build_dir):
        tag = build_variant_image(variant, parents[variant.parent], build_dir)
    seconds = round(time.monotonic() - started, 1)
    LOG.info("image %s ready in %.1f s", name, seconds)
    return tag, seconds


def build_all(build_dir: Path = DEFAULT_BUILD_DIR) -> tuple[str, str, BuildTimings]:
    """Guarantee every image is present and current; return (hypervisor tag, prometheus tag, timings)."""
    timings = BuildTimings()
    with build_lock(build_dir):
        steps = (
            ("base", lambda: build_base(build_dir)),
            ("scaphandre-double", build_scaphandre_double),
            ("hypervisor", lambda: build_hypervisor(build_dir)),
            ("prometheus", build_prometheus),
        )
        results = {}
        for name, step in steps:
            started = time.monotonic()
            results[name] = step()
            timings.seconds[name] = round(time.monotonic() - started, 1)
            LOG.info("image %s ready in %.1f s", name, timings.seconds[name])
        remove_stale_tags(HYPERVISOR_REPO, results["hypervisor"])
        remove_stale_tags(PROMETHEUS_REPO, results["prometheus"])
    return results["hypervisor"], results["prometheus"], timings


def main_build_base_only() -> None:  # pragma: no cover - manual helper
    """Build just the base (handy to start the slow step early)."""
    logging.basicConfig(level=logging.INFO)
    with build_lock(DEFAULT_BUILD_DIR):
        build_base(DEFAULT_BUILD_DIR)


if __name__ == "__main__":  # pragma: no cover
    started = time.monotonic()
    main_build_base_only()
    print(f"base ready in {time.monotonic() - started:.1f} s")
    os._exit(0)
