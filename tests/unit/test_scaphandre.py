"""The Scaphandre step (tasks/scaphandre): the container created, kept or recreated from its
spec, a taken port, an image from an archive, a private registry login — as pyinfra's API
plans them from given facts."""

from __future__ import annotations

import pytest

from tasks.scaphandre import run_scaphandre
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
    assert commands[0] == "upload /var/tmp/scaphandre-image-scaphandre.tar"
    assert commands[1].startswith("docker load -i /var/tmp/scaphandre-image-scaphandre.tar")
    assert "rm -f /var/tmp/scaphandre-image-scaphandre.tar" in commands[1]
    assert "does not hold hubblo/scaphandre:1.0.2" in commands[1]
    assert any(c.startswith("docker container create") for c in commands[2:])


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


def login_plan(tmp_path, auths):
    secret_file = tmp_path / "pull-secret"
    secret_file.write_text(SECRET + "\n")
    data = {
        "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": "puller",
        "scaphandre_registry_password_file": str(secret_file),
    }
    return planned_commands(run_scaphandre, {"DockerAuths": auths, "DockerContainer": []}, data=data)


def test_docker_login_gets_the_password_on_stdin_and_masks_it(tmp_path, monkeypatch):
    shown = []
    import tests.unit.pyinfra_harness as harness

    monkeypatch.setattr(harness, "render", lambda command: shown.append(str(command)) or render(command))
    commands = all_commands(login_plan(tmp_path, {}))
    login = next(c for c in commands if "docker login" in c)
    assert "--password-stdin" in login and "puller" in login and "registry.example.org:5000" in login
    assert SECRET in login  # the raw command does carry it, on stdin...
    assert any("docker login" in text for text in shown)
    assert not any(SECRET in text for text in shown)  # ...but what pyinfra prints masks it


def test_an_existing_login_is_not_repeated(tmp_path):
    commands = all_commands(login_plan(tmp_path, {"registry.example.org:5000": {}}))
    assert not any("docker login" in c for c in commands)


def test_a_missing_password_file_fails_naming_the_setting(tmp_path):
    data = {
        "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": "puller",
        "scaphandre_registry_password_file": str(tmp_path / "nope"),
    }
    commands = all_commands(planned_commands(run_scaphandre, {"DockerContainer": []}, data=data))
    assert len(commands) == 1 and "scaphandre_registry_password_file" in commands[0]
