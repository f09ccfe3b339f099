"""Model warmup (`model_warmup` in the config), as Triton runs it: every sample on every
instance, before the version reports READY; a failing sample makes the version UNAVAILABLE.

Samples are built at load (in the loader's thread: they may read files under the model's
`warmup/` folder) and run straight on the instances, past the scheduler, as Triton hands
them to its backends. A sample of `batch_size` N is N requests of one row each: one
execution of N stacked rows on a model that batches, N executions of one request otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inferd.backends.base import BatchRequest
from inferd.core.datatypes import BYTES, deserialize_bytes, numpy_dtype
from inferd.core.errors import InferdError, InvalidArgument
from inferd.core.model_config import ModelConfig, ModelWarmup, tensor_datatype
from inferd.core.responses import ResponseChannel
from inferd.core.types import Array
from inferd.engine.request_checks import ModelTensor, apply_reshape
from inferd.instances.instance import Instance

WARMUP_FOLDER = "warmup"  # Triton's folder for `input_data_file`, inside the model's folder

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WarmupSample:
    """One `model_warmup` entry, ready to run: the inputs of one execution, how many requests
    they hold, and how many executions one iteration makes."""

    name: str
    inputs: dict[str, Array]
    requests: int
    executions: int
    count: int


def warmup_samples(config: ModelConfig, model_dir: Path) -> tuple[WarmupSample, ...]:
    """The samples of `config.model_warmup` (blocking: reads data files). Raises
    `InvalidArgument` for a sample that cannot be built, naming it."""
    specs = {t.name: ModelTensor.from_config(t) for t in config.input}
    batched = config.max_batch_size > 0
    samples = []
    for warmup in config.model_warmup:
        if warmup.batch_size == 0:
            continue  # Triton skips a sample of batch size 0
        try:
            samples.append(_sample(warmup, config.max_batch_size, specs, model_dir, batched))
        except InferdError as exc:
            raise InvalidArgument(f"warmup sample '{warmup.name}': {exc.message}") from None
    return tuple(samples)


def _sample(
    warmup: ModelWarmup,
    max_batch_size: int,
    specs: dict[str, ModelTensor],
    model_dir: Path,
    batched: bool,
) -> WarmupSample:
    rows = warmup.batch_size
    if batched and rows > max_batch_size:
        raise InvalidArgument(f"batch_size {rows} exceeds max_batch_size {max_batch_size}")
    inputs: dict[str, Array] = {}
    for name in sorted(warmup.inputs):  # in one order, so a refusal names the same input
        given = warmup.inputs[name]
        datatype = tensor_datatype(given.data_type)
        dims = tuple(given.dims)
        if any(d < 0 for d in dims):
            raise InvalidArgument(f"input '{name}' needs every dimension set, not {list(dims)}")
        array = _data(name, given, datatype, dims, model_dir)
        if batched:  # one row per request, stacked as the scheduler would
            array = np.repeat(array[np.newaxis], rows, axis=0)
        spec = specs.get(name)  # absent: a control input the sequence batcher would add
        if spec is not None:
            array = apply_reshape(array, spec, spec.reshape, batched)
        inputs[name] = array
    requests, executions = (rows, 1) if batched else (1, rows)
    return WarmupSample(warmup.name, inputs, requests, executions, max(warmup.count, 1))


def _data(
    name: str, given: ModelWarmup.Input, datatype: str, dims: tuple[int, ...], model_dir: Path
) -> Array:
    kind = given.WhichOneof("input_data_type")
    dtype = numpy_dtype(datatype)
    if kind == "input_data_file":
        return _file_data(name, given.input_data_file, datatype, dims, model_dir)
    if datatype == BYTES:  # random BYTES are empty elements too, as in Triton
        if kind is None:
            raise InvalidArgument(f"input '{name}' sets none of zero_data, random_data, file")
        return np.full(dims, b"", dtype=np.object_)
    if kind == "zero_data":
        return np.zeros(dims, dtype=dtype)
    if kind == "random_data":
        rng = np.random.default_rng()
        if dtype == np.bool_:
            return rng.integers(0, 2, size=dims).astype(np.bool_)
        if dtype.kind == "f":  # finite values: raw random bytes would make NaNs and infinities
            return rng.random(size=dims).astype(dtype)
        raw = rng.bytes(math.prod(dims) * dtype.itemsize)
        return np.frombuffer(raw, dtype=dtype).reshape(dims).copy()
    raise InvalidArgument(f"input '{name}' sets none of zero_data, random_data, input_data_file")


def _file_data(
    name: str, file_name: str, datatype: str, dims: tuple[int, ...], model_dir: Path
) -> Array:
    folder = (model_dir / WARMUP_FOLDER).resolve()
    path = (folder / file_name).resolve()
    if not path.is_relative_to(folder):
        raise InvalidArgument(f"input '{name}': '{file_name}' is outside the warmup folder")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidArgument(
            f"input '{name}': cannot read {WARMUP_FOLDER}/{file_name}: {exc.strerror}"
        ) from None
    count = math.prod(dims)
    if datatype == BYTES:  # Triton's format: each element after its uint32 LE length
        return deserialize_bytes(data, count).reshape(dims)
    dtype = numpy_dtype(datatype)
    needed = count * dtype.itemsize
    if len(data) < needed:
        raise InvalidArgument(
            f"input '{name}' needs {needed} bytes, but {WARMUP_FOLDER}/{file_name} "
            f"holds {len(data)}"
        )
    return np.frombuffer(data[:needed], dtype=dtype).reshape(dims).copy()


async def warm_up(
    model: str,
    instances: Sequence[Instance],
    samples: Sequence[WarmupSample],
    output_names: Sequence[str],
    decoupled: bool,
) -> float:
    """Run every sample on every instance of `model` (the instances at once); return the
    seconds it took. Raises `InvalidArgument` naming the sample that failed (Triton's
    wording), once the other instances' warmups are cancelled."""
    started = time.monotonic()
    tasks = [
        asyncio.ensure_future(_warm_instance(model, i, samples, output_names, decoupled))
        for i in instances
    ]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    return time.monotonic() - started


async def _warm_instance(
    model: str,
    instance: Instance,
    samples: Sequence[WarmupSample],
    output_names: Sequence[str],
    decoupled: bool,
) -> None:
    # The log lines are Triton's, which its QA and users' scripts look for.
    for sample in samples:
        for iteration in range(1, sample.count + 1):
            logger.info(
                "model '%s' instance %s is running warmup sample '%s' for iteration %d",
                model,
                instance.name,
                sample.name,
                iteration,
            )
            try:
                for _ in range(sample.executions):
                    await _execute(instance, sample, output_names, decoupled)
            except InferdError as exc:
                logger.info(
                    "model '%s' instance %s failed to run warmup sample '%s'",
                    model,
                    instance.name,
                    sample.name,
                )
                raise InvalidArgument(
                    f"failed to run warmup sample '{sample.name}': {exc.message};"
                ) from None


async def _execute(
    instance: Instance, sample: WarmupSample, output_names: Sequence[str], decoupled: bool
) -> None:
    requests = [BatchRequest(i, i + 1, f"warmup-{sample.name}") for i in range(sample.requests)]
    if not decoupled:
        result = await instance.execute(sample.inputs, output_names, requests)
        for answer in result.outputs if isinstance(result.outputs, list) else ():
            if isinstance(answer, InferdError):
                raise answer
        return
    # A decoupled model's responses are read as it sends them (a sender blocks while too many
    # wait unread), to the final one of each request.
    channels = [ResponseChannel() for _ in requests]
    for request, channel in zip(requests, channels, strict=True):
        request.responses = channel
    execution = asyncio.ensure_future(instance.execute(sample.inputs, output_names, requests))
    for channel in channels:
        execution.add_done_callback(channel.execution_done)
    try:
        for channel in channels:
            while not (item := await channel.get()).final:
                pass
            if item.error is not None:
                raise item.error
        await execution
    finally:
        execution.cancel()
        for channel in channels:
            channel.cancel()
