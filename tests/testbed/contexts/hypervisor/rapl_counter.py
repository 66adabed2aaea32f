#!/usr/bin/python3
"""TEST BED ONLY: advances the simulated RAPL energy counters of a test hypervisor.

While /sys/class/powercap/intel-rapl:N[:M] zones exist (made by the modprobe
shim), their energy_uj grows like a real counter: the package draws a steady
power chosen from the host name (20-50 W) with a little noise, the core and
dram domains a share of it, and every counter wraps at max_energy_range_uj.
"""

import math
import os
import random
import re
import socket
import time
import zlib

POWERCAP = "/sys/class/powercap"
TICK_S = 0.5
ZONE_RE = re.compile(r"^intel-rapl:\d+(:\d+)?$")
DOMAIN_SHARE = {"core": 0.55, "uncore": 0.05, "dram": 0.12}


def read_int(path: str) -> int:
    """An integer attribute file."""
    with open(path) as handle:
        return int(handle.read().strip())


def write_atomically(path: str, value: int) -> None:
    """Replace an attribute file so readers never see a half-written number."""
    temporary = path + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(f"{value}\n")
    os.replace(temporary, path)


def zone_watts(name: str, package_watts: float) -> float:
    """Power of a zone given the package's power."""
    if name.startswith(("package", "psys")):
        return package_watts
    return package_watts * DOMAIN_SHARE.get(name, 0.1)


def package_watts(base: float, now: float, rng: random.Random) -> float:
    """Package power: a base, a slow swing and noise, like an idle-ish server."""
    return base + 4.0 * math.sin(now / 30.0) + rng.uniform(-1.5, 1.5)


def advance(zone_dir: str, watts: float, seconds: float) -> None:
    """Add watts*seconds to a zone's counter, wrapping like the hardware."""
    energy_path = os.path.join(zone_dir, "energy_uj")
    maximum = read_int(os.path.join(zone_dir, "max_energy_range_uj"))
    value = read_int(energy_path) + int(watts * seconds * 1_000_000)
    write_atomically(energy_path, value % (maximum + 1))


def tick(base: float, seconds: float, rng: random.Random) -> None:
    """Advance every zone present now; a tree being created or removed is skipped."""
    try:
        entries = os.listdir(POWERCAP)
    except FileNotFoundError:
        return
    watts = package_watts(base, time.time(), rng)
    for entry in entries:
        zone_dir = os.path.join(POWERCAP, entry)
        if not ZONE_RE.match(entry):
            continue
        try:
            with open(os.path.join(zone_dir, "name")) as handle:
                name = handle.read().strip()
            advance(zone_dir, zone_watts(name, watts), seconds)
        except (FileNotFoundError, ValueError):
            continue


def main() -> None:
    """Tick forever (systemd stops it)."""
    base = 20.0 + zlib.crc32(socket.gethostname().encode()) % 31
    rng = random.Random()
    last = time.monotonic()
    while True:
        time.sleep(TICK_S)
        now = time.monotonic()
        tick(base, now - last, rng)
        last = now


if __name__ == "__main__":
    main()
