"""Test-session options shared by every test directory.

tests/verify checks real hosts over SSH after a deploy. A plain `pytest` run
(unit and integration tests) must never try to reach them, so that directory
is collected only when `--inventory` names the inventory to verify.
"""

from __future__ import annotations

from pathlib import Path

VERIFY_DIR = Path(__file__).resolve().parent / "verify"


def pytest_addoption(parser):
    parser.addoption(
        "--inventory",
        action="store",
        default=None,
        metavar="FILE",
        help="pyinfra inventory whose hosts tests/verify checks after a deploy "
        "(e.g. inventory.py, run from the repository root); without it tests/verify is not collected",
    )


def pytest_ignore_collect(collection_path: Path, config):
    """Leave tests/verify out unless --inventory is given; no opinion on anything else."""
    if config.getoption("--inventory"):
        return None
    path = Path(collection_path).resolve()
    if path == VERIFY_DIR or VERIFY_DIR in path.parents:
        return True
    return None
