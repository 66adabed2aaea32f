"""The Scaphandre exporter container on a hypervisor.

spec.py says what the container must be, facts.py and operations.py read the
host and make it so.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pyinfra import host, logger
from pyinfra.api import HiddenValue, deploy
from pyinfra.facts.docker import DockerContainers, DockerImage
from pyinfra.operations import docker

from tasks import compat
from tasks.docker_engine.facts import DockerEngineInstalled
from tasks.host_failure import fail_host
from tasks.install_record import InstallLedger
from tasks.scaphandre.operations import (
    image_from_archive,
    image_pulled,
    registry_login,
    scaphandre_container,
)
from tasks.scaphandre.registry import logged_in_as
from tasks.scaphandre.spec import (
    containers_using,
    image_registry,
    runs_as_specified,
    scaphandre_spec,
)
from tasks.settings import Settings

if TYPE_CHECKING:  # tasks.host_state reads this package's facts
    from tasks.host_state import HypervisorFound


def _log_in_to_registry(
    settings: Settings, username: str, image: str, found: HypervisorFound
) -> bool:
    """Plans the registry login as `username` unless the host holds it with this very
    password; False (host failed) when it cannot."""
    password_file = Path(settings.scaphandre_registry_password_file or "")
    password = password_file.read_text().strip() if password_file.is_file() else ""
    if not password:
        fail_host(
            name="Check the registry credentials",
            reason="scaphandre_registry_username is set but scaphandre_registry_password_file "
            f"{str(password_file)!r} is not a readable, non-empty file on the machine running pyinfra",
        )
        return False
    registry = image_registry(image)
    if registry is None:
        fail_host(
            name="Check the registry credentials",
            reason=f"scaphandre_image {image!r} names no registry host for the credentials to log in to",
        )
        return False
    if logged_in_as(found.registry_login, registry, username, password):
        host.noop(f"logged in to {registry} as {username} with the current password")
        return True
    registry_login(
        name=f"Log in to {registry}",
        registry=registry,
        username=username,
        password=HiddenValue(password),
    )
    return True


def _image_present(image: str, found: HypervisorFound) -> bool:
    """Whether the host has `image` before this run touches it (no engine: it cannot)."""
    installed = found.engine_installed
    if installed is None:  # not reported by the host's one read
        installed = host.get_fact(DockerEngineInstalled)
    if not installed:
        return False
    if found.image is not None:
        return bool(found.image)
    return bool(host.get_fact(DockerImage, object_id=image))


@deploy("Scaphandre exporter")
def run_scaphandre(settings: Settings, ledger: InstallLedger, found: HypervisorFound) -> None:
    """Guarantees the Scaphandre container runs as the settings specify, on the host network,
    and serves /metrics; an image the deploy pulls or loads goes into the ledger as soon as
    it is there.

    Decided from `found` (tasks/host_state): a container that runs the spec, with its image
    there (or recorded), plans nothing."""
    spec = scaphandre_spec(settings)
    username = settings.scaphandre_registry_username
    if username and not _log_in_to_registry(settings, username, spec.image, found):
        return
    # An image the record already holds is the deploy's: no need to look whether it is there
    # (were it deleted since, `docker container create` pulls it again when the container needs it).
    brings_image = spec.image not in ledger.record.images and not _image_present(spec.image, found)
    archive = settings.scaphandre_image_archive
    if archive:
        if not Path(archive).is_file():
            fail_host(
                name="Check the image archive",
                reason=f"scaphandre_image_archive {archive!r} is not a file on the machine running pyinfra "
                "(make it with `docker save -o FILE IMAGE`)",
            )
            return
        if found.image:
            host.noop(f"image {spec.image} is already loaded")
        else:
            image_from_archive(
                name=f"Load {spec.image} from {Path(archive).name}",
                image=spec.image,
                archive=archive,
            )
    elif brings_image:
        image_pulled(name=f"Pull {spec.image}", image=spec.image)
    if brings_image:
        ledger.write(
            f"Record the image {spec.image} the deploy brought",
            ledger.record.with_image(spec.image),
        )
    if found.container is not None and runs_as_specified(found.container, spec):
        host.noop(f"container {spec.name} runs {spec.image} as specified")
        return
    scaphandre_container(
        name=f"Run Scaphandre container {spec.name} ({spec.image})",
        spec=spec,
        metrics_timeout_s=settings.scaphandre_metrics_timeout_s,
    )


@deploy("Remove Scaphandre")
def remove_scaphandre(settings: Settings, ledger: InstallLedger) -> None:
    """Guarantees the Scaphandre container is gone, and with it every exporter image the deploy
    brought (an image another container uses stays, and the host says so); images that were
    there before the deploy stay."""
    if not host.get_fact(DockerEngineInstalled):
        ledger.write(
            "Forget the exporter images in the record",
            ledger.record.without_images(list(ledger.record.images)),
        )
        return
    docker.container(
        name="Remove the Scaphandre container",
        container=settings.scaphandre_container_name,
        present=compat.DOCKER_CONTAINER_ABSENT["present"],
        start=compat.DOCKER_CONTAINER_ABSENT["start"],
    )
    forgotten = []
    for image in ledger.record.images:
        found = host.get_fact(DockerImage, object_id=image)
        users = containers_using(
            image, found, host.get_fact(DockerContainers), settings.scaphandre_container_name
        )
        if found and users:
            logger.warning(
                f"{host.print_prefix}image {image} stays: container {', '.join(users)} uses it"
            )
            continue
        if found:
            docker.image(
                name=f"Remove the image {image} the deploy brought", image=image, present=False
            )
        forgotten.append(image)
    ledger.write(
        "Forget the exporter images in the record", ledger.record.without_images(forgotten)
    )
