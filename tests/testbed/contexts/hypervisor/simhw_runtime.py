#!/usr/bin/python3
"""TEST BED ONLY: OCI runtime wrapper that lets inner containers see the simulated hardware.

The inner Docker engine runs every container with this as its default runtime.
On `create`/`run` it edits the bundle's config.json, then execs the real runc:

* bind the test host's /sys/class (a tmpfs holding the simulated powercap
  tree) read-only over the container's fresh sysfs, right after the /sys mount,
  so `-v /sys/class/powercap:/sys/class/powercap` behaves as on a real host
  (it fails when RAPL is not exposed, works when it is);
* drop CAP_SYS_RESOURCE, which the sandbox running the test bed lacks, so
  `--privileged` containers start instead of failing "unable to apply caps"
  (also from the process spec of `docker exec`).
"""

import json
import os
import sys

RUNC = "/usr/bin/runc"
SYS_CLASS_MOUNT = {
    "destination": "/sys/class",
    "type": "bind",
    "source": "/sys/class",
    "options": ["rbind", "ro"],
}
MISSING_CAPABILITY = "CAP_SYS_RESOURCE"


def option_value(args: list[str], names: tuple[str, ...]) -> str | None:
    """The value of the first of names among runc's arguments (`--x V` or `--x=V`)."""
    for index, arg in enumerate(args):
        if arg in names and index + 1 < len(args):
            return args[index + 1]
        for name in names:
            if name.startswith("--") and arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def strip_capability(capabilities: dict) -> None:
    """Remove MISSING_CAPABILITY from every list of an OCI capabilities object."""
    for kind, names in capabilities.items():
        if isinstance(names, list):
            capabilities[kind] = [name for name in names if name != MISSING_CAPABILITY]


def rewrite_json(path: str, patch) -> None:
    """Load a JSON file, apply patch (which edits it in place) and write it back."""
    with open(path) as handle:
        document = json.load(handle)
    patch(document)
    with open(path, "w") as handle:
        json.dump(document, handle)


def patch_config(config: dict) -> dict:
    """config with /sys/class bound after /sys and CAP_SYS_RESOURCE removed everywhere."""
    mounts = config.get("mounts", [])
    if not any(m.get("destination") == "/sys/class" for m in mounts):
        positions = [i for i, m in enumerate(mounts) if m.get("destination") == "/sys"]
        if positions:
            mounts.insert(positions[0] + 1, dict(SYS_CLASS_MOUNT))
    strip_capability(config.get("process", {}).get("capabilities", {}))
    return config


def main(args: list[str]) -> None:
    """Patch the bundle (create/run) or the process spec (exec), then become runc."""
    if "create" in args or "run" in args:
        bundle = option_value(args, ("--bundle", "-b")) or os.getcwd()
        rewrite_json(os.path.join(bundle, "config.json"), patch_config)
    elif "exec" in args and (process := option_value(args, ("--process", "-p"))):
        rewrite_json(process, lambda spec: strip_capability(spec.get("capabilities", {})))
    os.execv(RUNC, [RUNC, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
