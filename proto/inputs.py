"""Inputs made up from a model's signature, when a caller gives no data: one rule for all.

The agent feeds them to a smoke inference, a Benchmark or a Profile without inputs; the host
feeds the same to a one-shot profile over SSH, and names them in the message when a model
cannot run on them. Kept parsable by Python 3.8 (the agent's oldest).
"""

from __future__ import annotations

from typing import Sequence, Union

__all__ = ["DEFAULT_SIZES", "made_up_shape", "values_text"]

DEFAULT_SIZES: dict[int, tuple[int, ...]] = {
    2: (1, 128),
    3: (1, 16, 128),
    4: (1, 3, 224, 224),
    5: (1, 3, 8, 112, 112),
}
"""Sizes for free dims by rank: batch 1, then what such inputs usually hold (a 128-long
sequence, an RGB 224x224 image, 8 frames of video)."""

Dim = Union[int, str, None]


def made_up_shape(dims: Sequence[Dim], given: Sequence[int] | None = None) -> tuple[int, ...]:
    """The shape fed to an input with these dims.

    `given` if any; else the fixed dims as they are, and the free ones (a name, None, or a
    non-positive number) from `DEFAULT_SIZES` by rank, else 1.
    """
    if given is not None:
        return tuple(int(d) for d in given)
    default = DEFAULT_SIZES.get(len(dims), (1,) * len(dims))
    if len(default) != len(dims):
        default = (1,) * len(dims)
    return tuple(d if isinstance(d, int) and d > 0 else default[i] for i, d in enumerate(dims))


def values_text(kind: str) -> str:
    """How the made-up values of a numpy dtype kind ("f", "i", "b") are drawn, for people."""
    return "random in [0, 1)" if kind == "f" else "zeros"
