"""The energy sync's systemd units and config file, rendered the way pyinfra's files.template
renders them (Jinja2, StrictUndefined), checked by systemd's own `systemd-analyze`, and the
rendered config read by the script itself."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from pyinfra.api.util import get_template

FILES = Path(__file__).resolve().parents[2] / "files" / "opennebula"
SCRIPT = FILES / "scaphandre_energy_sync.py"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"
UNIT_VARIABLES = {
    "service_user": "oneadmin",
    "interval_s": 300,
    "config_path": "/etc/one/scaphandre-energy-sync.conf",
    "script_path": "/usr/local/lib/scaphandre-energy-sync/scaphandre_energy_sync.py",
}
CONFIG_VARIABLES = {
    "prometheus_url": "http://127.0.0.1:9090",
    "one_xmlrpc": "http://localhost:2633/RPC2",
    "one_auth_file": "/var/lib/one/.one/one_auth",
    "interval_s": 300,
    "max_age_s": 900,
    "host_max_power_w": 5000,
    "vm_max_power_w": 2000,
    "threshold_percent": 2,
    "threshold_watts": 1,
    "threshold_kwh": 0.01,
    "refresh_s": 3600,
    "timeout_s": 30,
}


def render(name: str, variables: dict) -> str:
    return get_template(str(FILES / f"{name}.j2")).render(variables)


def render_units(directory: Path, **overrides) -> tuple[Path, Path]:
    service = directory / "scaphandre-energy-sync.service"
    timer = directory / "scaphandre-energy-sync.timer"
    service.write_text(render(service.name, {**UNIT_VARIABLES, **overrides}))
    timer.write_text(render(timer.name, {**UNIT_VARIABLES, **overrides}))
    return service, timer


def directives(unit_text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit_text.splitlines():
        if re.match(r"^[A-Za-z]+=", line):
            key, value = line.split("=", 1)
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture(scope="module", autouse=True)
def systemd_analyze_present():
    """Fail (not skip): systemd's own check is the proof the units are valid."""
    assert shutil.which(SYSTEMD_ANALYZE), f"{SYSTEMD_ANALYZE} missing: apt-get install systemd"


@pytest.mark.parametrize("user", ["oneadmin", "root"])
def test_units_pass_systemd_analyze_verify(tmp_path, user):
    service, timer = render_units(tmp_path, service_user=user)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(timer), str(service)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    ours = [line for line in result.stderr.splitlines() if "scaphandre-energy-sync" in line]
    assert ours == [], result.stderr


def test_service_runs_the_script_as_the_service_user_with_only_a_config_path(tmp_path):
    service, _ = render_units(tmp_path)
    found = directives(service.read_text())
    assert found["Type"] == ["oneshot"] and found["User"] == ["oneadmin"]
    assert found["ExecStart"] == [
        f"/usr/bin/python3 {UNIT_VARIABLES['script_path']} --config {UNIT_VARIABLES['config_path']}"
    ]
    assert (
        "Environment" not in found and "EnvironmentFile" not in found
    )  # nothing secret in the unit
    assert found["TimeoutStartSec"] == ["300s"]


def test_root_service_has_no_user_line(tmp_path):
    service, _ = render_units(tmp_path, service_user="root")
    assert "User" not in directives(service.read_text())


def test_service_is_hardened_but_keeps_the_hosts_loopback(tmp_path):
    service, _ = render_units(tmp_path)
    found = directives(service.read_text())
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert found[key] == [value], key
    assert "PrivateNetwork" not in found and "IPAddressDeny" not in found
    # RemoveIPC acts on the user, not the unit: it would remove oned's IPC objects (oneadmin's)
    assert "RemoveIPC" not in found and "DynamicUser" not in found
    assert found["RestrictAddressFamilies"] == ["AF_UNIX AF_INET AF_INET6"]


def test_systemd_rates_the_service_exposure_low(tmp_path):
    service, _ = render_units(tmp_path)
    result = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=true", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    score = re.search(
        r"Overall exposure level for scaphandre-energy-sync.service: ([0-9.]+) (\w+)", result.stdout
    )
    assert score, result.stdout[-500:]
    assert float(score.group(1)) <= 2.0 and score.group(2) == "OK", score.group(0)


def test_timer_fires_every_interval(tmp_path):
    _, timer = render_units(tmp_path, interval_s=120)
    found = directives(timer.read_text())
    assert found["OnUnitActiveSec"] == ["120s"] and found["Unit"] == [
        "scaphandre-energy-sync.service"
    ]
    assert found["WantedBy"] == ["timers.target"]


def test_templates_name_every_variable_they_need(tmp_path):
    """StrictUndefined, as in pyinfra: a missing variable is an error, not an empty string."""
    from jinja2 import UndefinedError

    for name in ("scaphandre-energy-sync.service", "scaphandre-energy-sync.timer"):
        with pytest.raises(UndefinedError):
            render(name, {})
    with pytest.raises(UndefinedError):
        render(
            "scaphandre-energy-sync.conf",
            {key: value for key, value in CONFIG_VARIABLES.items() if key != "one_auth_file"},
        )


def test_rendered_config_is_read_by_the_script(tmp_path):
    spec = importlib.util.spec_from_file_location("scaphandre_energy_sync", SCRIPT)
    sync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sync)
    path = tmp_path / "scaphandre-energy-sync.conf"
    path.write_text(
        render(path.name, {**CONFIG_VARIABLES, "interval_s": 120, "threshold_percent": 5})
    )
    settings = sync.load_settings(str(path))
    assert (settings.interval_s, settings.threshold_percent) == (120, 5)
    assert settings._replace(interval_s=300, threshold_percent=2, source=None) == sync.Settings(
        **CONFIG_VARIABLES, source=None
    )
