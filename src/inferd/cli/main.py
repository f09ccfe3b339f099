"""Entry point of the `inferd` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from inferd import __version__
from inferd.cli import bench, check, cluster, convert, serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inferd", description="Model inference server (KServe V2)."
    )
    parser.add_argument("--version", action="version", version=f"inferd {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    serve.add_parser(subparsers)
    bench.add_parser(subparsers)
    cluster.add_parser(subparsers)
    convert.add_parser(subparsers)
    check.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
