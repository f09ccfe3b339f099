"""`mlserver start FOLDER`, plus the one gRPC method perf_analyzer calls before it sends load
that MLServer lacks: ModelConfig, Triton's extension to the V2 protocol. MLServer has no way to
add a gRPC method from a runtime (its custom handlers are REST only), so this adds a handler for
it to MLServer's own gRPC server, answering the bytes peers.py made with Triton's protobuf
classes. Inference goes through MLServer's servicer, untouched.

    python mlserver_server.py FOLDER MODEL_CONFIG_RESPONSE_HEX
"""

from __future__ import annotations

import sys
from typing import Any

import grpc
from mlserver.cli.main import main
from mlserver.grpc.server import GRPCServer


def _answering_model_config(answer: bytes) -> None:
    create = GRPCServer._create_server

    async def model_config(request: bytes, context: Any) -> bytes:
        return answer

    def create_with_model_config(self: GRPCServer) -> Any:
        server = create(self)
        # No (de)serialisers: the request is ignored and the answer is already serialised.
        method = grpc.unary_unary_rpc_method_handler(model_config)
        server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "inference.GRPCInferenceService", {"ModelConfig": method}
                ),
            )
        )
        return server

    GRPCServer._create_server = create_with_model_config  # type: ignore[method-assign]


if __name__ == "__main__":
    folder, answer = sys.argv[1:]
    _answering_model_config(bytes.fromhex(answer))
    sys.argv = ["mlserver", "start", folder]
    main()
