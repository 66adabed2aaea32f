"""The OpenNebula power dashboard, provisioned into Grafana on hosts of the `grafana` group."""

from __future__ import annotations

import copy
import json
import posixpath
import shlex
from io import StringIO
from pathlib import Path
from typing import Any

from pyinfra.api import deploy
from pyinfra.operations import files, server

from tasks.settings import Settings

GRAFANA_FILES = Path(__file__).resolve().parents[1] / "files" / "grafana"
DASHBOARD = GRAFANA_FILES / "scaphandre-opennebula.json"
PROVIDER_TEMPLATE = GRAFANA_FILES / "provisioning-dashboards.yml"
PROVIDER_FILE_NAME = "scaphandre-opennebula.yml"

# What the dashboard's carbon queries read: recorded only for hosts with a carbon intensity.
CARBON_SERIES = ("one_vm:emissions_gco2e", "one_host:emissions_gco2e")


def dashboard_without_carbon(dashboard: dict[str, Any]) -> dict[str, Any]:
    """The dashboard with nothing about carbon: every query of emissions taken out, with
    the table columns it fed, and every panel left without a query."""
    dashboard = copy.deepcopy(dashboard)
    kept_panels = []
    for panel in dashboard["panels"]:
        carbon = [t for t in panel.get("targets", []) if any(s in t["expr"] for s in CARBON_SERIES)]
        if not carbon:
            kept_panels.append(panel)
            continue
        panel["targets"] = [t for t in panel["targets"] if t not in carbon]
        if not panel["targets"]:
            continue
        fields = {f"Value #{t['refId']}" for t in carbon}
        columns = set(fields)
        for transformation in panel.get("transformations", []):
            options = transformation.get("options", {})
            columns |= {options.get("renameByName", {}).get(name) for name in fields} - {None}
            for key in ("renameByName", "indexByName"):
                for name in fields:
                    options.get(key, {}).pop(name, None)
        overrides = panel.get("fieldConfig", {}).get("overrides", [])
        overrides[:] = [o for o in overrides if o.get("matcher", {}).get("options") not in columns]
        kept_panels.append(panel)
    dashboard["panels"] = kept_panels
    return dashboard


def _restart_command(service: str) -> str:
    """Restart Grafana only where it runs as this systemd unit; say so otherwise.

    `try-restart` leaves a stopped Grafana stopped (it reads the provider when it
    starts); a Grafana that is not this unit (a container, another name) is left
    to the operator, with a message rather than a failure.
    """
    unit = shlex.quote(service)
    advice = shlex.quote(
        f"No systemd unit {service}: restart Grafana yourself so it reads the new dashboard provider"
    )
    return (
        f"if systemctl cat {unit} >/dev/null 2>&1; then systemctl try-restart {unit}; "
        f"else echo {advice} >&2; fi"
    )


@deploy("Grafana dashboard")
def provision_dashboard(settings: Settings, carbon_shown: bool = False) -> None:
    """Guarantees Grafana on this host shows the OpenNebula power dashboard, with its
    emissions queries only when `carbon_shown` (some hypervisor has a carbon intensity).

    The dashboard JSON goes to `grafana_dashboards_dir` and a dashboard provider
    pointing at it (folder `grafana_dashboard_folder`) to `grafana_provisioning_dir`.
    The dashboard picks its Prometheus through its own data source variable, so
    any Prometheus data source of this Grafana works.

    No restart when only the dashboard changes: Grafana re-reads the dashboard
    files of a provider by itself every updateIntervalSeconds (30 s). It reads
    provider files only when it starts, though, so Grafana is restarted (if it
    runs as the `grafana_service` systemd unit) when the provider file is new
    or changed: on the first run, or after the directory or folder setting
    changed. Nothing is restarted on a rerun with nothing changed.
    """
    provisioning_dir = settings.grafana_provisioning_dir
    dashboards_dir = settings.grafana_dashboards_dir
    folder = settings.grafana_dashboard_folder
    service = settings.grafana_service

    # Grafana (its own user) only reads these: root-owned, world-readable.
    files.directory(name="Directory for the OpenNebula dashboards", path=dashboards_dir, mode="755")
    dashboard = (
        str(DASHBOARD)
        if carbon_shown
        else StringIO(
            json.dumps(dashboard_without_carbon(json.loads(DASHBOARD.read_text())), indent=2) + "\n"
        )
    )
    files.put(
        name="Install the OpenNebula power dashboard",
        src=dashboard,
        dest=posixpath.join(dashboards_dir, DASHBOARD.name),
        mode="644",
    )
    files.directory(
        name="Grafana dashboard provisioning directory", path=provisioning_dir, mode="755"
    )
    provider = files.template(
        name="Install the dashboard provider",
        src=str(PROVIDER_TEMPLATE),
        dest=posixpath.join(provisioning_dir, PROVIDER_FILE_NAME),
        mode="644",
        grafana_dashboards_dir=dashboards_dir,
        grafana_dashboard_folder=folder,
    )
    server.shell(
        name=f"Restart {service} so it reads the new dashboard provider",
        commands=[_restart_command(service)],
        _if=provider.did_change,
    )


@deploy("Remove the Grafana dashboard")
def remove_dashboard(settings: Settings) -> None:
    """Guarantees the dashboard provider and the dashboard JSON are gone from this host.

    Grafana keeps showing a provisioned dashboard whose provider vanished until it
    restarts; it is restarted (if it runs as `grafana_service`) only when the provider
    was actually removed.
    """
    provisioning_dir = settings.grafana_provisioning_dir
    dashboards_dir = settings.grafana_dashboards_dir
    service = settings.grafana_service
    provider = files.file(
        name="Remove the dashboard provider",
        path=posixpath.join(provisioning_dir, PROVIDER_FILE_NAME),
        present=False,
    )
    files.file(
        name="Remove the OpenNebula power dashboard",
        path=posixpath.join(dashboards_dir, DASHBOARD.name),
        present=False,
    )
    server.shell(
        name=f"Restart {service} so it drops the dashboard",
        commands=[_restart_command(service)],
        _if=provider.did_change,
    )
