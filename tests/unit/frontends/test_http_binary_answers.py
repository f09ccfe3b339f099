"""Binary answers with a kept JSON header are the bytes the full encoder writes."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from inferd.core.types import InferRequest, InferResponse, RequestedOutput
from inferd.frontends.http import binary_answers
from inferd.frontends.http.binary_answers import BinaryAnswers
from inferd.frontends.http.codec import encode_infer_response
from inferd.frontends.shared_memory import DISABLED

_BINARY = {"binary_data": True}


def _request(outputs: list[RequestedOutput] | None = None, **parameters: object) -> InferRequest:
    return InferRequest("m", {}, outputs=outputs, parameters=dict(parameters))


def _response(seed: int, **extra: object) -> InferResponse:
    outputs = {
        "y": (np.arange(6, dtype=np.float32).reshape(2, 3) + seed).T,  # not contiguous
        "h": np.array([seed, 0.5], dtype=ml_dtypes.bfloat16),
    }
    return InferResponse("m", "1", outputs, **extra)  # type: ignore[arg-type]


def test_answers_with_a_known_header_are_the_full_encoders_bytes() -> None:
    answers = BinaryAnswers()
    request = _request([RequestedOutput("y", _BINARY), RequestedOutput("h", _BINARY)])
    for seed in range(3):  # the first writes the header; the others reuse it
        response = _response(seed)
        assert answers.encode(response, request, DISABLED) == encode_infer_response(
            response, request, DISABLED
        )
    assert len(answers._headers) == 1


def test_binary_data_output_asks_for_every_output_in_binary() -> None:
    answers = BinaryAnswers()
    request = _request(binary_data_output=True)
    for response in [_response(1), _response(2), _response(3, id="r")]:
        assert answers.encode(response, request, DISABLED) == encode_infer_response(
            response, request, DISABLED
        )
    assert len(answers._headers) == 2  # the id is part of the header


@pytest.mark.parametrize(
    ("request_", "extra"),
    [
        (_request(), {}),  # JSON outputs
        (_request([RequestedOutput("y", _BINARY), RequestedOutput("h")]), {}),  # one in JSON
        (_request(binary_data_output=True), {"parameters": {"p": 1}}),
    ],
)
def test_answers_not_all_binary_are_written_in_full(
    request_: InferRequest, extra: dict[str, object]
) -> None:
    answers = BinaryAnswers()
    response = _response(1, **extra)
    for _ in range(2):
        assert answers.encode(response, request_, DISABLED) == encode_infer_response(
            response, request_, DISABLED
        )
    assert not answers._headers


def test_bytes_outputs_are_written_in_full() -> None:
    answers = BinaryAnswers()
    request = _request(binary_data_output=True)
    for text in (b"a", b"bcd"):  # the same shape, another byte size
        response = InferResponse("m", "1", {"s": np.array([text], dtype=np.object_)})
        assert answers.encode(response, request, DISABLED) == encode_infer_response(
            response, request, DISABLED
        )
    assert not answers._headers


def test_the_oldest_header_goes_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(binary_answers, "MAX_HEADERS", 2)
    answers = BinaryAnswers()
    request = _request(binary_data_output=True)
    for version in "123":
        answers.encode(InferResponse("m", version, {"y": np.zeros(1)}), request, DISABLED)
    assert [key[1] for key in answers._headers] == ["2", "3"]
