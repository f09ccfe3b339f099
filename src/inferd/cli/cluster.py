"""`inferd cluster status`: what a Ray cluster that inferd uses holds, read from Ray."""

from __future__ import annotations

import argparse
import sys

from inferd.core.errors import InferdError


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("cluster", help="inspect the Ray cluster inferd runs on")
    actions = parser.add_subparsers(dest="action", required=True)
    status = actions.add_parser(
        "status", help="nodes, instances per model and node, and pending placements"
    )
    status.add_argument(
        "--cluster",
        required=True,
        metavar="ADDR",
        help="the cluster's address: HOST:PORT of its head (as inferd serve logs it), "
        "ray://HOST:PORT, or auto",
    )
    status.set_defaults(run=run_status)


def run_status(args: argparse.Namespace) -> int:
    from inferd.cluster.connect import connect

    try:
        if args.cluster.startswith("local"):
            raise InferdError(
                "cluster status reads an existing cluster: give the address that "
                "`inferd serve --cluster local:N` logs ('GCS at HOST:PORT')"
            )
        connection = connect(args.cluster, quiet=True)
    except InferdError as exc:
        print(f"inferd: error: {exc.message}", file=sys.stderr)
        return 2
    try:
        from inferd.cluster.status import read_status

        print(read_status().render())
    finally:
        connection.close()
    return 0
