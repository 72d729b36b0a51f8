"""Mixed precision: the nodes that hurt most, kept float until the gate holds (`--keep-float
N|auto`), on the digits CNN trained here and on the CRNN of the public corpus."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

from edgeopt.host.cli import cli
from edgeopt.host.compress import CompressRequest, Gate, compress
from edgeopt.host.compress.cache import default_dir
from edgeopt.host.compress.sensitivity import NodeGain, Ranking, cheapest_first, rank, search
from edgeopt.host.errors import AccuracyGateFailed, DataError, UnsupportedModel
from tests.corpus import CORPUS, fetch, write_data
from tests.models import DigitsModel, labels_only


def _request(digits: DigitsModel, **kw: Any) -> CompressRequest:
    return CompressRequest(model=digits.onnx, precision="int8-static",
                           calibration=digits.calibration, validation=digits.validation,
                           **kw)  # fmt: skip


def _halfway_gate(digits: DigitsModel) -> Gate:
    """A cosine between the full int8 variant's and fp32's: some node must stay float."""
    full = compress(_request(digits)).validation
    assert full is not None and full.cosine < 1.0
    return Gate(min_cosine=1 - (1 - full.cosine) / 2)


def test_auto_keeps_the_fewest_nodes_that_pass_the_gate(
    digits: DigitsModel, tmp_path: Path
) -> None:
    gate = _halfway_gate(digits)
    out = tmp_path / "mixed.onnx"
    found = search(_request(digits, gate=gate, output=out), "auto")
    k = len(found.kept)
    assert 1 <= k < len(found.ranking.nodes)
    assert found.kept == found.ranking.top(k)
    v = found.report.validation
    assert v is not None and gate.min_cosine is not None and v.cosine >= gate.min_cosine
    assert out.read_bytes() == found.report.artifact.read_bytes()
    assert found.report.weights_after.kept_float_compute() != {}
    # One node fewer fails the gate: the answer is the smallest.
    with pytest.raises(AccuracyGateFailed):
        compress(_request(digits, gate=gate, keep_float=found.ranking.top(k - 1)))
    # Bisections, not scans: the full variant, then each bisection about log2 of its range.
    assert found.bisections and found.probes == 1 + sum(b.probes for b in found.bisections)
    assert all(b.probes <= (b.searched + 1).bit_length() + 1 for b in found.bisections)
    # The answer is the lighter one in multiply-adds: the second order only searched lighter.
    assert found.bisections[0].order == "harm" and found.bisections[0].kept is not None


def test_a_count_keeps_the_top_of_the_ranking(digits: DigitsModel) -> None:
    found = search(_request(digits), "2")
    assert found.kept == found.ranking.top(2) and found.probes == 1
    assert f"kept float as asked (--keep-float): 2 nodes: {', '.join(found.kept)}" in (
        found.report.notes
    )
    measured = [n for n in found.ranking.nodes if not np.isnan(n.output_sqnr)]
    assert [n.output_sqnr for n in measured] == sorted(n.output_sqnr for n in measured)
    assert all(n.macs > 0 for n in measured)  # every weighted node of the digits CNN is sized


def test_cheapest_first_weighs_accuracy_against_multiply_adds() -> None:
    ranking = Ranking((NodeGain("big", "Conv", 40.0, 160.0, 1000),
                       NodeGain("small", "Conv", 60.0, 140.0, 10),
                       NodeGain("unsized", "MatMul", 30.0, 170.0),
                       NodeGain("lost", "Conv", math.nan, math.nan, 5)), 8)  # fmt: skip
    ordered = cheapest_first(ranking)
    # small: 14 dB per MAC; unsized counts as the largest (1000): 0.17; big 0.16; lost: 0.
    assert ordered.top(4) == ("small", "unsized", "big", "lost")
    assert ordered.macs_share(2) == 10 / 1015


def test_the_ranking_is_cached(digits: DigitsModel) -> None:
    reference = compress(replace(_request(digits), precision="fp32", validation=None)).artifact
    full = compress(replace(_request(digits), validation=None)).artifact
    first = rank(reference, full, digits.validation, "int8-static")
    stored = list((default_dir() / "sensitivity").glob("*/*.json"))
    assert stored
    again = rank(reference, full, digits.validation, "int8-static")
    assert repr(again) == repr(first)  # (repr: an unmeasured node's NaN is not equal to itself)


def test_a_gate_no_node_set_can_meet_is_refused_and_writes_nothing(
    digits: DigitsModel, tmp_path: Path
) -> None:
    out = tmp_path / "never.onnx"
    with pytest.raises(AccuracyGateFailed) as refused:
        search(_request(digits, gate=Gate(min_cosine=1.5), output=out), "auto")
    assert str(refused.value).startswith("no set of nodes kept float meets the gate: with the ")
    assert not out.exists()


def test_dynamic_int8_ranks_emulated_and_keeps_the_fewest(
    digits: DigitsModel, tmp_path: Path
) -> None:
    """(fp16's search: tests/host/compress/test_fp16_range.py; on the digits CNN fp16 loses
    1e-8 of cosine, too little to rank.)"""
    request = replace(_request(digits), precision="int8-dynamic")
    full = compress(request).validation
    assert full is not None and full.cosine < 1.0
    gate = Gate(min_cosine=1 - (1 - full.cosine) / 2)
    found = search(replace(request, gate=gate, output=tmp_path / "m.onnx"), "auto")
    k = len(found.kept)
    assert 1 <= k <= len(found.ranking.nodes) and found.kept == found.ranking.top(k)
    v = found.report.validation
    assert v is not None and gate.min_cosine is not None and v.cosine >= gate.min_cosine
    reference = compress(replace(request, precision="fp32", validation=None)).artifact
    names = {n.name for n in onnx.load(str(reference)).graph.node}
    assert {n.node for n in found.ranking.nodes} <= names  # the names --keep-float takes
    if k > 1:  # one node fewer fails the gate: the answer is the smallest
        with pytest.raises(AccuracyGateFailed):
            compress(replace(request, gate=gate, keep_float=found.ranking.top(k - 1)))


def test_a_full_variant_that_meets_the_gate_keeps_nothing_and_ranks_nothing(
    digits: DigitsModel,
) -> None:
    found = search(_request(digits, gate=Gate(min_cosine=0.5)), "auto")
    assert found.kept == () and found.ranking.nodes == () and found.probes == 1
    assert found.report.weights_after.kept_float_compute() == compress(
        _request(digits)).weights_after.kept_float_compute()  # fmt: skip


def test_what_the_search_refuses(digits: DigitsModel) -> None:
    with pytest.raises(UnsupportedModel) as int4:
        search(replace(_request(digits), precision="int4-weight"), "auto")
    assert str(int4.value) == (
        "--keep-float N|auto ranks the nodes of int8-static, int8-dynamic, fp16 models; "
        "int4-weight has none to keep float"
    )
    with pytest.raises(DataError) as no_data:
        search(replace(_request(digits), validation=None), "auto")
    assert str(no_data.value) == "--keep-float auto needs --validate DATA.npz and a gate to meet"


def test_the_cli_names_what_it_kept_and_says_a_one_sample_ranking_is_thin(
    digits: DigitsModel, tmp_path: Path
) -> None:
    one = tmp_path / "one.npz"
    with np.load(digits.validation) as data:
        np.savez(one, **{k: v[:1] for k, v in data.items()})
    result = CliRunner().invoke(cli, [
        "compress", str(digits.onnx), "--precision", "int8-static", "--calibration",
        str(digits.calibration), "--validate", str(one), "--keep-float", "1",
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert re.search(r"  keep float  1 of 5 converted nodes \(\d+% of the multiply-adds\): ",
                     result.output)  # fmt: skip
    assert "  note        the ranking rests on 1 sample: thin; give more data" in result.output
    as_json = CliRunner().invoke(cli, [
        "compress", str(digits.onnx), "--precision", "int8-static", "--calibration",
        str(digits.calibration), "--validate", str(one), "--keep-float", "1", "--json",
    ], catch_exceptions=False)  # fmt: skip
    data = json.loads(as_json.output)["keep_float"]
    assert len(data["kept"]) == 1 and data["samples"] == 1 and len(data["ranking"]) == 5


def test_deploy_takes_names_not_a_search(digits: DigitsModel) -> None:
    result = CliRunner().invoke(cli, [
        "deploy", str(digits.onnx), "--device", "x", "--keep-float", "auto",
    ], catch_exceptions=False)  # fmt: skip
    assert result.exit_code == 2
    assert "--keep-float N|auto searches with `edgeopt compress`" in result.output


@pytest.mark.slow
def test_the_crnn_passes_the_gate_with_its_first_convolution_float(tmp_path: Path) -> None:
    """Static int8 leaves the ddddocr CRNN at cosine ~0.974 (benchmarks/RESULTS.md): its first
    convolution, reading the quantized image, carries most of the error."""
    model = next(m for m in CORPUS if m.key == "crnn-lstm-ddddocr")
    request = CompressRequest(
        model=fetch((model,))[model.key], precision="int8-static",
        calibration=write_data(model, tmp_path, 8, 1), validation=write_data(model, tmp_path, 4, 2),
        gate=Gate(min_cosine=0.99),
    )  # fmt: skip
    with pytest.raises(AccuracyGateFailed):
        compress(request)
    found = search(request, "auto")
    v = found.report.validation
    assert v is not None and v.cosine >= 0.99
    assert len(found.kept) <= 3 < len(found.ranking.nodes)


def test_a_model_that_outputs_labels_is_ranked_on_the_scores_it_picks_them_from(
    digits: DigitsModel, tmp_path: Path
) -> None:
    """The digits CNN with an ArgMax after its logits, outputting labels only (as the corpus's
    ALBERT does): one node's rounding flips few labels or none, so the ranking measures the
    logits the ArgMax reads (`with_scores`), and every node gets a cost of its own."""
    from edgeopt.host.compress.sensitivity import EXACT, with_scores

    model = onnx.load(str(compress(CompressRequest(model=digits.onnx, precision="fp32")).artifact))
    logits = model.graph.output[0].name
    labelled = labels_only(model, tmp_path / "labels.onnx")
    assert [o.name for o in with_scores(model).graph.output] == ["label", logits]
    assert with_scores(onnx.load(str(digits.onnx))).graph.output[0].name == logits  # as it was
    request = CompressRequest(
        model=labelled, precision="int8-static", calibration=digits.calibration,
        validation=digits.validation,
    )  # fmt: skip
    reference = compress(replace(request, precision="fp32")).artifact
    ranking = rank(reference, compress(request).artifact, digits.validation, "int8-static")
    measured = [n for n in ranking.nodes if not math.isnan(n.gain)]
    assert len(measured) == 5  # 3 Conv, 2 Gemm
    assert all(0 < n.gain < EXACT for n in measured)
    assert len({round(n.gain, 6) for n in measured}) == len(measured)
    assert 0 < ranking.output_sqnr < EXACT
