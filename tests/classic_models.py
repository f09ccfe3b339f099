"""Small synthetic tables and the classic ML models the scikit-learn, XGBoost and LightGBM
backends' tests serve (each library imported by the caller's first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

FEATURES = 5
CITIES = np.array(["paris", "oslo", "lima"], dtype=np.object_)


def has_pandas() -> bool:
    """Whether pandas is installed (the DataFrame-fitted models need it)."""
    try:
        import pandas  # noqa: F401
    except ImportError:
        return False
    return True


def features(seed: int, rows: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, FEATURES)).astype(np.float32)


def three_classes(x: np.ndarray) -> np.ndarray:
    return (x[:, 0] > 0).astype(np.int64) + (x[:, 1] + x[:, 2] > 0.5)


def target(x: np.ndarray) -> np.ndarray:
    return (2 * x[:, 0] - x[:, 3] + 0.1 * x[:, 4]).astype(np.float32)


def dump(estimator: Any, version_path: Path, filename: str) -> Any:
    import joblib

    version_path.mkdir(parents=True, exist_ok=True)
    joblib.dump(estimator, version_path / filename)
    return estimator


def sklearn_classifier() -> Any:
    from sklearn.linear_model import LogisticRegression

    x = features(0, 150)
    return LogisticRegression().fit(x, three_classes(x))


def sklearn_regression_pipeline() -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = features(1, 150)
    return make_pipeline(StandardScaler(), Ridge()).fit(x, target(x))


def regression_on_frame() -> Any:
    """The regression pipeline fitted on a DataFrame of named number columns."""
    import pandas as pd

    x = features(7, 150)
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(FEATURES)])
    return sklearn_regression_pipeline().fit(frame, target(x))


def mixed_table(seed: int, rows: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Columns `age` (FP32), `city` (text) and `visits` (INT64) of a customer table."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 80, rows).astype(np.float32)
    city = CITIES[rng.integers(0, len(CITIES), rows)]
    visits = rng.integers(0, 20, rows).astype(np.int64)
    return age, city, visits


def mixed_inputs(age: np.ndarray, city: np.ndarray, visits: np.ndarray) -> dict[str, np.ndarray]:
    """The columns as a client sends them: one input each, `city` as BYTES."""
    return {
        "age": age.reshape(-1, 1),
        "city": np.array([c.encode() for c in city], dtype=np.object_).reshape(-1, 1),
        "visits": visits.reshape(-1, 1),
    }


def mixed_labels(age: np.ndarray, city: np.ndarray, visits: np.ndarray) -> np.ndarray:
    return ((age > 40) ^ (city == "oslo") ^ (visits > 12)).astype(np.int64)


def column_transformer_on_frame() -> Any:
    """A pipeline fitted on a DataFrame: columns chosen by name, `city` one-hot encoded."""
    import pandas as pd

    age, city, visits = mixed_table(2, 200)
    frame = pd.DataFrame({"age": age, "city": city, "visits": visits})
    return _mixed_pipeline(["age", "visits"], ["city"]).fit(frame, mixed_labels(age, city, visits))


def column_transformer_on_array() -> Any:
    """The same pipeline fitted on an object array: columns chosen by position."""
    age, city, visits = mixed_table(3, 200)
    table = np.column_stack([age.astype(np.object_), city, visits.astype(np.object_)])
    return _mixed_pipeline([0, 2], [1]).fit(table, mixed_labels(age, city, visits))


def _mixed_pipeline(numbers: list[Any], categories: list[Any]) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [("numbers", StandardScaler(), numbers), ("categories", OneHotEncoder(), categories)]
    )
    return make_pipeline(columns, LogisticRegression())


def xgboost_model(version_path: Path, filename: str, regression: bool = False) -> Any:
    """A 3-class `multi:softprob` booster, or a regression; saved as `filename`."""
    import xgboost

    x = features(5 if regression else 4, 150)
    estimator = xgboost.XGBRegressor if regression else xgboost.XGBClassifier
    model = estimator(n_estimators=8, max_depth=3)
    model.fit(x, target(x) if regression else three_classes(x))
    version_path.mkdir(parents=True, exist_ok=True)
    # XGBoost warns on the .bst name (it writes UBJSON under any other): rename instead.
    saved = version_path / filename.replace(".bst", ".ubj")
    model.save_model(saved)
    saved.rename(version_path / filename)
    return model.get_booster()


def lightgbm_model(version_path: Path, objective: str) -> Any:
    """`binary`, `multiclass` or `regression`, saved as model.txt."""
    import lightgbm

    x = features(6, 200)
    y = {"binary": three_classes(x) > 0, "multiclass": three_classes(x)}.get(objective, target(x))
    params = {"objective": objective, "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5}
    if objective == "multiclass":
        params["num_class"] = 3
    booster = lightgbm.train(params, lightgbm.Dataset(x, y), num_boost_round=8)
    version_path.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(version_path / "model.txt"))
    return booster


def lightgbm_on_categories(version_path: Path) -> Any:
    """A binary booster trained on a DataFrame whose `city` column is a pandas category."""
    import lightgbm
    import pandas as pd

    age, city, visits = mixed_table(8, 300)
    frame = pd.DataFrame({"age": age, "city": pd.Categorical(city), "visits": visits})
    params = {"objective": "binary", "verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5}
    dataset = lightgbm.Dataset(frame, mixed_labels(age, city, visits))
    booster = lightgbm.train(params, dataset, num_boost_round=8)
    version_path.mkdir(parents=True, exist_ok=True)
    booster.save_model(str(version_path / "model.txt"))
    return booster
