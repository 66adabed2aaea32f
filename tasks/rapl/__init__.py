"""RAPL: the kernel modules loaded now and at every boot, and the counters visible.

plan.py chooses the modules, facts.py and operations.py read and check the host.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.util import get_template
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files, server

from tasks.host_failure import UnsupportedHostError, fail_host
from tasks.rapl.facts import RaplProbe
from tasks.rapl.operations import rapl_exposed
from tasks.rapl.plan import (
    MODULES_LOAD_FILE,
    MODULES_LOAD_MODE,
    file_holds,
    rapl_missing_message,
    rapl_modules,
)
from tasks.settings import Settings

if TYPE_CHECKING:  # tasks.host_state reads this package's facts
    from tasks.host_state import HypervisorFound

TEMPLATE = (
    Path(__file__).resolve().parents[2] / "files" / "modules-load.d" / "scaphandre-rapl.conf.j2"
)


def modules_load_text(modules: list[str]) -> str:
    """The modules-load file for `modules`, rendered as files.template renders it."""
    return get_template(str(TEMPLATE)).render({"modules": modules})


@deploy("Enable RAPL")
def enable_rapl(settings: Settings, found: HypervisorFound) -> None:
    """Guarantees the RAPL modules are loaded now unless RAPL is already exposed, RAPL visible
    under /sys/class/powercap, and only then the modules listed in /etc/modules-load.d (so they
    load at boot). A host where RAPL stays hidden fails with the likely cause, and nothing
    persisted.

    Decided from `found` (tasks/host_state): RAPL already exposed and the file already
    listing the modules plans nothing."""
    probe = found.rapl if found.rapl is not None else host.get_fact(RaplProbe)  # None: not reported
    modules: Sequence[str] | None = settings.rapl_modules
    if not modules:
        try:
            modules = rapl_modules(probe.vendor, probe.kernel)
        except UnsupportedHostError as error:
            fail_host(name="Check RAPL support", reason=str(error))
            return

    # Judged by what Scaphandre reads, not by /proc/modules: built-in drivers list no module.
    if not probe.exposed:
        server.modprobe(
            name="Load RAPL modules",
            # pyinfra's modprobe takes a list of modules too (it loads them with one
            # `modprobe -a`), though its hint names only a str.
            module=list(modules),  # type: ignore[arg-type]
        )
        rapl_exposed(
            name="Check RAPL is exposed",
            failure_message=rapl_missing_message(host.get_fact(LinuxDistribution).get("name")),
        )
    elif file_holds(found.modules_load, modules_load_text(list(modules)), MODULES_LOAD_MODE):
        host.noop(f"RAPL is exposed and {MODULES_LOAD_FILE} lists {' '.join(modules)}")
        return
    # Persisted only once they proved to expose RAPL: a failed host keeps no boot-time change.
    files.template(
        name="Persist RAPL modules in modules-load.d",
        src=str(TEMPLATE),
        dest=MODULES_LOAD_FILE,
        modules=list(modules),
        mode=MODULES_LOAD_MODE,
    )


@deploy("Forget the RAPL modules")
def forget_rapl_modules() -> None:
    """Guarantees the modules-load file is gone. The modules stay loaded until the next boot:
    unloading them could disturb other RAPL readers."""
    files.file(name="Remove the RAPL modules-load file", path=MODULES_LOAD_FILE, present=False)
