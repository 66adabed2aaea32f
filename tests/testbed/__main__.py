"""Command line for the test bed.

python -m tests.testbed build  [--prefix P] [--state-dir D]
python -m tests.testbed up     [--prefix P] [--state-dir D] [--hypervisors hv1,hv2,hv3] [--reuse]
                               [--preinstalled-docker hv3] [--prometheus-kind opennebula]
python -m tests.testbed status [--prefix P] [--state-dir D]
python -m tests.testbed down   [--prefix P] [--state-dir D]
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tests.testbed.bed import PROMETHEUS_KINDS, TestBed, TestBedError
from tests.testbed.images import ImageBuildError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.testbed", description="Simulated hypervisors + Prometheus host"
    )
    parser.add_argument("action", choices=("build", "up", "down", "status"))
    parser.add_argument(
        "--prefix",
        default="sotb-dev",
        help="Docker name prefix of this bed (must start with sotb-)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        help="keys and per-host files (default: .testbed/PREFIX)",
    )
    parser.add_argument(
        "--hypervisors", default="hv1,hv2,hv3", help="comma-separated hypervisor names (up)"
    )
    parser.add_argument(
        "--preinstalled-docker",
        default="",
        help="comma-separated hypervisors whose operator installed Docker at "
        "its defaults before any deploy (up)",
    )
    parser.add_argument(
        "--prometheus-kind",
        default="debian",
        choices=sorted(PROMETHEUS_KINDS),
        help="what prom1 is: Debian's package, OpenNebula-style or Prometheus 3",
    )
    parser.add_argument("--ssh-port-base", type=int, default=None)
    parser.add_argument("--prometheus-api-port", type=int, default=None)
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="up: keep running containers of this prefix instead of recreating",
    )
    return parser.parse_args(argv)


def print_hosts(bed: TestBed) -> None:
    """A table of hosts, ports and VM IDs, and how to log in."""
    for row in bed.status():
        host = bed.hosts.get(row["host"])
        vms = ",".join(str(i) for i in host.vm_ids) if host else ""
        variant = host.image_variant if host else ""
        print(
            f"{row['host']:<8} {row['state']:<9} ssh 127.0.0.1:{row['ssh_port']}  "
            f"{row['container']:<22} {variant:<22} vms={vms}"
        )
    print(f"prometheus: {bed.prometheus_url}   ssh: ssh -F {bed.ssh_config} hv1")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        bed = TestBed(
            args.prefix,
            args.state_dir,
            hypervisors=[h for h in args.hypervisors.split(",") if h],
            ssh_port_base=args.ssh_port_base,
            prometheus_api_port=args.prometheus_api_port,
            preinstalled_docker=[h for h in args.preinstalled_docker.split(",") if h],
            prometheus_kind=args.prometheus_kind,
        )
    except ValueError as exc:
        print(f"test bed: {exc}", file=sys.stderr)
        return 2
    started = time.monotonic()
    try:
        if args.action == "build":
            bed.build_images()
            print(
                f"images: {bed.hypervisor_image} {bed.prometheus_image} "
                f"(seconds per image: {bed.build_timings})"
            )
        elif args.action == "up":
            bed.build_images()
            bed.up(reuse=args.reuse)
            print_hosts(bed)
        elif args.action == "status":
            print_hosts(bed)
        else:
            bed.down()
    except (TestBedError, ImageBuildError) as exc:
        print(f"test bed: {exc}", file=sys.stderr)
        return 1
    print(f"{args.action} done in {time.monotonic() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
