"""The verification suite's plumbing: inventory -> testinfra hosts, collection rules, HTTP probe.

No host is contacted: inventories are written to tmp_path, testinfra backends are
built but never connected, and the HTTP probe talks to a server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import paramiko
import pytest
import testinfra.backend
from testinfra.backend.paramiko import IgnorePolicy

from tasks.settings import Settings, defaults
from tests.verify import (
    InventoryHost,
    InventoryLoadError,
    http_get_command,
    load_verify_hosts,
    read_inventory,
    scrape_address,
    to_verify_host,
)

REPO = Path(__file__).resolve().parents[2]

INVENTORY = """
_SSH = {"ssh_hostname": "127.0.0.1", "ssh_user": "root", "ssh_key": "/keys/id_ed25519",
        "ssh_strict_host_key_checking": "off", "ssh_known_hosts_file": "/dev/null"}
hypervisors = (
    [
        ("kvm-a", {**_SSH, "ssh_port": 2221}),
        ("kvm-b", {**_SSH, "ssh_port": 2222, "scaphandre_port": 9100, "scaphandre_scrape_host": "192.0.2.2"}),
        "kvm-c.example.org",
    ],
    {"scaphandre_image": "scaphandre-test-double:1.0.2"},
)
prometheus = ([("prom", {**_SSH, "ssh_port": 2229})], {"one_xmlrpc": "http://127.0.0.1:26330/RPC2"})
"""

GROUP_DATA_ALL = (REPO / "group_data" / "all.py").read_text()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A directory laid out like the repository: inventory.py and group_data/all.py."""
    (tmp_path / "inventory.py").write_text(INVENTORY)
    (tmp_path / "group_data").mkdir()
    (tmp_path / "group_data" / "all.py").write_text(GROUP_DATA_ALL)
    (tmp_path / "group_data" / "hypervisors.py").write_text(
        'scaphandre_restart_policy = "always"\n'
    )
    return tmp_path


@pytest.fixture
def hosts(project: Path) -> dict:
    loaded = load_verify_hosts("inventory.py", ssh_config_dir=project / "ssh", cwd=str(project))
    return {host.name: host for host in loaded}


# --------------------------------------------------------------------------- reading the inventory


def test_every_host_is_loaded_with_its_groups(hosts):
    assert list(hosts) == ["kvm-a", "kvm-b", "kvm-c.example.org", "prom"]
    assert hosts["kvm-a"].in_group("hypervisors") and not hosts["kvm-a"].in_group("prometheus")
    assert hosts["prom"].in_group("prometheus") and not hosts["prom"].in_group("hypervisors")


def test_host_data_beats_group_data_beats_group_data_files(hosts):
    # host data
    assert hosts["kvm-b"].data["scaphandre_port"] == 9100
    # group data given in the inventory beats group_data/all.py
    assert hosts["kvm-a"].data["scaphandre_image"] == "scaphandre-test-double:1.0.2"
    assert hosts["prom"].data["one_xmlrpc"] == "http://127.0.0.1:26330/RPC2"
    # group_data/ files apply as the pyinfra CLI applies them
    assert hosts["prom"].data["scaphandre_image"] == "hubblo/scaphandre:1.0.2"
    assert hosts["kvm-a"].data["scaphandre_port"] == 8080
    assert hosts["kvm-c.example.org"].data["scaphandre_restart_policy"] == "always"
    assert hosts["prom"].data["scaphandre_restart_policy"] == "unless-stopped"


def test_group_data_is_read_from_the_working_directory(project, tmp_path_factory):
    """Like the CLI: group_data/ of the directory pytest runs in applies to an inventory elsewhere."""
    elsewhere = tmp_path_factory.mktemp("inventories")
    (elsewhere / "site.py").write_text('hypervisors = ["kvm-z"]\n')
    (loaded,) = read_inventory(str(elsewhere / "site.py"), cwd=str(project))
    assert loaded.name == "kvm-z"
    assert loaded.data["scaphandre_container_name"] == "scaphandre"
    assert loaded.data["scaphandre_restart_policy"] == "always"


def test_missing_inventory_is_named(project):
    with pytest.raises(InventoryLoadError, match=r"inventory file nowhere\.py not found"):
        read_inventory("nowhere.py", cwd=str(project))


def test_broken_inventory_names_file_and_error(project):
    (project / "broken.py").write_text("hypervisors = [undefined_name]\n")
    with pytest.raises(InventoryLoadError, match=r"broken\.py: NameError: name 'undefined_name'"):
        read_inventory("broken.py", cwd=str(project))


def test_loading_does_not_patch_this_interpreter_for_gevent(hosts):
    """pyinfra_cli monkey-patches the stdlib on import; the suite loads it in a child only."""
    assert "pyinfra_cli" not in sys.modules
    assert "gevent.monkey" not in sys.modules or not __import__(
        "gevent.monkey"
    ).monkey.is_module_patched("socket")


def test_the_repository_inventory_loads_with_the_deploy_defaults():
    loaded = read_inventory("inventory.py", cwd=str(REPO))
    hypervisors = [host for host in loaded if "hypervisors" in host.groups]
    assert hypervisors, "inventory.py has no hypervisor"
    overridden = {"scaphandre_image", "one_xmlrpc", "one_auth_file"}  # by inventory.py's group data
    expected = json.loads(json.dumps(defaults()))  # as the child hands host data over
    for host in loaded:
        # Every default of the settings model reaches every host through pyinfra's own group
        # data loader (group_data/all.py), as in a deploy, and passes the settings check.
        assert {name: host.data[name] for name in expected if name not in overridden} == {
            name: value for name, value in expected.items() if name not in overridden
        }, host.name
        Settings.from_data(host.data)


def test_an_assignment_in_group_data_all_py_reaches_every_host_through_pyinfras_loader(project):
    all_py = project / "group_data" / "all.py"
    all_py.write_text(
        GROUP_DATA_ALL.replace(
            "_defaults_into(globals())", 'prometheus_job_name = "power"\n_defaults_into(globals())'
        )
    )
    loaded = read_inventory("inventory.py", cwd=str(project))
    assert {host.data["prometheus_job_name"] for host in loaded} == {"power"}
    assert all(host.data["scaphandre_container_name"] == "scaphandre" for host in loaded)
    assert not any("defaults_into" in key for host in loaded for key in host.data), (
        "an import is no group data"
    )


# --------------------------------------------------------------------------- testinfra host specs


def test_ssh_hosts_become_paramiko_specs(hosts, project):
    kvm_a = hosts["kvm-a"]
    assert kvm_a.hostspec == "paramiko://root@127.0.0.1:2221"
    assert kvm_a.backend_kwargs["ssh_identity_file"] == "/keys/id_ed25519"
    assert kvm_a.backend_kwargs["timeout"] == 10
    assert kvm_a.backend_kwargs["ssh_config"] == str(project / "ssh" / "verify_ssh_config")


def test_defaults_follow_pyinfra_hostname_and_port(hosts):
    plain = hosts["kvm-c.example.org"]
    assert plain.hostspec == "paramiko://kvm-c.example.org:22"
    assert (
        "ssh_config" not in plain.backend_kwargs and "ssh_identity_file" not in plain.backend_kwargs
    )


def test_host_key_check_off_writes_an_ssh_config_testinfra_honours(hosts):
    spec = hosts["kvm-a"]
    config_text = Path(spec.backend_kwargs["ssh_config"]).read_text()
    assert (
        "StrictHostKeyChecking no" in config_text and "UserKnownHostsFile /dev/null" in config_text
    )

    backend = testinfra.backend.get_backend(spec.hostspec, **spec.backend_kwargs)
    assert (backend.host.name, backend.host.port, backend.host.user) == (
        "127.0.0.1",
        "2221",
        "root",
    )
    client, cfg = paramiko.SSHClient(), {}
    parsed = paramiko.SSHConfig.from_path(spec.backend_kwargs["ssh_config"])
    backend._load_ssh_config(client, cfg, parsed)
    assert isinstance(client._policy, IgnorePolicy)


@pytest.mark.parametrize(
    ("data", "hostspec", "extra"),
    [
        ({"ssh_hostname": "::1", "ssh_port": 2200}, "paramiko://[::1]:2200", {}),
        (
            {"ssh_user": "ops@corp", "ssh_password": "p:w/d"},
            "paramiko://ops%40corp:p%3Aw%2Fd@kvm:22",
            {},
        ),
        ({"_sudo": True, "ssh_user": "ops"}, "paramiko://ops@kvm:22", {"sudo": True}),
        (
            {"ssh_config_file": "/etc/ssh/site_config"},
            "paramiko://kvm:22",
            {"ssh_config": "/etc/ssh/site_config"},
        ),
    ],
    ids=["ipv6", "quoted-credentials", "sudo", "own-ssh-config"],
)
def test_hostspec_edge_cases_round_trip_through_testinfra(tmp_path, data, hostspec, extra):
    spec = to_verify_host(InventoryHost("kvm", ("hypervisors",), data), tmp_path)
    assert spec.hostspec == hostspec
    for key, value in extra.items():
        assert spec.backend_kwargs[key] == value
    backend = testinfra.backend.get_backend(spec.hostspec, **spec.backend_kwargs)
    assert backend.host.name == data.get("ssh_hostname", "kvm")
    if "ssh_password" in data:
        assert (backend.host.user, backend.host.password) == (
            data["ssh_user"],
            data["ssh_password"],
        )


def test_secrets_stay_out_of_reprs(tmp_path):
    spec = to_verify_host(
        InventoryHost("kvm", (), {"ssh_user": "u", "ssh_password": "hunter2"}), tmp_path
    )
    assert "hunter2" not in repr(spec) and "hunter2" not in repr(
        InventoryHost("kvm", (), {"x": "hunter2"})
    )


def test_local_and_docker_hosts_and_unknown_connectors(tmp_path):
    assert to_verify_host(InventoryHost("@local", (), {}), tmp_path).hostspec == "local://"
    assert (
        to_verify_host(InventoryHost("@docker/abc123", (), {}), tmp_path).hostspec
        == "docker://abc123"
    )
    with pytest.raises(InventoryLoadError, match="@winrm/box"):
        to_verify_host(InventoryHost("@winrm/box", (), {}), tmp_path)


# --------------------------------------------------------------------------- expectations


def test_scrape_address_as_the_deploy_writes_it(hosts):
    assert scrape_address(hosts["kvm-a"]) == "kvm-a:8080"
    assert scrape_address(hosts["kvm-b"]) == "192.0.2.2:9100"


# --------------------------------------------------------------------------- collection rules


def _collect(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_plain_run_does_not_collect_the_verify_suite():
    # Another directory's collection error must not hide what this test is about.
    done = _collect("tests", "--continue-on-collection-errors")
    assert "tests/verify" not in done.stdout
    assert "test_verify.py" in done.stdout


def test_inventory_option_collects_one_test_per_host_and_check(project):
    done = _collect("tests/verify", "--inventory", str(project / "inventory.py"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    for test_id in (
        "test_hypervisors.py::test_rapl_exposed[kvm-b]",
        "test_hypervisors.py::test_metrics_served[kvm-c.example.org]",
        "test_prometheus.py::test_config_valid[prom]",
        "test_prometheus.py::test_prometheus_reports_target_up[prom-kvm-a]",
    ):
        assert test_id in done.stdout


def test_empty_group_is_reported_not_silently_passed(project):
    (project / "solo.py").write_text('hypervisors = ["kvm-a"]\n')
    done = _collect("tests/verify/test_prometheus.py", "--inventory", str(project / "solo.py"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "test_config_valid[no-prometheus]" in done.stdout


def test_verify_suite_without_inventory_says_what_is_missing():
    done = _collect("tests/verify")
    assert done.returncode == 4
    assert "--inventory inventory.py" in done.stderr


# --------------------------------------------------------------------------- HTTP probe run on hosts


class _Metrics(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/metrics":
            self.send_error(404)
            return
        body = b"scaph_host_power_microwatts 12345\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def metrics_url():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Metrics)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _closed_port() -> int:
    """A loopback port nothing listens on (just released by us)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _bin_dir(tmp_path: Path, tools: list[str]) -> str:
    """A PATH holding only the given tools, to force one branch of the probe."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for tool in tools:
        source = os.path.realpath(sys.executable) if tool == "python3" else f"/usr/bin/{tool}"
        (directory / tool).symlink_to(source)
    return str(directory)


@pytest.mark.parametrize(
    "tools",
    [None, ["timeout", "python3"], ["timeout", "sed", "bash"]],
    ids=["curl", "python3", "bash-dev-tcp"],
)
def test_http_probe_fetches_and_fails_like_curl(tmp_path, metrics_url, tools):
    env = {"PATH": os.environ["PATH"] if tools is None else _bin_dir(tmp_path, tools)}

    def probe(url: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["/bin/bash", "-c", http_get_command(url, timeout_s=5)],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )

    found = probe(f"{metrics_url}/metrics")
    assert (found.returncode, found.stdout) == (0, "scaph_host_power_microwatts 12345\n"), (
        found.stderr
    )
    missing = probe(f"{metrics_url}/nothing")
    assert missing.returncode != 0 and "scaph" not in missing.stdout
    refused = probe(f"http://127.0.0.1:{_closed_port()}/metrics")
    assert refused.returncode != 0
