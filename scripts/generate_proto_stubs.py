"""Regenerate typings/ (mypy stubs for tritonclient's `model_config_pb2` and `service_pb2`).

tritonclient ships the generated protobuf modules without stubs, so `mypy --strict` would see
every model config as `Any`. The stubs are made from the descriptors of the installed modules
themselves (no .proto files, no protoc), by mypy-protobuf's code generator:

    pip install mypy-protobuf && python scripts/generate_proto_stubs.py

tests/unit/core/test_proto_stubs.py checks the committed stubs against the runtime descriptors.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2
from google.protobuf.compiler import plugin_pb2
from tritonclient.grpc import model_config_pb2, service_pb2

STUBS = Path(__file__).resolve().parent.parent / "typings"
PACKAGE = "tritonclient/grpc"
# tritonclient renames grpc_service_pb2 to service_pb2; the stubs must carry its import names.
PROTO_PATHS = {
    model_config_pb2.DESCRIPTOR.name: f"{PACKAGE}/model_config.proto",
    service_pb2.DESCRIPTOR.name: f"{PACKAGE}/service.proto",
}
PACKAGE_INIT = '''"""The parts of tritonclient that inferd types; the rest stays untyped."""

from typing import Any

def __getattr__(name: str) -> Any: ...
'''


def _file_proto(module: object) -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto()
    module.DESCRIPTOR.CopyToProto(proto)  # type: ignore[attr-defined]
    proto.name = PROTO_PATHS[proto.name]
    proto.dependency[:] = [PROTO_PATHS[name] for name in proto.dependency]
    return proto


def generate() -> dict[str, str]:
    """The stub files, relative path -> text."""
    request = plugin_pb2.CodeGeneratorRequest()
    for module in (model_config_pb2, service_pb2):
        proto = _file_proto(module)
        request.proto_file.append(proto)
        request.file_to_generate.append(proto.name)
    reply = subprocess.run(
        [sys.executable, "-c", "from mypy_protobuf.main import main; main()"],
        input=request.SerializeToString(),
        capture_output=True,
        check=True,
    )
    response = plugin_pb2.CodeGeneratorResponse.FromString(reply.stdout)
    if response.error:
        raise RuntimeError(response.error)
    files = {item.name: item.content for item in response.file}
    files["tritonclient/__init__.pyi"] = PACKAGE_INIT
    files[f"{PACKAGE}/__init__.pyi"] = PACKAGE_INIT
    return files


def main() -> None:
    for name, text in generate().items():
        path = STUBS / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
