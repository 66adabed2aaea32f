"""Which kernel modules expose RAPL on a hypervisor, as plain functions of its facts.

Nothing here touches pyinfra: the RAPL step reads the facts and turns these
answers into operations; the unit tests call them with the facts a Debian,
Ubuntu or AlmaLinux host reports.
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from tasks.host_failure import UnsupportedHostError

if TYPE_CHECKING:
    from tasks.host_state.parse import FileState

RAPL_ZONE = "/sys/class/powercap/intel-rapl:0"
MODULES_LOAD_FILE = "/etc/modules-load.d/scaphandre-rapl.conf"
MODULES_LOAD_MODE = "644"

# Split out of intel_rapl in kernel 5.x; AMD support landed in intel_rapl_msr in 5.11.
RAPL_MODULES_SPLIT = ["intel_rapl_common", "intel_rapl_msr"]
RAPL_MODULE_LEGACY = ["intel_rapl"]

INTEL_VENDORS = {"GenuineIntel"}
AMD_VENDORS = {"AuthenticAMD", "HygonGenuine"}


def kernel_version(release: str) -> tuple[int, int]:
    """(major, minor) of a `uname -r` string such as '5.15.0-91-generic'."""
    match = re.match(r"\s*(\d+)\.(\d+)", release or "")
    if not match:
        raise UnsupportedHostError(f"cannot read a kernel version from uname -r output {release!r}")
    return int(match.group(1)), int(match.group(2))


def rapl_modules(cpu_vendor: str, kernel_release: str) -> list[str]:
    """The kernel modules that expose RAPL under /sys/class/powercap on this CPU and kernel."""
    kernel = kernel_version(kernel_release)
    vendor = (cpu_vendor or "").strip()
    if vendor in INTEL_VENDORS:
        return list(RAPL_MODULES_SPLIT) if kernel >= (5, 0) else list(RAPL_MODULE_LEGACY)
    if vendor in AMD_VENDORS:
        if kernel < (5, 11):
            raise UnsupportedHostError(
                f"AMD CPU with kernel {kernel_release.strip()}: RAPL on AMD needs kernel 5.11 or newer; "
                "upgrade the kernel (or set rapl_modules if your vendor kernel backports it)"
            )
        return list(RAPL_MODULES_SPLIT)
    raise UnsupportedHostError(
        f"CPU vendor {vendor or 'unknown'!r} has no RAPL support known to this deploy "
        "(Intel and AMD only); set rapl_modules to override"
    )


def rapl_missing_message(distro_name: str | None) -> str:
    """What to tell the operator when the modules loaded but RAPL is still not exposed."""
    hint = "not bare metal (a VM does not expose RAPL), RAPL disabled in the firmware, or a CPU without RAPL"
    if (distro_name or "").lower() == "ubuntu":
        hint += "; on Ubuntu the modules live in linux-modules-extra-$(uname -r), install it"
    return f"RAPL is not exposed under {RAPL_ZONE} after loading the modules. Likely cause: {hint}"


def file_holds(found: FileState | None, text: str, mode: str) -> bool:
    """Whether a small file the deploy writes whole (`found`: tasks/host_state's FileState, None
    when not read) is a regular file holding exactly `text` with `mode`: what files.put, given
    that text and mode and no owner, would leave as it is."""
    return (
        found is not None
        and found.state == "file"
        and found.mode is not None
        and found.mode.isdigit()
        and int(found.mode) == int(mode)
        and found.sha256 == hashlib.sha256(text.encode()).hexdigest()
    )
