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
    parser.addoption(
        "--verify-timeout",
        action="store",
        type=int,
        default=120,
        metavar="SECONDS",
        help="tests/verify: fail a check whose host has not answered within this many seconds (0: no limit)",
    )


def _inside_verify(path: Path) -> bool:
    path = path.resolve()
    return path == VERIFY_DIR or VERIFY_DIR in path.parents


def _verify_named_explicitly(config) -> bool:
    """True when the command line names tests/verify (or a file in it) itself."""
    return any(
        _inside_verify(Path(config.invocation_params.dir, str(arg).split("::", 1)[0]))
        for arg in config.args
    )


def pytest_ignore_collect(collection_path: Path, config):
    """Leave tests/verify out unless --inventory is given; no opinion on anything else.

    When tests/verify is named on the command line without --inventory it is
    collected anyway, so its conftest can say that --inventory is missing
    instead of pytest reporting "no tests ran".
    """
    if config.getoption("--inventory") or not _inside_verify(Path(collection_path)):
        return None
    if _verify_named_explicitly(config):
        return None
    return True
