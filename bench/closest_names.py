"""What one unmatched hypervisor costs: the "closest OpenNebula names" hint, computed with
plain difflib.get_close_matches and with tasks.opennebula.matching.close_matches (same
answer), for pools of 1,000 to 20,000 hosts named after one pattern, as in many clouds.

    .venv/bin/python bench/closest_names.py [--sizes 1000,10000,20000] [--repeats 3]

No test bed, no network: CPU time of the calling process, median of the repeats; prints a
markdown table. Both answers are compared for every query.
"""

from __future__ import annotations

import argparse
import difflib
import statistics
import sys
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks.opennebula.matching import close_matches

QUERIES = (
    "kvm-017-5.dc1.example.org",  # a typo of a registered FQDN
    "kvm-017-05",  # a short name, the FQDNs registered
    "hv4",  # nothing alike
)


def pool_of(size: int) -> list[str]:
    return [f"kvm-{i // 100:03d}-{i % 100:02d}.dc{1 + i % 3}.example.org" for i in range(size)]


def cpu_seconds(function, repeats: int) -> tuple[float, object]:
    times, answer = [], None
    for _ in range(repeats):
        started = time.process_time()
        answer = function()
        times.append(time.process_time() - started)
    return statistics.median(times), answer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,20000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    print("| pool size | query | difflib s | close_matches s | speed-up | same answer |")
    print("|---|---|---|---|---|---|")
    for size in (int(part) for part in args.sizes.split(",")):
        names = pool_of(size)
        for query in QUERIES:
            plain, expected = cpu_seconds(
                partial(difflib.get_close_matches, query, names, 3, 0.4), args.repeats
            )
            ours, answer = cpu_seconds(partial(close_matches, query, names, 3, 0.4), args.repeats)
            speedup = f"{plain / ours:.1f}x" if ours else "-"
            print(
                f"| {size:,} | `{query}` | {plain:.3f} | {ours:.3f} | {speedup} | {answer == expected} |"
            )
            if answer != expected:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
