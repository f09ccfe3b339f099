"""Request tensors for a benchmark, built once per run from the model's metadata.

Shapes come from the metadata; variable (-1) dims must be given with `--shape`, which (as in
perf_analyzer) leaves out the batch axis of models that batch. Data is random, zero, or read
from a JSON file in perf_analyzer's `--input-data` layout:

    {"data": [{"INPUT0": [1, 2, ...], "TEXT": {"content": ["a", "b"], "shape": [2]}}, ...]}

one entry per distinct request (used round robin); each value is a flat list, a
`{"content", "shape"}` pair, or `{"b64": ...}` raw little-endian bytes.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferd.core.datatypes import BYTES, numpy_dtype
from inferd.core.errors import InvalidArgument, NotFound

Array = npt.NDArray[Any]
RequestData = dict[str, Array]

_SEED = 0
# Small non-negative integers: valid as indices, no overflow in any integer type.
_INT_HIGH = 100
_STRING_LENGTH = 16


@dataclass(frozen=True, slots=True)
class InputMetadata:
    """One input as the server's model metadata describes it."""

    name: str
    datatype: str
    shape: tuple[int, ...]  # as the metadata gives it: -1 for a variable dim


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    version: str
    inputs: tuple[InputMetadata, ...]
    max_batch_size: int  # 0: the model does not batch
    decoupled: bool = False  # may send many responses per request: only `--streaming` works

    @property
    def batches(self) -> bool:
        return self.max_batch_size > 0


def build_requests(
    info: ModelInfo, batch_size: int, shapes: Mapping[str, tuple[int, ...]], input_data: str
) -> list[RequestData]:
    """The distinct requests of the run: one for random/zero data, one per file entry."""
    _check_batch_size(info, batch_size)
    unknown = set(shapes) - {spec.name for spec in info.inputs}
    if unknown:
        names = ", ".join(spec.name for spec in info.inputs)
        raise NotFound(
            f"--shape names {sorted(unknown)}, but the inputs of '{info.name}' are {names}"
        )
    dims = {spec.name: _sample_dims(info, spec, shapes.get(spec.name)) for spec in info.inputs}
    if input_data in ("random", "zero"):
        rng = np.random.default_rng(_SEED)
        request = {}
        for spec in info.inputs:
            sample = _known(spec, dims[spec.name])
            request[spec.name] = _generate(
                spec.datatype,
                (batch_size, *sample) if info.batches else sample,
                rng,
                input_data == "zero",
            )
        return [request]
    return _from_file(Path(input_data), info, dims, batch_size)


def _check_batch_size(info: ModelInfo, batch_size: int) -> None:
    if batch_size < 1:
        raise InvalidArgument("--batch-size must be at least 1")
    if not info.batches and batch_size != 1:
        raise InvalidArgument(
            f"model '{info.name}' does not batch (max_batch_size 0); use --batch-size 1"
        )
    if info.batches and batch_size > info.max_batch_size:
        raise InvalidArgument(
            f"--batch-size {batch_size} exceeds max_batch_size {info.max_batch_size}"
            f" of '{info.name}'"
        )


def _sample_dims(
    info: ModelInfo, spec: InputMetadata, override: tuple[int, ...] | None
) -> tuple[int, ...]:
    """The dims of one sample (batch axis removed), with -1 where still unknown."""
    dims = spec.shape[1:] if info.batches else spec.shape
    if override is None:
        return dims
    compatible = len(override) == len(dims) and all(
        d in (-1, o) for d, o in zip(dims, override, strict=True)
    )
    if not compatible:
        raise InvalidArgument(
            f"--shape {spec.name}:{','.join(map(str, override))}"
            f" does not fit its shape {list(dims)}"
            + (" (leave out the batch axis)" if info.batches else "")
        )
    return override


def _known(spec: InputMetadata, dims: tuple[int, ...]) -> tuple[int, ...]:
    if any(dim < 0 for dim in dims):
        raise InvalidArgument(
            f"input '{spec.name}' has variable dims {list(dims)}:"
            f" give them with --shape {spec.name}:d1,d2,..."
        )
    return dims


def _generate(datatype: str, shape: tuple[int, ...], rng: np.random.Generator, zero: bool) -> Array:
    dtype = numpy_dtype(datatype)
    if datatype == BYTES:
        count = int(np.prod(shape))
        if zero:
            return np.full(shape, b"0", dtype=np.object_)
        digits = rng.integers(ord("0"), ord("9") + 1, size=(count, _STRING_LENGTH), dtype=np.uint8)
        return np.array([row.tobytes() for row in digits], dtype=np.object_).reshape(shape)
    if zero:
        return np.zeros(shape, dtype=dtype)
    if dtype.kind in "iu":
        return rng.integers(0, _INT_HIGH, size=shape, dtype=dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.random(shape, dtype=np.float32).astype(dtype)


def _from_file(
    path: Path, info: ModelInfo, dims: dict[str, tuple[int, ...]], batch_size: int
) -> list[RequestData]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"--input-data {path}: {error}") from None
    entries = document.get("data") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f'--input-data {path}: expected {{"data": [{{INPUT: values}}, ...]}}')
    requests = []
    for index, entry in enumerate(entries):
        request = {}
        for spec in info.inputs:
            if not isinstance(entry, dict) or spec.name not in entry:
                raise InvalidArgument(
                    f"--input-data {path}: entry {index} has no input '{spec.name}'"
                )
            sample = _file_tensor(spec, entry[spec.name], dims[spec.name], f"{path} entry {index}")
            request[spec.name] = (
                np.repeat(sample[np.newaxis], batch_size, axis=0) if info.batches else sample
            )
        requests.append(request)
    return requests


def _file_tensor(spec: InputMetadata, value: Any, dims: tuple[int, ...], where: str) -> Array:
    dtype = numpy_dtype(spec.datatype)
    try:
        if isinstance(value, dict) and "b64" in value:
            return np.frombuffer(base64.b64decode(value["b64"]), dtype=dtype).reshape(
                _known(spec, dims)
            )
        content, shape = (
            (value["content"], tuple(value["shape"])) if isinstance(value, dict) else (value, None)
        )
        if spec.datatype == BYTES:
            flat = np.array(
                [item.encode() if isinstance(item, str) else bytes(item) for item in content],
                dtype=np.object_,
            )
        else:
            flat = np.asarray(content, dtype=dtype)
        return flat.reshape(shape if shape is not None else _known(spec, dims))
    except InvalidArgument:
        raise
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidArgument(f"--input-data {where}, input '{spec.name}': {error}") from None
