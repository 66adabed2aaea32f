"""RAPL: the kernel modules loaded now and at every boot, and the counters visible.

plan.py chooses the modules, facts.py and operations.py read and check the host.
"""

from __future__ import annotations

from pathlib import Path

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.server import LinuxDistribution
from pyinfra.operations import files, server

from tasks.host_failure import UnsupportedHostError, fail_host
from tasks.rapl.facts import RaplProbe
from tasks.rapl.operations import rapl_exposed
from tasks.rapl.plan import MODULES_LOAD_FILE, rapl_missing_message, rapl_modules
from tasks.settings import Settings

TEMPLATE = Path(__file__).resolve().parents[2] / "files" / "modules-load.d" / "scaphandre-rapl.conf.j2"


@deploy("Enable RAPL")
def enable_rapl(settings: Settings) -> None:
    """Guarantees the RAPL modules are loaded now unless RAPL is already exposed, RAPL visible
    under /sys/class/powercap, and only then the modules listed in /etc/modules-load.d (so they
    load at boot). A host where RAPL stays hidden fails with the likely cause, and nothing persisted."""
    found = host.get_fact(RaplProbe)
    modules = settings.rapl_modules
    if not modules:
        try:
            modules = rapl_modules(found.vendor, found.kernel)
        except UnsupportedHostError as error:
            fail_host(name="Check RAPL support", reason=str(error))
            return

    # Judged by what Scaphandre reads, not by /proc/modules: built-in drivers list no module.
    if not found.exposed:
        server.modprobe(name="Load RAPL modules", module=list(modules))
        rapl_exposed(
            name="Check RAPL is exposed",
            failure_message=rapl_missing_message(host.get_fact(LinuxDistribution).get("name")),
        )
    # Persisted only once they proved to expose RAPL: a failed host keeps no boot-time change.
    files.template(
        name="Persist RAPL modules in modules-load.d",
        src=str(TEMPLATE),
        dest=MODULES_LOAD_FILE,
        modules=list(modules),
        mode="644",
    )


@deploy("Forget the RAPL modules")
def forget_rapl_modules() -> None:
    """Guarantees the modules-load file is gone. The modules stay loaded until the next boot:
    unloading them could disturb other RAPL readers."""
    files.file(name="Remove the RAPL modules-load file", path=MODULES_LOAD_FILE, present=False)
