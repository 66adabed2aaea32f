"""Image build helper: copy into DEST only the Python runtime the test double needs.

Run in the builder stage with the interpreter that will ship. It imports the
double (which imports every stdlib module it uses at the top), then copies the
interpreter, each imported stdlib file and every shared library they link to,
keeping their paths, so DEST can be the root of a FROM-scratch image.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

DOUBLE_DIR = os.path.dirname(os.path.abspath(__file__))
# Modules the interpreter may import lazily while reporting an unexpected error.
ALSO_NEEDED = (
    "traceback",
    "linecache",
    "tokenize",
    "token",
    "encodings.idna",
    "encodings.latin_1",
    "encodings.ascii",
)
# Optional imports of the stdlib (guarded by try/except ImportError) that would
# pull in OpenSSL and compression libraries the double never uses: ~6 MB saved.
LEFT_OUT = ("ssl", "_ssl", "lzma", "_lzma", "bz2", "_bz2")


def write_file(path: str, content: bytes) -> None:
    """Create path (and its parents) holding content."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(content)


def fake_host(work_dir: str) -> tuple[str, str]:
    """A tiny RAPL tree and /proc (one simulated VM) under work_dir: (powercap, proc) roots.

    The build has no /proc in the chroot and no RAPL anywhere, so both are faked.
    """
    powercap, proc = os.path.join(work_dir, "powercap"), os.path.join(work_dir, "proc")
    for zone, name in (("intel-rapl:0", "package-0"), ("intel-rapl:0:0", "core")):
        write_file(os.path.join(powercap, zone, "name"), name.encode() + b"\n")
        write_file(os.path.join(powercap, zone, "energy_uj"), b"1000\n")
        write_file(os.path.join(powercap, zone, "max_energy_range_uj"), b"262143328850\n")
    write_file(os.path.join(proc, "stat"), b"cpu  10 0 10 100 0 0 0 0 0 0\n")
    write_file(
        os.path.join(proc, "4242", "stat"),
        b"4242 (qemu-system-x86) S 1 1 1 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 0 0 0\n",
    )
    write_file(
        os.path.join(proc, "4242", "cmdline"),
        b"/usr/bin/qemu-system-x86_64\0-name\0guest=one-7,debug-threads=on\0",
    )
    return powercap, proc


def exercise_double(work_dir: str) -> None:
    """Render /metrics once from a fake host, so lazy imports happen too; fail if it is wrong."""
    sys.path.insert(0, DOUBLE_DIR)
    import scaphandre_double as double

    powercap, proc = fake_host(work_dir)
    double.check_powercap(powercap)
    text = double.Exporter(
        qemu=True, containers=False, powercap_root=powercap, proc_root=proc
    ).render()
    if "scaph_host_power_microwatts" not in text or 'vmname="one-7"' not in text:
        raise SystemExit("the double rendered wrong metrics:\n" + text)


def copy_keeping_path(path: str, dest_root: str) -> None:
    """Copy a file (resolving symlinks) to the same absolute path under dest_root."""
    target = os.path.join(dest_root, path.lstrip("/"))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.copy2(os.path.realpath(path), target)


def imported_files() -> set[str]:
    """Files of every module imported by the double, plus the startup landmark os.py."""
    import importlib

    for name in LEFT_OUT:
        sys.modules[name] = None  # makes `import name` raise ImportError, as in the image
    exercise_double("/tmp/collect-runtime")
    for name in ALSO_NEEDED:
        importlib.import_module(name)
    stdlib = sysconfig.get_paths()["stdlib"]
    files = {os.path.join(stdlib, "os.py")}
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and path.startswith(stdlib) and os.path.exists(path):
            files.add(path)
    return files


def linked_libraries(binaries: list[str]) -> set[str]:
    """Shared libraries (with the loader) that ldd reports for the given binaries."""
    libs = set()
    for binary in binaries:
        out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=False).stdout
        for line in out.splitlines():
            for token in line.split():
                if token.startswith("/") and os.path.exists(token):
                    libs.add(token)
    return libs


def main(dest_root: str) -> None:
    """Fill dest_root with the interpreter, its needed stdlib files and libraries."""
    interpreter = os.path.realpath(sys.executable)
    files = imported_files()
    extensions = [path for path in files if path.endswith(".so")]
    for path in sorted(files | linked_libraries([interpreter, *extensions]) | {interpreter}):
        copy_keeping_path(path, dest_root)
    # getpath looks for lib-dynload to settle exec_prefix, even when it is empty.
    os.makedirs(
        os.path.join(dest_root, sysconfig.get_paths()["platstdlib"].lstrip("/"), "lib-dynload"),
        exist_ok=True,
    )
    os.symlink(os.path.basename(interpreter), os.path.join(dest_root, "usr/bin/python3"))
    print(f"runtime: {len(files)} stdlib files, interpreter {interpreter}")


if __name__ == "__main__":
    if sys.argv[1] == "--verify":  # run inside the finished runtime: it must work alone
        exercise_double("/tmp/verify-runtime")
        print("runtime verified")
    else:
        main(sys.argv[1])
