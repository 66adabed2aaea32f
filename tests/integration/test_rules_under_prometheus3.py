"""The shipped rules' hand-computed tests (files/prometheus/scaphandre_rules_test.yml) also
pass under Prometheus 3.5's promtool, whose range selectors leave out their left edge: the
attribution, energy and emissions mean the same on a server upgraded to Prometheus 3.

The 3.5 promtool is the one the test bed fetches (tests/testbed/fetch-prometheus3.sh, run by
scripts/setup.sh); the unit tests run the same file under Debian's 2.42.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROMTOOL3 = REPO / ".testbed" / "prometheus3" / "root" / "usr" / "bin" / "promtool"
RULES_DIR = REPO / "files" / "prometheus"


def test_the_rules_tests_pass_under_prometheus_3(tmp_path):
    assert PROMTOOL3.is_file(), (
        f"{PROMTOOL3} missing: run tests/testbed/fetch-prometheus3.sh (scripts/setup.sh does)"
    )
    version = subprocess.run(
        [str(PROMTOOL3), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert "version 3." in version.stdout + version.stderr
    for name in ("scaphandre_rules.yml", "scaphandre_rules_test.yml"):
        shutil.copy(RULES_DIR / name, tmp_path / name)
    tested = subprocess.run(
        [str(PROMTOOL3), "test", "rules", "scaphandre_rules_test.yml"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
