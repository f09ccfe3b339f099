"""`inferd check`: a model repository validated offline, as the server would load it.

Each model is read and parsed, each version the version policy selects is auto-completed by
its backend and checked (the config's own rules, the scheduler settings, the field registry's
warnings and refusals); an ensemble's graph is checked against the composing models' checked
configs. Nothing is served and no instance is created.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inferd.backends.registry import BackendRegistry
from inferd.core.config_audit import audit_config
from inferd.core.config_checks import validate_config
from inferd.core.errors import InferdError
from inferd.core.model_config import ModelConfig
from inferd.engine.api import LoadOptions
from inferd.engine.classification import with_labels
from inferd.engine.ensembles import PLATFORM, config_signature, is_ensemble
from inferd.engine.loader import prepare_config
from inferd.engine.request_checks import ModelTensor
from inferd.engine.warmup import warmup_samples
from inferd.repository.store import LocalRepository
from inferd.repository.versions import select_versions
from inferd.scheduling.dynamic_settings import BatchingSettings
from inferd.scheduling.ensemble_graph import (
    ModelSignature,
    build_graph,
    check_signatures,
    steps_from_config,
)
from inferd.scheduling.sequence_settings import SequenceSettings


@dataclass(slots=True)
class ModelReport:
    name: str
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "ok": self.ok, "warnings": self.warnings, "errors": self.errors}


def check_repository(
    root: Path, registry: BackendRegistry, options: LoadOptions
) -> list[ModelReport]:
    """A report per model folder, in name order; ensembles are checked after the others."""
    repository = LocalRepository(root)
    reports: dict[str, ModelReport] = {}
    checked: dict[str, ModelConfig] = {}
    ensembles: dict[str, ModelConfig] = {}
    for name in repository.model_names():
        report = reports[name] = ModelReport(name)
        try:
            folder = repository.read_model(name)
        except InferdError as exc:
            report.errors.append(exc.message)
            continue
        if is_ensemble(folder.config):
            ensembles[name] = folder.config
            continue
        wanted, missing = select_versions(folder.config.version_policy, folder.versions)
        if not wanted:
            report.errors.append(f"version policy selects no version folder here ({missing})")
        elif missing:  # the server leaves them out and serves the others
            report.warnings.append(f"version_policy names versions without a folder: {missing}")
        for version in wanted:
            completed = _check_version(folder.config, folder.versions[version], registry, options)
            _record(report, completed, f"version {version}: " if len(wanted) > 1 else "")
            if isinstance(completed, ModelConfig):
                checked[name] = completed
    for name, config in ensembles.items():
        _record(reports[name], _check_ensemble(config, checked), "")
    return [reports[name] for name in sorted(reports)]


def _check_version(
    config: ModelConfig, path: Path, registry: BackendRegistry, options: LoadOptions
) -> ModelConfig | InferdError:
    try:
        backend = registry.resolve(config, [path])
        completed = prepare_config(config, path, backend, options)
        BatchingSettings.from_config(completed)
        if completed.HasField("sequence_batching"):
            SequenceSettings.from_config(completed, path.parent)
        outputs = {t.name: ModelTensor.from_config(t) for t in completed.output}
        with_labels(completed.name, outputs, completed.output, path.parent)  # read at load
        warmup_samples(completed, path.parent)  # its data files read, its shapes checked
    except InferdError as exc:
        return exc
    return completed


def _check_ensemble(config: ModelConfig, checked: dict[str, ModelConfig]) -> ModelConfig | str:
    completed = ModelConfig()
    completed.CopyFrom(config)
    completed.platform = PLATFORM
    try:
        validate_config(completed)
        inputs = {t.name: ModelTensor.from_config(t) for t in completed.input}
        outputs = {t.name: ModelTensor.from_config(t) for t in completed.output}
        graph = build_graph(completed.name, steps_from_config(completed), [*inputs], [*outputs])
        absent = sorted({s.model_name for s in graph.steps if s.model_name not in checked})
        if absent:
            return f"its steps use models that do not check out here: {absent}"
        signatures: list[ModelSignature] = [
            config_signature(checked[step.model_name]) for step in graph.steps
        ]
        check_signatures(graph, config_signature(completed), signatures)
    except InferdError as exc:
        return exc.message
    return completed


def _record(report: ModelReport, result: ModelConfig | InferdError | str, where: str) -> None:
    if isinstance(result, str):
        report.errors.append(where + result)
    elif isinstance(result, InferdError):
        report.errors.append(where + result.message)
    else:
        audit = audit_config(result)
        report.warnings.extend(where + warning for warning in audit.warnings)
        report.errors.extend(where + refusal for refusal in audit.refusals)
