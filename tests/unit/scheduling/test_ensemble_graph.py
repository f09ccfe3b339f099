"""Ensemble graphs: structure checks, checks against composing models, ordering and plans."""

from __future__ import annotations

import pytest

from inferd.core.errors import InvalidArgument
from inferd.core.model_config import parse_pbtxt
from inferd.scheduling.ensemble_graph import (
    EnsembleGraph,
    ModelSignature,
    Step,
    TensorType,
    build_graph,
    check_signatures,
    steps_from_config,
)

VEC = TensorType("FP32", (-1, 4))


def step(index: int, model: str, inputs: dict[str, str], outputs: dict[str, str]) -> Step:
    return Step(index, model, -1, inputs, outputs)


def diamond() -> list[Step]:
    """IN -> pre -> X -> {a, b} -> post -> OUT."""
    return [
        step(0, "pre", {"i": "IN"}, {"o": "X"}),
        step(1, "a", {"i": "X"}, {"o": "A"}),
        step(2, "b", {"i": "X"}, {"o": "B"}),
        step(3, "post", {"x": "A", "y": "B"}, {"o": "OUT"}),
    ]


def graph(steps: list[Step], outputs: tuple[str, ...] = ("OUT",)) -> EnsembleGraph:
    return build_graph("ens", steps, ["IN"], list(outputs))


def one_in_one_out(batch: int = 8, kind: TensorType = VEC) -> ModelSignature:
    return ModelSignature(batch, {"i": kind}, {"o": kind})


def diamond_models() -> list[ModelSignature]:
    post = ModelSignature(8, {"x": VEC, "y": VEC}, {"o": VEC})
    return [one_in_one_out(), one_in_one_out(), one_in_one_out(), post]


ENSEMBLE = ModelSignature(8, {"IN": VEC}, {"OUT": VEC})


def test_steps_come_from_the_config() -> None:
    config = parse_pbtxt(
        'ensemble_scheduling { step [ { model_name: "m" model_version: 2 '
        'input_map { key: "i" value: "IN" } output_map { key: "o" value: "OUT" } } ] }'
    )
    assert steps_from_config(config) == (Step(0, "m", 2, {"i": "IN"}, {"o": "OUT"}),)


def test_order_puts_each_step_after_the_steps_it_reads() -> None:
    order = graph(diamond()[::-1]).order  # declared backwards on purpose
    position = {index: order.index(index) for index in range(4)}
    steps = diamond()[::-1]
    by_model = {s.model_name: position[s.index] for s in steps}
    assert by_model["pre"] < by_model["a"] < by_model["post"]
    assert by_model["pre"] < by_model["b"] < by_model["post"]


def test_plan_runs_only_the_steps_the_requested_outputs_need() -> None:
    steps = [*diamond(), step(4, "extra", {"i": "X"}, {"o": "EXTRA"})]
    full = build_graph("ens", steps, ["IN"], ["OUT", "EXTRA"])
    plan = full.plan(["EXTRA"])
    assert set(plan.steps) == {0, 4}
    assert plan.uses == {"EXTRA": 1, "X": 1, "IN": 1}
    plan = full.plan(["OUT"])
    assert set(plan.steps) == {0, 1, 2, 3}
    assert plan.uses["X"] == 2 and plan.waiting[3] == 2 and sorted(plan.readers["X"]) == [1, 2]


@pytest.mark.parametrize(
    ("steps", "outputs", "message"),
    [
        ([], ("OUT",), "has no steps"),
        ([step(0, "", {"i": "IN"}, {"o": "OUT"})], ("OUT",), "step 0 names no model"),
        ([step(0, "m", {"i": "IN"}, {})], ("OUT",), "step 0 (model 'm') maps no outputs"),
        (
            [step(0, "m", {"i": "IN"}, {"o": "OUT"}), step(1, "n", {"i": "IN"}, {"o": "OUT"})],
            ("OUT",),
            "tensor 'OUT' is produced twice: by step 0 (model 'm') and step 1 (model 'n')",
        ),
        (
            [step(0, "m", {"i": "IN"}, {"o": "IN"})],
            ("IN",),
            "step 0 (model 'm') writes tensor 'IN', which is an input of the ensemble",
        ),
        (
            [step(0, "m", {"i": "NOPE"}, {"o": "OUT"})],
            ("OUT",),
            "step 0 (model 'm') input 'i' reads tensor 'NOPE', which is neither",
        ),
        (
            [step(0, "m", {"i": "IN"}, {"o": "X"})],
            ("OUT",),
            "output 'OUT' is produced by no step",
        ),
        (
            [
                step(0, "m", {"i": "IN", "j": "Z"}, {"o": "X"}),
                step(1, "n", {"i": "X"}, {"o": "Y"}),
                step(2, "p", {"i": "Y"}, {"o": "Z", "q": "OUT"}),
            ],
            ("OUT",),
            "has a cycle: step 0 (model 'm') input 'j' reads tensor 'Z'",
        ),
    ],
)
def test_structure_errors_name_the_step_and_tensor(
    steps: list[Step], outputs: tuple[str, ...], message: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        graph(steps, outputs)
    assert message in info.value.message


def test_a_matching_diamond_passes() -> None:
    check_signatures(graph(diamond()), ENSEMBLE, diamond_models())


def test_a_non_batching_ensemble_may_use_batching_models() -> None:
    ensemble = ModelSignature(
        0, {"IN": TensorType("FP32", (2, 4))}, {"OUT": TensorType("FP32", (2, 4))}
    )
    check_signatures(graph(diamond()), ensemble, diamond_models())


def signature_error(ensemble: ModelSignature, models: list[ModelSignature]) -> str:
    with pytest.raises(InvalidArgument) as info:
        check_signatures(graph(diamond()), ensemble, models)
    return info.value.message


def test_datatype_mismatch_between_producer_and_consumer() -> None:
    models = diamond_models()
    models[1] = ModelSignature(8, {"i": VEC}, {"o": TensorType("INT32", (-1, 4))})
    message = signature_error(ENSEMBLE, models)
    assert "step 3 (model 'post') input 'x' expects FP32 [-1, 4]" in message
    assert "tensor 'A' from step 1 (model 'a') 'o' is INT32 [-1, 4]" in message


def test_shape_mismatch_between_producer_and_consumer() -> None:
    models = diamond_models()
    models[2] = one_in_one_out(kind=TensorType("FP32", (-1, 3)))
    message = signature_error(ENSEMBLE, models)
    assert "step 2 (model 'b') input 'i' expects FP32 [-1, 3]" in message
    assert "tensor 'X'" in message


def test_mismatch_with_the_ensemble_input() -> None:
    ensemble = ModelSignature(8, {"IN": TensorType("FP16", (-1, 4))}, {"OUT": VEC})
    message = signature_error(ensemble, diamond_models())
    assert "step 0 (model 'pre') input 'i'" in message
    assert "tensor 'IN' from ensemble input 'IN' is FP16" in message


def test_mismatch_with_the_ensemble_output() -> None:
    ensemble = ModelSignature(8, {"IN": VEC}, {"OUT": TensorType("FP32", (-1, 5))})
    message = signature_error(ensemble, diamond_models())
    assert "ensemble 'ens' output 'OUT' expects FP32 [-1, 5]" in message
    assert "from step 3 (model 'post') 'o'" in message


def test_max_batch_size_larger_than_a_composing_model() -> None:
    models = diamond_models()
    models[1] = one_in_one_out(batch=4)
    message = signature_error(ENSEMBLE, models)
    assert "step 1 (model 'a'): the ensemble's max_batch_size 8 is larger than" in message


def test_unknown_and_unmapped_model_tensors() -> None:
    models = diamond_models()
    models[0] = ModelSignature(8, {"other": VEC}, {"o": VEC})
    assert "step 0 (model 'pre'): the model has no input 'i'" in signature_error(ENSEMBLE, models)
    models[0] = ModelSignature(8, {"i": VEC, "j": VEC}, {"o": VEC})
    assert "model inputs ['j'] are not mapped" in signature_error(ENSEMBLE, models)
    models[0] = ModelSignature(8, {"i": VEC}, {"p": VEC})
    assert "the model has no output 'o'" in signature_error(ENSEMBLE, models)


def test_an_optional_model_input_may_stay_unmapped() -> None:
    models = diamond_models()
    models[0] = ModelSignature(8, {"i": VEC, "j": TensorType("FP32", (-1, 4), True)}, {"o": VEC})
    check_signatures(graph(diamond()), ENSEMBLE, models)
