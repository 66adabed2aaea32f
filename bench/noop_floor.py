"""A no-op rerun against the floor of any run, paired on one bed (run by hand, never by CI).

    .venv/bin/python bench/noop_floor.py [--sizes 1,8,32] [--pairs 10] [--rev HEAD] [--out FILE]
        [--max-load 4] [--load-wait-s 900] [--hold-s 0]

For each size, on a bed of that many simulated hypervisors and prom1 (run_bench.py's bed and
OpenNebula API simulator, recreated for the size): a fresh deploy, a warm-up no-op rerun, then
A = the no-op rerun, `pyinfra -y INVENTORY deploy.py`, and B = the floor, the same command with a
deploy file that holds only a docstring (pyinfra's start-up, the inventory, connecting to every
host and disconnecting: what any run costs before the deploy does anything), in turn A B A B ...
The ratio A/B is taken pair by pair, so a change in the machine's speed falls on both; the
median of the pair ratios is reported, for CPU (user + system seconds of the pyinfra process,
the operating system's accounting of the finished child) and wall seconds. Every no-op must
succeed and change nothing. One extra `--debug` no-op (not timed) counts the facts and commands
per host.

A loaded machine is not measured: before each size's pairs the 1-minute load average must be
below --max-load, waited for (polled every 10 s) at most --load-wait-s, else the size is
reported as not measured. `--hold-s` keeps the last size's bed and simulator up that long after
its pairs (or until the file it names is deleted), and prints both commands, to time them by hand
with another tool.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import run_bench  # noqa: E402 (the repository goes on sys.path first)
from bench.run_bench import (  # noqa: E402
    STATE_DIR,
    BenchCloud,
    HostProfile,
    TimedRun,
    check_run,
    format_seconds,
    load_average,
    machine_description,
    markdown_table,
    median,
    parse_debug_profile,
    parse_sizes,
    run_pyinfra_timed,
    use_product,
)

EMPTY_DEPLOY = STATE_DIR / "empty_deploy.py"
LOAD_POLL_S = 10.0


def pair_ratios(a: Sequence[float], b: Sequence[float]) -> list[float]:
    """a[i] / b[i] for each pair i; the pairs must match one to one."""
    if len(a) != len(b) or not b:
        raise ValueError(f"{len(a)} runs of A against {len(b)} of B: pairs must match")
    return [first / second for first, second in zip(a, b, strict=True)]


def wait_for_load(
    max_load: float,
    timeout_s: float,
    poll_s: float = LOAD_POLL_S,
    read=lambda: float(load_average().split()[0]),
    sleep=time.sleep,
    clock=time.monotonic,
) -> float | None:
    """Waits until the 1-minute load average is below `max_load`, at most `timeout_s`; returns
    it then, or None when the machine stayed loaded."""
    deadline = clock() + timeout_s
    while True:
        load = read()
        if load < max_load:
            return load
        if clock() >= deadline:
            return None
        sleep(min(poll_s, max(0.0, deadline - clock())))


@dataclass
class SizePairs:
    size: int
    noop: list[TimedRun] = field(default_factory=list)
    floor: list[TimedRun] = field(default_factory=list)
    profile: dict[str, HostProfile] | None = None
    loads: tuple[str, str] = ("", "")
    not_measured: str | None = None  # why not (the machine stayed loaded)

    def ratio(self, what: str) -> float:
        return median(
            pair_ratios(
                [getattr(run, what) for run in self.noop],
                [getattr(run, what) for run in self.floor],
            )
        )

    def per_host(self, kind: str) -> tuple[str, str]:
        """(facts, commands) on one hypervisor and on prom1 during the --debug no-op."""
        if not self.profile:
            return "-", "-"
        cells = []
        for host in ("hv1", "prom1"):
            profile = self.profile.get(host, HostProfile())
            cells.append(str(sum(profile.facts.values()) if kind == "facts" else profile.commands))
        return cells[0], cells[1]

    def row(self) -> list[object]:
        if self.not_measured:
            return [self.size, 0, *["-"] * (len(HEADERS) - 2)]
        facts, commands = self.per_host("facts"), self.per_host("commands")
        kinds = (("noop", self.noop), ("floor", self.floor))
        cpu = {key: median(run.cpu_seconds for run in runs) for key, runs in kinds}
        wall = {key: median(run.seconds for run in runs) for key, runs in kinds}
        return [
            self.size,
            len(self.noop),
            format_seconds(cpu["noop"]),
            format_seconds(cpu["floor"]),
            f"{self.ratio('cpu_seconds'):.2f}x",
            format_seconds(wall["noop"]),
            format_seconds(wall["floor"]),
            f"{self.ratio('seconds'):.2f}x",
            f"{facts[0]} / {commands[0]}",
            f"{facts[1]} / {commands[1]}",
            f"{self.loads[0]} -> {self.loads[1]}",
        ]


HEADERS = [
    "hypervisors",
    "pairs",
    "no-op CPU s",
    "floor CPU s",
    "no-op/floor CPU (median of pairs)",
    "no-op wall s",
    "floor wall s",
    "no-op/floor wall (median of pairs)",
    "facts / commands on hv1",
    "facts / commands on prom1",
    "load average (1 min) before -> after",
]


def measure(
    cloud: BenchCloud, size: int, pairs: int, max_load: float, load_wait_s: float
) -> SizePairs:
    result = SizePairs(size)
    cloud.fresh_bed(size)
    fresh = run_pyinfra_timed(cloud.inventory, cloud.simulator)
    check_run(fresh, f"fresh deploy, {size} hypervisors", cloud.password)
    cloud.seconds_until_targets_up(size)
    warm = run_pyinfra_timed(cloud.inventory, cloud.simulator)
    check_run(warm, f"warm-up no-op rerun, {size} hypervisors", cloud.password)
    before = wait_for_load(max_load, load_wait_s)
    if before is None:
        result.not_measured = (
            f"load average stayed at or above {max_load} for {load_wait_s:.0f} s ({load_average()})"
        )
        return result
    started_load = load_average().split()[0]
    for pair in range(pairs):
        for kind in ("noop", "floor") if pair % 2 == 0 else ("floor", "noop"):
            run = run_pyinfra_timed(
                cloud.inventory,
                cloud.simulator,
                script=str(EMPTY_DEPLOY) if kind == "floor" else "deploy.py",
            )
            check_run(run, f"{kind} run {pair + 1}, {size} hypervisors", cloud.password)
            if run.changed_operations:
                raise RuntimeError(
                    f"{kind} run {pair + 1}, {size} hypervisors, changed {run.changed_operations}"
                )
            getattr(result, kind).append(run)
    result.loads = (started_load, load_average().split()[0])
    debug = run_pyinfra_timed(cloud.inventory, cloud.simulator, "--debug")
    check_run(debug, f"--debug no-op rerun, {size} hypervisors", cloud.password)
    result.profile = parse_debug_profile(debug.output)
    (STATE_DIR / f"noop_floor_debug_{size}hv.log").write_text(debug.output)
    print(
        f"  size {size}: no-op/floor CPU {result.ratio('cpu_seconds'):.2f}x, "
        f"wall {result.ratio('seconds'):.2f}x, "
        f"load {load_average()}",
        flush=True,
    )
    return result


def hold(cloud: BenchCloud, seconds: float) -> None:
    """Keeps the bed and the simulator up at most `seconds`, or until the release file is gone."""
    release = STATE_DIR / "holding"
    release.write_text("delete this file to end the hold\n")
    pyinfra = Path(sys.executable).parent / "pyinfra"
    print(
        f"holding the bed for at most {seconds:.0f} s (delete {release} to end it); "
        f"from {run_bench.PRODUCT}:\n"
        f"  A: NO_COLOR=1 {pyinfra} -y {cloud.inventory} deploy.py\n"
        f"  B: NO_COLOR=1 {pyinfra} -y {cloud.inventory} {EMPTY_DEPLOY}",
        flush=True,
    )
    deadline = time.monotonic() + seconds
    while release.exists() and time.monotonic() < deadline:
        time.sleep(1)
    release.unlink(missing_ok=True)


def report(machine: list[str], command: str, results: Sequence[SizePairs]) -> str:
    return "\n".join(
        [
            "# No-op rerun against the empty-deploy floor, paired on one bed",
            "",
            *(f"- {line}" for line in machine),
            f"- Command: `{command}`",
            "",
            markdown_table([*HEADERS, "note"], [[*r.row(), r.not_measured or ""] for r in results]),
            "",
        ]
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,8,32", help="hypervisor counts, a bed each")
    parser.add_argument(
        "--pairs", type=int, default=10, help="pairs of runs (no-op, floor) per size"
    )
    parser.add_argument(
        "--rev", default="HEAD", help="product revision (a commit, 'worktree', 'dir:PATH')"
    )
    parser.add_argument("--out", type=Path, help="also write the markdown report here")
    parser.add_argument(
        "--max-load", type=float, default=4.0, help="1-minute load average to wait below"
    )
    parser.add_argument(
        "--load-wait-s", type=float, default=900.0, help="longest wait for it, per size"
    )
    parser.add_argument(
        "--hold-s", type=float, default=0.0, help="keep the last bed up this long after measuring"
    )
    args = parser.parse_args(argv)
    if args.pairs < 1:
        parser.error("--pairs must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    EMPTY_DEPLOY.write_text(
        '"""An empty deploy: the floor of a run (start-up, inventory, connect, disconnect)."""\n'
    )
    machine = machine_description()
    machine.append("Product measured: " + use_product(args.rev))
    from tests.testbed.bed import TestBed

    TestBed(
        prefix=run_bench.BED_PREFIX,
        state_dir=STATE_DIR / "bed",
        hypervisors=(),
        ssh_port_base=run_bench.SSH_PORT_BASE,
        prometheus_api_port=run_bench.PROMETHEUS_API_PORT,
    ).build_images()
    cloud = BenchCloud()
    cloud.start()
    results = []
    started = time.monotonic()
    try:
        sizes = parse_sizes(args.sizes)
        for size in sizes:
            print(f"bed with {size} hypervisors (load {load_average()})", flush=True)
            results.append(measure(cloud, size, args.pairs, args.max_load, args.load_wait_s))
        if args.hold_s > 0:
            hold(cloud, args.hold_s)
    finally:
        cloud.stop()
    machine.append(
        f"Took {time.monotonic() - started:.0f} s; load average at the end {load_average()}"
    )
    command = "bench/noop_floor.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report(machine, command, results)
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
