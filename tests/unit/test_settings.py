"""The settings (tasks/settings.py, defaults in group_data/all.py): typed, checked once,
every bad value naming its key, and README's table in step with the defaults."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings as hypothesis_settings, strategies as st

from tasks.settings import Settings, SettingsError, unknown_keys
from tests.unit.pyinfra_harness import all_commands, default_data, planned_commands

REPO = Path(__file__).resolve().parents[2]


def with_defaults(**overrides) -> dict:
    return default_data() | overrides


def problems(**overrides) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_data(with_defaults(**overrides))
    return str(caught.value)


def test_the_defaults_are_exactly_the_settings_and_pass_their_own_checks():
    assert list(default_data()) == Settings.keys(), "group_data/all.py and Settings list the same keys, in order"
    defaults = Settings.from_data(default_data())
    assert defaults.scaphandre_port == 8080 and defaults.prometheus_candidates[0][1] == "opennebula-prometheus"


def test_a_missing_key_says_group_data_was_not_read():
    data = default_data()
    del data["scaphandre_port"]
    with pytest.raises(SettingsError, match="scaphandre_port is missing: run pyinfra from the repository directory"):
        Settings.from_data(data)


@pytest.mark.parametrize("key, value, says", [
    ("scaphandre_image", "hubblo/scaphandre:latest", "never 'latest'"),
    ("scaphandre_image", "hubblo/scaphandre", "never 'latest'"),
    ("scaphandre_port", "http", "not a TCP port number"),
    ("scaphandre_port", 70000, "not a TCP port number"),
    ("scaphandre_port", True, "not a TCP port number"),
    ("scaphandre_restart_policy", "no", "would not survive a reboot"),
    ("scaphandre_listen_address", "kvm1.example.org", "not an IP address"),
    ("scaphandre_container_name", "two words", "not a Docker container name"),
    ("scaphandre_scrape_host", "kvm 1", "not a host name or address"),
    ("scaphandre_scrape_host", "kvm1/metrics", "not a host name or address"),
    ("scaphandre_scrape_host", "kvm1:8080", "not a host name or address"),
    ("scaphandre_extra_docker_args", "--foo", "not a list of strings"),
    ("rapl_modules", "intel_rapl_msr", "not a list of strings"),
    ("scaphandre_qemu", "yes", "not True or False"),
    ("scaphandre_metrics_timeout_s", 0, "not a whole number above 0"),
    ("docker_install_source", "snap", "not one of 'distro', 'docker-ce'"),
    ("one_host_id", "kvm1", "not an OpenNebula host ID"),
    ("one_host_id", "", "not an OpenNebula host ID"),
    ("one_host_id", -3, "not an OpenNebula host ID"),
    ("prometheus_scrape_mode", "both", "not one of 'replicate', 'shard'"),
    ("prometheus_scrape_interval", "15", "not a Prometheus duration"),
    ("prometheus_job_name", 'a"b', "letters, digits"),
    ("prometheus_targets_file", "targets.yml", "not an absolute path"),
    ("prometheus_candidates", [("prometheus.yml", "prometheus")], "absolute path"),
    ("prometheus_snippet_major_version", 4, "not 2 or 3"),
    ("prometheus_reload_timeout_s", -1, "not a whole number from 0 to 3600"),
    ("prometheus_reload_timeout_s", 1.5, "not a whole number from 0 to 3600"),
    ("prometheus_reload_timeout_s", "60", "not a whole number from 0 to 3600"),
    ("grafana_dashboards_dir", "dash", "not an absolute path"),
    ("accounting_size_basis", "disk", "not one of 'vcpu', 'cpu', 'memory'"),
    ("carbon_intensity", "grid) or vector(1", "neither a number of gCO2e/kWh nor a Prometheus series"),
    ("carbon_intensity", 'grid{zone="FR"}[1h]', "neither a number of gCO2e/kWh nor a Prometheus series"),
    ("carbon_intensity", -5, "not a number of gCO2e/kWh from 0 to 5000"),
    ("carbon_intensity", float("nan"), "not a number of gCO2e/kWh from 0 to 5000"),
    ("carbon_intensity", True, "not a number of gCO2e/kWh"),
    ("carbon_intensity", "", "neither a number"),
    ("carbon_intensity_clusters", {"": 50}, "not an OpenNebula cluster NAME or ID"),
    ("carbon_intensity_clusters", {"paris": "two words"}, "for cluster 'paris' is 'two words'"),
    ("carbon_intensity_clusters", {"paris": None}, "for cluster 'paris' is None"),
    ("carbon_intensity_clusters", [("paris", 50)], "not a dict"),
    ("carbon_intensity_max_age", "1 hour", "not a Prometheus duration"),
])
def test_a_bad_value_is_refused_naming_its_key_and_where_to_fix_it(key, value, says):
    message = problems(**{key: value})
    assert f"setting {key} " in message and says in message and "fix it in the host's or group's data" in message


def test_every_bad_key_is_named_at_once():
    message = problems(scaphandre_port="x", prometheus_scrape_mode="both")
    assert "scaphandre_port" in message and "prometheus_scrape_mode" in message


def test_settings_that_go_together():
    assert "prometheus_config_file and prometheus_service go together" in problems(
        prometheus_config_file="/etc/p/prometheus.yml")
    assert "scaphandre_registry_username and scaphandre_registry_password_file go together" in problems(
        scaphandre_registry_username="puller")


def test_accepted_values_are_typed():
    checked = Settings.from_data(with_defaults(
        one_host_id="12", rapl_modules=["intel_rapl"], scaphandre_listen_address="[::]",
        scaphandre_scrape_host="2001:db8::10", scaphandre_image="registry.example.org:5000/hubblo/scaphandre@sha256:ab"))
    assert checked.one_host_id == 12 and checked.rapl_modules == ("intel_rapl",)
    assert checked.scaphandre_listen_address == "::" and checked.scaphandre_scrape_host == "2001:db8::10"


def test_carbon_intensities_are_numbers_or_series_selectors():
    checked = Settings.from_data(with_defaults(
        carbon_intensity=' grid_intensity{zone="FR", source=~"ember|em"} ',
        carbon_intensity_clusters={"paris": 56, 104: "grid:carbon_intensity"}))
    assert checked.carbon_intensity == 'grid_intensity{zone="FR", source=~"ember|em"}'
    assert checked.carbon_intensity_clusters == {"paris": 56.0, 104: "grid:carbon_intensity"}
    assert Settings.from_data(with_defaults(carbon_intensity=0)).carbon_intensity == 0.0


def test_an_unknown_key_of_ours_is_named_with_the_likely_one():
    assert unknown_keys({"scaphandre_prot": 1, "ssh_port": 22, "my_own_key": 1}) == [
        "unknown setting scaphandre_prot (did you mean scaphandre_port?): it is ignored"]


@hypothesis_settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(Settings.keys()),
       value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
                       st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)))
def test_any_value_of_any_key_is_accepted_or_refused_by_name_never_crashes(key, value):
    try:
        Settings.from_data(with_defaults(**{key: value}))
    except SettingsError as error:
        assert key in str(error)


# --------------------------------------------------------------------------- the settings step


def test_a_bad_setting_fails_the_host_at_the_settings_check_and_nothing_else_is_planned():
    planned = planned_commands(lambda settings: pytest.fail("no step may run"), {}, data={"scaphandre_port": "x"})
    assert [name.split(" | ")[-1] for name in planned] == ["Check the settings"]
    [command] = all_commands(planned)
    assert command.startswith("call log_failure") and "scaphandre_port" in command


# --------------------------------------------------------------------------- README's table


def readme_table() -> list[tuple[str, str]]:
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Settings"):]
    rows = re.findall(r"^\| `(\w+)` \| (.*?) \| .* \|$", section, re.M)
    return rows


def literal_items(value) -> list[str]:
    """How a default is written in README's table: each item in backticks."""
    if isinstance(value, (list, tuple)):
        if not value:
            return ["[]"]
        return [str(part) for item in value for part in (item if isinstance(item, (list, tuple)) else [item])]
    if isinstance(value, dict):
        return [str(value).replace("'", '"')] if value else ["{}"]
    return [str(value)]


def test_readme_lists_every_setting_in_order_with_its_default():
    table = readme_table()
    assert [key for key, _ in table] == list(default_data()), "README's settings table follows group_data/all.py"
    for key, cell in table:
        default = default_data()[key]
        if default is None:
            assert cell.strip(), f"{key}: say what an unset value means"
            continue
        assert re.findall(r"`([^`]*)`", cell) == literal_items(default), f"README's default of {key}: {cell}"
