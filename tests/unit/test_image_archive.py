"""Air-gapped hosts: the exporter image from a local `docker save` archive."""

from tasks.scaphandre import run_scaphandre
from tests.unit.pyinfra_harness import all_commands, planned_commands


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
