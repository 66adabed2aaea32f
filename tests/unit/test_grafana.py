"""The Grafana step (tasks/grafana.py): the dashboard and its provider installed or removed,
Grafana restarted only when the provider changed, as pyinfra's API plans it."""

from tasks import grafana
from tasks.grafana import provision_dashboard, remove_dashboard
from tests.unit.pyinfra_harness import (
    all_commands,
    planned_command_objects,
    planned_commands,
    uploaded_text,
)


def test_the_dashboard_and_provider_go_where_the_settings_say():
    data = {"grafana_dashboards_dir": "/srv/dash", "grafana_provisioning_dir": "/srv/prov"}
    planned = planned_commands(
        provision_dashboard,
        {"File": None, "Directory": None},
        data=data,
        groups=("grafana",),
        name="graf1",
    )
    commands = all_commands(planned)
    assert "upload /srv/dash/scaphandre-opennebula.json" in commands
    assert "upload /srv/prov/scaphandre-opennebula.yml" in commands
    restart = next(cs for name, cs in planned.items() if "Restart grafana-server" in name)
    assert "systemctl try-restart grafana-server" in restart[0]


def test_a_relative_directory_fails_the_host_naming_the_setting():
    planned = planned_commands(
        provision_dashboard,
        {},
        data={"grafana_dashboards_dir": "dash"},
        groups=("grafana",),
        name="graf1",
    )
    commands = all_commands(planned)
    assert (
        len(commands) == 1
        and "grafana_dashboards_dir" in commands[0]
        and "absolute path" in commands[0]
    )


def test_the_restart_command_leaves_a_stopped_grafana_stopped_and_quotes_the_unit():
    command = grafana._restart_command("grafana-server")
    assert "systemctl try-restart grafana-server" in command, "a stopped Grafana stays stopped"
    assert "systemctl cat 'x; rm -rf /'" in grafana._restart_command("x; rm -rf /"), (
        "the unit name is quoted"
    )


def test_provider_and_dashboard_are_removed_and_grafana_restarted_conditionally():
    facts = {"File": {"mode": 644, "size": 10}}
    planned = planned_commands(remove_dashboard, facts, groups=("grafana",), name="graf1")
    removed = [c for cs in planned.values() for c in cs if c.startswith("rm -f")]
    assert "rm -f /etc/grafana/provisioning/dashboards/scaphandre-opennebula.yml" in removed
    assert "rm -f /var/lib/grafana/dashboards/opennebula/scaphandre-opennebula.json" in removed
    restart = next(cs for name, cs in planned.items() if "Restart grafana-server" in name)
    assert "systemctl try-restart grafana-server" in restart[0]


def test_nothing_is_removed_when_nothing_is_there():
    planned = planned_commands(remove_dashboard, {"File": None}, groups=("grafana",), name="graf1")
    assert not [c for name, cs in planned.items() if "Restart" not in name for c in cs]


def dashboard_uploaded(carbon_shown: bool) -> str | None:
    """What the plan uploads as the dashboard: computed text, or None for the shipped file itself."""
    planned = planned_command_objects(
        lambda settings: provision_dashboard(settings, carbon_shown=carbon_shown),
        {"File": None, "Directory": None},
        None,
        ("grafana",),
        "graf1",
    )
    [upload] = [
        c for cs in planned.values() for c in cs if getattr(c, "dest", "").endswith(".json")
    ]
    return uploaded_text(upload)


def test_the_dashboard_shows_emissions_only_where_some_hypervisor_has_a_carbon_intensity():
    assert dashboard_uploaded(carbon_shown=True) is None, "the shipped file as it is"
    stripped = dashboard_uploaded(carbon_shown=False)
    assert (
        stripped is not None
        and "emissions_gco2e" not in stripped
        and "attributed_power_watts" in stripped
    )
