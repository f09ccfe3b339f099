"""The Python backend's config checks and the in-process instance lifecycle."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from inferd.backends.base import BatchRequest, Device, DeviceKind
from inferd.backends.python import PythonBackend
from inferd.backends.registry import BackendRegistry
from inferd.core.errors import InvalidArgument, ModelExecutionError
from inferd.core.model_config import config_to_dict, parse_pbtxt

CONFIG = """
name: "m" backend: "python" max_batch_size: 4
input [{name: "IN" data_type: TYPE_FP32 dims: [2]}]
output [{name: "OUT" data_type: TYPE_FP32 dims: [2]}]
"""

# Records its lifecycle in a file next to it, so the test sees every hook that ran.
LIFECYCLE = """
from pathlib import Path

class InferdModel:
    def initialize(self, context):
        self.log = context.version_dir / "log.txt"
        self.name = context.instance_name
        where = f"{context.device} {context.model_version}"
        self._write(f"init {self.name} {where} {context.parameters}")

    def execute(self, batch):
        if batch.requests[0].id == "boom":
            raise ValueError("boom")
        return {"OUT": batch.inputs["IN"] + 1}

    def finalize(self):
        self._write(f"finalize {self.name}")

    def _write(self, line):
        with self.log.open("a") as log:
            log.write(line + "\\n")
"""


def version(tmp_path: Path, code: str | None) -> Path:
    folder = tmp_path / "m" / "1"
    folder.mkdir(parents=True)
    if code is not None:
        (folder / "model.py").write_text(textwrap.dedent(code))
    return folder


def test_registered_by_entry_point_and_recognises_model_py(tmp_path: Path) -> None:
    backend = BackendRegistry().get("python")
    assert isinstance(backend, PythonBackend)
    assert backend.matches(version(tmp_path, LIFECYCLE))
    assert not backend.gpu_available()


@pytest.mark.parametrize(
    ("code", "extra", "message"),
    [
        (None, "", "model file 'model.py' not found"),
        ("class Other: pass", "", "defines no class 'InferdModel'"),
        ("def broken(:", "", "is not valid Python"),
        (LIFECYCLE, 'parameters {key: "isolation" value: {string_value: "thread"}}', "isolation"),
        (
            LIFECYCLE,
            'parameters {key: "execute_timeout_s" value: {string_value: "2"}}',
            "needs isolation 'process'",
        ),
        (
            LIFECYCLE,
            'parameters [{key: "isolation" value: {string_value: "process"}},'
            ' {key: "execute_timeout_s" value: {string_value: "-1"}}]',
            "must be a positive number",
        ),
    ],
)
def test_complete_config_refuses_clearly(
    tmp_path: Path, code: str | None, extra: str, message: str
) -> None:
    config = parse_pbtxt(CONFIG + extra)
    with pytest.raises(InvalidArgument, match=message):
        PythonBackend().complete_config(config, version(tmp_path, code), 4)


def test_config_must_declare_tensors(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="must declare inputs and outputs"):
        PythonBackend().complete_config(parse_pbtxt('name: "m"'), version(tmp_path, LIFECYCLE), 4)


# `{cls}` is InferdModel or TritonPythonModel; the hook body is `{body}`.
HOOK = """
class {cls}:
    @staticmethod
    def auto_complete_config(config):
        {body}
        return config

    def execute(self, batch):
        raise AssertionError("auto-complete makes no model object")

    def __init__(self):
        raise AssertionError("auto-complete makes no model object")
"""
ADD_TENSORS = (
    'config.add_input({"name": "IN", "data_type": "TYPE_FP32", "dims": [2]}); '
    'config.add_output({"name": "OUT", "data_type": "TYPE_FP32", "dims": [2]}); '
    "config.set_max_batch_size(4); config.set_dynamic_batching()"
)


@pytest.mark.parametrize("cls", ["InferdModel", "TritonPythonModel"])
def test_auto_complete_config_hook_fills_the_config(tmp_path: Path, cls: str) -> None:
    config = parse_pbtxt('name: "m"')
    folder = version(tmp_path, HOOK.format(cls=cls, body=ADD_TENSORS))
    PythonBackend().complete_config(config, folder, 8)
    completed = config_to_dict(config)
    assert (completed["backend"], completed["max_batch_size"]) == ("python", 4)
    assert config.HasField("dynamic_batching")
    assert [(t["name"], t["data_type"], t["dims"]) for t in completed["input"]] == [
        ("IN", "TYPE_FP32", [2])
    ]
    assert [t["name"] for t in completed["output"]] == ["OUT"]


def test_auto_complete_fills_a_declared_tensor_instead_of_adding_it(tmp_path: Path) -> None:
    config = parse_pbtxt('name: "m" input [{name: "IN"}] output [{name: "OUT"}]')
    folder = version(tmp_path, HOOK.format(cls="InferdModel", body=ADD_TENSORS))
    PythonBackend().complete_config(config, folder, 8)
    assert [(t.name, list(t.dims)) for t in config.input] == [("IN", [2])]
    assert [(t.name, list(t.dims)) for t in config.output] == [("OUT", [2])]


@pytest.mark.parametrize(
    ("config_text", "body", "message"),
    [
        (
            'input [{name: "IN" data_type: TYPE_INT32 dims: [2]}]',
            ADD_TENSORS,
            r"ValueError: input 'IN': the configuration gives data_type TYPE_INT32",
        ),
        ("max_batch_size: 16", ADD_TENSORS, "specified max_batch_size 16"),
        ("sequence_batching {}", ADD_TENSORS, "'sequence_batching'"),
        ("", 'config.add_input({"name": "IN"})', "needs 'name', 'data_type' and 'dims'"),
        ("", "return 5", "returned int, not the config object"),
    ],
)
def test_auto_complete_hook_errors_fail_the_load_clearly(
    tmp_path: Path, config_text: str, body: str, message: str
) -> None:
    folder = version(tmp_path, HOOK.format(cls="TritonPythonModel", body=body))
    with pytest.raises(InvalidArgument, match=message):
        PythonBackend().complete_config(parse_pbtxt(f'name: "m" {config_text}'), folder, 8)


def test_auto_complete_may_make_a_model_decoupled(tmp_path: Path) -> None:
    body = ADD_TENSORS + '; config.set_model_transaction_policy({"decoupled": True})'
    folder = version(tmp_path, HOOK.format(cls="TritonPythonModel", body=body))
    config = parse_pbtxt('name: "m"')
    PythonBackend().complete_config(config, folder, 8)
    assert config.model_transaction_policy.decoupled


# A class that only completes its config: it would load READY and fail every request.
HOOK_ONLY = """
class {cls}:
    @staticmethod
    def auto_complete_config(config):
        {body}
        return config
"""


@pytest.mark.parametrize("cls", ["InferdModel", "TritonPythonModel"])
def test_a_model_class_without_execute_is_refused_when_its_config_completes(
    tmp_path: Path, cls: str
) -> None:
    folder = version(tmp_path, HOOK_ONLY.format(cls=cls, body=ADD_TENSORS))
    with pytest.raises(InvalidArgument, match=rf"class '{cls}' in model\.py defines no 'execute'"):
        PythonBackend().complete_config(parse_pbtxt('name: "m"'), folder, 8)


@pytest.mark.parametrize("isolation", ["none", "process"])
def test_a_model_class_without_execute_is_refused_at_load(tmp_path: Path, isolation: str) -> None:
    """Without auto-complete the class is first imported when the model loads: in the server's
    process, or in the instance's worker process."""
    folder = version(tmp_path, HOOK_ONLY.format(cls="InferdModel", body="pass"))
    config = parse_pbtxt(
        CONFIG + f'parameters {{key: "isolation" value: {{string_value: "{isolation}"}}}}'
    )
    with pytest.raises(
        InvalidArgument, match=r"class 'InferdModel' in model\.py defines no 'execute'"
    ):
        model = PythonBackend().load(config, folder)
        try:
            model.create_instance(Device(DeviceKind.CPU), "m_0_0")
        finally:
            model.close()


def test_a_model_without_the_hook_is_not_imported_to_complete_its_config(
    tmp_path: Path,
) -> None:
    folder = version(tmp_path, 'raise SystemExit("imported")\n' + LIFECYCLE)
    config = parse_pbtxt(CONFIG)
    PythonBackend().complete_config(config, folder, 4)
    assert [t.name for t in config.input] == ["IN"]


def test_one_object_per_instance_from_initialize_to_finalize(tmp_path: Path) -> None:
    folder = version(tmp_path, LIFECYCLE)
    config = parse_pbtxt(CONFIG + 'parameters {key: "k" value: {string_value: "v"}}')
    PythonBackend().complete_config(config, folder, 4)
    model = PythonBackend().load(config, folder)
    first = model.create_instance(Device(DeviceKind.CPU), "m_0_0")
    second = model.create_instance(Device(DeviceKind.GPU, 1), "m_0_1")
    inputs = {"IN": np.zeros((2, 2), dtype=np.float32)}
    outputs = first.execute(inputs, ["OUT"], [BatchRequest(0, 2)])
    assert isinstance(outputs, dict)
    np.testing.assert_array_equal(outputs["OUT"], np.ones((2, 2)))
    with pytest.raises(ModelExecutionError, match="ValueError: boom"):
        second.execute(inputs, ["OUT"], [BatchRequest(0, 2, "boom")])
    first.close()
    second.close()
    model.close()
    assert (folder / "log.txt").read_text().splitlines() == [
        "init m_0_0 cpu 1 {'k': 'v'}",
        "init m_0_1 gpu:1 1 {'k': 'v'}",
        "finalize m_0_0",
        "finalize m_0_1",
    ]
