"""The settings model (tasks/settings.py): typed, checked once, every bad value naming its key
and what it accepts in an operator's words; the one source of the defaults (group_data/all.py
restates none) and of docs/settings.md."""

from __future__ import annotations

import ast
import json
import re
import runpy
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tasks.settings import SECTIONS, Settings, SettingsError, accepted, defaults, unknown_keys
from tasks.settings_doc import REGENERATE, settings_json_schema, settings_markdown
from tests.unit.pyinfra_harness import all_commands, default_data, planned_commands

REPO = Path(__file__).resolve().parents[2]


def with_defaults(**overrides) -> dict:
    return default_data() | overrides


def problems(**overrides) -> str:
    with pytest.raises(SettingsError) as caught:
        Settings.from_data(with_defaults(**overrides))
    return str(caught.value)


def test_the_defaults_are_exactly_the_settings_and_pass_their_own_checks():
    assert list(default_data()) == Settings.keys(), (
        "group_data/all.py and Settings list the same keys, in order"
    )
    defaults = Settings.from_data(default_data())
    assert (
        defaults.scaphandre_port == 8080
        and defaults.prometheus_candidates[0][1] == "opennebula-prometheus"
    )


def test_a_missing_key_says_group_data_was_not_read():
    data = default_data()
    del data["scaphandre_port"]
    with pytest.raises(
        SettingsError, match="scaphandre_port is missing: run pyinfra from the repository directory"
    ):
        Settings.from_data(data)


@pytest.mark.parametrize(
    "key, value, says",
    [
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
        (
            "carbon_intensity",
            "grid) or vector(1",
            "neither a number of gCO2e/kWh nor a Prometheus series",
        ),
        (
            "carbon_intensity",
            'grid{zone="FR"}[1h]',
            "neither a number of gCO2e/kWh nor a Prometheus series",
        ),
        ("carbon_intensity", -5, "not a number of gCO2e/kWh from 0 to 5000"),
        ("carbon_intensity", float("nan"), "not a number of gCO2e/kWh from 0 to 5000"),
        ("carbon_intensity", True, "not a number of gCO2e/kWh"),
        ("carbon_intensity", "", "neither a number"),
        ("carbon_intensity_clusters", {"": 50}, "not an OpenNebula cluster NAME or ID"),
        ("carbon_intensity_clusters", {"paris": "two words"}, "for cluster 'paris' is 'two words'"),
        ("carbon_intensity_clusters", {"paris": None}, "for cluster 'paris' is None"),
        ("carbon_intensity_clusters", [("paris", 50)], "not a dict"),
        ("carbon_intensity_max_age", "1 hour", "not a Prometheus duration"),
        ("docker_ce_repo_url", "download.docker.com/linux", "not an http(s) URL"),
        (
            "docker_ce_repo_url",
            "https://deploy:S3cr3t-t0ken@mirror.example.test/linux",
            "holds credentials (user:token@): give the URL without them",
        ),
        ("host_lock_timeout_s", 0, "not a whole number from 1 to 86400"),
        ("host_lock_timeout_s", 60.0, "not a whole number from 1 to 86400"),
    ],
)
def test_a_bad_value_is_refused_naming_its_key_and_where_to_fix_it(key, value, says):
    message = problems(**{key: value})
    assert (
        f"setting {key} " in message
        and says in message
        and "fix it in the host's or group's data" in message
    )


def test_credentials_in_the_docker_repository_url_are_refused_without_repeating_them():
    for url in (
        "https://deploy:S3cr3t-t0ken@mirror.example.test/linux",
        "https://S3cr3t-t0ken@mirror.example.test/x",
    ):
        assert problems(docker_ce_repo_url=url) == (
            "setting docker_ce_repo_url holds credentials (user:token@): give the URL without them and let the "
            "package manager authenticate: for apt, a file in /etc/apt/auth.conf.d/ (machine HOST login USER "
            "password TOKEN, mode 0600); for dnf, the repository's username= and password= options (in "
            "/etc/yum.repos.d/docker-ce.repo, made readable by root only): fix it in the host's or group's data"
        )
    assert (
        Settings.from_data(with_defaults()).docker_ce_repo_url
        == "https://download.docker.com/linux"
    )


def test_every_bad_key_is_named_at_once():
    message = problems(scaphandre_port="x", prometheus_scrape_mode="both")
    assert "scaphandre_port" in message and "prometheus_scrape_mode" in message


def test_settings_that_go_together():
    assert "prometheus_config_file and prometheus_service go together" in problems(
        prometheus_config_file="/etc/p/prometheus.yml"
    )
    assert (
        "scaphandre_registry_username and scaphandre_registry_password_file go together"
        in problems(scaphandre_registry_username="puller")
    )


def test_accepted_values_are_typed():
    checked = Settings.from_data(
        with_defaults(
            one_host_id="12",
            rapl_modules=["intel_rapl"],
            scaphandre_listen_address="[::]",
            scaphandre_scrape_host="2001:db8::10",
            scaphandre_image="registry.example.org:5000/hubblo/scaphandre@sha256:ab",
        )
    )
    assert checked.one_host_id == 12 and checked.rapl_modules == ("intel_rapl",)
    assert (
        checked.scaphandre_listen_address == "::"
        and checked.scaphandre_scrape_host == "2001:db8::10"
    )


def test_carbon_intensities_are_numbers_or_series_selectors():
    checked = Settings.from_data(
        with_defaults(
            carbon_intensity=' grid_intensity{zone="FR", source=~"ember|em"} ',
            carbon_intensity_clusters={"paris": 56, 104: "grid:carbon_intensity"},
        )
    )
    assert checked.carbon_intensity == 'grid_intensity{zone="FR", source=~"ember|em"}'
    assert checked.carbon_intensity_clusters == {"paris": 56.0, 104: "grid:carbon_intensity"}
    assert Settings.from_data(with_defaults(carbon_intensity=0)).carbon_intensity == 0.0


def test_an_unknown_key_of_ours_is_named_with_the_likely_one():
    assert unknown_keys({"scaphandre_prot": 1, "ssh_port": 22, "my_own_key": 1}) == [
        "unknown setting scaphandre_prot (did you mean scaphandre_port?): it is ignored"
    ]


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    key=st.sampled_from(Settings.keys()),
    value=st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True),
        st.text(max_size=20),
        st.lists(st.one_of(st.text(max_size=8), st.integers()), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    ),
)
def test_any_value_of_any_key_is_accepted_or_refused_by_name_never_crashes(key, value):
    try:
        Settings.from_data(with_defaults(**{key: value}))
    except SettingsError as error:
        assert key in str(error) and "Input should" not in str(error)


# --------------------------------------------------------------------------- the settings step


def test_a_bad_setting_fails_the_host_at_the_settings_check_and_nothing_else_is_planned():
    planned = planned_commands(
        lambda settings: pytest.fail("no step may run"), {}, data={"scaphandre_port": "x"}
    )
    assert [name.split(" | ")[-1] for name in planned] == ["Check the settings"]
    [command] = all_commands(planned)
    assert command.startswith("call log_failure") and "scaphandre_port" in command


# --------------------------------------------------------------------------- one source: the model


def test_refusals_are_in_the_operators_words_never_pydantics():
    for key, value in [
        ("scaphandre_port", "http"),
        ("scaphandre_qemu", 1),
        ("rapl_modules", ["a b"]),
        ("prometheus_candidates", [("p.yml", "prometheus")]),
        ("discovery_host_data", [1]),
        ("energy_sync_timeout_s", float("inf")),
        ("prometheus_snippet_major_version", "3"),
    ]:
        message = problems(**{key: value})
        assert message.startswith(f"setting {key} is {value!r}, not "), message
        assert "Input should" not in message and "pydantic" not in message.lower(), message


@pytest.mark.parametrize(
    "key, value",
    [
        ("scaphandre_qemu", 1),
        ("scaphandre_qemu", "True"),
        ("scaphandre_port", 8080.0),
        ("scaphandre_port", "8080"),
        ("energy_sync_interval_s", "300"),
        ("energy_sync_timeout_s", "30"),
        ("energy_sync_timeout_s", False),
        ("prometheus_snippet_major_version", "2"),
        ("scaphandre_extra_docker_args", {"--foo"}),
    ],
)
def test_booleans_numbers_and_lists_are_strict(key, value):
    assert f"setting {key} is {value!r}, not " in problems(**{key: value})


def test_a_whole_number_given_to_a_number_setting_stays_whole():
    checked = Settings.from_data(
        with_defaults(energy_sync_host_max_power_w=7500.5, energy_sync_vm_max_power_w=3000)
    )
    assert checked.energy_sync_host_max_power_w == 7500.5
    assert type(checked.energy_sync_vm_max_power_w) is int, (
        "rendered files keep '3000', not '3000.0'"
    )


def test_every_setting_says_its_section_what_it_accepts_and_what_it_does_in_one_line():
    sections = {section.title for section in SECTIONS}
    for name, field in Settings.model_fields.items():
        assert field.json_schema_extra["section"] in sections, name
        assert accepted(name).phrase, name
        assert field.description and "\n" not in field.description, name
        if field.default is None:
            assert field.json_schema_extra.get("unset"), f"{name}: say what None means"


def test_the_defaults_pass_the_models_own_checks_and_are_fresh_copies():
    first, second = defaults(), defaults()
    assert list(first) == Settings.keys() and Settings.from_data(first) == Settings.from_data(
        second
    )
    first["discovery_host_data"]["ssh_key"] = "changed"
    assert defaults()["discovery_host_data"] == {}


def test_group_data_all_py_restates_no_default():
    tree = ast.parse((REPO / "group_data" / "all.py").read_text())
    assigned = {
        target.id
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign))
        for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
        if isinstance(target, ast.Name)
    }
    assert not assigned & set(Settings.keys()), (
        "group_data/all.py takes its defaults from tasks/settings.py"
    )


@pytest.mark.parametrize("where", ["above", "below"])
def test_an_assignment_in_group_data_all_py_wins_over_the_default(tmp_path, where):
    text = (REPO / "group_data" / "all.py").read_text()
    line = "_defaults_into(globals())"
    assert line in text
    override = 'scaphandre_port = 9100\nprometheus_job_name = "power"\n'
    text = text.replace(line, override + line) if where == "above" else text + override
    (tmp_path / "all.py").write_text(text)
    values = {
        k: v for k, v in runpy.run_path(str(tmp_path / "all.py")).items() if not k.startswith("_")
    }
    assert set(values) == set(Settings.keys())
    assert values["scaphandre_port"] == 9100 and values["prometheus_job_name"] == "power"
    assert values["scaphandre_container_name"] == "scaphandre"


def test_docs_settings_md_is_written_from_the_model():
    page = (REPO / "docs" / "settings.md").read_text()
    assert page == settings_markdown(), f"docs/settings.md is out of date: run `{REGENERATE}`"
    for name in Settings.keys():  # noqa: SIM118 - the model's own list of settings, not a dict
        assert f"| `{name}` |" in page


def test_readme_points_to_docs_settings_md_instead_of_a_table():
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Settings") :]
    section = section[: section.index("\n## ", 1)]
    assert "docs/settings.md" in section and not re.search(r"^\|", section, re.M)


def test_the_json_schema_has_every_setting_with_its_default_and_description():
    schema = json.loads(json.dumps(settings_json_schema()))
    assert list(schema["properties"]) == Settings.keys()
    for name, field in Settings.model_fields.items():
        described = schema["properties"][name]
        assert described["description"] == field.description
        assert described["default"] == json.loads(json.dumps(field.default)), name
    assert (
        schema["properties"]["scaphandre_port"] | {"minimum": 1, "maximum": 65535}
        == schema["properties"]["scaphandre_port"]
    )
