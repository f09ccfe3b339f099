"""`inferd check`: a repository validated offline, per model OK / warnings / errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import generate_models  # examples/, put on sys.path by tests/conftest.py
from inferd.cli.main import main

ENSEMBLE = """name: "{name}"
platform: "ensemble"
max_batch_size: 8
input [ {{ name: "A", data_type: TYPE_INT32, dims: [ 16 ] }} ]
output [ {{ name: "SUM", data_type: TYPE_INT32, dims: [ 16 ] }} ]
ensemble_scheduling {{ step [ {{ model_name: "{step}" model_version: -1
  input_map {{ key: "INPUT0" value: "A" }} input_map {{ key: "INPUT1" value: "A" }}
  output_map {{ key: "OUTPUT0" value: "SUM" }} }} ] }}
"""


def _simple(repository: Path, name: str, extra: str = "") -> None:
    generate_models.simple_model(repository / name / "1" / "model.onnx")
    config = generate_models.SIMPLE_CONFIG.replace('"simple"', f'"{name}"')
    (repository / name / "config.pbtxt").write_text(config + extra)


def _ensemble(repository: Path, name: str, step: str) -> None:
    (repository / name / "1").mkdir(parents=True)
    (repository / name / "config.pbtxt").write_text(ENSEMBLE.format(name=name, step=step))


@pytest.fixture
def repository(tmp_path: Path) -> Path:
    _simple(tmp_path, "simple")
    _simple(tmp_path, "warmed", 'metric_tags { key: "team" value: "search" }\n')
    _simple(tmp_path, "ops", 'model_operations { op_library_filename: ["ops.so"] }\n')
    (tmp_path / "garbled" / "1").mkdir(parents=True)
    (tmp_path / "garbled" / "config.pbtxt").write_text("max_batch_size: many\n")
    _ensemble(tmp_path, "doubled", "simple")
    _ensemble(tmp_path, "dangling", "nowhere")
    return tmp_path


def test_json_report_per_model_and_exit_code_1_on_errors(
    repository: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(repository), "--json"]) == 1
    reports = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert sorted(reports) == ["dangling", "doubled", "garbled", "ops", "simple", "warmed"]
    assert reports["simple"] == {"name": "simple", "ok": True, "warnings": [], "errors": []}
    assert reports["doubled"]["ok"] is True
    assert reports["warmed"]["ok"] is True
    assert reports["warmed"]["warnings"][0].startswith("'metric_tags' has no effect in inferd")
    assert "'model_operations' is not supported" in reports["ops"]["errors"][0]
    assert "max_batch_size" in reports["garbled"]["errors"][0]
    assert "['nowhere']" in reports["dangling"]["errors"][0]


def test_text_report_and_exit_code_0_when_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _simple(tmp_path, "simple")
    _simple(tmp_path, "warmed", 'metric_tags { key: "team" value: "search" }\n')
    assert main(["check", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "simple: OK"
    assert lines[1] == "warmed: OK (1 warning(s))"
    assert lines[2].startswith("  warning: 'metric_tags' has no effect in inferd")


def test_a_missing_repository_is_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_missing_label_file_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    generate_models.simple_model(tmp_path / "labelled" / "1" / "model.onnx")
    config = generate_models.SIMPLE_CONFIG.replace('"simple"', '"labelled"')
    config = config.replace('name: "OUTPUT0"', 'name: "OUTPUT0"\n    label_filename: "labels.txt"')
    (tmp_path / "labelled" / "config.pbtxt").write_text(config)
    assert main(["check", str(tmp_path), "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)["models"]
    assert "cannot read the label file 'labels.txt' of output 'OUTPUT0'" in report["errors"][0]
    (tmp_path / "labelled" / "labels.txt").write_text("a\nb\n")
    assert main(["check", str(tmp_path)]) == 0


def test_warmup_samples_are_built_offline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = "".join(
        f'inputs {{ key: "{name}" value: {{ data_type: TYPE_INT32, dims: [ 16 ], {data} }} }} '
        for name, data in (("INPUT0", "zero_data: true"), ("INPUT1", 'input_data_file: "a.bin"'))
    )
    _simple(tmp_path, "warm", f'model_warmup [{{ name: "w" batch_size: 2 {inputs}}}]\n')
    assert main(["check", str(tmp_path), "--json"]) == 1
    (report,) = json.loads(capsys.readouterr().out)["models"]
    assert "warmup sample 'w': input 'INPUT1': cannot read warmup/a.bin" in report["errors"][0]
    (tmp_path / "warm" / "warmup").mkdir()
    (tmp_path / "warm" / "warmup" / "a.bin").write_bytes(bytes(64))
    assert main(["check", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == ["warm: OK"]


def test_a_policy_version_without_a_folder_is_a_warning_as_the_server_serves_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _simple(tmp_path, "partly", "version_policy: { specific { versions: [1, 3] }}\n")
    _simple(tmp_path, "none", "version_policy: { specific { versions: [3] }}\n")
    assert main(["check", str(tmp_path), "--json"]) == 1
    reports = {m["name"]: m for m in json.loads(capsys.readouterr().out)["models"]}
    assert reports["partly"]["ok"] is True
    assert reports["partly"]["warnings"] == ["version_policy names versions without a folder: [3]"]
    assert reports["none"]["errors"] == ["version policy selects no version folder here ([3])"]
