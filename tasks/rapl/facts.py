"""What the RAPL step reads on a hypervisor."""

from __future__ import annotations

from pyinfra.api import FactBase


class CpuVendor(FactBase):
    """The CPU vendor string from /proc/cpuinfo, e.g. ``GenuineIntel`` or ``AuthenticAMD``."""

    def command(self) -> str:
        return "grep -m1 '^vendor_id' /proc/cpuinfo || true"

    def process(self, output) -> str:
        line = "".join(output)
        return line.split(":", 1)[1].strip() if ":" in line else ""


class RaplExposed(FactBase):
    """Whether RAPL is exposed under /sys/class/powercap (what Scaphandre reads), loaded modules or not."""

    def command(self) -> str:
        return "test -e /sys/class/powercap/intel-rapl:0 && echo yes || echo no"

    def process(self, output) -> bool:
        return "".join(output).strip() == "yes"
