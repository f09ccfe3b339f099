"""Ensembles in the engine: loading one against the composing models serving now, and the
order models load in.

An ensemble has no backend and no instances; its version folder (`1/`) is empty, as Triton
requires. It is checked when it loads and again whenever a composing model is loaded,
reloaded or unloaded (the lifecycle asks the model table which ensembles use it), so it
serves only while every step can run.

Whether something is an ensemble is asked one way per stage: `is_ensemble` of a config, and
`LoadedVersion.ensemble` (set only by `load_ensemble`) of a loaded version.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from inferd.core.config_audit import enforce_config_fields
from inferd.core.config_checks import decoupled_cache_refusal, validate_config
from inferd.core.errors import InferdError, InvalidArgument, Unavailable
from inferd.core.model_config import ModelConfig
from inferd.engine.classification import with_labels
from inferd.engine.loader import LoadedVersion
from inferd.engine.request_checks import ModelTensor
from inferd.repository.store import ModelRepository
from inferd.scheduling.ensemble import EnsembleScheduler, StepCall
from inferd.scheduling.ensemble_graph import (
    LATEST,
    EnsembleGraph,
    ModelSignature,
    Step,
    TensorType,
    build_graph,
    check_signatures,
    steps_from_config,
)

PLATFORM = "ensemble"

# The engine's lookup of a serving version: (model name, version or "") -> LoadedVersion.
FindVersion = Callable[[str, str], LoadedVersion]


def is_ensemble(config: ModelConfig) -> bool:
    """A config is an ensemble's when it names the `ensemble` platform or has
    `ensemble_scheduling` (`load_ensemble` refuses one without the other)."""
    return bool(config.platform == PLATFORM or config.HasField("ensemble_scheduling"))


def composing_names(config: ModelConfig) -> list[str]:
    """The models an ensemble config's steps name, in step order, each once."""
    return list(dict.fromkeys(step.model_name for step in config.ensemble_scheduling.step))


def load_ensemble(
    config: ModelConfig,
    version: int,
    find: FindVersion,
    call: StepCall,
    model_dir: Path | None = None,
) -> LoadedVersion:
    """Check an ensemble against the models serving now; raise `InvalidArgument` or
    `Unavailable` naming the step and tensor at fault. `model_dir` (its folder, when on this
    machine) holds its outputs' label files."""
    completed = ModelConfig()
    completed.CopyFrom(config)
    name = completed.name
    if completed.platform and completed.platform != PLATFORM:
        raise InvalidArgument(
            f"model '{name}' has ensemble_scheduling, so its platform must be '{PLATFORM}'"
        )
    if not completed.HasField("ensemble_scheduling"):
        raise InvalidArgument(f"ensemble '{name}' has no ensemble_scheduling")
    completed.platform = PLATFORM
    if completed.model_warmup:  # its steps warm up their own instances
        raise InvalidArgument(f"model_warmup can not be specified for ensemble '{name}'")
    validate_config(completed)
    enforce_config_fields(completed)
    inputs = {t.name: ModelTensor.from_config(t) for t in completed.input}
    outputs = {t.name: ModelTensor.from_config(t) for t in completed.output}
    outputs = with_labels(name, outputs, completed.output, model_dir)
    graph = build_graph(name, steps_from_config(completed), list(inputs), list(outputs))
    composing = [_composing_version(name, step, find) for step in graph.steps]
    if completed.response_cache.enable and any(loaded.decoupled for loaded in composing):
        # As in Triton, an ensemble with a decoupled step is decoupled itself.
        raise decoupled_cache_refusal(name)
    _check_no_loop(graph, find)
    batch = completed.max_batch_size
    check_signatures(
        graph,
        ModelSignature(batch, _types(inputs, batch), _types(outputs, batch)),
        [_signature(loaded) for loaded in composing],
    )
    scheduler = EnsembleScheduler(graph, call, completed.ensemble_scheduling.max_inflight_requests)
    placement = f"ensemble of {len(graph.steps)} step(s)"
    return LoadedVersion(
        name, version, completed, inputs, outputs, scheduler, placement, ensemble=graph
    )


def _composing_version(ensemble: str, step: Step, find: FindVersion) -> LoadedVersion:
    if step.model_name == ensemble:
        raise InvalidArgument(f"ensemble '{ensemble}' {step.describe()} names the ensemble itself")
    version = "" if step.model_version == LATEST else str(step.model_version)
    try:
        return find(step.model_name, version)
    except InferdError as exc:
        raise Unavailable(
            f"ensemble '{ensemble}' {step.describe()}: the composing model is not available "
            f"({exc.message})"
        ) from exc


def _check_no_loop(graph: EnsembleGraph, find: FindVersion) -> None:
    """An ensemble must not reach itself through the ensembles it uses."""
    stack = [(s.model_name, s.model_name) for s in graph.steps]
    seen: set[str] = set()
    while stack:
        model, via = stack.pop()
        if model == graph.name:
            raise InvalidArgument(f"ensemble '{graph.name}' uses itself through model '{via}'")
        if model in seen:
            continue
        seen.add(model)
        with_steps = _nested_graph(model, find)
        if with_steps is not None:
            stack.extend((s.model_name, via) for s in with_steps.steps)


def _nested_graph(model: str, find: FindVersion) -> EnsembleGraph | None:
    try:
        return find(model, "").ensemble
    except InferdError:
        return None


def _types(specs: dict[str, ModelTensor], max_batch_size: int) -> dict[str, TensorType]:
    return {
        name: TensorType(spec.datatype, tuple(spec.wire_shape(max_batch_size)), spec.optional)
        for name, spec in specs.items()
    }


def _signature(loaded: LoadedVersion) -> ModelSignature:
    return config_signature(loaded.config)


def config_signature(config: ModelConfig) -> ModelSignature:
    """What an ensemble needs to know of a complete config (`inferd check` has no loaded
    version to ask)."""
    batch = config.max_batch_size
    inputs = {t.name: ModelTensor.from_config(t) for t in config.input}
    outputs = {t.name: ModelTensor.from_config(t) for t in config.output}
    return ModelSignature(batch, _types(inputs, batch), _types(outputs, batch))


def _read_config(repository: ModelRepository, name: str) -> ModelConfig | None:
    try:
        return repository.read_model(name).config
    except InferdError:
        return None  # its own load reports the problem


def ensembles_last(repository: ModelRepository, names: Iterable[str]) -> list[str]:
    """Blocking: `names` with each ensemble after the models it uses (Triton's load order)."""
    configs = {name: _read_config(repository, name) for name in names}
    ensembles = {n: c for n, c in configs.items() if c is not None and is_ensemble(c)}
    order = [name for name in configs if name not in ensembles]
    placed = set(order)
    while ensembles:
        ready = [
            n
            for n, c in ensembles.items()
            if all(m in placed or m not in ensembles for m in composing_names(c))
        ]
        ready = ready or list(ensembles)  # a loop between ensembles: each load reports it
        for name in ready:
            order.append(name)
            placed.add(name)
            del ensembles[name]
    return order


def composing_to_load(
    repository: ModelRepository, config: ModelConfig, serving: Iterable[str]
) -> list[str]:
    """Blocking: the models an ensemble uses, directly or through other ensembles, that are
    in the repository and not serving, each after the models it uses (explicit mode loads
    them with the ensemble, as Triton does)."""
    skip = {config.name, *serving}
    order: list[str] = []

    def visit(current: ModelConfig) -> None:
        for model in composing_names(current):
            if model in skip:
                continue
            skip.add(model)
            nested = _read_config(repository, model)
            if nested is None:
                continue  # not in the repository: the ensemble's load names it
            if is_ensemble(nested):
                visit(nested)
            order.append(model)

    if is_ensemble(config):
        visit(config)
    return order
