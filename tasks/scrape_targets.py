"""Which hypervisors the Prometheus job lists, as a plain function of what is known.

Every hypervisor of the inventory is listed, including those outside this run's
--limit or down right now: Prometheus then shows them down instead of forgetting them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tasks.prometheus_config import ScrapeTarget


def assemble_targets(
    resolved: Mapping[str, ScrapeTarget],
    unresolved: Mapping[str, str],
    previous: Sequence[ScrapeTarget],
) -> tuple[list[ScrapeTarget], list[str]]:
    """The targets to write, and one warning per hypervisor left out.

    `resolved` maps inventory names to targets whose OpenNebula ID is known.
    `unresolved` maps the other inventory names to their scrape address
    (host:port); such a host keeps the entry the targets file already had for
    that address, so a --limit run never drops a host it could not look up.
    """
    previous_by_address = {target.address: target for target in previous}
    targets = list(resolved.values())
    warnings = []
    for name, address in sorted(unresolved.items()):
        kept = previous_by_address.get(address)
        if kept is not None:
            targets.append(kept)
        else:
            warnings.append(
                f"{name} ({address}) left out of the scrape targets: its OpenNebula ID is unknown; "
                "set one_host_id for it or include it in the run"
            )
    return targets, warnings
