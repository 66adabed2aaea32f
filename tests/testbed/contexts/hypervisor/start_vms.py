#!/usr/bin/python3
"""TEST BED ONLY: starts this simulated hypervisor's 'VMs' and waits on them.

/etc/testbed/vms (written by the test bed per host) lists one VM per line:
`<VM ID> <program>`, e.g. `101 /usr/bin/qemu-system-x86_64` or
`102 /usr/bin/qemu-kvm-one`. Each runs the QEMU stand-in with the command line
OpenNebula gives a guest, so /proc/PID/cmdline is what Scaphandre would see.
"""

import os
import subprocess
import sys
import time

VMS_FILE = "/etc/testbed/vms"


def vm_argv(vm_id: str, program: str) -> list[str]:
    """The command line of OpenNebula guest one-<vm_id>."""
    return [program, "-name", f"guest=one-{vm_id},debug-threads=on", "-machine", "pc"]


def read_vms(path: str = VMS_FILE) -> list[tuple[str, str]]:
    """(vm_id, program) pairs; none when the file is absent."""
    if not os.path.exists(path):
        return []
    pairs = []
    with open(path) as handle:
        for line in handle:
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                pairs.append((fields[0], fields[1]))
    return pairs


def main() -> int:
    """Start every VM; exit non-zero (systemd restarts us) when one of them dies."""
    children = [subprocess.Popen(vm_argv(vm_id, program)) for vm_id, program in read_vms()]
    print(f"started {len(children)} simulated VM(s)", flush=True)
    while True:
        for child in children:
            if child.poll() is not None:
                print(f"VM process {child.args[2]} exited with {child.returncode}", file=sys.stderr)
                return 1
        time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
