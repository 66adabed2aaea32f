#!/usr/bin/python3
"""TEST BED ONLY: systemd-modules-load for a simulated hypervisor.

systemd-modules-load uses libkmod, which cannot work on the test bed's kernel,
so this unit reads the same modules-load.d files (same precedence: a file name
in /etc hides the same name in /run and /usr/lib) and calls the modprobe shim.
A host therefore gets RAPL back after a restart only when a deploy persisted
the modules, as on real hardware.
"""

import os
import subprocess
import sys

SEARCH_DIRS = (
    "/etc/modules-load.d",
    "/run/modules-load.d",
    "/usr/local/lib/modules-load.d",
    "/usr/lib/modules-load.d",
    "/lib/modules-load.d",
)
MODPROBE = "/usr/local/sbin/modprobe"


def config_files() -> list[str]:
    """*.conf files in precedence order, one per file name, sorted by file name."""
    chosen: dict[str, str] = {}
    for directory in SEARCH_DIRS:
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            if name.endswith(".conf") and name not in chosen:
                chosen[name] = os.path.join(directory, name)
    return [chosen[name] for name in sorted(chosen)]


def modules_in(path: str) -> list[str]:
    """Module names listed in one file (comments with # or ; skipped)."""
    with open(path) as handle:
        lines = [line.strip() for line in handle]
    return [line.split()[0] for line in lines if line and line[0] not in "#;"]


def main() -> int:
    """Load every listed module; non-zero when any failed (like the real unit)."""
    status = 0
    for path in config_files():
        for module in modules_in(path):
            result = subprocess.run([MODPROBE, module], capture_output=True, text=True, check=False)
            if result.returncode == 0:
                print(f"Inserted module '{module}' (from {path})")
            else:
                print(
                    f"Failed to insert module '{module}': {result.stderr.strip()}", file=sys.stderr
                )
                status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
