"""Inputs for runs on a board: the user's first sample, made-up feeds, and advice on failure.

A smoke check (deploy), a benchmark and a profile feed the first sample of the user's data when
there is some, else the agent makes inputs up from the model's signature (the rule is
edgeopt.proto.inputs'). A model from the wild often needs sizes or values no signature gives;
when the board's inference fails on made-up inputs, `explain_made_up` says what was fed and
which flag gives real inputs.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import onnx

from edgeopt.host.compress import data as datasets
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.errors import InvalidRequest
from edgeopt.proto.inputs import made_up_shape, values_text

__all__ = [
    "BENCH_REMEDY",
    "DEPLOY_REMEDY",
    "explain_made_up",
    "first_sample",
    "made_up_feed",
    "made_up_hint",
]


@functools.lru_cache(maxsize=16)
def first_sample(data: Path | None, artifact: Path) -> dict[str, np.ndarray] | None:
    """The first sample of an `.npz` as a feed for `artifact` (None without data).

    Cached: a fleet deploy feeds the same sample to every board that runs the artifact.
    """
    if data is None:
        return None
    dataset = datasets.load(data, onnx_model.load(artifact, check=False), purpose="sample")
    return next(dataset.batches(dataset.fixed_batch or 1))


BENCH_REMEDY = (
    "pass --inputs FILE.npz (an array per input name), or for a single input its dims with "
    "--input-shape"
)
DEPLOY_REMEDY = "pass --smoke FILE.npz (its first sample is the smoke input), or --validate"


def made_up_hint(
    model: Path,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    remedy: str = BENCH_REMEDY,
) -> str:
    """What a run on made-up inputs fed, and how to give real ones: for a failure's message.

    A model from the wild often needs sizes its signature leaves free (an OCR line's width, an
    audio clip's length) or values zeros do not make (a sample rate), so a run on made-up
    inputs may fail deep inside the graph; this says why and what to pass instead.
    """
    try:
        specs = datasets.input_specs(onnx.load(str(model), load_external_data=False))
    except Exception:  # the hint must never hide the failure it explains
        return (
            f"the inputs were made up from the model's signature. This model needs real ones: "
            f"{remedy}"
        )
    shown = []
    for spec in specs:
        dims = made_up_shape(spec.dims, (shapes or {}).get(spec.name))
        wanted = ", ".join("?" if d is None else str(d) for d in spec.dims)
        dtype = np.dtype(spec.dtype)
        fed = f"[{', '.join(map(str, dims))}]" if dims else "a scalar"
        shown.append(f"{spec.name} {dtype.name}[{wanted}] fed {values_text(dtype.kind)} as {fed}")
    return (
        f"the inputs were made up from the model's signature: {'; '.join(shown)}. This model "
        f"needs real ones: {remedy}"
    )


def explain_made_up(
    exc: InvalidRequest,
    model: Path,
    shapes: Mapping[str, tuple[int, ...]] | None = None,
    remedy: str = BENCH_REMEDY,
) -> InvalidRequest | None:
    """An agent's inference failure on inputs it made up, with `made_up_hint` added.

    None when `exc` is not an inference failure (a smoke check's counts as one).
    """
    if "inference failed" not in exc.details:
        return None
    hint = made_up_hint(model, shapes, remedy)
    return InvalidRequest(f"{exc.details}; {hint}", device=exc.device, status=exc.status)


def made_up_feed(model: Path, shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
    """Inputs from the model's signature, made up as the agent makes them.

    `shape` gives a single input's dims; the rule is `edgeopt.proto.inputs`'s.
    """
    specs = datasets.input_specs(onnx.load(str(model), load_external_data=False))
    rng = np.random.default_rng(0)
    feed = {}
    for spec in specs:
        dims = made_up_shape(spec.dims, shape if len(specs) == 1 else None)
        dtype = np.dtype(spec.dtype)
        feed[spec.name] = (rng.random(dims).astype(dtype) if dtype.kind == "f"
                           else np.zeros(dims, dtype=dtype))  # fmt: skip
    return feed
