"""No-op rerun of two revisions of the product, interleaved (run by hand, never by CI).

    .venv/bin/python bench/paired_rerun.py --base aaaac4a [--rev HEAD] [--sizes 1,8] [--runs 10]

Each revision is exported, byte-compiled and deployed once on a bed of its own (same
size, same simulated OpenNebula pool, both beds up at once); then their no-op reruns
alternate, one pair at a time, the order swapped every pair (A B, B A, A B ...). A change
in the machine's speed during the measurement so falls on both alike, which measuring one
revision after the other (run_bench.py --rev) cannot promise on a shared machine.

Reported per size: median wall and CPU seconds of each revision, and the median of the
per-pair ratios rev/base (below 1.00: the revision is faster). Every rerun must succeed,
change nothing and not print the OpenNebula password.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.run_bench import (  # noqa: E402 (the repository goes on sys.path first)
    ONE_USER,
    TimedRun,
    check_run,
    export_product,
    format_seconds,
    host_names,
    load_average,
    machine_description,
    markdown_table,
    median,
    parse_sizes,
    run_pyinfra_timed,
    simulated_pool,
)
from tests.e2e.cloud import bed_port, bed_prefix  # noqa: E402

STATE_DIR = REPO / ".testbed" / bed_prefix("sotb-pair")
# Two beds side by side, apart from the other benchmark's and the tests' ports (both moved by
# SOTB_BED_SUFFIX and SOTB_PORT_OFFSET, as the tests' beds are).
BEDS = {
    "base": (bed_prefix("sotb-pair-base"), bed_port(3201), bed_port(9221)),
    "rev": (bed_prefix("sotb-pair-rev"), bed_port(3301), bed_port(9222)),
}


def pair_ratios(revision: Sequence[float], base: Sequence[float]) -> list[float]:
    """revision[i] / base[i] for each pair i; the pairs must match one to one."""
    if len(revision) != len(base) or not base:
        raise ValueError(
            f"{len(revision)} revision runs against {len(base)} base runs: pairs must match"
        )
    return [new / old for new, old in zip(revision, base, strict=True)]


def pair_order(pair: int) -> tuple[str, str]:
    """Which revision runs first in pair `pair`: swapped every pair, so neither always
    runs on a machine the other has just warmed."""
    return ("base", "rev") if pair % 2 == 0 else ("rev", "base")


@dataclass
class SizeRuns:
    size: int
    runs: dict[str, list[TimedRun]] = field(default_factory=lambda: {"base": [], "rev": []})

    def row(self) -> list[object]:
        wall = {key: [run.seconds for run in runs] for key, runs in self.runs.items()}
        cpu = {key: [run.cpu_seconds for run in runs] for key, runs in self.runs.items()}
        return [
            self.size,
            len(wall["rev"]),
            format_seconds(median(wall["base"])),
            format_seconds(median(wall["rev"])),
            f"{median(pair_ratios(wall['rev'], wall['base'])):.3f}",
            format_seconds(median(cpu["base"])),
            format_seconds(median(cpu["rev"])),
            f"{median(pair_ratios(cpu['rev'], cpu['base'])):.3f}",
        ]


def measure(size: int, runs: int, products: dict[str, Path]) -> SizeRuns:
    from tests.doubles.one_api_simulator import OneApiSimulator
    from tests.e2e.cloud import render_inventory
    from tests.testbed.bed import TestBed

    password = "pair-" + secrets.token_hex(8)
    simulator = OneApiSimulator(simulated_pool(size), user=ONE_USER, password=password)
    names = host_names(size)
    beds = {
        key: TestBed(
            prefix=prefix,
            state_dir=STATE_DIR / key,
            hypervisors=names,
            ssh_port_base=ssh_port_base,
            prometheus_api_port=api_port,
        )
        for key, (prefix, ssh_port_base, api_port) in BEDS.items()
    }
    result = SizeRuns(size)
    simulator.start()
    try:
        auth = STATE_DIR / "one_auth"  # read by the inventories (bed_one_data)
        auth.write_text(f"{ONE_USER}:{password}\n")
        auth.chmod(0o600)
        (STATE_DIR / "one_xmlrpc").write_text(simulator.url)
        inventories = {}
        for key, bed in beds.items():
            bed.up()
            inventories[key] = render_inventory(STATE_DIR / f"inventory_{key}.py", bed, names)
            for what in ("fresh deploy", "warm-up no-op rerun"):
                run = run_pyinfra_timed(inventories[key], simulator, product=products[key])
                check_run(run, f"{key}: {what}, {size} hypervisors", password)
        for pair in range(runs):
            for key in pair_order(pair):
                run = run_pyinfra_timed(inventories[key], simulator, product=products[key])
                check_run(run, f"{key}: no-op rerun {pair + 1}, {size} hypervisors", password)
                if run.changed_operations:
                    raise RuntimeError(
                        f"{key}: no-op rerun {pair + 1} changed {run.changed_operations}"
                    )
                result.runs[key].append(run)
        print(
            f"  size {size}: "
            + ", ".join(
                f"{key} {median([r.seconds for r in rs]):.2f}s" for key, rs in result.runs.items()
            )
            + f", load {load_average()}",
            flush=True,
        )
    finally:
        simulator.stop()
        for bed in beds.values():
            bed.down()
        (STATE_DIR / "one_auth").unlink(missing_ok=True)
    return result


def report(machine: list[str], command: str, results: Sequence[SizeRuns]) -> str:
    table = markdown_table(
        [
            "hypervisors",
            "pairs",
            "base wall s",
            "rev wall s",
            "rev/base wall (median of pairs)",
            "base CPU s",
            "rev CPU s",
            "rev/base CPU (median of pairs)",
        ],
        [result.row() for result in results],
    )
    return "\n".join(
        [
            "# No-op rerun, two revisions interleaved",
            "",
            *(f"- {line}" for line in machine),
            f"- Command: `{command}`",
            "",
            table,
            "",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base",
        required=True,
        help="revision to compare against (a commit, 'worktree', 'dir:PATH')",
    )
    parser.add_argument("--rev", default="HEAD", help="revision measured (default HEAD)")
    parser.add_argument("--sizes", default="1,8", help="hypervisor counts, one pair of beds each")
    parser.add_argument("--runs", type=int, default=10, help="pairs of no-op reruns per size")
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    machine = machine_description()
    products = {}
    for key in ("base", "rev"):
        products[key], described = export_product(getattr(args, key), STATE_DIR / f"product_{key}")
        machine.append(f"{key}: {described}")
    from tests.testbed.bed import TestBed

    prefix, ssh_port_base, api_port = BEDS["base"]
    TestBed(
        prefix=prefix,
        state_dir=STATE_DIR / "base",
        hypervisors=(),
        ssh_port_base=ssh_port_base,
        prometheus_api_port=api_port,
    ).build_images()
    started = time.monotonic()
    results = [measure(size, args.runs, products) for size in parse_sizes(args.sizes)]
    machine.append(
        f"Took {time.monotonic() - started:.0f} s; load average at the end {load_average()}"
    )
    command = "bench/paired_rerun.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(machine, command, results)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
