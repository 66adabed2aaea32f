"""Operations of the Scaphandre step, written the way pyinfra's own are: read facts,
yield commands only when the state differs, say why when nothing changes."""

from __future__ import annotations

import secrets
import shlex

from pyinfra import host, logger
from pyinfra.api import FileUploadCommand, HiddenValue, QuoteString, StringCommand, operation
from pyinfra.facts.docker import DockerContainer, DockerImage
from pyinfra.operations import docker

from tasks.host_failure import failure_command
from tasks.scaphandre.facts import ContainerProcessIds, ListeningTcpSockets, RegistryLoginState
from tasks.scaphandre.registry import (
    LOGIN_MARKER_DIR,
    credentials_digest,
    logged_in_as,
    login_marker_path,
)
from tasks.scaphandre.spec import (
    ScaphandreSpec,
    container_drift,
    host_port,
    port_listeners,
    port_taken_message,
    publishes_port,
    runs_as_specified,
)
from tasks.text_file import Commands


def _metrics_wait_command(spec: ScaphandreSpec, timeout_s: int) -> StringCommand:
    address, port = spec.metrics_probe_address, spec.port
    # bash's /dev/tcp takes an IPv6 address as it is, without brackets.
    probe = (
        f"exec 3<>/dev/tcp/{address}/{port} && "
        "printf 'GET /metrics HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && grep -q '^scaph_' <&3"
    )
    script = (
        f"for attempt in $(seq 1 {timeout_s}); do "
        f"if ( {probe} ) 2>/dev/null; then exit 0; fi; sleep 1; done; "
        f"echo 'Scaphandre /metrics on {host_port(address, port)} did not answer within {timeout_s}s; "
        f"last log lines of container {spec.name}:' >&2; "
        f"docker logs --tail 20 {shlex.quote(spec.name)} >&2; exit 1"
    )
    return StringCommand("bash", "-c", shlex.quote(script))


@operation()
def scaphandre_container(spec: ScaphandreSpec, metrics_timeout_s: int = 60) -> Commands:
    """Guarantees the Scaphandre container runs exactly as `spec` says and serves /metrics.

    It runs on the host network, Scaphandre listening on the spec's address and port
    itself. It is recreated when image, command line (address, port, flags), mounts,
    network, privileges, restart policy or any other setting differ, and left alone
    otherwise. After any change the operation waits (bounded) until /metrics answers,
    and shows the container's last log lines when it does not.
    """
    existing = host.get_fact(DockerContainer, object_id=spec.name)
    current = existing[0] if existing else None
    drift = container_drift(current, spec)
    if runs_as_specified(existing, spec):
        host.noop(f"container {spec.name} runs {spec.image} as specified")
        return

    commands = list(
        docker.container._inner(
            container=spec.name,
            image=spec.image,
            command=" ".join(shlex.quote(arg) for arg in spec.command),
            networks=[spec.network],
            volumes=spec.volumes,
            labels=spec.labels,
            restart_policy=spec.restart_policy,
            privileged=spec.privileged,
            extra_args=spec.security_args + spec.extra_args,
            force=bool(drift),
            present=True,
            start=True,
        )
    )
    if not commands:
        host.noop(f"container {spec.name} runs {spec.image} as specified")
        return
    # Checked before anything is removed: a taken port must not cost a working container. The
    # container's own listener is no conflict: on the host network it shows as the host's; and a
    # container of an earlier version frees the port it published when it is recreated.
    if not publishes_port(current, spec.port):
        own = host.get_fact(ContainerProcessIds, container=spec.name) if current else set()
        listeners = port_listeners(
            host.get_fact(ListeningTcpSockets), spec.port, spec.listen_address, own
        )
        if listeners:
            yield failure_command(port_taken_message(spec.port, listeners, spec.name))
            return
    if drift:
        logger.info(
            f"{host.print_prefix}recreating container {spec.name}: {', '.join(drift)} changed"
        )
    yield from commands
    yield _metrics_wait_command(spec, metrics_timeout_s)


@operation()
def image_from_archive(image: str, archive: str) -> Commands:
    """Guarantees `image` is in this host's Docker engine, loaded from a local `docker save`
    archive when it is missing (sites whose hypervisors reach no registry).

    The archive goes into a directory only root can enter, under an unpredictable name
    made on this machine and created on the host by `mkdir -m 0700` (which refuses a path
    that already exists, so nobody can prepare it, swap the archive before `docker load`
    or point it elsewhere); the directory is removed once loaded, whatever the outcome. A
    host that already has the image gets nothing, so the archive crosses the network once.
    """
    if host.get_fact(DockerImage, object_id=image):
        host.noop(f"image {image} is already loaded")
        return
    directory = f"/var/tmp/scaphandre-image.{secrets.token_hex(16)}"
    remote = f"{directory}/image.tar"
    failed = (
        f"the archive {archive} does not hold {image} (or docker load failed): "
        "check scaphandre_image_archive and scaphandre_image"
    )
    yield StringCommand("mkdir", "-m", "0700", QuoteString(directory))
    yield FileUploadCommand(archive, remote)
    yield StringCommand(
        f"docker load -i {shlex.quote(remote)} >/dev/null; loaded=$?; rm -rf {shlex.quote(directory)}; "
        f"[ $loaded -eq 0 ] && docker image inspect {shlex.quote(image)} >/dev/null 2>&1 || "
        f"{{ echo {shlex.quote(failed)} >&2; exit 1; }}"
    )


@operation()
def registry_login(registry: str, username: str, password: HiddenValue) -> Commands:
    """Guarantees root's Docker client on this host is logged in to `registry` as `username`
    with this very password, so a rotated password is applied and an unchanged one is not
    sent again.

    What is on the host is judged by a digest (see tasks/scaphandre/registry.py), never by
    reading Docker's config file back. The password reaches `docker login
    --password-stdin` on the command's standard input: it is in no command line (so in no
    process list) and in nothing pyinfra prints.
    """
    marker = login_marker_path(registry)
    found = host.get_fact(RegistryLoginState, registry=registry, marker=marker)
    if logged_in_as(found, registry, username, password.unmask()):
        host.noop(f"logged in to {registry} as {username} with the current password")
        return
    digest = credentials_digest(registry, username, password.unmask())
    quoted_marker = shlex.quote(marker)
    yield StringCommand(
        f"umask 077 && docker login --username {shlex.quote(username)} --password-stdin {shlex.quote(registry)} "
        f">/dev/null && mkdir -p -m 0700 {shlex.quote(LOGIN_MARKER_DIR)} && "
        f"printf '%s\\n' {shlex.quote(digest)} > {quoted_marker}.new && mv {quoted_marker}.new {quoted_marker}",
        _stdin=password.unmask(),
    )


@operation()
def image_pulled(image: str) -> Commands:
    """Guarantees `image` is in this host's Docker engine, pulled when it is missing; its own
    step, so an image the deploy brings is recorded as soon as it is there (even when the
    container then fails to start)."""
    if host.get_fact(DockerImage, object_id=image):
        host.noop(f"image {image} is already there")
        return
    quoted = shlex.quote(image)
    # Checked again when it runs: an engine installed in this run may have brought it already.
    yield StringCommand(
        f"docker image inspect {quoted} >/dev/null 2>&1 || docker image pull {quoted}"
    )
