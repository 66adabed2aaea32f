"""Keeps docs/faults.md honest: every test it names exists, and every fault test is named."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MATRIX = REPO / "docs" / "faults.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py::\w+(?:\[[\w.-]+\])?)`")


def named_ids() -> set[str]:
    return set(TEST_ID.findall(MATRIX.read_text()))


def fault_test_files() -> list[str]:
    """Files whose every test is a fault case, so each must have its row."""
    return ["tests/e2e/test_faults.py", "tests/e2e/test_robustness.py"]


@pytest.fixture(scope="module")
def collected() -> set[str]:
    """Node ids pytest collects from every file the matrix names and every fault test file."""
    files = sorted({test_id.split("::")[0] for test_id in named_ids()} | set(fault_test_files()))
    missing = [f for f in files if not (REPO / f).is_file()]
    assert not missing, f"docs/faults.md names files that do not exist: {missing}"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *files],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def test_every_test_the_matrix_names_exists(collected):
    functions = {node.split("[")[0] for node in collected}
    unknown = sorted(
        test_id for test_id in named_ids() if test_id not in collected and test_id not in functions
    )
    assert not unknown, f"docs/faults.md names tests that pytest does not collect: {unknown}"


def test_every_fault_test_is_in_the_matrix(collected):
    named = named_ids()
    fault_files = tuple(f"{path}::" for path in fault_test_files())
    unlisted = sorted(
        node
        for node in collected
        if node.startswith(fault_files) and node not in named and node.split("[")[0] not in named
    )
    assert not unlisted, f"fault tests missing from docs/faults.md: {unlisted}"
