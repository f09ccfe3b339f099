"""The custom Python backend: a `model.py` defining `InferdModel` (or Triton's
`TritonPythonModel`), run in the server's process or in one worker process per instance.

Config `parameters`: `isolation` (`none`, the default, or `process`), and for process isolation
`execute_timeout_s` (a batch running longer is a hang; the worker is replaced) and
`worker_threads` (the thread pools of numeric libraries in each worker; default 1).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from inferd.backends.autocomplete import model_path, name_backend
from inferd.backends.base import BackendInstance, Device, DeviceKind
from inferd.backends.python.api import ModelContext
from inferd.backends.python.in_process import InProcessInstance
from inferd.backends.python.isolated import IsolatedInstance
from inferd.backends.python.model_file import (
    auto_complete,
    check_model_file,
    forget_model,
    import_model,
)
from inferd.backends.python.model_log import MODEL_LOGGER
from inferd.backends.python.protocol import WorkerSetup
from inferd.core.batch_io import BatchIO
from inferd.core.calls import ModelCalls
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import (
    ModelConfig,
    config_from_dict,
    config_to_dict,
    int_parameter,
    string_parameter,
    tensor_datatype,
)

ISOLATION_MODES = ("none", "process")


@dataclass(frozen=True, slots=True)
class PythonSettings:
    isolated: bool
    execute_timeout_s: float | None
    worker_threads: int

    @classmethod
    def from_config(cls, config: ModelConfig) -> PythonSettings:
        isolation = string_parameter(config, "isolation") or "none"
        if isolation not in ISOLATION_MODES:
            raise InvalidArgument(
                f"parameter 'isolation' must be one of {', '.join(ISOLATION_MODES)}, "
                f"got '{isolation}'"
            )
        timeout = string_parameter(config, "execute_timeout_s") or None
        seconds = None
        if timeout is not None:
            try:
                seconds = float(timeout)
            except ValueError:
                seconds = 0.0
            if not seconds > 0:
                raise InvalidArgument(
                    f"parameter 'execute_timeout_s' must be a positive number, got '{timeout}'"
                )
            if isolation != "process":
                raise InvalidArgument("parameter 'execute_timeout_s' needs isolation 'process'")
        threads = int_parameter(config, "worker_threads", minimum=1)
        if threads is not None and isolation != "process":
            raise InvalidArgument("parameter 'worker_threads' needs isolation 'process'")
        return cls(isolation == "process", seconds, threads or 1)


class PythonBackend:
    name = "python"
    platforms: tuple[str, ...] = ()
    default_model_filename = "model.py"
    supports_decoupled = True  # see docs/streaming.md
    supports_optional_inputs = True  # a model finds a left-out input absent
    supports_ragged = True  # see docs/ragged_batching.md
    supports_iterative = True  # a model hands a request back with `reschedule()`

    def gpu_available(self) -> bool:
        return False  # user code places itself; a KIND_GPU instance is told its device

    def matches(self, version_path: Path) -> bool:
        return (version_path / self.default_model_filename).is_file()

    def complete_config(
        self, config: ModelConfig, version_path: Path, default_max_batch_size: int
    ) -> None:
        model_file = model_path(config, version_path, self.default_model_filename)
        if check_model_file(model_file):
            completed = auto_complete(model_file, config_to_dict(config))
            if completed is not None:
                config.CopyFrom(config_from_dict(completed, "auto_complete_config's config"))
        PythonSettings.from_config(config)
        name_backend(config, self.name, None)
        if not config.input or not config.output:
            raise InvalidArgument(
                "a Python model's config must declare inputs and outputs, or its "
                "auto_complete_config must add them"
            )

    def load(self, config: ModelConfig, version_path: Path) -> PythonModel:
        return PythonModel(config, version_path)


class PythonModel:
    """What the instances of one model version share: the config, and (in the server's
    process) the imported module; each instance gets its own model object."""

    def __init__(self, config: ModelConfig, version_path: Path) -> None:
        self._settings = PythonSettings.from_config(config)
        self._model_file = model_path(config, version_path, PythonBackend.default_model_filename)
        check_model_file(self._model_file)
        self._name = config.name
        self._version_path = version_path
        self._config = config_to_dict(config)
        self._parameters = {key: value.string_value for key, value in config.parameters.items()}
        # The sequence batcher also asks for the implicit states' outputs, which are no config
        # outputs: their types come from the state declarations.
        self._datatypes = {
            entry.name: tensor_datatype(entry.data_type) for entry in config.output
        } | {
            state.output_name: tensor_datatype(state.data_type)
            for state in config.sequence_batching.state
        }
        self._batched = config.max_batch_size > 0
        self._batch_io = BatchIO.from_config(config)
        self._decoupled = config.model_transaction_policy.decoupled
        self._iterative = config.sequence_batching.iterative_sequence
        self._label = f"{config.name}_{version_path.name}"
        self._module_name = ""
        self._calls: ModelCalls | None = None
        if not self._settings.isolated:
            self._module_name, self._factory = import_model(self._model_file, self._label)

    def lend_calls(self, calls: ModelCalls) -> None:
        """What the model's code uses to call other models of the server (BLS)."""
        self._calls = calls

    def _context(self, device: Device, name: str) -> ModelContext:
        try:
            version = int(self._version_path.name)
        except ValueError:
            version = 0
        return ModelContext(
            model_name=self._name,
            model_version=version,
            model_dir=self._version_path.parent,
            version_dir=self._version_path,
            config=self._config,
            parameters=dict(self._parameters),
            instance_name=name,
            device=str(device),
            device_kind=device.kind.value,
            device_id=device.index if device.kind is DeviceKind.GPU else 0,
        )

    def create_instance(self, device: Device, name: str) -> BackendInstance:
        context = self._context(device, name)
        if self._settings.isolated:
            setup = WorkerSetup(
                self._model_file,
                self._label,
                context,
                self._datatypes,
                self._batched,
                self._decoupled,
                logging.getLogger(MODEL_LOGGER).getEffectiveLevel(),
                self._batch_io,
            )
            return IsolatedInstance(
                setup, self._settings.execute_timeout_s, self._settings.worker_threads, self._calls
            )
        return InProcessInstance(
            self._factory,
            context,
            self._datatypes,
            self._batched,
            self._decoupled,
            self._calls,
            self._batch_io,
            self._iterative,
        )

    def close(self) -> None:
        if self._module_name:
            forget_model(self._module_name)
