"""Classic machine-learning models for the tests: trained here on scikit-learn's bundled data,
converted to ONNX the way their users convert them (skl2onnx, onnxmltools), defaults kept.

- `forest`: a random forest on the handwritten digits; skl2onnx's default conversion gives a
  TreeEnsembleClassifier (ai.onnx.ml), an int64 label and a ZipMap (a sequence of maps from
  class to probability).
- `mlp_pipeline`: StandardScaler + a small MLP on the iris flowers with the species as strings;
  its labels are strings and its ZipMap's keys too, and its MatMul/Add layers are what fp16 and
  int8 can reach.
- `lightgbm`: a LightGBM booster on the breast-cancer measurements, through onnxmltools.
- `tabular_pipeline`: a ColumnTransformer over a string column (one-hot) and number columns
  (scaled), then logistic regression: a model with a string input.

Each comes with its feature arrays and the library's own `predict`/`predict_proba`, to compare
with what a board answers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ClassicModel", "forest", "lightgbm", "mlp_pipeline", "tabular_pipeline"]


@dataclass
class ClassicModel:
    """A converted model, held-out inputs by the ONNX input name, and the library's answers."""

    onnx: Path
    inputs: dict[str, np.ndarray]
    predict: Callable[[], Any]
    predict_proba: Callable[[], Any]
    classes: list[Any]


def _save(model: Any, path: Path) -> Path:
    path.write_bytes(model.SerializeToString())
    return path


def forest(folder: Path) -> ClassicModel:
    """A random forest on the digits (8x8 images as 64 features), skl2onnx defaults."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_digits
    from sklearn.ensemble import RandomForestClassifier

    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    model = RandomForestClassifier(n_estimators=20, max_depth=8, random_state=0)
    model.fit(x[:1500], y[:1500])
    held = x[1500:1532]
    onnx_model = to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    return ClassicModel(
        _save(onnx_model, folder / "forest.onnx"), {"X": held},
        lambda: model.predict(held), lambda: model.predict_proba(held),
        [int(c) for c in model.classes_],
    )  # fmt: skip


def mlp_pipeline(folder: Path) -> ClassicModel:
    """Scaler + MLP on the iris flowers, the species named (string labels)."""
    from skl2onnx import to_onnx
    from sklearn.datasets import load_iris
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    iris = load_iris()
    x = iris.data.astype(np.float32)
    y = np.asarray(iris.target_names)[iris.target]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    model = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(64, 64), max_iter=2000, random_state=0),
    )
    model.fit(x[:120], y[:120])
    held = x[120:]
    onnx_model = to_onnx(model, x[:1], target_opset={"": 17, "ai.onnx.ml": 3})
    return ClassicModel(
        _save(onnx_model, folder / "iris_mlp.onnx"), {"X": held},
        lambda: model.predict(held), lambda: model.predict_proba(held),
        [str(c) for c in model.classes_],
    )  # fmt: skip


def lightgbm(folder: Path) -> ClassicModel:
    """A LightGBM booster on the breast-cancer measurements, converted by onnxmltools."""
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    x = x.astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1)
    model.fit(x[:500], y[:500])
    held = x[500:]
    onnx_model = convert_lightgbm(
        model, initial_types=[("input", FloatTensorType([None, x.shape[1]]))], target_opset=15
    )
    return ClassicModel(
        _save(onnx_model, folder / "lightgbm.onnx"), {"input": held},
        lambda: model.predict(held), lambda: model.predict_proba(held),
        [int(c) for c in model.classes_],
    )  # fmt: skip


def tabular_pipeline(folder: Path) -> ClassicModel:
    """One-hot over string columns, then logistic regression: a model whose input is text.

    The wine measurements (scikit-learn's bundled copy) with three of them given as words
    ("low", "mid", "high" by tercile), the way a form or a sensor gateway sends categories.
    """
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    wine = load_wine()
    columns = wine.data[:, [0, 6, 9]]  # alcohol, flavanoids, colour intensity
    cuts = np.quantile(columns, [1 / 3, 2 / 3], axis=0)
    words = np.where(columns < cuts[0], "low", np.where(columns < cuts[1], "mid", "high"))
    order = np.random.default_rng(0).permutation(len(words))
    words, y = words[order].astype(object), wine.target[order]
    model = make_pipeline(OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1000))
    model.fit(words[:150], y[:150])
    held = words[150:]
    onnx_model = to_onnx(model, initial_types=[("words", StringTensorType([None, 3]))],
                         target_opset={"": 17, "ai.onnx.ml": 3})  # fmt: skip
    return ClassicModel(
        _save(onnx_model, folder / "wine_words.onnx"), {"words": held.astype(str)},
        lambda: model.predict(held), lambda: model.predict_proba(held),
        [int(c) for c in model.classes_],
    )  # fmt: skip
