"""The Scaphandre step (tasks/scaphandre): the container created, kept or recreated from its
spec, a taken port, an image from an archive, a private registry login — as pyinfra's API
plans them from given facts."""

from __future__ import annotations

import re

import pytest

from tasks.scaphandre import run_scaphandre
from tasks.scaphandre.facts import RegistryLoginState
from tasks.scaphandre.registry import credentials_digest, digest_matches, login_marker_path
from tasks.scaphandre.spec import image_registry, port_listeners, port_taken_message, publishes_port
from tests.unit.hypervisor_facts import default_fingerprint, inspect_of
from tests.unit.pyinfra_harness import all_commands, planned_commands, render

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


PYTHON_ON_8080 = 'LISTEN 0      5            0.0.0.0:8080      0.0.0.0:*    users:(("python3",pid=4242,fd=3))'
PROXY_ON_8080 = 'LISTEN 0      4096         0.0.0.0:8080      0.0.0.0:*    users:(("docker-proxy",pid=77,fd=4))'
SSHD = 'LISTEN 0      128          0.0.0.0:22        0.0.0.0:*    users:(("sshd",pid=1,fd=3))'
V6_ON_8080 = 'LISTEN 0      5               [::]:8080         [::]:*    users:(("node",pid=9,fd=20))'
LOOPBACK_ON_8080 = 'LISTEN 0      5          127.0.0.1:8080      0.0.0.0:*    users:(("nginx",pid=31,fd=6),("nginx",pid=32,fd=6))'


# --- a port already taken ---------------------------------------------------------


def test_port_listeners_names_process_pid_and_address():
    assert port_listeners([SSHD, PYTHON_ON_8080], 8080) == ["python3 (pid 4242) on 0.0.0.0:8080"]


def test_port_listeners_is_empty_when_the_port_is_free():
    assert port_listeners([SSHD, PYTHON_ON_8080], 9100) == []
    assert port_listeners([], 8080) == []


def test_port_listeners_reads_ipv6_and_several_processes():
    assert port_listeners([V6_ON_8080], 8080) == ["node (pid 9) on [::]:8080"]
    assert port_listeners([LOOPBACK_ON_8080], 8080) == ["nginx (pid 31), nginx (pid 32) on 127.0.0.1:8080"]


def test_a_socket_on_another_specific_address_does_not_conflict():
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="192.0.2.5") == []
    assert port_listeners([LOOPBACK_ON_8080], 8080, listen_address="127.0.0.1") != []
    assert port_listeners([PYTHON_ON_8080], 8080, listen_address="192.0.2.5") != []


def test_a_listener_without_a_process_name_is_still_reported():
    assert port_listeners(["LISTEN 0 5 0.0.0.0:8080 0.0.0.0:*"], 8080) == ["an unnamed process on 0.0.0.0:8080"]


def test_the_message_names_port_holder_setting_and_that_the_container_was_kept():
    message = port_taken_message(9100, ["python3 (pid 4242) on 0.0.0.0:9100"], "scaphandre")
    assert "TCP port 9100" in message and "python3 (pid 4242)" in message
    assert "scaphandre_port" in message and "left as it was" in message


def test_a_running_container_holding_the_port_is_not_a_conflict():
    running = inspect_of("x")
    assert publishes_port(running, 8080)
    assert not publishes_port({**running, "State": {"Status": "exited"}}, 8080)
    assert not publishes_port(running, 9100)
    assert not publishes_port(None, 8080)


def test_a_taken_port_fails_the_host_instead_of_creating_the_container():
    facts = {"DockerContainer": [], "ListeningTcpSockets": [SSHD, PYTHON_ON_8080]}
    commands = all_commands(planned_commands(run_scaphandre, facts))
    assert len(commands) == 1 and commands[0].startswith("call log_failure")
    assert "TCP port 8080" in commands[0] and "python3 (pid 4242)" in commands[0]


def test_a_taken_new_port_keeps_the_working_container():
    fingerprint = default_fingerprint()
    facts = {"DockerContainer": [inspect_of(fingerprint)], "ListeningTcpSockets": [PROXY_ON_8080, SSHD,
             PYTHON_ON_8080.replace("8080", "9100")]}
    commands = all_commands(planned_commands(run_scaphandre, facts, data={"scaphandre_port": 9100}))
    assert not any("docker container rm" in c for c in commands)
    assert len(commands) == 1 and "TCP port 9100" in commands[0]


def test_the_containers_own_port_does_not_block_its_recreation():
    fingerprint = default_fingerprint()
    facts = {"DockerContainer": [inspect_of(fingerprint)], "ListeningTcpSockets": [PROXY_ON_8080]}
    commands = all_commands(planned_commands(run_scaphandre, facts, data={"scaphandre_qemu": False}))
    assert commands[0] == "docker container rm -f scaphandre"



# --- an image from an archive


def test_a_missing_image_is_uploaded_loaded_and_the_archive_removed(tmp_path):
    archive = tmp_path / "scaphandre.tar"
    archive.write_bytes(b"not really a tar")
    planned = planned_commands(
        run_scaphandre, {"DockerImage": [], "DockerContainer": []}, data={"scaphandre_image_archive": str(archive)}
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
        all_commands(planned_commands(run_scaphandre, {"DockerImage": [], "DockerContainer": []},
                                      data={"scaphandre_image_archive": str(archive)}))[0]
        for _ in range(5)
    }
    assert len(directories) == 5


def test_a_loaded_image_is_not_uploaded_again(tmp_path):
    archive = tmp_path / "scaphandre.tar"
    archive.write_bytes(b"x")
    planned = planned_commands(
        run_scaphandre, {"DockerImage": [{"Id": "sha256:1"}], "DockerContainer": []},
        data={"scaphandre_image_archive": str(archive)},
    )
    assert not any(c.startswith(("upload", "docker load")) for c in all_commands(planned))


def test_an_archive_that_is_not_there_fails_the_host_naming_the_setting(tmp_path):
    planned = planned_commands(
        run_scaphandre, {"DockerImage": [], "DockerContainer": []},
        data={"scaphandre_image_archive": str(tmp_path / "missing.tar")},
    )
    commands = all_commands(planned)
    assert len(commands) == 1 and "scaphandre_image_archive" in commands[0] and "docker save" in commands[0]


# --- a private registry

SECRET = "pull-s3cret-Xy9"


def test_the_registry_is_read_from_the_image_reference():
    assert image_registry("registry.example.org:5000/hubblo/scaphandre:1.0.2") == "registry.example.org:5000"
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
    planned = planned_commands(run_scaphandre, {"RegistryLoginState": found, "DockerContainer": []}, data=data)
    return all_commands(planned), seen


def test_the_password_goes_on_stdin_and_is_in_no_command_line(tmp_path, monkeypatch):
    commands, seen = login_plan(tmp_path, {"logged_in": False, "digest": None}, monkeypatch=monkeypatch)
    login = next(c for c in commands if "docker login" in c)
    assert "--password-stdin" in login and "--username puller" in login and REGISTRY in login
    assert not any(SECRET in command for command in commands), "the raw command line holds no password"
    assert not any(SECRET in printed for printed, _ in seen), "nor does what pyinfra prints"
    assert [stdin for printed, stdin in seen if "docker login" in printed] == [SECRET]
    assert login_marker_path(REGISTRY) in login and "umask 077" in login


def test_the_login_state_is_read_without_docker_s_config_ever_being_printed():
    command = RegistryLoginState().command(registry=REGISTRY, marker=login_marker_path(REGISTRY))
    assert "cat " not in command and "config.json" in command
    assert "grep -qF" in command and "echo logged_in=yes" in command
    assert RegistryLoginState().process(["logged_in=yes", "digest=pbkdf2-sha256$1$00$ab"]) == {
        "logged_in": True, "digest": "pbkdf2-sha256$1$00$ab"}
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
    for other in ((REGISTRY, "puller", SECRET + "x"), (REGISTRY, "pusher", SECRET), ("other:5000", "puller", SECRET)):
        assert not digest_matches(digest, *other)
    for broken in (None, "", "garbage", "pbkdf2-sha256$x$00$ab", "pbkdf2-sha256$99999999$00$ab",
                   "pbkdf2-sha256$1$zz$ab"):
        assert not digest_matches(broken, REGISTRY, "puller", SECRET)


def test_a_missing_password_file_fails_naming_the_setting(tmp_path):
    data = {
        "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": "puller",
        "scaphandre_registry_password_file": str(tmp_path / "nope"),
    }
    commands = all_commands(planned_commands(run_scaphandre, {"DockerContainer": []}, data=data))
    assert len(commands) == 1 and "scaphandre_registry_password_file" in commands[0]
