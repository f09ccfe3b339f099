"""What TLS costs: the example MLP (256->1024->1024->256 FP32, batch-1 requests) over HTTP and
gRPC, plaintext and TLS, at concurrency 1 and 32, in one run.

    python benchmarks/tls.py [--seconds 5] [--concurrency 1,32]

One server per mode (plaintext, then TLS on both ports with a certificate made for the run);
tritonclient as the client, one process per concurrent caller (benchmarks/common.py), each
opening its connection once, so the figures are TLS's cost per request after the handshake.
The last column is TLS's throughput over plaintext's for the same protocol and concurrency.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from common import (
    HEADER,
    Figures,
    load_from_processes,
    served,
    write_mlp_repository,
)

WIDTH = 256


def tls_flags(certs: Any) -> list[str]:
    flags = []
    for protocol in ("http", "grpc"):
        flags += [f"--{protocol}-use-ssl", f"--{protocol}-server-cert", str(certs.server.cert),
                  f"--{protocol}-server-key", str(certs.server.key)]  # fmt: skip
    return flags


def caller(protocol: str, url: str, ca: Path | None) -> Callable[[], Callable[[], object]]:
    """A factory of one client's call (made in the process that calls it)."""

    def make() -> Callable[[], object]:
        client: Any
        if protocol == "http":
            import tritonclient.http as module

            options = {"ssl": True, "ssl_options": {"ca_certs": str(ca)}} if ca else {}
            client = module.InferenceServerClient(url, **options)
        else:
            import tritonclient.grpc as module

            options = {"ssl": True, "root_certificates": str(ca)} if ca else {}
            client = module.InferenceServerClient(url, **options)
        tensor = module.InferInput("input", [1, WIDTH], "FP32")
        tensor.set_data_from_numpy(np.ones((1, WIDTH), dtype=np.float32))
        if protocol == "http":
            outputs = [module.InferRequestedOutput("output", binary_data=True)]
        else:
            outputs = [module.InferRequestedOutput("output")]
        return lambda: client.infer("mlp", [tensor], outputs=outputs)

    return make


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", default="1,32")
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]
    # Importable once `common` has put the checkout on sys.path.
    from tests.integration.tls_certs import make_certificates

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_mlp_repository(root / "repository", None)
        (root / "certs").mkdir()
        certs = make_certificates(root / "certs")
        figures: dict[tuple[str, str, int], Figures] = {}
        for mode, flags, ca in (("plaintext", [], None), ("TLS", tls_flags(certs), certs.ca)):
            with served(root / "repository", *flags) as server:
                for protocol, url in (("http", server.http_url), ("grpc", server.grpc_url)):
                    for level in levels:
                        label = f"{protocol} {mode}, concurrency {level}"
                        make = caller(protocol, url, ca)
                        # Even alone, the caller is a child process: gRPC in this one
                        # would hang the children forked after it.
                        load = load_from_processes(make, level, args.seconds, label)
                        figures[(mode, protocol, level)] = load
    print(HEADER.replace("vs raw", "TLS/plain"))
    for (mode, protocol, level), result in figures.items():
        plain = figures[("plaintext", protocol, level)] if mode == "TLS" else None
        print(result.row(plain))


if __name__ == "__main__":
    main()
