"""Every precision on every model of the public corpus (tests/corpus.py): compressed for real, or
refused in one clear sentence; nothing printed; the int8 artifacts also loaded by a real ONNX
Runtime 1.16.3 after `--target-ort 1.16`.

What "for real" means is counted, not guessed from the file size: the share of weights stored
in int8 (or float16), and for int8 the stored bytes of the weights the precision targets
(Conv/MatMul/Gemm/Gather, and the RNNs for dynamic int8) against their float32 bytes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress import data as datasets
from edgeopt.host.errors import EdgeoptError, NothingQuantized, TargetError, UnsupportedModel
from edgeopt.proto.plan import Precision
from tests.corpus import ALREADY_INT8, CORPUS, CorpusModel, fetch, write_data

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
OLD_PYTHON = ROOT / ".venv" / "ort-1.16.3" / "bin" / "python"
RUN_OLD = """
import sys, numpy as np, onnxruntime as ort
assert ort.__version__ == "1.16.3", ort.__version__
session = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
outputs = session.run(None, dict(np.load(sys.argv[2])))
assert all(np.isfinite(o).all() for o in outputs if o.dtype.kind == "f"), "non-finite output"
print("ok", [o.shape for o in outputs])
"""

DYNAMIC_KINDS = frozenset({"MatMul", "Gemm", "Gather", "LSTM", "GRU", "Attention"})
STATIC_KINDS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm", "Gather", "LSTM", "GRU"})
PRECISIONS: tuple[Precision, ...] = ("int8-dynamic", "int8-static", "fp16", "int4-weight")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path, Path]]:
    """key → (model, calibration .npz, validation .npz)."""
    paths = fetch()
    folder = tmp_path_factory.mktemp("corpus-data")
    return {
        m.key: (paths[m.key], write_data(m, folder, 8, seed=1), write_data(m, folder, 4, seed=2))
        for m in (*CORPUS, ALREADY_INT8)
    }


def one_feed(model: Path, data: Path, out: Path) -> Path:
    """The first feed of a dataset as an .npz of exactly what the session takes."""
    dataset = datasets.load(data, onnx.load(str(model), load_external_data=False), purpose="test")
    np.savez(out, **next(dataset.batches(dataset.fixed_batch or 1)))  # type: ignore[arg-type]
    return out


def run_old(model: Path, feed: Path) -> str:
    if not OLD_PYTHON.exists():
        pytest.fail(f"{OLD_PYTHON} missing: `make test` builds it (Makefile target ORT_OLD)")
    done = subprocess.run([str(OLD_PYTHON), "-c", RUN_OLD, str(model), str(feed)],
                          capture_output=True, text=True, check=False, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1:]
    return done.stdout


def assert_refusal(exc: EdgeoptError) -> None:
    """A refusal a person can act on: one sentence of ours, no library traceback."""
    message = str(exc)
    assert isinstance(exc, UnsupportedModel | TargetError), f"{type(exc).__name__}: {message}"
    assert message and "Traceback" not in message and "\n" not in message


@pytest.mark.parametrize("precision", PRECISIONS)
@pytest.mark.parametrize("model", CORPUS, ids=lambda m: m.key)
def test_corpus_model(
    model: CorpusModel,
    precision: Precision,
    corpus: dict[str, tuple[Path, Path, Path]],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    path, calibration, validation = corpus[model.key]
    request = CompressRequest(
        model=path,
        precision=precision,
        calibration=calibration,
        validation=validation,
    )
    try:
        report = compress(request)
    except EdgeoptError as exc:
        assert_refusal(exc)
        out, err = capfd.readouterr()
        assert out == err == "", "library output reached the terminal"
        return
    out, err = capfd.readouterr()
    assert out == err == "", "library output reached the terminal"
    before, after = report.weights_before, report.weights_after
    assert report.validation is not None and np.isfinite(report.validation.max_abs_error)
    if precision == "fp16":
        # Weights of nodes kept float32 for range stay float32, and the report says so
        # (magika: its last dense layer, 25 % of its weights; it gave inf on every sample).
        ranged = [n for n in report.notes if n.startswith("kept float32 where values pass")]
        assert after.share("float16") > (0.5 if ranged else 0.9)
    elif precision == "int4-weight":
        ratio = after.bytes_ratio(before, frozenset({"MatMul"}))
        assert ratio is not None and ratio <= 0.30, after.summary()
    else:
        kinds = DYNAMIC_KINDS if precision == "int8-dynamic" else STATIC_KINDS
        # Static QDQ does not enter control flow (the report says so); dynamic does.
        ratio = after.bytes_ratio(before, kinds, subgraphs=precision == "int8-dynamic")
        assert after.quantized_share > 0
        assert ratio is not None and ratio <= 0.30, after.summary()
    if precision.startswith("int8"):
        try:
            lowered = compress(CompressRequest(**{**request.__dict__, "target_ort": "1.16"}))
        except EdgeoptError as exc:
            assert_refusal(exc)
            return
        assert "ok" in run_old(lowered.artifact, one_feed(path, validation, tmp_path / "feed.npz"))


def test_a_model_whose_weights_are_all_int8_already(
    corpus: dict[str, tuple[Path, Path, Path]], capfd: pytest.CaptureFixture[str]
) -> None:
    path, calibration, _ = corpus[ALREADY_INT8.key]
    for precision in ("int8-dynamic", "int8-static"):
        with pytest.raises(NothingQuantized) as caught:
            compress(CompressRequest(model=path, precision=precision, calibration=calibration))
        assert str(caught.value).startswith(
            f"{precision} changed nothing: every weight of this model is already int8 "
        )
        assert "there is nothing left to quantize" in str(caught.value)
    assert capfd.readouterr() == ("", "")
