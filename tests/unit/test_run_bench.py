"""The benchmark's pure helpers (bench/run_bench.py): medians, table cells, markdown
tables, pyinfra phase timings and the --debug profile parser. The benchmark itself
needs the test bed and is run by hand, never here."""

from __future__ import annotations

import pytest

from bench.run_bench import (
    format_seconds,
    markdown_table,
    median,
    parse_debug_profile,
    phase_durations,
    simulated_pool,
)


def test_median_of_odd_and_even_counts():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5


def test_median_of_nothing_is_an_error():
    with pytest.raises(ValueError, match="median of no values"):
        median([])


@pytest.mark.parametrize(
    ("value", "cell"),
    [(None, "-"), (0.01234, "0.012"), (0.9994, "0.999"), (1.0, "1.00"), (12.345, "12.35")],
)
def test_format_seconds(value, cell):
    assert format_seconds(value) == cell


def test_markdown_table_rows_and_escaped_pipes():
    table = markdown_table(["size", "note"], [[1, "a|b"], [8, "ok"]])
    assert table.splitlines() == ["| size | note |", "|---|---|", "| 1 | a\\|b |", "| 8 | ok |"]


def test_markdown_table_refuses_a_short_row():
    with pytest.raises(ValueError, match="1 cells"):
        markdown_table(["a", "b"], [["only"]])


def test_phase_durations_split_the_run_at_pyinfra_marker_lines():
    lines = [
        (10.5, "--> Loading config..."),
        (10.6, "--> Loading inventory..."),
        (11.0, "--> Connecting to hosts..."),
        (11.5, "--> Preparing operation files..."),
        (12.0, "    Loading: deploy.py"),
        (13.0, "--> Beginning operation run..."),
        (15.0, "--> Results:"),
    ]
    phases = phase_durations(lines, start=10.0, end=15.25)
    assert phases == pytest.approx(
        {
            "startup": 0.5 + 0.1,
            "inventory": 0.4,
            "connect": 0.5,
            "prepare (facts)": 1.5,
            "execute": 2.0,
            "results": 0.25,
        }
    )
    assert sum(phases.values()) == pytest.approx(5.25)


def test_phase_durations_without_markers_is_empty():
    assert phase_durations([(1.0, "something else")], start=0.0, end=2.0) == {}


def test_parse_debug_profile_counts_facts_repeats_and_commands_per_host():
    output = "\n".join(
        [
            "[pyinfra.connectors.ssh] Running command on hv1: (pty=False) sh -c 'test -e x'",
            "[hv1] Loaded fact tasks.facts.RaplExposed",
            "[pyinfra.connectors.ssh] Running command on hv1: (pty=False) sh -c 'test -e x'",
            "[hv1] Loaded fact tasks.facts.RaplExposed",
            "[pyinfra.connectors.ssh] Running command on prom1: (pty=False) sh -c 'cat a'",
            "[prom1] Loaded fact files.FileContents (path=/etc/prometheus/a.yml)",
            "[pyinfra.connectors.ssh] Running command on prom1: (pty=False) sh -c 'cat b'",
            "[prom1] Loaded fact files.FileContents (path=/etc/prometheus/b.yml)",
        ]
    )
    profiles = parse_debug_profile(output)
    assert profiles["hv1"].commands == 2
    assert profiles["hv1"].repeated_reads() == {"tasks.facts.RaplExposed": 2}
    # The same fact with different arguments is two different reads, not a repeat.
    assert profiles["prom1"].facts["files.FileContents"] == 2
    assert profiles["prom1"].repeated_reads() == {}


def test_simulated_pool_lists_every_hypervisor_once_with_unique_ids():
    pool = simulated_pool(8)
    names = [host["name"] for host in pool if host["im_mad"] == "kvm"]
    assert names == [f"hv{i}.cloud.test" for i in range(1, 9)]
    assert len({host["id"] for host in pool}) == len(pool)


def test_operation_durations_run_from_one_start_to_the_next_and_the_last_to_the_results():
    from bench.run_bench import operation_durations

    lines = [
        (1.0, "--> Starting operation: Enable RAPL | Persist RAPL modules"),
        (1.5, "    [hv1] Success"),
        (3.0, "--> Starting operation: Scaphandre exporter | Run container"),
        (9.0, "--> Results:"),
    ]
    assert operation_durations(lines, end=9.5) == pytest.approx(
        {"Enable RAPL | Persist RAPL modules": 2.0, "Scaphandre exporter | Run container": 6.0}
    )


def test_pairs_give_one_ratio_each_and_must_match():
    from bench.paired_rerun import pair_ratios

    assert pair_ratios([2.0, 3.3], [2.0, 3.0]) == pytest.approx([1.0, 1.1])
    with pytest.raises(ValueError, match="pairs must match"):
        pair_ratios([2.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="pairs must match"):
        pair_ratios([], [])


def test_the_revision_that_runs_first_alternates():
    from bench.paired_rerun import pair_order

    orders = [pair_order(pair) for pair in range(4)]
    assert orders == [("base", "rev"), ("rev", "base"), ("base", "rev"), ("rev", "base")]


def test_process_tree_follows_children_down_from_the_root():
    from bench.run_bench import process_tree

    parents = {1: 0, 10: 1, 11: 10, 12: 11, 20: 1, 30: 99}
    assert sorted(process_tree(10, parents)) == [10, 11, 12]
    assert sorted(process_tree(1, parents)) == [1, 10, 11, 12, 20]


def test_growth_table_divides_each_step_by_the_size_before():
    from bench.run_bench import CONTROL_PATH, ControlResult, control_growth_table

    small = ControlResult(1000, dict.fromkeys(CONTROL_PATH, 0.1))
    large = ControlResult(10000, dict.fromkeys(CONTROL_PATH, 1.1))
    row = control_growth_table([small, large]).splitlines()[2]
    assert (
        row
        == "| 10,000 vs 1,000 | 10x | " + " | ".join(["11.0x"] * len(CONTROL_PATH)) + " | 11.0x |"
    )
