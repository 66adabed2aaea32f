"""Energy and emissions per VM and per hypervisor over a month (or another period), from
the Prometheus that records the deploy's attribution rules.

    python3 energy_report.py --prometheus http://127.0.0.1:9090 --month 2026-11

Writes energy-report-2026-11-vms.csv and energy-report-2026-11-hosts.csv (--csv-dir) and
prints the same figures as a table. Without --month: the last month that is over (UTC).
Needs only Python's standard library; run it from this directory.
"""

import sys

from tasks.accounting.report import main

if __name__ == "__main__":
    sys.exit(main())
