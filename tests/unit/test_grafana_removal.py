"""remove.py on a `grafana` host: the provider and the dashboard go, Grafana restarts only if the provider went."""

from tasks.grafana import remove_dashboard
from tests.unit.pyinfra_harness import planned_commands


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
