"""An ensemble's steps as a DAG of tensors: built from its config, checked, and planned.

Pure logic: no engine, no I/O. `build_graph` checks the structure (every tensor produced
once, every input produced, no cycles); `check_signatures` checks it against the composing
models' inputs, outputs, datatypes, shapes and batch sizes; `EnsembleGraph.plan` says which
steps a request for some outputs needs and how often each tensor is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig

LATEST = -1  # a step's `model_version` when it follows the composing model's latest version


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    model_name: str
    model_version: int
    input_map: Mapping[str, str]  # composing model input -> ensemble tensor it reads
    output_map: Mapping[str, str]  # composing model output -> ensemble tensor it writes

    def describe(self) -> str:
        return f"step {self.index} (model '{self.model_name}')"


@dataclass(frozen=True, slots=True)
class TensorType:
    datatype: str  # a V2 datatype name
    shape: tuple[int, ...]  # with a leading -1 when the model batches; -1 = any size
    optional: bool = False


@dataclass(frozen=True, slots=True)
class ModelSignature:
    """What an ensemble needs to know of a composing model (or of itself)."""

    max_batch_size: int
    inputs: Mapping[str, TensorType]
    outputs: Mapping[str, TensorType]


@dataclass(frozen=True, slots=True)
class Plan:
    """The work one request for a set of outputs needs."""

    steps: tuple[int, ...]  # in dependency order
    waiting: Mapping[int, int]  # step -> inputs it waits for that steps produce
    uses: Mapping[str, int]  # tensor -> reads by planned steps (+1 when it is returned)
    readers: Mapping[str, tuple[int, ...]]  # tensor -> planned steps that read it


@dataclass(frozen=True, slots=True)
class EnsembleGraph:
    name: str
    steps: tuple[Step, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    producer: Mapping[str, int]  # tensor written by a step -> that step's index
    order: tuple[int, ...]  # every step, each after the steps it reads from

    def plan(self, wanted: Iterable[str]) -> Plan:
        wanted = tuple(wanted)
        needed: set[int] = set()
        stack = [self.producer[t] for t in wanted if t in self.producer]
        while stack:
            index = stack.pop()
            if index in needed:
                continue
            needed.add(index)
            step = self.steps[index]
            stack.extend(self.producer[t] for t in step.input_map.values() if t in self.producer)
        steps = tuple(i for i in self.order if i in needed)
        uses: dict[str, int] = dict.fromkeys(wanted, 1)
        waiting: dict[int, int] = {}
        readers: dict[str, tuple[int, ...]] = {}
        for index in steps:
            reads = set(self.steps[index].input_map.values())
            waiting[index] = sum(1 for t in reads if t in self.producer)
            for tensor in reads:
                uses[tensor] = uses.get(tensor, 0) + 1
                readers[tensor] = (*readers.get(tensor, ()), index)
        return Plan(steps, waiting, uses, readers)


def steps_from_config(config: ModelConfig) -> tuple[Step, ...]:
    """The `ensemble_scheduling.step` entries of a `ModelConfig`."""
    return tuple(
        Step(
            index,
            step.model_name,
            int(step.model_version),
            dict(step.input_map),
            dict(step.output_map),
        )
        for index, step in enumerate(config.ensemble_scheduling.step)
    )


def build_graph(
    name: str, steps: Sequence[Step], inputs: Sequence[str], outputs: Sequence[str]
) -> EnsembleGraph:
    """Check the structure of an ensemble; raise `InvalidArgument` naming the step and tensor."""
    if not steps:
        raise InvalidArgument(f"ensemble '{name}' has no steps")
    producer = _producers(name, steps, inputs)
    _check_reads(name, steps, inputs, producer)
    for tensor in outputs:
        if tensor not in producer:
            raise InvalidArgument(f"ensemble '{name}' output '{tensor}' is produced by no step")
    order = _dependency_order(name, steps, producer)
    return EnsembleGraph(name, tuple(steps), tuple(inputs), tuple(outputs), producer, order)


def _producers(name: str, steps: Sequence[Step], inputs: Sequence[str]) -> dict[str, int]:
    """Which step writes each tensor; each tensor is written once, and never an input."""
    producer: dict[str, int] = {}
    for step in steps:
        if not step.model_name:
            raise InvalidArgument(f"ensemble '{name}' step {step.index} names no model")
        if not step.output_map:
            raise InvalidArgument(f"ensemble '{name}' {step.describe()} maps no outputs")
        for tensor in step.output_map.values():
            if tensor in inputs:
                raise InvalidArgument(
                    f"ensemble '{name}' {step.describe()} writes tensor '{tensor}', "
                    "which is an input of the ensemble"
                )
            if tensor in producer:
                raise InvalidArgument(
                    f"ensemble '{name}' tensor '{tensor}' is produced twice: by "
                    f"{steps[producer[tensor]].describe()} and {step.describe()}"
                )
            producer[tensor] = step.index
    return producer


def _check_reads(
    name: str, steps: Sequence[Step], inputs: Sequence[str], producer: Mapping[str, int]
) -> None:
    for step in steps:
        for model_input, tensor in step.input_map.items():
            if tensor not in producer and tensor not in inputs:
                raise InvalidArgument(
                    f"ensemble '{name}' {step.describe()} input '{model_input}' reads tensor "
                    f"'{tensor}', which is neither an ensemble input nor produced by a step"
                )


def _dependency_order(
    name: str, steps: Sequence[Step], producer: Mapping[str, int]
) -> tuple[int, ...]:
    """Kahn's algorithm; the steps left over lie on (or behind) a cycle."""
    readers: dict[int, list[int]] = {step.index: [] for step in steps}
    waiting: dict[int, int] = {}
    for step in steps:
        sources = {producer[t] for t in step.input_map.values() if t in producer}
        waiting[step.index] = len(sources)
        for source in sources:
            readers[source].append(step.index)
    ready = [index for index, count in waiting.items() if count == 0]
    order: list[int] = []
    while ready:
        index = ready.pop()
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if len(order) < len(steps):
        stuck = next(steps[i] for i in sorted(waiting) if waiting[i] > 0)
        model_input, tensor = next(
            (k, t) for k, t in stuck.input_map.items() if t in producer and waiting[producer[t]]
        )
        raise InvalidArgument(
            f"ensemble '{name}' has a cycle: {stuck.describe()} input '{model_input}' reads "
            f"tensor '{tensor}', which depends on that step's own outputs"
        )
    return tuple(order)


def check_signatures(
    graph: EnsembleGraph, ensemble: ModelSignature, models: Sequence[ModelSignature]
) -> None:
    """Check each step against its composing model (`models[i]` serves step i) and the
    ensemble's declared inputs and outputs; raise `InvalidArgument` naming step and tensor."""
    name = graph.name
    types: dict[str, tuple[TensorType, str]] = {
        tensor: (kind, f"ensemble input '{tensor}'") for tensor, kind in ensemble.inputs.items()
    }
    for index in graph.order:
        step, model = graph.steps[index], models[index]
        where = f"ensemble '{name}' {step.describe()}"
        if ensemble.max_batch_size > model.max_batch_size:
            raise InvalidArgument(
                f"{where}: the ensemble's max_batch_size {ensemble.max_batch_size} is larger "
                f"than the model's {model.max_batch_size}"
            )
        _check_names(where, "input", step.input_map, model.inputs)
        missing = sorted(
            n for n, t in model.inputs.items() if not t.optional and n not in step.input_map
        )
        if missing:
            raise InvalidArgument(f"{where}: model inputs {missing} are not mapped")
        _check_names(where, "output", step.output_map, model.outputs)
        for model_input, tensor in step.input_map.items():
            produced, source = types[tensor]
            _check_match(
                f"{where} input '{model_input}'",
                model.inputs[model_input],
                produced,
                tensor,
                source,
            )
        for model_output, tensor in step.output_map.items():
            types[tensor] = (model.outputs[model_output], f"{step.describe()} '{model_output}'")
    for tensor, declared in ensemble.outputs.items():
        produced, source = types[tensor]
        _check_match(f"ensemble '{name}' output '{tensor}'", declared, produced, tensor, source)


def _check_names(
    where: str, kind: str, mapping: Mapping[str, str], known: Mapping[str, TensorType]
) -> None:
    for model_name in mapping:
        if model_name not in known:
            raise InvalidArgument(
                f"{where}: the model has no {kind} '{model_name}' (its {kind}s are {sorted(known)})"
            )


def _check_match(
    where: str, expected: TensorType, produced: TensorType, tensor: str, source: str
) -> None:
    compatible = len(expected.shape) == len(produced.shape) and all(
        a == b or -1 in (a, b) for a, b in zip(expected.shape, produced.shape, strict=True)
    )
    if expected.datatype != produced.datatype or not compatible:
        raise InvalidArgument(
            f"{where} expects {expected.datatype} {list(expected.shape)}, but tensor "
            f"'{tensor}' from {source} is {produced.datatype} {list(produced.shape)}"
        )
