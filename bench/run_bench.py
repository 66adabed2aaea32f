"""Benchmark: deploy and rerun cost as the simulated cloud grows (run by hand, never by CI).

    .venv/bin/python bench/run_bench.py [--sizes 1,2,4,8] [--repeats 3]
        [--control-sizes 100,1000,10000] [--out bench/results.md]

What it measures (each timing the median of --repeats runs):

* fresh deploy and no-op rerun wall time of the real `pyinfra` CLI with 1, 2, 4, 8
  simulated hypervisors plus the Prometheus host, on the end-to-end test bed (bed
  prefix sotb-bench); the hosts are recreated before every fresh deploy;
* OpenNebula API calls per run, as counted by the OpenNebula API simulator (test double);
* time from the end of a fresh deploy until Prometheus reports every target up;
* whether Prometheus reloaded its configuration during a no-op rerun
  (prometheus_config_last_reload_success_timestamp_seconds before/after);
* where a no-op rerun spends its time (pyinfra's own phase lines) and which facts
  and commands it runs per host (one extra `--debug` rerun at the smallest and the
  largest size, not timed);
* the control-side cost alone, no SSH: host-pool fetch from the simulator serving
  N hosts, matching N inventory names, and rendering the targets file and the job.

It starts its own bed and simulator, prints a markdown report, writes it to --out,
and removes the bed at the end (also when interrupted).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # run as a script from anywhere: import tasks/ and tests/

from tests.e2e.cloud import bed_port, bed_prefix  # noqa: E402 (the repository goes on sys.path first)

# SOTB_BED_SUFFIX and SOTB_PORT_OFFSET move the bed as they move the end-to-end tests' beds,
# so a benchmark and tests of another checkout can run on one machine at the same time.
BED_PREFIX = bed_prefix("sotb-bench")
SSH_PORT_BASE = bed_port(2401)
PROMETHEUS_API_PORT = bed_port(9194)
STATE_DIR = REPO / ".testbed" / BED_PREFIX
PYINFRA_TIMEOUT_S = 900
TARGETS_UP_TIMEOUT_S = 180.0
ONE_USER = "oneadmin"
# What an operator's checkout holds: the deploy is run from a copy of these at one revision,
# so edits others make in the working tree meanwhile cannot change the numbers half-way.
PRODUCT_PATHS = ("deploy.py", "inventory.py", "group_data", "tasks", "files")
PRODUCT = REPO  # the directory pyinfra runs from and `tasks` is imported from; set by use_product()
SCRAPE_PORT = 8080

# pyinfra's own progress lines, in the order a run prints them: the phases of a run.
PHASE_MARKERS = (
    ("startup", "--> Loading config"),
    ("inventory", "--> Loading inventory"),
    ("connect", "--> Connecting to hosts"),
    ("prepare (facts)", "--> Preparing operation"),
    ("execute", "--> Beginning operation run"),
    ("results", "--> Results"),
)


# --------------------------------------------------------------------------- pure helpers


def median(values: Iterable[float]) -> float:
    """The median of the values; ValueError when there are none."""
    listed = list(values)
    if not listed:
        raise ValueError("median of no values")
    return statistics.median(listed)


def format_seconds(value: float | None) -> str:
    """Seconds for a table cell: 3 significant decimals below 1 s, 2 decimals above; '-' for None."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    return f"{value:.2f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub markdown table; every row must have as many cells as there are headers."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    for row in rows:
        cells = [str(cell) for cell in row]
        if len(cells) != len(headers):
            raise ValueError(f"row {cells!r} has {len(cells)} cells, headers have {len(headers)}")
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def phase_durations(
    lines: Sequence[tuple[float, str]], start: float, end: float
) -> dict[str, float]:
    """Seconds spent in each pyinfra phase, from (arrival time, line) pairs of its output.

    A phase runs from its marker line to the next phase's marker (or `end`); the
    time before the first marker counts as "startup". Phases not seen are absent.
    """
    seen: list[tuple[str, float]] = []
    for name, marker in PHASE_MARKERS:
        for stamp, text in lines:
            if marker in text:
                seen.append((name, stamp))
                break
    if not seen:
        return {}
    seen.sort(key=lambda item: item[1])
    durations = {"startup": seen[0][1] - start}
    for (name, stamp), following in zip(seen, [*seen[1:], ("end", end)], strict=True):
        durations[name] = durations.get(name, 0.0) + (following[1] - stamp)
    return durations


def operation_durations(lines: Sequence[tuple[float, str]], end: float) -> dict[str, float]:
    """Seconds per operation, from pyinfra's "--> Starting operation: NAME" lines.

    pyinfra 3 runs one operation on every host before starting the next, so an
    operation lasts until the next one starts (or the results are printed).
    """
    starts = [
        (stamp, text.split("--> Starting operation:", 1)[1].strip())
        for stamp, text in lines
        if "--> Starting operation:" in text
    ]
    finish = next((stamp for stamp, text in lines if "--> Results" in text), end)
    durations: dict[str, float] = {}
    for (stamp, name), following in zip(starts, [*(s for s, _ in starts[1:]), finish], strict=True):
        durations[name] = durations.get(name, 0.0) + (following - stamp)
    return durations


_LOADED_FACT = re.compile(
    r"\[(?P<host>[^\]]+)\]\s+Loaded fact (?P<fact>[\w.]+)(?P<args> \(.*\))?\s*$"
)
_RUNNING_COMMAND = re.compile(r"Running command on (?P<host>\S+?):")


@dataclass
class HostProfile:
    """What pyinfra ran on one host: facts loaded (by name), the same fact with the same
    arguments read again, and shell commands."""

    facts: Counter = field(default_factory=Counter)
    reads: Counter = field(default_factory=Counter)  # "Fact (args)" -> times read
    commands: int = 0

    def repeated_reads(self) -> dict[str, int]:
        """Reads of one fact with the same arguments more than once (each repeat is an SSH round trip)."""
        return {read: count for read, count in sorted(self.reads.items()) if count > 1}


def parse_debug_profile(output: str) -> dict[str, HostProfile]:
    """Per host, the facts loaded and commands run, from a `pyinfra --debug` run's output."""
    profiles: dict[str, HostProfile] = {}
    for line in output.splitlines():
        if found := _LOADED_FACT.search(line):
            profile = profiles.setdefault(found["host"], HostProfile())
            profile.facts[found["fact"]] += 1
            profile.reads[found["fact"] + (found["args"] or "")] += 1
        elif found := _RUNNING_COMMAND.search(line):
            profiles.setdefault(found["host"], HostProfile()).commands += 1
    return profiles


def host_names(size: int) -> list[str]:
    return [f"hv{index}" for index in range(1, size + 1)]


def simulated_pool(size: int, extra: int = 1) -> list[dict]:
    """An OpenNebula pool for `size` hypervisors registered by FQDN (IDs not in inventory
    order), plus `extra` hosts the inventory does not list (an LXC node)."""
    pool = [
        {
            "id": 10 + size - index,
            "name": f"{name}.cloud.test",
            "hostname": name,
            "im_mad": "kvm",
            "state": 2,
        }
        for index, name in enumerate(host_names(size))
    ]
    pool += [
        {"id": 900 + n, "name": f"lxc{n}", "hostname": f"lxc{n}", "im_mad": "lxc", "state": 2}
        for n in range(extra)
    ]
    return pool


def timed(
    function: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> tuple[float, object]:
    """Median time of `repeats` calls by `clock` (wall by default), and the last call's result."""
    times, result = [], None
    for _ in range(repeats):
        started = clock()
        result = function()
        times.append(clock() - started)
    return median(times), result


# --------------------------------------------------------------------------- product under test


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()


def byte_compile(product: Path) -> None:
    """Write the product's bytecode, as an operator's checkout holds it after its first run.

    Without it, a shell that sets PYTHONDONTWRITEBYTECODE has every run compile the
    product's modules again: a cost no operator pays, and one that grows with the lines of
    code, so two revisions would differ in it rather than in the work they do."""
    paths = [str(product / name) for name in PRODUCT_PATHS if (product / name).exists()]
    subprocess.run([sys.executable, "-m", "compileall", "-q", *paths], timeout=120, check=True)


def export_product(rev: str, target: Path) -> tuple[Path, str]:
    """The product at `rev`, byte-compiled, and a description of it: a commit is exported to
    `target` (so edits made in the working tree meanwhile cannot change the numbers half-way),
    "worktree" is the files as they are now, "dir:PATH" a trial copy measured as it is."""
    if rev.startswith("dir:"):
        product = Path(rev[4:]).resolve()
        described = f"the product files in {product} (trial copy, not a commit)"
    elif rev == "worktree":
        dirty = _git("status", "--porcelain", "--", *PRODUCT_PATHS)
        product = REPO
        described = f"working tree at {_git('rev-parse', '--short', 'HEAD')}" + (
            " with uncommitted product changes" if dirty else ""
        )
    else:
        commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "archive", commit, "--", *PRODUCT_PATHS],
            cwd=REPO,
            capture_output=True,
            timeout=60,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, timeout=60, check=True)
        product = target
        shown = target.relative_to(REPO) if target.is_relative_to(REPO) else target
        described = f"commit {commit[:12]} ({rev}), exported to {shown}"
    byte_compile(product)
    return product, described


def use_product(rev: str) -> str:
    """Point the benchmark at the product at `rev` (see export_product); return a description
    of what is measured. Must run before `tasks` is imported."""
    global PRODUCT
    PRODUCT, described = export_product(rev, STATE_DIR / "product")
    if PRODUCT != REPO:
        sys.path.insert(0, str(PRODUCT))
    return described


# --------------------------------------------------------------------------- machine


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_description() -> list[str]:
    """One line per fact about the machine the numbers come from."""
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown",
    )
    memory_kib = int(
        next(
            line.split()[1]
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    )
    # The versions are reported as found (empty when a command fails), never a reason to stop.
    versions = subprocess.run(
        [str(Path(sys.executable).parent / "pyinfra"), "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    docker_version = subprocess.run(
        ["docker", "version", "-f", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.strip()
    return [
        f"CPU: {cpu}, {os.cpu_count()} cores; RAM {memory_kib / 1024 / 1024:.1f} GiB",
        f"OS: {platform.platform()}; Python {platform.python_version()}; {versions}; Docker engine {docker_version}",
    ]


# --------------------------------------------------------------------------- control side


@dataclass
class ControlResult:
    size: int
    seconds: dict[str, float]

    def cell(self, key: str) -> str:
        return format_seconds(self.seconds[key])

    @property
    def total(self) -> float:
        return sum(self.seconds[key] for key in CONTROL_PATH)


# The steps one run performs on the control machine (what deploy.py and tasks/ call).
CONTROL_PATH = (
    "fetch_host_pool",
    "match_hosts",
    "parse_previous_targets",
    "render_targets_file",
    "job_and_merge",
)
# Control-side steps are CPU-bound: their CPU time is what they would take on an idle machine,
# whatever else loads it meanwhile. The thread's own, not the process's: the simulator answers
# from threads of its own, and building and sending the pool is oned's work on the frontend,
# not the work of the machine running pyinfra.
CPU = time.thread_time


def measure_control_side(
    sizes: Sequence[int], repeats: int
) -> tuple[list[ControlResult], dict[str, str]]:
    """Control-side cost without SSH for each pool size, plus notes on the slow parts."""
    from tasks.opennebula.client import fetch_host_pool, resolve_endpoint
    from tasks.opennebula.matching import HostQuery, _closest_names, match_host, resolve_hypervisors
    from tasks.prometheus.config_file import with_job
    from tasks.prometheus.job import scaphandre_job
    from tasks.prometheus.owned_yaml import dump
    from tasks.prometheus.targets import (
        ScrapeTarget,
        parse_targets_file,
        render_targets_file,
        targets_file_entries,
    )

    try:
        from tasks.prometheus.targets import TARGETS_FILE_HEADER
    except ImportError:  # a product measured with --rev may predate it
        TARGETS_FILE_HEADER = ""
    from tests.doubles.one_api_simulator import OneApiSimulator, host_pool_xml

    prometheus_yml = (REPO / "tests" / "data" / "prometheus" / "debian_default.yml").read_bytes()
    password = "bench-" + secrets.token_hex(8)
    auth_file = STATE_DIR / "control_one_auth"
    auth_file.parent.mkdir(parents=True, exist_ok=True)
    auth_file.write_text(f"{ONE_USER}:{password}\n")
    auth_file.chmod(0o600)
    results, notes = [], {}
    simulator = OneApiSimulator([], user=ONE_USER, password=password).start()
    try:
        endpoint = resolve_endpoint(
            one_xmlrpc=simulator.url, one_auth_file=str(auth_file), timeout=120
        )
        # Warm-up, not timed: the first call of each step imports its modules (pyone, lxml, yaml),
        # a cost paid once per run whatever the pool's size, which would blur the growth table.
        simulator.set_hosts([{"id": 0, "name": "warm-up", "hostname": "warm-up"}])
        warm = fetch_host_pool(endpoint)
        resolve_hypervisors(warm, [HostQuery(inventory_name="warm-up")])
        parse_targets_file(
            render_targets_file([ScrapeTarget(address="warm-up:1", one_host_id=0, host_name="w")])
        )
        for size in sizes:
            pool_spec = [
                {
                    "id": i,
                    "name": f"node{i:05d}.cloud.test",
                    "hostname": f"node{i:05d}",
                    "im_mad": "kvm",
                    "state": 2,
                }
                for i in range(size)
            ]
            simulator.set_hosts(pool_spec)
            seconds: dict[str, float] = {}
            wall_started = time.perf_counter()
            seconds["simulator builds the pool's XML (not counted)"], _ = timed(
                lambda pool_spec=pool_spec: host_pool_xml(pool_spec), repeats, CPU
            )
            seconds["fetch_host_pool"], pool = timed(
                lambda: fetch_host_pool(endpoint), repeats, CPU
            )
            seconds["fetch_host_pool, process CPU (the simulator's threads included)"], _ = timed(
                lambda: fetch_host_pool(endpoint), repeats, time.process_time
            )
            assert len(pool) == size
            # Inventory names are short, OpenNebula NAMEs FQDNs: the third matching level, as in many clouds.
            queries = [HostQuery(inventory_name=f"node{i:05d}") for i in range(size)]
            exact = [f"node{i:05d}.cloud.test" for i in range(size)]
            # The pool is indexed by name on the first lookup: every name is timed, index included.
            seconds["match_hosts"], (matched, errors) = timed(
                lambda pool=pool, queries=queries: resolve_hypervisors(pool, queries), 1, CPU
            )
            assert len(matched) == size and not errors
            seconds["match_host, exact NAMEs"], _ = timed(
                lambda pool=pool, exact=exact: [
                    match_host(pool, inventory_name=name) for name in exact
                ],
                1,
                CPU,
            )
            seconds["one unknown name: closest names"], _ = timed(
                lambda pool=pool: _closest_names(pool, "nodeX"), 1, CPU
            )
            targets = [
                ScrapeTarget(
                    address=f"node{i:05d}:{SCRAPE_PORT}",
                    one_host_id=i,
                    host_name=f"node{i:05d}.cloud.test",
                )
                for i in range(size)
            ]
            seconds["render_targets_file"], rendered = timed(
                lambda targets=targets: render_targets_file(targets), repeats, CPU
            )
            seconds["parse_previous_targets"], parsed = timed(
                lambda rendered=rendered: parse_targets_file(rendered), repeats, CPU
            )
            assert len(parsed) == size
            # A file in the YAML layout versions before the JSON one wrote: read once after upgrading.
            earlier = TARGETS_FILE_HEADER + dump(targets_file_entries(targets))
            seconds["previous targets file in the earlier YAML layout"], parsed = timed(
                lambda earlier=earlier: parse_targets_file(earlier), repeats, CPU
            )
            assert parsed == sorted(targets, key=lambda t: t.one_host_id)

            def job_and_merge():
                job = scaphandre_job(
                    targets_file="/etc/prometheus/scaphandre_targets.yml",
                    prometheus_version=(2, 42, 0),
                )
                return with_job(prometheus_yml, job, None, "/etc/prometheus/scaphandre_targets.yml")

            seconds["job_and_merge"], _ = timed(job_and_merge, repeats, CPU)
            seconds["wall, whole measurement"] = time.perf_counter() - wall_started
            results.append(ControlResult(size, seconds))
    finally:
        simulator.stop()
        auth_file.unlink(missing_ok=True)
    return results, notes


@dataclass
class PrometheusYmlResult:
    size: int
    seconds: dict[str, float]
    parses: dict[str, int]


def measure_prometheus_yml(size: int, repeats: int) -> PrometheusYmlResult:
    """The cost of editing a large operator prometheus.yml on the machine running pyinfra:
    adding the job (what a first deploy does), a rerun on a file the deploy recorded (what a
    no-op rerun does: a fingerprint, no parse), a rerun on a file edited since (one parse),
    and removing the job; through libyaml and through ruamel's own parser (ruamel.yaml.clib
    missing). Parses are counted; every parse cache is emptied before each timed step."""
    from tasks.prometheus import config_file
    from tasks.prometheus.job import scaphandre_job
    from tests.unit.prometheus_yaml_checks import generated_config

    targets = "/etc/prometheus/scaphandre_targets.yml"
    rules = "/etc/prometheus/scaphandre_rules.yml"
    job = scaphandre_job(targets_file=targets, prometheus_version=(2, 42, 0))
    before = generated_config(size)
    parses: dict[str, int] = {}
    seconds: dict[str, float] = {}
    real_compose = config_file._compose

    def counted(name: str, step: Callable[[], object], accelerated: bool = True) -> object:
        calls: list[int] = []

        def compose(source, **kwargs):
            calls.append(1)
            return real_compose(source, accelerated=accelerated)

        def run():
            config_file._parse.cache_clear()
            calls.clear()
            return step()

        config_file._compose = compose
        try:
            seconds[name], result = timed(run, repeats, CPU)
        finally:
            config_file._compose = real_compose
        parses[name] = len(calls)
        return result

    after = counted(
        "add the job (libyaml)", lambda: config_file.with_job(before, job, rules, targets)
    )
    counted(
        "add the job (ruamel's own parser)",
        lambda: config_file.with_job(before, job, rules, targets),
        accelerated=False,
    )
    counted(
        "rerun, file as recorded (fingerprint only)",
        lambda: config_file.edit_fingerprint(job, rules, targets),
    )
    edited = after + b"# the operator's note\n"
    counted(
        "rerun, file edited since (libyaml)",
        lambda: config_file.with_job(edited, job, rules, targets),
    )
    counted(
        "rerun, file edited since (ruamel's own parser)",
        lambda: config_file.with_job(edited, job, rules, targets),
        accelerated=False,
    )
    removed = counted(
        "remove the job (libyaml)",
        lambda: config_file.without_job(after, "scaphandre", targets, rules),
    )
    assert removed == before, "removal must give back the original bytes"
    return PrometheusYmlResult(len(before), seconds, parses)


def prometheus_yml_table(result: PrometheusYmlResult) -> str:
    rows = [
        [name, format_seconds(result.seconds[name]), result.parses[name]] for name in result.seconds
    ]
    return markdown_table(
        [f"prometheus.yml of {result.size / 1e6:.1f} MB", "CPU s", "YAML parses"], rows
    )


# --------------------------------------------------------------------------- pyinfra runs


@dataclass
class TimedRun:
    """One pyinfra CLI run: wall time, phases, exit code, API calls, output."""

    seconds: float
    returncode: int
    cpu_seconds: (
        float  # user+sys of the pyinfra process: its own work, less sensitive to machine load
    )
    phases: dict[str, float]
    api_calls: Counter
    output: str
    changed_operations: list[str] = field(default_factory=list)
    operations: dict[str, float] = field(default_factory=dict)
    # CPU the bed's hosts used meanwhile (sshd, shells, the commands): on real hypervisors each
    # host's own, here on the same cores as pyinfra. None when not measured.
    bed_cpu_seconds: float | None = None


def bed_cpu_seconds(containers: Sequence[str]) -> float:
    """CPU seconds used so far by every process of the containers (their engines' too)."""
    parents = _process_table()
    return cpu_seconds(
        pid for name in containers for pid in process_tree(container_init_pid(name), parents)
    )


def run_pyinfra_timed(
    inventory: Path,
    simulator,
    *extra_args: str,
    product: Path | None = None,
    bed_containers: Sequence[str] = (),
    script: str = "deploy.py",
) -> TimedRun:
    """`pyinfra -y INVENTORY deploy.py` (or `script`) from the product (PRODUCT unless `product`
    is given), timestamping each output line.

    Without --json so the phase lines are printed; changed operations are read from
    pyinfra's results ("Changed" column), and API calls from the simulator's counter.
    """
    pyinfra = str(Path(sys.executable).parent / "pyinfra")
    command = [pyinfra, "-y", *extra_args, str(inventory), script]
    simulator.calls.clear()
    lines: list[tuple[float, str]] = []
    bed_before = bed_cpu_seconds(bed_containers) if bed_containers else None
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=product or PRODUCT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )

    def read_lines():
        for line in process.stdout:
            lines.append((time.monotonic(), line.rstrip("\n")))

    reader = threading.Thread(target=read_lines, daemon=True)
    reader.start()
    try:
        returncode = process.wait(timeout=PYINFRA_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=30)
        raise RuntimeError(f"pyinfra did not finish within {PYINFRA_TIMEOUT_S} s") from None
    ended = time.monotonic()
    usage_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage_after.ru_utime - usage_before.ru_utime) + (
        usage_after.ru_stime - usage_before.ru_stime
    )
    reader.join(timeout=30)
    bed_cpu = bed_cpu_seconds(bed_containers) - bed_before if bed_containers else None
    output = "\n".join(text for _, text in lines)
    return TimedRun(
        ended - started,
        returncode,
        cpu,
        phase_durations(lines, started, ended),
        Counter(simulator.calls),
        output,
        changed_operations(output),
        operation_durations(lines, ended),
        bed_cpu,
    )


_RESULT_ROW = re.compile(
    r"^\s*(?P<host>\S+)\s+(?P<success>\d+)\s+(?P<changed>\d+)\s+(?P<error>\d+)\s*$"
)


def changed_operations(output: str) -> list[str]:
    """Hosts with a non-zero "Changed" count in pyinfra's results table (host: count)."""
    section = output.split("--> Results:", 1)[-1] if "--> Results:" in output else ""
    changed = []
    for line in section.splitlines():
        row = _RESULT_ROW.match(line.replace("\t", " "))
        if row and int(row["changed"]) > 0:
            changed.append(f"{row['host']}: {row['changed']}")
    return changed


# --------------------------------------------------------------------------- bed runs


@dataclass
class SizeResult:
    size: int
    fresh: list[TimedRun] = field(default_factory=list)
    noop: list[TimedRun] = field(default_factory=list)
    targets_up_s: list[float] = field(default_factory=list)
    noop_reloaded: list[bool] = field(default_factory=list)
    profile: dict[str, HostProfile] | None = None
    bed_up_s: list[float] = field(default_factory=list)
    hypervisor_pss_mib: list[float] = field(
        default_factory=list
    )  # one per hypervisor, last fresh deploy
    hypervisor_cgroup_mib: list[float] = field(default_factory=list)
    idle_cores: list[float] = field(default_factory=list)  # the whole bed, after each fresh deploy


# --------------------------------------------------------------------------- bed resources


def _process_table() -> dict[int, int]:
    """pid -> parent pid of every process on this machine."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended meanwhile
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def process_tree(root: int, parents: dict[int, int] | None = None) -> list[int]:
    """`root` and every process descending from it (a host's init: its engine's containers too)."""
    parents = _process_table() if parents is None else parents
    children: dict[int, list[int]] = {}
    for pid, parent in parents.items():
        children.setdefault(parent, []).append(pid)
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def pss_mib(pids: Iterable[int]) -> float:
    """Proportional set size of the processes, MiB: shared pages (the image's libraries, in
    the page cache once for every host) counted once in all."""
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
                    break
        except (OSError, ValueError):  # ended meanwhile, or a kernel thread
            continue
    return total_kib / 1024


def cpu_seconds(pids: Iterable[int]) -> float:
    """User + system seconds the processes have used so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def container_init_pid(container: str) -> int:
    return int(
        subprocess.run(
            ["docker", "inspect", "-f", "{{.State.Pid}}", container],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
    )


def _cgroup_working_set_bytes(container_id: str) -> int:
    """Memory a container's cgroup is charged, less inactive file pages (what `docker stats`
    and the kubelet call the working set), cgroup v1 or v2; 0 when the cgroup is not found."""
    for directory, usage_file, inactive_key in (
        (
            Path("/sys/fs/cgroup/memory/docker") / container_id,
            "memory.usage_in_bytes",
            "total_inactive_file",
        ),
        (
            Path("/sys/fs/cgroup/system.slice") / f"docker-{container_id}.scope",
            "memory.current",
            "inactive_file",
        ),
        (Path("/sys/fs/cgroup/docker") / container_id, "memory.current", "inactive_file"),
    ):
        if (directory / usage_file).is_file():
            usage = int((directory / usage_file).read_text())
            stat = dict(
                line.split() for line in (directory / "memory.stat").read_text().splitlines()
            )
            return usage - int(stat.get(inactive_key, 0))
    return 0


def hypervisor_cgroup_mib(container: str) -> float:
    """The working set of a hypervisor's container and of every container its own Docker
    engine runs (their cgroups are not inside the host's), MiB."""
    ids = subprocess.run(
        ["docker", "inspect", "-f", "{{.Id}}", container],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    # The inner engine's containers, when it answers: none counted otherwise.
    ids += subprocess.run(
        ["docker", "exec", container, "docker", "ps", "-q", "--no-trunc"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    return sum(_cgroup_working_set_bytes(container_id) for container_id in ids) / 2**20


def idle_cores(containers: Sequence[str], seconds: float = 10.0) -> float:
    """Processor cores the bed's hosts keep busy while no run goes on (their systemd, engine,
    exporter and simulated counters), measured over `seconds`."""
    roots = [container_init_pid(name) for name in containers]
    parents = _process_table()
    before = cpu_seconds(pid for root in roots for pid in process_tree(root, parents))
    started = time.monotonic()
    time.sleep(seconds)
    parents = _process_table()
    after = cpu_seconds(pid for root in roots for pid in process_tree(root, parents))
    return (after - before) / (time.monotonic() - started)


class BenchCloud:
    """The bed (sotb-bench) and the OpenNebula API simulator for one size at a time."""

    def __init__(self):
        from tests.doubles.one_api_simulator import OneApiSimulator

        self.password = "bench-" + secrets.token_hex(8)
        self.simulator = OneApiSimulator([], user=ONE_USER, password=self.password)
        self.bed = None

    def start(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        self.simulator.start()
        auth = STATE_DIR / "one_auth"
        auth.write_text(f"{ONE_USER}:{self.password}\n")
        auth.chmod(0o600)
        (STATE_DIR / "one_xmlrpc").write_text(self.simulator.url)

    def fresh_bed(self, size: int) -> float:
        """Recreate the bed with `size` hypervisors (all hosts freshly booted); seconds taken."""
        from tests.e2e.cloud import render_inventory
        from tests.testbed.bed import TestBed

        self.bed = TestBed(
            prefix=BED_PREFIX,
            state_dir=STATE_DIR / "bed",
            hypervisors=host_names(size),
            ssh_port_base=SSH_PORT_BASE,
            prometheus_api_port=PROMETHEUS_API_PORT,
        )
        started = time.monotonic()
        self.bed.up()  # removes this prefix's containers first
        took = time.monotonic() - started
        self.simulator.set_hosts(simulated_pool(size))
        render_inventory(self.inventory, self.bed, host_names(size))
        return took

    @property
    def inventory(self) -> Path:
        return STATE_DIR / "inventory.py"

    def prometheus(self):
        from tests.e2e.cloud import PrometheusApi

        return PrometheusApi(self.bed.prometheus_url)

    def last_reload(self) -> float:
        series = self.prometheus().query("prometheus_config_last_reload_success_timestamp_seconds")
        return float(series[0]["value"][1])

    def seconds_until_targets_up(self, size: int) -> float:
        """Seconds until Prometheus lists exactly the hypervisors as scaphandre targets, all up."""
        wanted = {f"{name}:{SCRAPE_PORT}" for name in host_names(size)}
        started = time.monotonic()
        deadline = started + TARGETS_UP_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            try:
                targets = {
                    t["labels"]["instance"]: t["health"] for t in self.prometheus().targets()
                }
            except (OSError, AssertionError, ValueError) as error:
                targets = {"error": str(error)}
            if set(targets) == wanted and all(health == "up" for health in targets.values()):
                return time.monotonic() - started
            last = targets
            time.sleep(0.25)
        raise RuntimeError(f"targets not all up within {TARGETS_UP_TIMEOUT_S:.0f} s: {last}")

    def stop(self, keep_bed: bool = False) -> None:
        """Stop the simulator; remove the bed unless `keep_bed` (then its hosts stay up, for
        measuring by hand, and the pool the simulator served is left in STATE_DIR/pool.yml)."""
        self.simulator.stop()
        if self.bed is not None and not keep_bed:
            self.bed.down()
        if keep_bed:
            import yaml

            (STATE_DIR / "pool.yml").write_text(yaml.safe_dump(self.simulator.hosts()))
        else:
            (STATE_DIR / "one_auth").unlink(missing_ok=True)


def check_run(run: TimedRun, what: str, password: str) -> None:
    if password in run.output:
        raise RuntimeError(f"{what}: the OpenNebula password appeared in pyinfra's output")
    if run.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {run.returncode}):\n{run.output[-5000:]}")


def measure_size(
    cloud: BenchCloud, size: int, repeats: int, profile: bool, extra_noops: int = 0
) -> SizeResult:
    """Fresh deploy, time to targets up and no-op rerun, `repeats` times on fresh hosts; then
    `extra_noops` more no-op reruns on the last deploy (cheap, and they steady the median
    when other work loads the machine)."""
    result = SizeResult(size)
    for repeat in range(1, repeats + 1):
        result.bed_up_s.append(cloud.fresh_bed(size))
        fresh = run_pyinfra_timed(cloud.inventory, cloud.simulator)
        check_run(fresh, f"fresh deploy, {size} hypervisors, run {repeat}", cloud.password)
        result.fresh.append(fresh)
        result.targets_up_s.append(cloud.seconds_until_targets_up(size))
        hypervisors = [cloud.bed.hosts[name].container for name in host_names(size)]
        parents = _process_table()
        result.hypervisor_pss_mib = [
            pss_mib(process_tree(container_init_pid(name), parents)) for name in hypervisors
        ]
        result.hypervisor_cgroup_mib = [hypervisor_cgroup_mib(name) for name in hypervisors]
        result.idle_cores.append(idle_cores([host.container for host in cloud.bed.hosts.values()]))
        reload_before = cloud.last_reload()
        containers = [host.container for host in cloud.bed.hosts.values()]
        noop = run_pyinfra_timed(cloud.inventory, cloud.simulator, bed_containers=containers)
        check_run(noop, f"no-op rerun, {size} hypervisors, run {repeat}", cloud.password)
        result.noop.append(noop)
        result.noop_reloaded.append(cloud.last_reload() != reload_before)
        # The last run of each kind is kept for reading by hand (the secret was checked absent).
        (STATE_DIR / f"fresh_{size}hv.log").write_text(fresh.output)
        (STATE_DIR / f"noop_{size}hv.log").write_text(noop.output)
        print(
            f"  size {size} run {repeat}: bed up {result.bed_up_s[-1]:.1f}s, fresh {fresh.seconds:.1f}s, "
            f"targets up +{result.targets_up_s[-1]:.1f}s, no-op {noop.seconds:.1f}s, "
            f"API calls {fresh.api_calls['one.hostpool.info']}/{noop.api_calls['one.hostpool.info']}, "
            f"load {load_average()}",
            flush=True,
        )
    for extra in range(1, extra_noops + 1):
        reload_before = cloud.last_reload()
        noop = run_pyinfra_timed(
            cloud.inventory,
            cloud.simulator,
            bed_containers=[host.container for host in cloud.bed.hosts.values()],
        )
        check_run(noop, f"extra no-op rerun {extra}, {size} hypervisors", cloud.password)
        result.noop.append(noop)
        result.noop_reloaded.append(cloud.last_reload() != reload_before)
    if extra_noops:
        print(
            f"  size {size} extra no-op reruns: "
            + ", ".join(f"{r.seconds:.1f}s" for r in result.noop[repeats:])
            + f", load {load_average()}",
            flush=True,
        )
    if profile:
        debug = run_pyinfra_timed(cloud.inventory, cloud.simulator, "--debug")
        check_run(debug, f"--debug no-op rerun, {size} hypervisors", cloud.password)
        result.profile = parse_debug_profile(debug.output)
        # Kept for reading by hand (which operation read which fact); the secret was checked absent above.
        (STATE_DIR / f"noop_debug_{size}hv.log").write_text(debug.output)
    return result


# --------------------------------------------------------------------------- report


def bed_table(results: Sequence[SizeResult]) -> str:
    baseline = (
        median(r.seconds for r in results[0].noop) if results and results[0].size == 1 else None
    )
    rows = []
    for result in results:
        noop = median(r.seconds for r in result.noop)
        baseline_cpu = median(r.cpu_seconds for r in results[0].noop) if baseline else None
        noop_cpu = median(r.cpu_seconds for r in result.noop)
        calls = sorted({r.api_calls["one.hostpool.info"] for r in result.fresh + result.noop})
        other_calls = sorted(
            {
                sum(r.api_calls.values()) - r.api_calls["one.hostpool.info"]
                for r in result.fresh + result.noop
            }
        )
        rows.append(
            [
                result.size,
                f"{len(result.fresh)} / {len(result.noop)}",
                format_seconds(median(r.seconds for r in result.fresh)),
                format_seconds(noop),
                f"{noop / baseline:.2f}x" if baseline else "-",
                f"{format_seconds(noop_cpu)} ({noop_cpu / baseline_cpu:.2f}x)"
                if baseline_cpu
                else format_seconds(noop_cpu),
                "/".join(str(c) for c in calls)
                + ("" if other_calls == [0] else f" (+{other_calls} other)"),
                format_seconds(median(result.targets_up_s)),
                "yes" if any(result.noop_reloaded) else "no",
                "; ".join(sorted({c for r in result.noop for c in r.changed_operations})) or "none",
                f"{median(result.hypervisor_pss_mib):.0f} / {median(result.hypervisor_cgroup_mib):.0f}"
                if result.hypervisor_pss_mib
                else "-",
                f"{median(result.idle_cores):.2f}" if result.idle_cores else "-",
                format_seconds(median(r.bed_cpu_seconds for r in result.noop))
                if all(r.bed_cpu_seconds is not None for r in result.noop)
                else "-",
            ]
        )
    return markdown_table(
        [
            "hypervisors",
            "runs fresh / no-op",
            "fresh deploy s",
            "no-op rerun s",
            "no-op vs 1 hv",
            "no-op pyinfra CPU s (vs 1 hv)",
            "one.hostpool.info calls per run",
            "targets up after deploy s",
            "Prometheus reloaded on no-op",
            "changed on no-op",
            (
                "memory of one hypervisor MiB: PSS of its processes / working set of its cgroups "
                "(inner engine's containers included)"
            ),
            "bed's idle CPU, cores busy",
            "no-op: CPU s of the bed's hosts (sshd, shells, commands)",
        ],
        rows,
    )


def phase_table(results: Sequence[SizeResult], attribute: str) -> str:
    names = [name for name, _ in PHASE_MARKERS]
    rows = []
    for result in results:
        runs = getattr(result, attribute)
        rows.append(
            [
                result.size,
                *(format_seconds(median(r.phases.get(name, 0.0) for r in runs)) for name in names),
            ]
        )
    return markdown_table(["hypervisors", *names], rows)


def profile_table(results: Sequence[SizeResult]) -> str:
    """One row per group of hosts that ran the same facts and commands."""
    rows = []
    for result in results:
        if not result.profile:
            continue
        groups: dict[tuple, list[str]] = {}
        for host in sorted(result.profile, key=lambda name: (len(name), name)):
            profile = result.profile[host]
            key = (tuple(sorted(profile.reads.items())), profile.commands)
            groups.setdefault(key, []).append(host)
        for hosts in groups.values():
            profile = result.profile[hosts[0]]
            repeated = ", ".join(
                f"{read} x{count}" for read, count in profile.repeated_reads().items()
            )
            rows.append(
                [
                    result.size,
                    ", ".join(hosts),
                    sum(profile.facts.values()),
                    len(profile.facts),
                    profile.commands,
                    repeated or "none",
                    ", ".join(
                        f"{fact} x{n}" if n > 1 else fact
                        for fact, n in sorted(profile.facts.items())
                    ),
                ]
            )
    return markdown_table(
        [
            "hypervisors",
            "hosts",
            "fact reads",
            "distinct facts",
            "shell commands",
            "same fact and arguments read more than once",
            "facts read",
        ],
        rows,
    )


def operation_table(results: Sequence[SizeResult], attribute: str, top: int = 6) -> str:
    """The slowest operations (median seconds) at the largest size, with their time at every size."""
    if not results:
        return ""
    medians = {}
    for result in results:
        runs = getattr(result, attribute)
        names = {name for run in runs for name in run.operations}
        medians[result.size] = {
            name: median(run.operations.get(name, 0.0) for run in runs) for name in names
        }
    largest = medians[results[-1].size]
    slowest = sorted(largest, key=largest.get, reverse=True)[:top]
    rows = [
        [name, *(format_seconds(medians[r.size].get(name)) for r in results)] for name in slowest
    ]
    return markdown_table(["operation", *(f"{r.size} hv" for r in results)], rows)


def control_table(results: Sequence[ControlResult]) -> str:
    keys = list(CONTROL_PATH)
    rows = [
        [
            r.size,
            *(r.cell(k) for k in keys),
            format_seconds(r.total),
            "yes" if r.total < 2.0 else "NO",
        ]
        for r in results
    ]
    return markdown_table(["OpenNebula hosts", *keys, "total", "under 2 s"], rows)


def control_growth_table(results: Sequence[ControlResult]) -> str:
    """CPU at each size against the size before it, step by step: a step that grows
    linearly with the pool shows the ratio of the sizes (10x from 1,000 to 10,000 hosts)."""
    keys = list(CONTROL_PATH)
    rows = []
    for before, after in itertools.pairwise(results):
        if not before.size:
            continue
        ratios = [
            after.seconds[k] / before.seconds[k] if before.seconds[k] > 0 else float("nan")
            for k in keys
        ]
        rows.append(
            [
                f"{after.size:,} vs {before.size:,}",
                f"{after.size / before.size:g}x",
                *(f"{ratio:.1f}x" for ratio in ratios),
                f"{after.total / before.total:.1f}x",
            ]
        )
    return markdown_table(["OpenNebula hosts", "hosts", *keys, "total"], rows)


def control_detail_table(results: Sequence[ControlResult]) -> str:
    keys = [k for k in (results[0].seconds if results else {}) if k not in CONTROL_PATH]
    rows = [[r.size, *(r.cell(k) for k in keys)] for r in results]
    return markdown_table(["OpenNebula hosts", *keys], rows)


def report(
    machine: list[str],
    loads: dict[str, str],
    args,
    bed_results,
    control_results,
    notes,
    prometheus_yml: PrometheusYmlResult | None = None,
) -> str:
    parts = [
        "# Benchmark results\n",
        (
            f"Command: `.venv/bin/python bench/run_bench.py --sizes {shlex.quote(args.sizes)} --repeats {args.repeats} "
            f"--control-sizes {shlex.quote(args.control_sizes)} --extra-noops {args.extra_noops} --rev {args.rev} "
            f"--prometheus-yml-size {args.prometheus_yml_size}{' --keep-bed' if args.keep_bed else ''}`\n"
        ),
        "Machine and product:\n",
        *(f"- {line}\n" for line in machine),
        "- Load averages (1/5/15 min): " + "; ".join(f"{k}: {v}" for k, v in loads.items()) + "\n",
        (
            "\nEvery timing is the median of the runs listed. Each fresh deploy runs on freshly "
            "recreated hosts (`TestBed.up()`, not timed): a fresh deploy loads RAPL, writes modules-load.d, "
            "installs docker.io with apt (the simulated hypervisors have no Docker engine, as a new host), "
            "starts the stand-in exporter container and waits for /metrics, and writes the Prometheus "
            "targets file and job. The OpenNebula API simulator lists the hypervisors by FQDN "
            "(hvN.cloud.test) and one LXC node; the inventory names them hvN. A no-op rerun follows "
            "each fresh deploy once Prometheus shows every target up.\n"
        ),
    ]
    if bed_results:
        parts += [
            "\n## End-to-end (real pyinfra CLI over SSH, simulated hypervisors + prom1)\n\n",
            bed_table(bed_results),
            "\nNo-op rerun, seconds per pyinfra phase (median):\n\n",
            phase_table(bed_results, "noop"),
            "\nFresh deploy, seconds per pyinfra phase (median):\n\n",
            phase_table(bed_results, "fresh"),
            "\nFresh deploy, slowest operations (median seconds; an operation runs on all hosts at once):\n\n",
            operation_table(bed_results, "fresh"),
            "\nNo-op rerun, slowest operations (median seconds):\n\n",
            operation_table(bed_results, "noop"),
        ]
        if any(r.profile for r in bed_results):
            parts += [
                "\nNo-op rerun profile (one extra `pyinfra --debug` run, not timed): facts and commands per host\n\n",
                profile_table(bed_results),
            ]
    if control_results:
        parts += [
            (
                "\n## Control side alone (no SSH), CPU seconds (median)\n\nCPU time of the thread running "
                "each step (the OpenNebula API simulator answers from threads of its own: building and sending the "
                "pool is oned's work, not counted; fetch_host_pool is the client's whole call: HTTP, XML-RPC and "
                "reading the pool; modules are imported by a warm-up call before, once per run whatever the size): "
                "what each step takes on an idle machine, whatever else loads it. Inventory "
                "names are short (nodeNNNNN), OpenNebula NAMEs FQDNs, so matching reaches its third level (short "
                "vs FQDN), as in many clouds.\n\n"
            ),
            control_table(control_results),
            "\nGrowth (linearity check): CPU at each size against the size before it:\n\n",
            control_growth_table(control_results),
            "\nDetails, seconds:\n\n",
            control_detail_table(control_results),
        ]
    if prometheus_yml is not None:
        parts += [
            (
                "\n## The operator's prometheus.yml, large (control side, no SSH)\n\nCPU seconds (median) of "
                "the splice editor on a generated file of one static job per host; a no-op rerun on the server "
                "finds the file's SHA-256 in the deploy's record and costs the fingerprint only.\n\n"
            ),
            prometheus_yml_table(prometheus_yml),
        ]
    for title, text in notes.items():
        parts.append(f"\n{title}: {text}\n")
    return "".join(parts)


# --------------------------------------------------------------------------- main


def parse_sizes(text: str) -> list[int]:
    sizes = [int(part) for part in text.split(",") if part.strip()]
    if any(size < 0 for size in sizes):
        raise argparse.ArgumentTypeError("sizes must be non-negative")
    return sizes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", default="1,2,4,8", help="hypervisor counts on the bed ('' skips the bed)"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per measurement (median reported)"
    )
    parser.add_argument(
        "--control-sizes", default="100,1000,10000", help="OpenNebula pool sizes, control side"
    )
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results.md", help="markdown report file"
    )
    parser.add_argument(
        "--extra-noops",
        type=int,
        default=4,
        help="no-op reruns added after the last fresh deploy of each size",
    )
    parser.add_argument(
        "--rev",
        default="HEAD",
        help="product revision to measure (exported copy); 'worktree' for the files as they are; "
        "'dir:PATH' for a copy of the product elsewhere (trying out a change)",
    )
    parser.add_argument("--no-profile", action="store_true", help="skip the --debug profile runs")
    parser.add_argument(
        "--keep-bed",
        action="store_true",
        help="leave the bed of the last size up (its pool in STATE_DIR/pool.yml), for measuring by hand",
    )
    parser.add_argument(
        "--prometheus-yml-size",
        type=int,
        default=2_000_000,
        help="bytes of the generated prometheus.yml the editor is timed on (0 skips it)",
    )
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes, control_sizes = parse_sizes(args.sizes), parse_sizes(args.control_sizes)
    loads = {"before": load_average()}
    machine = machine_description()
    machine.append("Product measured: " + use_product(args.rev))
    notes: dict[str, str] = {}
    control_results: list[ControlResult] = []
    if control_sizes:
        print(f"control side: {control_sizes}", flush=True)
        control_results, notes = measure_control_side(control_sizes, args.repeats)
    prometheus_yml = None
    if args.prometheus_yml_size:
        print(f"prometheus.yml of {args.prometheus_yml_size} bytes", flush=True)
        prometheus_yml = measure_prometheus_yml(args.prometheus_yml_size, args.repeats)
    bed_results: list[SizeResult] = []
    if sizes:
        from tests.testbed.bed import TestBed

        TestBed(
            prefix=BED_PREFIX,
            state_dir=STATE_DIR / "bed",
            hypervisors=(),
            ssh_port_base=SSH_PORT_BASE,
            prometheus_api_port=PROMETHEUS_API_PORT,
        ).build_images()
        cloud = BenchCloud()
        cloud.start()
        try:
            for size in sizes:
                print(f"bed with {size} hypervisors", flush=True)
                profile = not args.no_profile and size in (min(sizes), max(sizes))
                bed_results.append(
                    measure_size(cloud, size, args.repeats, profile, args.extra_noops)
                )
                loads[f"after {size} hv"] = load_average()
        finally:
            cloud.stop(keep_bed=args.keep_bed)
    loads["after"] = load_average()
    text = report(machine, loads, args, bed_results, control_results, notes, prometheus_yml)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
