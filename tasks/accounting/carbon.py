"""Carbon intensity per OpenNebula host, and the recording rules that give it to Prometheus.

An intensity (gCO2e/kWh) is a number, or the selector of a series the operator already
has in Prometheus (an hourly feed, e.g. ``grid_intensity{zone="FR"}``). A hypervisor's
comes from its own ``carbon_intensity`` (host or group data), else from
``carbon_intensity_clusters`` by its OpenNebula cluster NAME, then ID. The rules record
``one_host:carbon_intensity_gco2e_per_kwh{one_host_id="N"}``; the shipped rules multiply it
with the power. No intensity anywhere: no rule at all, and nothing about carbon recorded.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

Intensity = float | str  # gCO2e/kWh, or the selector of a series holding it

INTENSITY_RECORD = "one_host:carbon_intensity_gco2e_per_kwh"
INTENSITY_GROUP = "scaphandre-opennebula-carbon-intensity"


def host_intensity(
    own: Intensity | None,
    per_cluster: Mapping[int | str, Intensity],
    cluster_name: str | None,
    cluster_id: int | None,
) -> Intensity | None:
    """The hypervisor's intensity: its own setting, else its cluster's (by NAME, then ID)."""
    if own is not None:
        return own
    if cluster_name is not None and cluster_name in per_cluster:
        return per_cluster[cluster_name]
    if cluster_id is not None and cluster_id in per_cluster:
        return per_cluster[cluster_id]
    return None


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON's string syntax is a subset of it)."""
    return json.dumps(text)


def _expression(intensity: Intensity, max_age: str) -> str:
    if isinstance(intensity, str):
        # A feed's value counts until max_age after its sample, then the host has no
        # intensity (a gap in its emissions) rather than an old one.
        return f"max(last_over_time({intensity}[{max_age}]))"
    return f"vector({intensity!r})"


def intensity_rules(intensities: Mapping[int, Intensity], max_age: str) -> str:
    """The rule group recording each host's intensity, as lines to append under the rules
    file's ``groups:`` (each group item indented by two spaces); "" when there is none.

    Once a minute, like the attribution group that reads it.
    """
    if not intensities:
        return ""
    lines = [
        "",
        "  # Carbon intensity per OpenNebula host (gCO2e/kWh), from the deploy's carbon_intensity",
        "  # settings: a number, or the newest value of the named series (no older than",
        f"  # carbon_intensity_max_age, {max_age}).",
        f"  - name: {INTENSITY_GROUP}",
        "    interval: 1m",
        "    rules:",
    ]
    for host_id in sorted(intensities):
        lines += [
            f"      - record: {INTENSITY_RECORD}",
            f"        expr: {_quoted(_expression(intensities[host_id], max_age))}",
            "        labels:",
            f"          one_host_id: {_quoted(str(host_id))}",
        ]
    return "\n".join(lines) + "\n"
