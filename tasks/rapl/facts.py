"""What the RAPL step reads on a hypervisor."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyinfra.api import FactBase

# What Scaphandre reads: present once RAPL is exposed, whether by modules or built-in drivers.
RAPL_ZONE = "/sys/class/powercap/intel-rapl:0"


@dataclass(frozen=True)
class RaplHost:
    vendor: str  # /proc/cpuinfo's vendor_id, e.g. GenuineIntel or AuthenticAMD; "" when absent
    kernel: str  # `uname -r`
    exposed: bool  # RAPL_ZONE exists


class RaplProbe(FactBase[RaplHost]):
    """CPU vendor, kernel release and whether RAPL is exposed: everything the RAPL step decides
    on, read in one round trip (every run reads it, so it is one fact, not three)."""

    def command(self) -> str:
        return (
            "grep -m1 '^vendor_id' /proc/cpuinfo || true; echo \"kernel=$(uname -r)\"; "
            f"test -e {RAPL_ZONE} && echo exposed=yes || echo exposed=no"
        )

    def process(self, output: Iterable[str]) -> RaplHost:
        vendor, kernel, exposed = "", "", False
        for line in output:
            key, separator, value = line.partition(":" if line.startswith("vendor_id") else "=")
            if not separator:
                continue
            if key.strip() == "vendor_id":
                vendor = value.strip()
            elif key == "kernel":
                kernel = value.strip()
            elif key == "exposed":
                exposed = value.strip() == "yes"
        return RaplHost(vendor, kernel, exposed)
