"""Unit tests of the stand-in Scaphandre's pure logic and start-up checks (no container)."""

from __future__ import annotations

import os

import pytest

from tests.doubles.scaphandre_double import scaphandre_double as double

MAX_RANGE = 262143328850


def make_zone(root, zone: str, name: str, energy: int) -> None:
    path = root / zone
    path.mkdir(parents=True, exist_ok=True)
    (path / "name").write_text(name + "\n")
    (path / "energy_uj").write_text(f"{energy}\n")
    (path / "max_energy_range_uj").write_text(f"{MAX_RANGE}\n")


def make_process(proc, pid: int, argv: list[str], utime: int) -> None:
    path = proc / str(pid)
    path.mkdir(parents=True)
    (path / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
    (path / "stat").write_text(f"{pid} (x) S 1 1 1 0 -1 0 0 0 0 0 {utime} 0 0 0 20 0 1 0\n")


def test_energy_delta_handles_the_counter_wrap():
    assert double.energy_delta_uj(100, 350, MAX_RANGE) == 250
    assert double.energy_delta_uj(MAX_RANGE - 50, 25, MAX_RANGE) == 75


def test_power_is_energy_over_time():
    assert double.power_microwatts(0, 30_000_000, MAX_RANGE, 1.0) == 30_000_000
    assert double.power_microwatts(MAX_RANGE - 10_000_000, 20_000_000, MAX_RANGE, 2.0) == 15_000_000


def test_cmdline_joins_arguments_without_separator():
    raw = b"/usr/bin/qemu-kvm-one\0-name\0guest=one-43,debug-threads=on\0-machine\0pc\0"
    assert (
        double.render_cmdline(raw)
        == "/usr/bin/qemu-kvm-one-nameguest=one-43,debug-threads=on-machinepc"
    )


@pytest.mark.parametrize(
    "cmdline, expected",
    [
        ("/usr/bin/qemu-system-x86_64-nameguest=one-42,debug-threads=on-machinepc", "one-42"),
        ("/usr/bin/qemu-kvm-one-nameguest=one-43,debug-threads=on-machinepc", None),
        ("/usr/bin/qemu-system-x86_64-machinepc", None),
    ],
)
def test_vmname_only_for_qemu_system_with_a_guest_name(cmdline, expected):
    assert double.qemu_vm_name(cmdline) == expected


def test_version_value_is_built_like_scaphandre():
    assert double.version_value("1.0.2") == 1.2


def test_render_gives_scaphandre_metric_names_and_labels(tmp_path):
    powercap, proc = tmp_path / "powercap", tmp_path / "proc"
    make_zone(powercap, "intel-rapl:0", "package-0", MAX_RANGE - 1_000_000)
    make_zone(powercap, "intel-rapl:0:0", "core", 500)
    proc.mkdir()
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    vm_argv = ["/usr/bin/qemu-system-x86_64", "-name", "guest=one-42,debug-threads=on"]
    make_process(proc, 42, vm_argv, utime=10)
    exporter = double.Exporter(
        qemu=True, containers=False, powercap_root=str(powercap), proc_root=str(proc)
    )
    # One second later: the package counter wrapped after 40 J, the VM used half the CPU time.
    make_zone(powercap, "intel-rapl:0", "package-0", 39_000_000)
    make_zone(powercap, "intel-rapl:0:0", "core", 20_000_500)
    (proc / "stat").write_text("cpu  150 0 150 800 0 0 0 0 0 0\n")
    (proc / "42" / "stat").write_text("42 (x) S 1 1 1 0 -1 0 0 0 0 0 60 0 0 0 20 0 1 0\n")
    exporter.sample()
    exporter.previous.taken_at = exporter.current.taken_at - 1.0
    text = exporter.render()
    assert "scaph_host_power_microwatts 40000000\n" in text
    assert 'scaph_socket_power_microwatts{socket_id="0"} 40000000\n' in text
    assert 'scaph_domain_power_microwatts{domain_name="core",socket_id="0"} 20000000\n' in text
    assert "scaph_host_energy_microjoules 39000000\n" in text
    assert (
        'scaph_process_power_consumption_microwatts{exe="/usr/bin/qemu-system-x86_64",pid="42",'
        'cmdline="/usr/bin/qemu-system-x86_64-nameguest=one-42,debug-threads=on",'
        'vmname="one-42"} 20000000\n'
    ) in text
    assert "scaph_self_version 1.2\n" in text


def test_missing_powercap_is_a_clear_startup_error(tmp_path):
    with pytest.raises(double.StartupError, match="intel-rapl:0 not found: RAPL is not exposed"):
        double.check_powercap(str(tmp_path))


def test_own_pid_namespace_only_is_a_clear_startup_error(tmp_path):
    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "comm").write_text("python3\n")
    os.symlink("1", tmp_path / "self")
    with pytest.raises(double.StartupError, match=r"mount the host's /proc \(-v /proc:/proc\)"):
        double.check_host_proc(str(tmp_path))


def test_missing_docker_socket_is_a_clear_startup_error(tmp_path):
    with pytest.raises(double.StartupError, match="--containers needs the Docker socket"):
        double.check_docker_socket(str(tmp_path / "docker.sock"))


def test_unknown_argument_exits_2():
    with pytest.raises(SystemExit) as exit_info:
        double.parse_args(["prometheus", "--bogus"])
    assert exit_info.value.code == 2


def test_cli_defaults_match_scaphandre():
    args = double.parse_args(["prometheus", "--qemu", "--containers"])
    assert (args.address, args.port, args.qemu, args.containers) == ("0.0.0.0", 8080, True, True)
    args = double.parse_args(["prometheus", "-a", "127.0.0.1", "-p", "9155"])
    assert (args.address, args.port, args.qemu) == ("127.0.0.1", 9155, False)


@pytest.mark.parametrize(
    "argv", [["-a", "[::1]"], ["-a", "localhost"], ["-p", "70000"], ["-p", "http"]]
)
def test_address_and_port_are_refused_as_scaphandre_refuses_them(argv):
    """Scaphandre 1.0 parses -a as an IP address literal (IPv4 or IPv6, no brackets) and -p as a u16."""
    with pytest.raises(SystemExit) as exit_info:
        double.parse_args(["prometheus", *argv])
    assert exit_info.value.code == 2


def test_an_ipv6_address_is_taken_as_scaphandre_takes_it():
    assert (
        double.parse_args(["prometheus", "--address", "2001:db8::7", "--port", "9100"]).address
        == "2001:db8::7"
    )


def serve_once(address: str, connect_to: str, tmp_path) -> str:
    """Start the double's server on address (a free port), GET /metrics from connect_to, stop it."""
    import threading
    import urllib.request

    powercap, proc = tmp_path / "powercap", tmp_path / "proc"
    make_zone(powercap, "intel-rapl:0", "package-0", 1_000_000)
    proc.mkdir()
    (proc / "stat").write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    exporter = double.Exporter(
        qemu=False, containers=False, powercap_root=str(powercap), proc_root=str(proc)
    )
    server = double.bind_server(address, 0, exporter)
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host = f"[{connect_to}]" if ":" in connect_to else connect_to
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=10) as reply:
            return reply.read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_double_serves_on_an_ipv6_address(tmp_path):
    assert "scaph_host_power_microwatts" in serve_once("::1", "::1", tmp_path)


def test_the_ipv6_wildcard_also_answers_ipv4_like_scaphandre_on_a_default_host(tmp_path):
    with open("/proc/sys/net/ipv6/bindv6only") as flag:
        assert flag.read().strip() == "0", "this test needs the kernel's default (bindv6only=0)"
    assert "scaph_host_power_microwatts" in serve_once("::", "127.0.0.1", tmp_path)
