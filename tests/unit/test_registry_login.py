"""A private registry needing a login: docker login on the host, the password never shown."""

from tasks.hypervisor_plan import image_registry
from tasks.scaphandre import run_scaphandre
from tests.unit.pyinfra_harness import all_commands, planned_commands, render

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
