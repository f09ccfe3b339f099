from __future__ import annotations

from pathlib import Path

import pytest

from inferd.core.config_checks import validate_config
from inferd.core.errors import InvalidArgument, NotFound
from inferd.core.model_config import (
    bool_parameter,
    config_from_dict,
    config_to_dict,
    int_parameter,
    parse_pbtxt,
)
from inferd.repository.config_file import read_config_file
from inferd.repository.layout import check_model_name, list_model_names, read_model_folder

PBTXT = """
name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x", data_type: TYPE_FP32, dims: [ 4, -1 ] } ]
output [ { name: "y", data_type: TYPE_INT64, dims: [ 2 ] } ]
dynamic_batching { max_queue_delay_microseconds: 100 }
parameters { key: "intra_op_thread_count" value { string_value: "1" } }
"""


def test_pbtxt_json_and_yaml_agree(tmp_path: Path) -> None:
    from_text = parse_pbtxt(PBTXT)
    as_dict = config_to_dict(from_text)
    (tmp_path / "config.json").write_text(
        '{"name": "m", "platform": "onnxruntime_onnx", "max_batch_size": 8,'
        ' "input": [{"name": "x", "data_type": "TYPE_FP32", "dims": [4, -1]}],'
        ' "output": [{"name": "y", "data_type": "TYPE_INT64", "dims": ["2"]}],'
        ' "dynamic_batching": {"maxQueueDelayMicroseconds": 100},'
        ' "parameters": {"intra_op_thread_count": {"string_value": "1"}}}'
    )
    (tmp_path / "config.yaml").write_text(
        "name: m\nplatform: onnxruntime_onnx\nmax_batch_size: 8\n"
        "input: [{name: x, data_type: TYPE_FP32, dims: [4, -1]}]\n"
        "output: [{name: y, data_type: TYPE_INT64, dims: [2]}]\n"
        "dynamic_batching: {max_queue_delay_microseconds: 100}\n"
        "parameters: {intra_op_thread_count: {string_value: '1'}}\n"
    )
    assert read_config_file(tmp_path / "config.json") == from_text
    assert read_config_file(tmp_path / "config.yaml") == from_text
    assert config_from_dict(as_dict) == from_text


def test_json_form_uses_numbers_for_int64() -> None:
    as_dict = config_to_dict(parse_pbtxt(PBTXT))
    assert as_dict["input"][0]["dims"] == [4, -1]
    assert as_dict["output"][0]["dims"] == [2]
    assert as_dict["dynamic_batching"]["max_queue_delay_microseconds"] == 100
    assert as_dict["max_batch_size"] == 8
    assert as_dict["input"][0]["data_type"] == "TYPE_FP32"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: ", "config.pbtxt"),
        ("no_such_field: 1", "no_such_field"),
        ("max_batch_size: 'x'", "max_batch_size"),
    ],
)
def test_bad_pbtxt_is_invalid_argument(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_pbtxt(text)


def test_bad_json_and_yaml(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(InvalidArgument, match=r"config\.json"):
        read_config_file(tmp_path / "config.json")
    (tmp_path / "config.yaml").write_text("- a list\n- not fields\n")
    with pytest.raises(InvalidArgument, match="expected an object"):
        read_config_file(tmp_path / "config.yaml")


def test_model_folder(tmp_path: Path) -> None:
    (tmp_path / "m" / "1").mkdir(parents=True)
    (tmp_path / "m" / "3").mkdir()
    (tmp_path / "m" / "notaversion").mkdir()
    (tmp_path / "m" / "0").mkdir()
    (tmp_path / ".hidden").mkdir()
    (tmp_path / "m" / "config.pbtxt").write_text(PBTXT)
    assert list_model_names(tmp_path) == ["m"]
    folder = read_model_folder(tmp_path, "m")
    assert sorted(folder.versions) == [1, 3]
    assert folder.config.max_batch_size == 8


def test_model_folder_name_mismatch(tmp_path: Path) -> None:
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.pbtxt").write_text(PBTXT)
    with pytest.raises(InvalidArgument, match="does not match"):
        read_model_folder(tmp_path, "other")


def test_model_folder_missing(tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        read_model_folder(tmp_path, "absent")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a\\b"])
def test_path_like_names_rejected(name: str) -> None:
    with pytest.raises(InvalidArgument):
        check_model_name(name)


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "Model name cannot be empty. Please enter a valid name to deploy."),
        (" \t\n ", "Model name cannot be empty. Please enter a valid name to deploy."),
        (" ..", "model name must not contain path traversal characters"),
        ("model/", "model name must not contain path traversal characters"),
        ("/etc/passwd", "model name must not contain path traversal characters"),
        ("..my_model", "failed to poll from model repository"),
    ],
)
def test_refused_names_in_triton_words(name: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        check_model_name(name)
    assert words in info.value.message


@pytest.mark.parametrize("name", ["model.version1", "model..1", "m o"])
def test_names_with_dots_inside_are_names(name: str) -> None:
    check_model_name(name)


def test_validate_config_catches_problems() -> None:
    validate_config(parse_pbtxt(PBTXT))
    with pytest.raises(InvalidArgument, match="no inputs"):
        validate_config(parse_pbtxt('name: "m"'))
    with pytest.raises(InvalidArgument, match="more than once"):
        validate_config(
            parse_pbtxt(PBTXT + 'input [ { name: "x", data_type: TYPE_FP32, dims: [ 1 ] } ]')
        )
    with pytest.raises(InvalidArgument, match="below -1"):
        validate_config(parse_pbtxt(PBTXT.replace("dims: [ 2 ]", "dims: [ -2 ]")))
    with pytest.raises(InvalidArgument, match="preferred_batch_size"):
        validate_config(
            parse_pbtxt(
                PBTXT.replace("max_queue_delay_microseconds: 100", "preferred_batch_size: 9")
            )
        )
    with pytest.raises(InvalidArgument, match="unsupported config datatype"):
        validate_config(parse_pbtxt(PBTXT.replace("TYPE_INT64", "TYPE_INVALID")))


def _with_parameter(value: str) -> object:
    return parse_pbtxt(f'name: "m" parameters {{ key: "p" value {{ string_value: "{value}" }} }}')


def test_int_parameter() -> None:
    assert int_parameter(parse_pbtxt('name: "m"'), "p") is None
    assert int_parameter(_with_parameter(""), "p", minimum=1) is None
    assert int_parameter(_with_parameter("-3"), "p") == -3
    assert int_parameter(_with_parameter("0"), "p", minimum=0) == 0
    with pytest.raises(InvalidArgument, match="'p' must be an integer, got 'x'"):
        int_parameter(_with_parameter("x"), "p")
    with pytest.raises(InvalidArgument, match="'p' must be a non-negative integer, got '-1'"):
        int_parameter(_with_parameter("-1"), "p", minimum=0)
    with pytest.raises(InvalidArgument, match="'p' must be a positive integer, got '0'"):
        int_parameter(_with_parameter("0"), "p", minimum=1)


def test_bool_parameter() -> None:
    assert bool_parameter(parse_pbtxt('name: "m"'), "p", default=True) is True
    assert bool_parameter(_with_parameter(""), "p", default=False) is False
    assert bool_parameter(_with_parameter(" TRUE "), "p", default=False) is True
    assert bool_parameter(_with_parameter("false"), "p", default=True) is False
    with pytest.raises(InvalidArgument, match="'p' must be 'true' or 'false', got 'yes'"):
        bool_parameter(_with_parameter("yes"), "p", default=True)
