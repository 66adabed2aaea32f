"""Every setting that reaches a shell on a host is quoted: a value holding `$(...)`, back
quotes, `'`, `"` or `;` runs nothing.

Each command the deploy (and remove.py) would run, planned by pyinfra's API from hostile
settings, is executed by a real bash in a sandbox: no external command exists there (a
handler answers for every one, succeeding in one pass and failing in the other, so both
branches of each `||` / `if` run), only bash's builtins and redirections work, in a
scratch directory. The hostile values try to append to a file named PWNED in that
directory; it must never appear.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pyinfra
import pytest

from tasks.cloud import CloudView
from tasks.docker_engine import ensure_docker_engine, remove_docker_engine
from tasks.docker_engine.daemon_config import DAEMON_JSON
from tasks.grafana import provision_dashboard, remove_dashboard
from tasks.host_state import hypervisor_query, prometheus_query, read_host_state
from tasks.host_state.facts import HostState
from tasks.install_record import install_ledger
from tasks.install_record.facts import FoundFile
from tasks.install_record.lock import LockRequest
from tasks.prometheus import configure_prometheus, prometheus_server, remove_prometheus_job
from tasks.rapl import enable_rapl, forget_rapl_modules
from tasks.scaphandre import remove_scaphandre, run_scaphandre
from tasks.text_file import LiveFile
from tests.unit.hypervisor_facts import host_facts, inspect_of
from tests.unit.pyinfra_harness import all_commands, default_data, planned_commands, record_facts

# Runs something whether it lands unquoted, inside '...' or inside "...", and keeps the
# quotes of each of those balanced (so the command still parses and runs).
HOSTILE = "$(printf 1>>PWNED)'$(printf 2>>PWNED)'\"$(printf 3>>PWNED)\"`printf 4>>PWNED`"
MARKER = "PWNED"  # every hostile value writes to it: proof the values reached the commands


NOBODY = 65534


@pytest.fixture
def sandbox():
    """Runs one command under bash with no external command available; returns (run, pwned).

    As root the commands run as nobody: a redirection to an absolute path in a planned command
    (into /etc, say) must fail here, not change this machine.
    """
    scratch = Path(tempfile.mkdtemp(prefix="shell-quoting-"))
    scratch.chmod(0o755)
    bin_dir = scratch / "bin"
    bin_dir.mkdir()
    bash = subprocess.run(
        ["sh", "-c", "command -v bash"], capture_output=True, text=True, check=True
    ).stdout.strip()
    for name in ("bash", "sh"):
        (bin_dir / name).symlink_to(bash)
    work = scratch / "work"
    work.mkdir()
    work.chmod(0o777)
    as_nobody = (
        [
            shutil.which("setpriv") or "setpriv",
            f"--reuid={NOBODY}",
            f"--regid={NOBODY}",
            "--clear-groups",
        ]
        if os.geteuid() == 0
        else []
    )

    def run(command: str, externals_succeed: bool) -> None:
        handler = scratch / f"handler-{int(externals_succeed)}.sh"
        handler.write_text(
            f"command_not_found_handle() {{ return {0 if externals_succeed else 1}; }}\n"
        )
        handler.chmod(0o644)
        subprocess.run(
            [*as_nobody, bash, "-c", command],
            cwd=work,
            capture_output=True,
            timeout=20,
            env={"PATH": str(bin_dir), "BASH_ENV": str(handler), "HOME": str(work)},
            check=False,
        )

    yield run, work / "PWNED"
    shutil.rmtree(scratch)


def assert_runs_nothing(commands: list[str], sandbox) -> None:
    run, pwned = sandbox
    assert any(MARKER in command for command in commands), (
        "the hostile values must reach the commands"
    )
    shell_commands = [
        c for c in commands if not c.startswith(("upload ", "call "))
    ]  # uploads, Python callbacks
    for command in shell_commands:
        for externals_succeed in (True, False):
            run(command, externals_succeed)
            assert not pwned.exists(), f"a hostile value ran something in: {command}"


@pytest.mark.parametrize("careless", ["echo {}", "echo '{}'", 'echo "{}"', "bash -c 'echo {}'"])
def test_the_sandbox_catches_a_value_left_unquoted(sandbox, careless):
    run, pwned = sandbox
    run(careless.format(HOSTILE), True)
    assert pwned.exists()


def test_hypervisor_settings_run_nothing(tmp_path, sandbox):
    archive = tmp_path / f"image{HOSTILE}.tar"
    archive.write_bytes(b"x")
    password_file = tmp_path / "pull-secret"
    password_file.write_text(f"pw{HOSTILE}\n")
    data = {
        "scaphandre_image_archive": str(archive),
        "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
        "scaphandre_registry_username": f"puller{HOSTILE}",
        "scaphandre_registry_password_file": str(password_file),
        "scaphandre_extra_docker_args": [f"--label=note{HOSTILE}"],
        "docker_install_source": "docker-ce",
        # No blank allowed in a URL: the same quotes and substitutions without one.
        "docker_ce_repo_url": "https://repo.example.org/x'$(printf${IFS}5>>PWNED)'`printf${IFS}6>>PWNED`",
    }
    facts = host_facts() | {
        "DockerImage": [],
        "DockerContainer": [],
        "RegistryLoginState": {"logged_in": False, "digest": None},
    }

    def deploy(settings):
        found = read_host_state(settings)
        ledger = install_ledger(read=found.record)
        enable_rapl(settings, found.hypervisor)
        ensure_docker_engine(settings, ledger, found.hypervisor)
        run_scaphandre(settings, ledger, found.hypervisor)

    def remove(settings):
        ledger = install_ledger()
        remove_scaphandre(settings, ledger)
        forget_rapl_modules()
        remove_docker_engine(ledger)

    # What the deploy would have recorded on this host: its engine and the hostile image.
    recorded = {
        "format": 1,
        "engine": {"package_manager": "apt", "packages": ["docker-ce"]},
        "daemon_json": {"settings": {"iptables": False}, "previous": {}},
        "images": [data["scaphandre_image"]],
    }
    commands = all_commands(planned_commands(deploy, facts, data=data))
    commands += all_commands(
        planned_commands(
            remove,
            facts
            | {
                "DockerEngineInstalled": True,
                "DockerContainer": [inspect_of("x")],
                "DockerImage": [{"Id": "sha256:1"}],
                "DebPackages": {"docker-ce": {"1"}},
                **record_facts(recorded),
                f"FileBytes:{DAEMON_JSON}": LiveFile(
                    False, DAEMON_JSON, True, 0, 0, "644", "", b'{"iptables": false}'
                ),
            },
            data=data,
        )
    )
    assert any("docker image rm" in command for command in commands), (
        "the image removal is planned too"
    )
    assert any("docker login" in command for command in commands)
    assert_runs_nothing(commands, sandbox)


def test_grafana_settings_run_nothing(sandbox):
    data = {
        "grafana_provisioning_dir": f"/etc/grafana/provisioning{HOSTILE}",
        "grafana_dashboards_dir": f"/var/lib/grafana/dashboards{HOSTILE}",
        "grafana_service": f"grafana-server{HOSTILE}",
        "grafana_dashboard_folder": f"OpenNebula{HOSTILE}",
    }
    commands = all_commands(
        planned_commands(provision_dashboard, {}, data=data, groups=("grafana",), name="graf1")
    )
    commands += all_commands(
        planned_commands(
            remove_dashboard, {"File": {"size": 1}}, data=data, groups=("grafana",), name="graf1"
        )
    )
    assert_runs_nothing(commands, sandbox)


PROMETHEUS_FOUND = {
    "config": "",
    "service": "",
    "binary": "/usr/bin/prometheus",
    "promtool": "/usr/bin/promtool",
    "version": "prometheus, version 2.42.0 (branch: debian/sid)",
}


def test_prometheus_settings_run_nothing(sandbox):
    data = {
        "prometheus_config_file": f"/etc/prometheus/prometheus{HOSTILE}.yml",
        "prometheus_service": f"prometheus{HOSTILE}",
        "prometheus_targets_file": f"/etc/prometheus/targets{HOSTILE}.yml",
        "prometheus_rules_file": f"/etc/prometheus/rules{HOSTILE}.yml",
    }
    facts = {"PrometheusServer": PROMETHEUS_FOUND, "FileContents": None, "Sha256File": None}

    def deploy(settings):
        found = read_host_state(settings)
        ledger = install_ledger(read=found.record)
        server = prometheus_server(settings, CloudView(()), ledger, found.prometheus)
        configure_prometheus(settings, pyinfra.inventory, server, ledger)

    commands = all_commands(
        planned_commands(deploy, facts, data=data, groups=("prometheus",), name="prom1")
    )
    # The record lists both files, still as the deploy wrote them: both are removed.
    written = FoundFile("file", sha256="0" * 64)
    recorded = {
        "format": 2,
        "files": {
            data["prometheus_targets_file"]: {"sha256": "0" * 64},
            data["prometheus_rules_file"]: {"sha256": "0" * 64},
        },
    }
    commands += all_commands(
        planned_commands(
            lambda settings: remove_prometheus_job(settings, install_ledger()),
            facts
            | {
                "FileContents": ["scrape_configs:", "  - job_name: scaphandre"],
                **record_facts(recorded),
                "FilesAt": lambda paths, with_content: {
                    index: written for index, _ in enumerate(paths)
                },
                "File": {"size": 1},
            },
            data=data,
            groups=("prometheus",),
            name="prom1",
        )
    )
    removals = [
        c for c in commands if c.startswith("rm -f ") and ("/targets" in c or "/rules" in c)
    ]
    assert len(removals) == 2, "both file removals are planned too"
    assert_runs_nothing(commands, sandbox)


def test_the_one_read_of_a_host_runs_nothing(sandbox, tmp_path):
    """The host's one read (tasks/host_state) with every setting it carries hostile."""
    from tasks.settings import Settings

    hostile_path = f"/etc/prometheus/x{HOSTILE}"
    settings = Settings.from_data(
        default_data()
        | {
            # A container name is checked; the image and the login are not.
            "scaphandre_container_name": "scaphandre",
            "scaphandre_image": "registry.example.org:5000/hubblo/scaphandre:1.0.2",
            "scaphandre_registry_username": f"puller{HOSTILE}",
            "scaphandre_registry_password_file": str(tmp_path / "pull-secret"),
            "scaphandre_image_archive": str(tmp_path / f"image{HOSTILE}.tar"),
            "prometheus_config_file": f"{hostile_path}.yml",
            "prometheus_service": f"prometheus{HOSTILE}",
            "prometheus_targets_file": f"{hostile_path}-targets.yml",
            "prometheus_rules_file": f"{hostile_path}-rules.yml",
            "prometheus_candidates": [[f"{hostile_path}.yml", f"svc{HOSTILE}"]],
            "prometheus_binaries": [f"/usr/bin/prometheus{HOSTILE}"],
            "promtool_binaries": [f"/usr/bin/promtool{HOSTILE}"],
        }
    )
    hypervisor, prometheus = hypervisor_query(settings), prometheus_query(settings)
    commands = [
        HostState().command(
            lock=LockRequest(f"hv1{HOSTILE}", run=f"pyinfra{HOSTILE}"),
            hypervisor=hypervisor,
            prometheus=prometheus,
        ),
        HostState().command(lock=None, hypervisor=hypervisor, prometheus=prometheus),
    ]
    assert_runs_nothing(commands, sandbox)
