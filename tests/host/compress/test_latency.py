"""Host timing: models timed in turn, each alone for a block (issue 18, honest timings).

No timed assertion here (benchmarks/host_timing.py measures the effect); these check, on a real
ONNX Runtime, that every model gets exactly the runs asked for and that a model which cannot run
is named.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.host.compress.latency import measure_host
from edgeopt.host.errors import CompressionError
from tests.models import matmul_chain


def matmul_model(path: Path) -> Path:
    """A 64x64 MatMul: enough work for a thread pool, small enough to be quick."""
    return matmul_chain(path, np.random.default_rng(0).random((64, 64)), depth=1)


def test_each_model_gets_the_runs_asked_for_in_blocks(tmp_path: Path) -> None:
    model = matmul_model(tmp_path / "mm.onnx")
    feed = {"x": np.ones((64, 64), np.float32)}
    timed = measure_host([model, model, model], feed, threads=2, warmup=1, rounds=7)
    assert [t.threads for t in timed] == [2, 2, 2]
    assert [t.runs for t in timed] == [7, 7, 7]  # blocks of 2, the fourth cut to 1
    assert all(t.median_ms > 0 for t in timed)


def test_a_model_that_cannot_run_on_the_feed_is_named(tmp_path: Path) -> None:
    model = matmul_model(tmp_path / "mm.onnx")
    with pytest.raises(CompressionError) as raised:
        measure_host([model], {"x": np.ones((64, 3), np.float32)}, rounds=2)
    assert str(raised.value).startswith("timing mm.onnx failed: ")
