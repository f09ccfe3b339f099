"""`inferd bench`: measure throughput and latency of a model on any KServe V2 server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from inferd.bench.options import (
    DEFAULT_DURATION_S,
    DEFAULT_MAX_TOKENS,
    DEFAULT_PROMPT,
    BenchOptions,
    LoadSteps,
    normalize_url,
    parse_shape,
    parse_steps,
)
from inferd.core.errors import InferdError

T = TypeVar("T")

_EPILOG = """\
RANGE is V, START:END or START:END:STEP; STEP adds (1:8:2 -> 1,3,5,7) and xK multiplies
(1:32:x2 -> 1,2,4,8,16,32). Exit status: 0 ok, 1 every request failed, 2 bad arguments or
a run that could not start (unknown model, no server).
example: inferd bench -m simple --concurrency 1:16:x2 --requests 2000 --plot lat.png
streaming: inferd bench -m repeat --streaming -i grpc --shape IN:4 --concurrency 1:8:x2
openai: inferd bench -m tiny_lm --streaming -i openai --openai-route chat --max-tokens 32
"""


def _argument(parse: Callable[[str], T]) -> Callable[[str], T]:
    """An argparse `type` that shows the parser's own message for a bad value."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except InferdError as error:
            raise argparse.ArgumentTypeError(error.message) from None

    return convert


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="load-test a model on any KServe V2 server (inferd, Triton, MLServer)",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-m", "--model", required=True, help="model name")
    parser.add_argument("-x", "--model-version", default="", help="version (default: server's)")
    parser.add_argument("-u", "--url", help="host:port (default localhost:8000, grpc :8001)")
    parser.add_argument("-i", "--protocol", choices=("http", "grpc", "openai"), default="http")
    parser.add_argument(
        "--streaming", action="store_true",
        help="stream responses: gRPC ModelStreamInfer, HTTP generate_stream (SSE), or -i openai's"
        " /v1 route; reports time to first response and between responses",
    )  # fmt: skip
    openai = parser.add_argument_group("-i openai (with --streaming)")
    openai.add_argument(
        "--openai-route", choices=("completions", "chat"), default="completions",
        help="/v1/completions or /v1/chat/completions (default completions)",
    )  # fmt: skip
    openai.add_argument(
        "--prompt", default=DEFAULT_PROMPT, help=f"the prompt (default {DEFAULT_PROMPT!r})"
    )
    openai.add_argument(
        "--max-tokens", type=int, default=DEFAULT_MAX_TOKENS,
        help=f"max_tokens of every request (default {DEFAULT_MAX_TOKENS})",
    )  # fmt: skip
    load = parser.add_mutually_exclusive_group()
    load.add_argument(
        "--concurrency", metavar="RANGE", type=_argument(lambda t: parse_steps(t, integer=True)),
        help="requests in flight per step (default 1)",
    )  # fmt: skip
    load.add_argument(
        "--request-rate", metavar="RANGE", type=_argument(lambda t: parse_steps(t, integer=False)),
        help="requests sent per second per step, on a constant schedule",
    )  # fmt: skip
    parser.add_argument("-b", "--batch-size", type=int, default=1, help="batch size per request")
    parser.add_argument(
        "--shape", action="append", default=[], metavar="NAME:d1,d2", type=_argument(parse_shape),
        help="dims of a variable-shape input, batch axis excluded (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "--input-data", default="random", metavar="random|zero|FILE.json", help="request data"
    )
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument(
        "--duration",
        type=float,
        metavar="S",
        help=f"seconds per step (default {DEFAULT_DURATION_S:g})",
    )
    amount.add_argument("--requests", type=int, metavar="N", help="requests per step")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write one row per step")
    parser.add_argument("--json", type=Path, metavar="FILE", help="write the run (for --compare)")
    parser.add_argument("--plot", type=Path, metavar="FILE.png", help="latency vs throughput")
    parser.add_argument(
        "--compare", type=Path, nargs="+", default=[], metavar="RUN.json",
        help="earlier --json runs to draw in the same --plot",
    )  # fmt: skip
    parser.add_argument("--label", default="", help="name of this run in tables and plots")
    parser.add_argument("--no-progress", action="store_true", help="no live progress bar")
    parser.set_defaults(run=run)


def options_from_args(args: argparse.Namespace) -> BenchOptions:
    if args.request_rate is not None:
        steps = LoadSteps("request_rate", args.request_rate)
    else:
        steps = LoadSteps("concurrency", args.concurrency or (1.0,))
    if args.requests is not None and args.requests < 1:
        raise argparse.ArgumentTypeError("--requests must be at least 1")
    if args.duration is not None and args.duration <= 0:
        raise argparse.ArgumentTypeError("--duration must be positive")
    return BenchOptions(
        model=args.model,
        url=normalize_url(args.url, args.protocol),
        protocol=args.protocol,
        streaming=args.streaming,
        openai_route=args.openai_route,
        prompt=args.prompt,
        max_tokens=args.max_tokens,
        model_version=args.model_version,
        steps=steps,
        batch_size=args.batch_size,
        shapes=dict(args.shape),
        input_data=args.input_data,
        duration_s=None if args.requests is not None else (args.duration or DEFAULT_DURATION_S),
        requests=args.requests,
        csv=args.csv,
        json=args.json,
        plot=args.plot,
        compare=tuple(args.compare),
        label=args.label,
        progress=not args.no_progress,
    )


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
        if args.compare and not args.plot:
            raise argparse.ArgumentTypeError("--compare needs --plot")
        from inferd.bench.runner import run_bench  # rich, matplotlib, tritonclient: only now

        return run_bench(options)
    except (InferdError, argparse.ArgumentTypeError) as error:
        print(f"inferd bench: error: {error}", file=sys.stderr)
        return 2
