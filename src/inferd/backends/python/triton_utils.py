"""The part of Triton's `triton_python_backend_utils` that classic Python models use.

A model defining `TritonPythonModel` imports this module by Triton's name while it loads
(`model_file.py` registers it); `triton.py` adapts such a model to inferd's interface.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inferd.core.datatypes import from_config_datatype, numpy_dtype
from inferd.core.types import Array

if TYPE_CHECKING:
    from inferd.backends.python.sender import ResponseSender

# The flag of a decoupled model's last response for a request (`sender.send(flags=...)`).
TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1
# `request.set_release_flags(...)`: the request is done with, or handed back for another
# step of an iterative sequence (`sequence_batching { iterative_sequence: true }`).
TRITONSERVER_REQUEST_RELEASE_ALL = 1
TRITONSERVER_REQUEST_RELEASE_RESCHEDULE = 2


class TritonError(Exception):
    UNKNOWN = 0
    INTERNAL = 1
    NOT_FOUND = 2
    INVALID_ARG = 3
    UNAVAILABLE = 4
    UNSUPPORTED = 5
    ALREADY_EXISTS = 6
    CANCELLED = 7

    def __init__(self, msg: str, code: int = INTERNAL) -> None:
        super().__init__(msg)
        self._message = msg
        self._code = code

    def message(self) -> str:
        return self._message

    def code(self) -> int:
        return self._code


class TritonModelException(Exception):
    """What Triton's models raise for a failure of their own."""


class Tensor:
    def __init__(self, name: str, array: Any) -> None:
        self._name = name
        self._array: Array = np.asarray(array)

    def name(self) -> str:
        return self._name

    def as_numpy(self) -> Array:
        return self._array

    def shape(self) -> list[int]:
        return list(self._array.shape)


class InferenceRequest:
    def __init__(
        self,
        inputs: Sequence[Tensor],
        requested_output_names: Sequence[str],
        request_id: str = "",
        parameters: dict[str, Any] | None = None,
    ) -> None:
        self._inputs = list(inputs)
        self._requested = list(requested_output_names)
        self._id = request_id
        self._parameters = json.dumps(parameters or {})
        self._correlation_id = (parameters or {}).get("sequence_id", 0)
        self._sender: InferenceResponseSender | None = None
        self._cancelled: Callable[[], bool] = _never
        self.release_flags = TRITONSERVER_REQUEST_RELEASE_ALL

    def attach_sender(self, sender: InferenceResponseSender) -> None:
        """Give the request of a decoupled model its response sender (done by inferd)."""
        self._sender = sender

    def watch_cancellation(self, cancelled: Callable[[], bool]) -> None:
        """Give the request what `is_cancelled` asks (done by inferd)."""
        self._cancelled = cancelled

    def get_response_sender(self) -> InferenceResponseSender:
        if self._sender is None:
            raise TritonModelException(
                "a response sender is only available for a model whose config sets "
                "model_transaction_policy { decoupled: true }"
            )
        return self._sender

    def is_cancelled(self) -> bool:
        return self._cancelled()

    def set_release_flags(self, flags: int) -> None:
        """RESCHEDULE: run this request again in a later step (an iterative sequence's)."""
        self.release_flags = flags

    def correlation_id(self) -> int | str:
        """The request's sequence id (0: none); an iterative sequence's request gets one."""
        return self._correlation_id  # type: ignore[no-any-return]

    def inputs(self) -> list[Tensor]:
        return self._inputs

    def requested_output_names(self) -> list[str]:
        return self._requested

    def request_id(self) -> str:
        return self._id

    def parameters(self) -> str:
        return self._parameters


def _never() -> bool:
    return False


class InferenceResponse:
    def __init__(
        self, output_tensors: Sequence[Tensor] = (), error: TritonError | None = None
    ) -> None:
        self._outputs = list(output_tensors)
        self._error = error

    def output_tensors(self) -> list[Tensor]:
        return self._outputs

    def has_error(self) -> bool:
        return self._error is not None

    def error(self) -> TritonError | None:
        return self._error


class InferenceResponseSender:
    """Sends the responses of one request of a decoupled model, from any thread. A send after
    the request ended or was cancelled is dropped."""

    def __init__(
        self,
        sender: ResponseSender,
        answer: Callable[[InferenceResponse], dict[str, Any] | Exception],
    ) -> None:
        self._sender = sender
        self._answer = answer  # a response as outputs, or its error as an exception

    def send(self, response: InferenceResponse | None = None, flags: int = 0) -> None:
        final = bool(flags & TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        if response is None:
            if not final:
                raise TritonModelException("send needs a response unless flags mark it final")
            self._sender.close()
            return
        answer = self._answer(response)
        if isinstance(answer, Exception):
            self._sender.send_error(answer)
        else:
            self._sender.send(answer, final=final)

    def is_cancelled(self) -> bool:
        return self._sender.is_cancelled()


class ModelConfig:
    """The config an `auto_complete_config(auto_complete_model_config)` hook completes, with
    Triton's methods and checks (they raise `ValueError`, as Triton's do). `as_dict()` is the
    config's JSON form; the hook returns this object."""

    def __init__(self, model_config: dict[str, Any]) -> None:
        self._config = model_config

    def as_dict(self) -> dict[str, Any]:
        return self._config

    def set_max_batch_size(self, max_batch_size: int) -> None:
        if self._config["max_batch_size"] > max_batch_size:
            raise ValueError(
                f"configuration specified max_batch_size {self._config['max_batch_size']}, but "
                f"auto_complete_config of model '{self._config['name']}' specified "
                f"max_batch_size {max_batch_size}"
            )
        self._config["max_batch_size"] = max_batch_size

    def set_dynamic_batching(self) -> None:
        for other in ("sequence_batching", "ensemble_scheduling"):
            if other in self._config:
                raise ValueError(
                    f"configuration specified scheduling_choice as '{other}', but "
                    f"auto_complete_config of model '{self._config['name']}' tries to set "
                    "'dynamic_batching'"
                )
        self._config.setdefault("dynamic_batching", {})

    def add_input(self, input: dict[str, Any]) -> None:
        self._add("input", input, ("name", "data_type", "dims", "optional"))

    def add_output(self, output: dict[str, Any]) -> None:
        self._add("output", output, ("name", "data_type", "dims"))

    def set_model_transaction_policy(self, transaction_policy_dict: dict[str, Any]) -> None:
        unknown = set(transaction_policy_dict) - {"decoupled"}
        if unknown:
            raise ValueError(
                f"model transaction policy has properties other than 'decoupled': {sorted(unknown)}"
            )
        policy = self._config.setdefault("model_transaction_policy", {})
        if "decoupled" in transaction_policy_dict:
            decoupled = transaction_policy_dict["decoupled"]
            if policy.get("decoupled", decoupled) != decoupled:
                raise ValueError(f"decoupled is already set to {policy['decoupled']}")
            policy["decoupled"] = decoupled

    def _add(self, kind: str, tensor: dict[str, Any], allowed: tuple[str, ...]) -> None:
        """Add a tensor, or fill the type and dims of the entry of that name the config already
        has (Triton's rule: what the config says must not be contradicted)."""
        extra = set(tensor) - set(allowed)
        missing = [key for key in ("name", "data_type", "dims") if key not in tensor]
        if extra or missing:
            raise ValueError(
                f"{kind} {tensor.get('name', '')!r} of auto_complete_config needs 'name', "
                f"'data_type' and 'dims' and takes only {list(allowed)}"
            )
        existing = next((t for t in self._config[kind] if t["name"] == tensor["name"]), None)
        if existing is None:
            self._config[kind].append(dict(tensor))
            return
        for key, unset in (("data_type", "TYPE_INVALID"), ("dims", []), ("optional", None)):
            have = existing.get(key, unset)
            if key in tensor and have != unset and have != tensor[key]:
                raise ValueError(
                    f"{kind} '{tensor['name']}': the configuration gives {key} {have}, "
                    f"auto_complete_config gives {tensor[key]}"
                )
        existing.update(tensor)


def using_decoupled_model_transaction_policy(model_config: dict[str, Any]) -> bool:
    """Whether a config (its JSON form) sets model_transaction_policy { decoupled: true }."""
    return bool(model_config.get("model_transaction_policy", {}).get("decoupled", False))


def get_input_tensor_by_name(request: InferenceRequest, name: str) -> Tensor | None:
    return next((t for t in request.inputs() if t.name() == name), None)


def get_output_tensor_by_name(response: InferenceResponse, name: str) -> Tensor | None:
    return next((t for t in response.output_tensors() if t.name() == name), None)


def _tensor_config(config: dict[str, Any], kind: str, name: str) -> dict[str, Any] | None:
    return next((t for t in config.get(kind, []) if t.get("name") == name), None)


def get_input_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _tensor_config(config, "input", name)


def get_output_config_by_name(config: dict[str, Any], name: str) -> dict[str, Any] | None:
    return _tensor_config(config, "output", name)


def triton_string_to_numpy(triton_type: str) -> Any:
    """'TYPE_FP32' -> numpy.float32 (TYPE_STRING -> numpy.object_), as Triton's helper does."""
    return numpy_dtype(from_config_datatype(triton_type)).type
