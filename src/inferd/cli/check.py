"""`inferd check REPO [--json]`: validate a model repository offline, as the server would load
it, and print per model OK, its warnings (fields without effect) and its errors."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check", help="validate a model repository offline (exit code 1 on errors)"
    )
    parser.add_argument("repository", type=Path, help="the model repository folder")
    parser.add_argument("--json", action="store_true", help="one JSON document, for CI")
    parser.add_argument(
        "--default-max-batch-size",
        type=int,
        default=4,
        help="as for serve: max_batch_size given to auto-completed models (default 4)",
    )
    parser.add_argument(
        "--no-auto-complete-config",
        dest="auto_complete_config",
        action="store_false",
        help="as for serve: check configs as written, without reading the model files",
    )
    parser.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    from inferd.backends.registry import BackendRegistry
    from inferd.core.errors import InferdError
    from inferd.engine.api import LoadOptions
    from inferd.engine.checking import check_repository

    options = LoadOptions(args.default_max_batch_size, args.auto_complete_config)
    try:
        reports = check_repository(args.repository, BackendRegistry(), options)
    except InferdError as exc:
        print(f"inferd: error: {exc.message}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"models": [report.as_dict() for report in reports]}, indent=2))
    else:
        for report in reports:
            verdict = "OK" if report.ok else "ERROR"
            counted = f" ({len(report.warnings)} warning(s))" if report.warnings else ""
            print(f"{report.name}: {verdict}{counted}")
            for warning in report.warnings:
                print(f"  warning: {warning}")
            for error in report.errors:
                print(f"  error: {error}")
    return 0 if all(report.ok for report in reports) else 1
