"""The Scaphandre step (tasks/scaphandre): the container created on the host network, kept or
recreated from its spec, a taken port, an image from an archive, a private registry login,
the image recorded and removed again — as pyinfra's API plans them from given facts."""

from __future__ import annotations

import json
import logging
import re

import pytest

from tasks.install_record.record import RECORD_DIR, RECORD_FILE
from tasks.scaphandre import remove_scaphandre, run_scaphandre
from tasks.scaphandre.facts import RegistryLoginState
from tasks.scaphandre.registry import credentials_digest, digest_matches, login_marker_path
from tasks.scaphandre.spec import (
    container_drift,
    containers_using,
    image_registry,
    listening_addresses,
    port_listeners,
    port_taken_message,
    publishes_port,
    scaphandre_spec,
)
from tasks.settings import Settings
from tests.unit.hypervisor_facts import default_fingerprint, earlier_version_inspect, inspect_of
from tests.unit.pyinfra_harness import (
    all_commands,
    default_data,
    on_hypervisor,
    planned_commands,
    planned_uploads,
    record_facts,
    render,
    with_ledger,
)

deploy_exporter = on_hypervisor(run_scaphandre)
remove_exporter = with_ledger(remove_scaphandre)
# A host whose engine runs and has the image (an image the deploy pulls is recorded, see below).
ENGINE = {"DockerEngineInstalled": True, "DockerImage": [{"Id": "sha256:1"}]}


def create_command(commands: list[str]) -> str:
    return next(c for c in commands if c.startswith("docker container create"))


def test_a_missing_container_is_created_on_the_host_network_with_the_documented_spec():
    commands = all_commands(planned_commands(deploy_exporter, {"DockerContainer": []}))
    create = create_command(commands)
    for expected in (
        "--name scaphandre",
        "--network host",
        "-v /proc:/proc",
        "-v /sys/class/powercap:/sys/class/powercap",
        "-v /var/run/docker.sock:/var/run/docker.sock",
        "--restart unless-stopped",
        "--privileged",
        "hubblo/scaphandre:1.0.2 prometheus -a 0.0.0.0 -p 8080 --qemu --containers",
    ):
        assert expected in create
    assert " -p " not in create.split(" hubblo/scaphandre:1.0.2 ")[0], (
        "no port published through Docker"
    )
    assert "docker container start scaphandre" in commands
    assert any(
        "/dev/tcp/127.0.0.1/8080" in c and "docker logs --tail 20 scaphandre" in c for c in commands
    )


@pytest.mark.parametrize(
    "address, port, probe, shown",
    [
        ("192.0.2.7", 9100, "/dev/tcp/192.0.2.7/9100", "192.0.2.7:9100"),
        ("2001:db8::7", 9100, "/dev/tcp/2001:db8::7/9100", "[2001:db8::7]:9100"),
        ("[2001:db8::7]", 9100, "/dev/tcp/2001:db8::7/9100", "[2001:db8::7]:9100"),
        ("::", 8080, "/dev/tcp/127.0.0.1/8080", "127.0.0.1:8080"),
    ],
)
def test_listen_address_and_port_go_to_scaphandres_own_flags(address, port, probe, shown):
    data = {"scaphandre_listen_address": address, "scaphandre_port": port}
    commands = all_commands(
        planned_commands(deploy_exporter, {**ENGINE, "DockerContainer": []}, data=data)
    )
    assert create_command(commands).endswith(
        f"prometheus -a {address.strip('[]')} -p {port} --qemu --containers"
    )
    wait = commands[-1]
    assert probe in wait and f"Scaphandre /metrics on {shown} did not answer" in wait


def test_a_matching_container_is_left_alone():
    facts = {**ENGINE, "DockerContainer": [inspect_of(default_fingerprint())]}
    assert all_commands(planned_commands(deploy_exporter, facts)) == []


def test_a_container_of_an_earlier_version_with_a_published_port_is_recreated_once_on_the_host_network():
    earlier = earlier_version_inspect(default_fingerprint())
    spec = scaphandre_spec(Settings.from_data(default_data()))
    assert container_drift(earlier, spec) == ["network default -> host", "published port"]
    # Its docker-proxy holds the port now; it goes with the old container, so it is no conflict.
    facts = {**ENGINE, "DockerContainer": [earlier], "ListeningTcpSockets": [PROXY_ON_8080]}
    commands = all_commands(planned_commands(deploy_exporter, facts))
    assert commands[0] == "docker container rm -f scaphandre"
    assert "--network host" in create_command(commands)


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
    facts = {**ENGINE, "DockerContainer": [inspect_of(default_fingerprint())]}
    commands = all_commands(planned_commands(deploy_exporter, facts, data=data))
    assert commands[0] == "docker container rm -f scaphandre"
    assert commands[1].startswith("docker container create")


def test_the_narrower_security_set_replaces_privileged():
    commands = all_commands(
        planned_commands(
            deploy_exporter, {"DockerContainer": []}, data={"scaphandre_privileged": False}
        )
    )
    create = next(c for c in commands if c.startswith("docker container create"))
    assert "--privileged" not in create
    assert "--cap-add=SYS_PTRACE" in create and "--security-opt=apparmor=unconfined" in create


@pytest.mark.parametrize(
    "data, key",
    [
        ({"scaphandre_image": "hubblo/scaphandre:latest"}, "scaphandre_image"),
        ({"scaphandre_image": "hubblo/scaphandre"}, "scaphandre_image"),
        ({"scaphandre_port": "http"}, "scaphandre_port"),
        ({"scaphandre_restart_policy": "no"}, "scaphandre_restart_policy"),
    ],
)
def test_bad_settings_fail_the_host_naming_the_key(data, key):
    commands = all_commands(planned_commands(deploy_exporter, {"DockerContainer": []}, data=data))
    assert len(commands) == 1 and key in commands[0]


PYTHON_ON_8080 = (
    'LISTEN 0      5            0.0.0.0:8080      0.0.0.0:*    users:(("python3",pid=4242,fd=3))'
)
PROXY_ON_8080 = (
    'LISTEN 0      4096         0.0.0.0:8080      0.0.0.0:*    users:(("docker-proxy",pid=77,fd=4))'
)
SSHD = 'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=1,fd=3))'
# How ss prints an IPv6 wildcard: `[::]` for an IPv6-only socket, `*` for a dual-stack one.
V6_ONLY_ON_8080 = (
    'LISTEN 0      5               [::]:8080         [::]:*    users:(("node",pid=9,fd=20))'
)
DUAL_STACK_ON_8080 = (
    'LISTEN 0      5                  *:8080            *:*    users:(("java",pid=12,fd=7))'
)
V6_LOOPBACK_ON_8080 = (
    'LISTEN 0      5              [::1]:8080         [::]:*    users:(("redis",pid=15,fd=6))'
)
LOOPBACK_ON_8080 = (
    "LISTEN 0      5          127.0.0.1:8080      0.0.0.0:*    "
    'users:(("nginx",pid=31,fd=6),("nginx",pid=32,fd=6))'
)
# The Scaphandre container itself, on the host network (its process is PID 4321 on the host).
SCAPHANDRE_ON_8080 = (
    'LISTEN 0      128        0.0.0.0:8080      0.0.0.0:*    users:(("scaphandre",pid=4321,fd=9))'
)


# --- a port already taken ---------------------------------------------------------


def test_port_listeners_names_process_pid_and_address():
    assert port_listeners([SSHD, PYTHON_ON_8080], 8080) == ["python3 (pid 4242) on 0.0.0.0:8080"]


def test_port_listeners_is_empty_when_the_port_is_free():
    assert port_listeners([SSHD, PYTHON_ON_8080], 9100) == []
    assert port_listeners([], 8080) == []


def test_port_listeners_reads_ipv6_and_several_processes():
    assert port_listeners([V6_ONLY_ON_8080], 8080, listen_address="::") == [
        "node (pid 9) on [::]:8080"
    ]
    assert port_listeners([DUAL_STACK_ON_8080], 8080) == ["java (pid 12) on *:8080"]
    assert port_listeners([LOOPBACK_ON_8080], 8080) == [
        "nginx (pid 31), nginx (pid 32) on 127.0.0.1:8080"
    ]


def test_a_socket_on_another_specific_address_does_not_conflict():
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="192.0.2.5") == []
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="127.0.0.1") != []
    assert port_listeners([PYTHON_ON_8080], 8080, listen_address="192.0.2.5") != []


@pytest.mark.parametrize(
    "listener, listen_address, conflicts",
    [
        (V6_ONLY_ON_8080, "0.0.0.0", False),  # an IPv6-only socket leaves IPv4 free
        (V6_ONLY_ON_8080, "2001:db8::7", True),
        (V6_LOOPBACK_ON_8080, "::1", True),
        (V6_LOOPBACK_ON_8080, "2001:db8::7", False),
        (V6_LOOPBACK_ON_8080, "127.0.0.1", False),
        (LOOPBACK_ON_8080, "::1", False),
        (
            LOOPBACK_ON_8080,
            "::",
            True,
        ),  # Scaphandre's :: is dual-stack: every IPv4 listener conflicts
        (DUAL_STACK_ON_8080, "192.0.2.5", True),
        (DUAL_STACK_ON_8080, "2001:db8::7", True),
    ],
)
def test_ipv4_and_ipv6_listeners_conflict_only_where_the_kernel_says_so(
    listener, listen_address, conflicts
):
    assert bool(port_listeners([listener], 8080, listen_address=listen_address)) is conflicts


def test_a_listener_without_a_process_name_is_still_reported():
    assert port_listeners(["LISTEN 0 5 0.0.0.0:8080 0.0.0.0:*"], 8080) == [
        "an unnamed process on 0.0.0.0:8080"
    ]


def test_the_containers_own_processes_do_not_count_as_taking_the_port():
    assert port_listeners([SCAPHANDRE_ON_8080, PYTHON_ON_8080], 8080, own_pids={4321}) == [
        "python3 (pid 4242) on 0.0.0.0:8080"
    ]
    assert port_listeners([SCAPHANDRE_ON_8080], 8080, own_pids={4321}) == []
    assert port_listeners([SCAPHANDRE_ON_8080], 8080) == ["scaphandre (pid 4321) on 0.0.0.0:8080"]


def test_the_message_names_port_holder_setting_and_that_the_container_was_kept():
    message = port_taken_message(9100, ["python3 (pid 4242) on 0.0.0.0:9100"], "scaphandre")
    assert "TCP port 9100" in message and "python3 (pid 4242)" in message
    assert "scaphandre_port" in message and "left as it was" in message


def test_only_a_running_container_of_an_earlier_version_publishes_the_port():
    running = earlier_version_inspect("x")
    assert publishes_port(running, 8080)
    assert not publishes_port({**running, "State": {"Status": "exited"}}, 8080)
    assert not publishes_port(running, 9100)
    assert not publishes_port(None, 8080)
    assert not publishes_port(inspect_of("x"), 8080), "on the host network Docker publishes nothing"


def test_a_taken_port_fails_the_host_instead_of_creating_the_container():
    facts = {**ENGINE, "DockerContainer": [], "ListeningTcpSockets": [SSHD, PYTHON_ON_8080]}
    commands = all_commands(planned_commands(deploy_exporter, facts))
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert "TCP port 8080" in commands[0] and "python3 (pid 4242)" in commands[0]


def test_a_taken_new_port_keeps_the_working_container():
    facts = {
        **ENGINE,
        "DockerContainer": [inspect_of(default_fingerprint())],
        "ContainerProcessIds": {4321},
        "ListeningTcpSockets": [SCAPHANDRE_ON_8080, SSHD, PYTHON_ON_8080.replace("8080", "9100")],
    }
    commands = all_commands(
        planned_commands(deploy_exporter, facts, data={"scaphandre_port": 9100})
    )
    assert not any("docker container rm" in c for c in commands)
    assert len(commands) == 1 and "TCP port 9100" in commands[0]


def test_the_containers_own_port_does_not_block_its_recreation():
    facts = {
        **ENGINE,
        "DockerContainer": [inspect_of(default_fingerprint())],
        "ContainerProcessIds": {4321},
        "ListeningTcpSockets": [SCAPHANDRE_ON_8080],
    }
    commands = all_commands(
        planned_commands(deploy_exporter, facts, data={"scaphandre_qemu": False})
    )
    assert commands[0] == "docker container rm -f scaphandre"


def test_a_stopped_container_does_not_own_the_port_someone_else_took():
    exited = {**inspect_of(default_fingerprint()), "State": {"Status": "exited", "Pid": 0}}
    facts = {**ENGINE, "DockerContainer": [exited], "ListeningTcpSockets": [PYTHON_ON_8080]}
    commands = all_commands(planned_commands(deploy_exporter, facts))
    assert len(commands) == 1 and "python3 (pid 4242)" in commands[0]


# --- the image the deploy brought: recorded, and removed again -----------------------

RECORD_UPLOAD = f"{RECORD_FILE}.scaphandre-new"


def test_an_image_the_deploy_pulls_is_recorded_as_soon_as_it_is_there():
    facts = {"DockerEngineInstalled": True, "DockerImage": [], "DockerContainer": []}
    planned = {
        name.split(" | ")[-1]: c for name, c in planned_commands(deploy_exporter, facts).items()
    }
    assert list(planned)[:2] == [
        "Pull hubblo/scaphandre:1.0.2",
        "Record the image hubblo/scaphandre:1.0.2 the deploy brought",
    ]
    assert planned["Pull hubblo/scaphandre:1.0.2"] == [
        "docker image inspect hubblo/scaphandre:1.0.2 >/dev/null 2>&1 || docker image pull hubblo/scaphandre:1.0.2"
    ]
    assert json.loads(planned_uploads(deploy_exporter, facts)[RECORD_UPLOAD]) == {
        "format": 2,
        "images": ["hubblo/scaphandre:1.0.2"],
    }


def test_on_a_host_without_an_engine_yet_the_image_counts_as_brought():
    planned = list(planned_commands(deploy_exporter, {"DockerContainer": []}))
    assert [name.split(" | ")[-1] for name in planned][:2] == [
        "Pull hubblo/scaphandre:1.0.2",
        "Record the image hubblo/scaphandre:1.0.2 the deploy brought",
    ]


def test_an_image_that_was_there_is_not_recorded():
    facts = {
        "DockerEngineInstalled": True,
        "DockerImage": [{"Id": "sha256:1"}],
        "DockerContainer": [],
    }
    assert RECORD_UPLOAD not in planned_uploads(deploy_exporter, facts)


def recorded(*images: str) -> dict:
    return record_facts({"format": 2, "images": list(images)})


def test_removal_takes_the_image_the_deploy_brought_and_forgets_it():
    facts = {
        "DockerEngineInstalled": True,
        "DockerContainer": [inspect_of("x")],
        "DockerImage": [{"Id": "sha256:1"}],
        "DockerContainers": [inspect_of("x")],
        **recorded("hubblo/scaphandre:1.0.2"),
    }
    planned = {
        name.split(" | ")[-1]: c for name, c in planned_commands(remove_exporter, facts).items()
    }
    assert planned["Remove the Scaphandre container"] == ["docker container rm -f scaphandre"]
    assert planned["Remove the image hubblo/scaphandre:1.0.2 the deploy brought"] == [
        "docker image rm hubblo/scaphandre:1.0.2"
    ]
    assert planned["Forget the exporter images in the record"] == [
        f"rm -f -- {RECORD_FILE} && {{ rmdir -- {RECORD_DIR} 2>/dev/null || true; }}"
    ]


def test_removal_keeps_an_image_that_was_there_before_the_deploy():
    facts = {
        "DockerEngineInstalled": True,
        "DockerContainer": [inspect_of("x")],
        "DockerImage": [{"Id": "sha256:1"}],
    }
    commands = all_commands(planned_commands(remove_exporter, facts))
    assert commands == ["docker container rm -f scaphandre"]


def test_removal_keeps_a_brought_image_another_container_uses(caplog):
    other = {**inspect_of("x"), "Name": "/energy-probe"}
    facts = {
        "DockerEngineInstalled": True,
        "DockerContainer": [inspect_of("x")],
        "DockerImage": [{"Id": "sha256:1"}],
        "DockerContainers": [inspect_of("x"), other],
        **recorded("hubblo/scaphandre:1.0.2"),
    }
    with caplog.at_level(logging.WARNING, logger="pyinfra"):
        commands = all_commands(planned_commands(remove_exporter, facts))
    assert commands == ["docker container rm -f scaphandre"]
    assert any(
        "image hubblo/scaphandre:1.0.2 stays: container energy-probe uses it" in r.getMessage()
        for r in caplog.records
    )


def test_containers_using_an_image_match_by_name_or_id_and_skip_our_own():
    ours, by_id = inspect_of("x"), {"Name": "/x", "Config": {"Image": "other"}, "Image": "sha256:1"}
    assert containers_using(
        "hubblo/scaphandre:1.0.2", [{"Id": "sha256:1"}], [ours, by_id], "scaphandre"
    ) == ["x"]
    assert containers_using("hubblo/scaphandre:1.0.2", [], [ours], "scaphandre") == []


# --- an image from an archive


def test_a_missing_image_is_uploaded_loaded_and_the_archive_removed(tmp_path):
    archive = tmp_path / "scaphandre.tar"
    archive.write_bytes(b"not really a tar")
    planned = planned_commands(
        deploy_exporter,
        {"DockerImage": [], "DockerContainer": []},
        data={"scaphandre_image_archive": str(archive)},
    )
    commands = all_commands(planned)
    mkdir = re.fullmatch(r"mkdir -m 0700 (/var/tmp/scaphandre-image\.[0-9a-f]{32})", commands[0])
    assert mkdir, commands[0]
    directory = mkdir.group(1)
    assert commands[1] == f"upload {directory}/image.tar"
    assert commands[2].startswith(f"docker load -i {directory}/image.tar")
    assert f"rm -rf {directory};" in commands[2]
    assert "does not hold hubblo/scaphandre:1.0.2" in commands[2]
    assert any(c.startswith("docker container create") for c in commands[3:])


def test_the_archive_directory_is_unpredictable(tmp_path):
    archive = tmp_path / "scaphandre.tar"
    archive.write_bytes(b"x")
    directories = {
        all_commands(
            planned_commands(
                deploy_exporter,
                {"DockerImage": [], "DockerContainer": []},
                data={"scaphandre_image_archive": str(archive)},
            )
        )[0]
        for _ in range(5)
    }
    assert len(directories) == 5


def test_a_loaded_image_is_not_uploaded_again(tmp_path):
    archive = tmp_path / "scaphandre.tar"
    archive.write_bytes(b"x")
    planned = planned_commands(
        deploy_exporter,
        {**ENGINE, "DockerContainer": []},
        data={"scaphandre_image_archive": str(archive)},
    )
    assert not any(c.startswith(("upload", "docker load")) for c in all_commands(planned))


def test_an_archive_that_is_not_there_fails_the_host_naming_the_setting(tmp_path):
    planned = planned_commands(
        deploy_exporter,
        {"DockerImage": [], "DockerContainer": []},
        data={"scaphandre_image_archive": str(tmp_path / "missing.tar")},
    )
    commands = all_commands(planned)
    assert (
        len(commands) == 1
        and "scaphandre_image_archive" in commands[0]
        and "docker save" in commands[0]
    )


# --- a private registry

SECRET = "pull-s3cret-Xy9"


def test_the_registry_is_read_from_the_image_reference():
    assert (
        image_registry("registry.example.org:5000/hubblo/scaphandre:1.0.2")
        == "registry.example.org:5000"
    )
    assert image_registry("registry:5000/scaphandre:1.0.2") == "registry:5000"
    assert image_registry("hubblo/scaphandre:1.0.2") is None
    assert image_registry("scaphandre:1.0.2") is None


REGISTRY = "registry.example.org:5000"


def login_plan(tmp_path, found, password=SECRET, monkeypatch=None):
    """The plan with a private registry, the host reporting `found` (RegistryLoginState);
    with monkeypatch, also returns each command's standard input and what pyinfra prints."""
    secret_file = tmp_path / "pull-secret"
    secret_file.write_text(password + "\n")
    data = {
        "scaphandre_image": f"{REGISTRY}/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": "puller",
        "scaphandre_registry_password_file": str(secret_file),
    }
    seen = []
    if monkeypatch is not None:
        import tests.unit.pyinfra_harness as harness

        def recording(command):
            seen.append((str(command), getattr(command, "connector_arguments", {}).get("_stdin")))
            return render(command)

        monkeypatch.setattr(harness, "render", recording)
    planned = planned_commands(
        deploy_exporter, {"RegistryLoginState": found, "DockerContainer": []}, data=data
    )
    return all_commands(planned), seen


def test_the_password_goes_on_stdin_and_is_in_no_command_line(tmp_path, monkeypatch):
    commands, seen = login_plan(
        tmp_path, {"logged_in": False, "digest": None}, monkeypatch=monkeypatch
    )
    login = next(c for c in commands if "docker login" in c)
    assert "--password-stdin" in login and "--username puller" in login and REGISTRY in login
    assert not any(SECRET in command for command in commands), (
        "the raw command line holds no password"
    )
    assert not any(SECRET in printed for printed, _ in seen), "nor does what pyinfra prints"
    assert [stdin for printed, stdin in seen if "docker login" in printed] == [SECRET]
    assert login_marker_path(REGISTRY) in login and "umask 077" in login


def test_the_login_state_is_read_without_docker_s_config_ever_being_printed():
    command = RegistryLoginState().command(registry=REGISTRY, marker=login_marker_path(REGISTRY))
    assert "cat " not in command and "config.json" in command
    assert "grep -qF" in command and "echo logged_in=yes" in command
    assert RegistryLoginState().process(["logged_in=yes", "digest=pbkdf2-sha256$1$00$ab"]) == {
        "logged_in": True,
        "digest": "pbkdf2-sha256$1$00$ab",
    }
    assert RegistryLoginState().process(["logged_in=no"]) == {"logged_in": False, "digest": None}


def test_the_same_credentials_are_not_sent_again(tmp_path):
    digest = credentials_digest(REGISTRY, "puller", SECRET)
    commands, _ = login_plan(tmp_path, {"logged_in": True, "digest": digest})
    assert not any("docker login" in c for c in commands)


def test_a_rotated_password_is_applied(tmp_path):
    old = credentials_digest(REGISTRY, "puller", "the-old-password")
    commands, _ = login_plan(tmp_path, {"logged_in": True, "digest": old})
    assert any("docker login" in c for c in commands)


def test_a_login_removed_by_hand_is_made_again(tmp_path):
    digest = credentials_digest(REGISTRY, "puller", SECRET)
    commands, _ = login_plan(tmp_path, {"logged_in": False, "digest": digest})
    assert any("docker login" in c for c in commands)


def test_a_login_made_by_someone_else_is_replaced_by_ours(tmp_path):
    commands, _ = login_plan(tmp_path, {"logged_in": True, "digest": None})
    assert any("docker login" in c for c in commands)


def test_the_digest_matches_only_the_same_registry_user_and_password():
    digest = credentials_digest(REGISTRY, "puller", SECRET)
    assert digest_matches(digest, REGISTRY, "puller", SECRET)
    assert SECRET not in digest
    assert credentials_digest(REGISTRY, "puller", SECRET) != digest, "a fresh salt each time"
    for other in (
        (REGISTRY, "puller", SECRET + "x"),
        (REGISTRY, "pusher", SECRET),
        ("other:5000", "puller", SECRET),
    ):
        assert not digest_matches(digest, *other)
    for broken in (
        None,
        "",
        "garbage",
        "pbkdf2-sha256$x$00$ab",
        "pbkdf2-sha256$99999999$00$ab",
        "pbkdf2-sha256$1$zz$ab",
    ):
        assert not digest_matches(broken, REGISTRY, "puller", SECRET)


def test_a_missing_password_file_fails_naming_the_setting(tmp_path):
    data = {
        "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": "puller",
        "scaphandre_registry_password_file": str(tmp_path / "nope"),
    }
    commands = all_commands(planned_commands(deploy_exporter, {"DockerContainer": []}, data=data))
    assert len(commands) == 1 and "scaphandre_registry_password_file" in commands[0]


def test_listening_addresses_are_those_the_containers_processes_hold():
    lines = [
        SCAPHANDRE_ON_8080,
        PYTHON_ON_8080.replace("0.0.0.0:8080", "127.0.0.1:8080"),
        'LISTEN 0 128 *:9100 *:* users:(("scaphandre",pid=4321,fd=9))',
        'LISTEN 0 128 [2001:db8::7]:9100 [::]:* users:(("scaphandre",pid=4321,fd=10))',
    ]
    assert listening_addresses(lines, 8080, {4321}) == ["0.0.0.0"]
    assert listening_addresses(lines, 9100, {4321}) == ["2001:db8::7", "::"]
    assert listening_addresses(lines, 8080, set()) == []
