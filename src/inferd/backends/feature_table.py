"""Joining a batch's inputs into the one table a tabular model takes.

One input is the table itself. Several inputs (the opt-in for mixed-type tables) are joined
column-wise in feature order: the model's own feature names when the inputs are named after
them, else the config's order. BYTES inputs are text columns: passed as str (a scikit-learn
pipeline encodes them itself), or turned into the codes of the categories the model was
trained with (LightGBM's pandas categories; unknown ones become missing values).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Final

import numpy as np

from inferd.core.datatypes import BYTES
from inferd.core.errors import InvalidArgument
from inferd.core.model_config import ModelConfig, tensor_datatype
from inferd.core.types import Array

# How text columns reach the model: as str (AS_TEXT), or as codes of the categories of each of
# the model's categorical columns (an empty list: the model takes no text).
AS_TEXT: Final = None
Categories = Sequence[Sequence[object]] | None


class FeatureTable:
    """Joins a batch's inputs into the table a model takes.

    `feature_names`: the model's own column names, if it has them; inputs named after all of
    them are put in that order. `n_features`: the width the model takes, if known.
    """

    def __init__(
        self,
        config: ModelConfig,
        feature_names: Sequence[str] | None,
        n_features: int | None,
        categories: Categories,
        model: str,
    ) -> None:
        names = [t.name for t in config.input]
        self.text = [t.name for t in config.input if tensor_datatype(t.data_type) == BYTES]
        self.single = len(names) == 1 and not self.text
        self.order = _feature_order(names, feature_names, model)
        in_order = [name for name in self.order if name in self.text]
        self._codes = {} if categories is AS_TEXT else _code_tables(in_order, categories, model)
        width = [math.prod(t.dims) for t in config.input]
        total = sum(width)
        if n_features is not None and min(width) > 0 and total != n_features:
            raise InvalidArgument(
                f"{model} takes {n_features} features, but the config's inputs {names} hold {total}"
            )

    def columns(self, inputs: Mapping[str, Array]) -> list[tuple[str, Array]]:
        """Each input's rows as one 2-D block, in feature order (text decoded to str)."""
        return [(name, self._block(name, inputs[name])) for name in self.order]

    def table(self, inputs: Mapping[str, Array]) -> Array:
        if self.single:
            return inputs[self.order[0]]
        blocks = [block for _, block in self.columns(inputs)]
        if self.text and not self._codes:
            return np.concatenate([b.astype(np.object_) for b in blocks], axis=1)
        return np.concatenate(blocks, axis=1)

    def _block(self, name: str, array: Array) -> Array:
        block = array.reshape(len(array), -1)
        if name not in self.text:
            return block
        try:
            text = np.strings.decode(block.astype(np.bytes_), "utf-8").astype(np.object_)
        except UnicodeDecodeError as exc:
            raise InvalidArgument(f"BYTES input '{name}' is not UTF-8 text: {exc.reason}") from None
        codes = self._codes.get(name)
        if codes is None:
            return text
        # A category the model never saw is a missing value, as in the library's own encoding.
        return np.array([[codes.get(v, np.nan) for v in row] for row in text], dtype=np.float64)


def _code_tables(
    text_inputs: list[str], categories: Sequence[Sequence[object]], model: str
) -> dict[str, dict[str, float]]:
    """Per text input (in feature order), category -> its code in the model."""
    known = list(categories)
    if len(text_inputs) != len(known):
        what = "numbers only" if not known else f"{len(known)} categorical columns"
        raise InvalidArgument(
            f"{model} takes {what}, but the config has TYPE_STRING inputs {text_inputs}: "
            + (
                "encode categories as numbers, or serve a scikit-learn pipeline that encodes them"
                if not known
                else "give one TYPE_STRING input per categorical column"
            )
        )
    return {
        name: {str(value): float(code) for code, value in enumerate(values)}
        for name, values in zip(text_inputs, known, strict=True)
    }


def _feature_order(names: list[str], feature_names: Sequence[str] | None, model: str) -> list[str]:
    if len(names) < 2 or not feature_names or not set(names) & set(feature_names):
        return names
    missing = [name for name in feature_names if name not in names]
    unknown = [name for name in names if name not in feature_names]
    if missing or unknown:
        raise InvalidArgument(
            f"the config's inputs are named after {model}'s features but do not match them: "
            f"missing {missing}, unknown {unknown}"
        )
    return list(feature_names)
