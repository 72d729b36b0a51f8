"""Rules that read the block structure, and a planner that learns from what tuning measured.

The traits come from real graphs: the MobileNetV2, EfficientNet-B0 and ConvNeXt-style layouts
of tests/mobile.py exported by the compression pipeline, and PP-OCR's MobileNetV3 classifier
from the corpus. The learned evidence comes from stored tunings, as the state database holds
them.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pytest

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.blocks import blocks
from edgeopt.host.planning.experience import Measured
from edgeopt.host.planning.planner import (
    LOW_INTENSITY,
    Board,
    Constraints,
    ModelTraits,
    plan,
)
from edgeopt.host.store.state import State
from edgeopt.host.workflows.plans import traits_of
from tests.mobile import LAYOUTS, images

VNNI = Board(
    name="xeon", arch="x86_64", isa_features=frozenset({"avx2", "avx512_vnni"}),
    physical_cores=8, usable_cores=8,
)  # fmt: skip
WITH_DATA = Constraints(calibration=True)
# A MobileNetV2-like model: 300 M MACs over 53 weighted nodes, 22 MACs per quantized value.
LIGHT = ModelTraits(
    weight_bytes=14 << 20, conv_share=0.99, matmul_share=0.01, macs=300_000_000,
    parallel_macs=300_000_000, weighted_nodes=53, int8_intensity=22.4, depthwise_convs=17,
    depthwise_share=0.07,
)  # fmt: skip
# A YOLOv8n-like detector: dense 3x3 convs, 117 MACs per quantized value.
DENSE = replace(LIGHT, macs=1_000_000_000, parallel_macs=1_000_000_000, weighted_nodes=64,
                int8_intensity=117.0, depthwise_convs=0, depthwise_share=0.0)  # fmt: skip


def sized(traits: ModelTraits, macs: int, nodes: int | None = None) -> ModelTraits:
    """`traits` with `macs` multiply-adds (all shareable by threads) over `nodes` nodes."""
    return replace(traits, macs=macs, parallel_macs=macs,
                   weighted_nodes=nodes or traits.weighted_nodes)  # fmt: skip


def test_static_int8_that_wraps_little_work_goes_after_fp32_and_the_reason_names_the_trait() -> (
    None
):
    decision = plan(VNNI, LIGHT, WITH_DATA)
    assert decision.chosen.precision == "fp32"
    assert decision.chosen.reasons[0] == (
        "fp32: static int8 would wrap little work: 22 MACs per value it quantizes (17 depthwise "
        "convs, 7% of the MACs), under 32, where the quantize/dequantize steps cost more than "
        "int8 saves"
    )
    (int8,) = (a for a in decision.alternatives if a.precision == "int8-static")
    assert int8.reasons[0].endswith("; measure it")
    assert int8.score < decision.chosen.score


def test_dense_convolutions_keep_static_int8_first() -> None:
    decision = plan(VNNI, DENSE, WITH_DATA)
    assert decision.chosen.precision == "int8-static"
    assert decision.chosen.reasons[0] == (
        "int8-static: the CPU has int8 dot products (avx512_vnni)"
    )


def test_a_model_whose_compute_is_unknown_is_planned_as_before() -> None:
    unknown = replace(sized(LIGHT, 0, 0), weighted_nodes=0, int8_intensity=0.0)
    decision = plan(VNNI, unknown, WITH_DATA)
    assert decision.chosen.precision == "int8-static"
    assert decision.chosen.intra_op_threads == 8


def test_threads_stop_where_each_node_has_too_little_work() -> None:
    # 54 nodes of 0.3 M MACs each (PP-OCR's classifier): a second thread costs more than it saves.
    small = sized(LIGHT, 16_300_000, 54)
    decision = plan(VNNI, small, WITH_DATA)
    assert decision.chosen.intra_op_threads == 1
    assert (
        "1 thread, not 8: its 54 weighted nodes do 0.30 M multiply-adds each on average, too "
        "little to share among more threads (a thread's wake-up costs more than its share saves)"
    ) in decision.chosen.reasons
    # The user's thread count is never second-guessed.
    asked = plan(VNNI, small, Constraints(calibration=True, threads=4))
    assert asked.chosen.intra_op_threads == 4


def _measured(name: str, traits: ModelTraits, **p50: float) -> Measured:
    """Timings as "fp32_2=1.5" → ("fp32", 2): 1.5 (precision with '-' written '_')."""
    timings = {}
    for key, value in p50.items():
        precision, threads = key.rsplit("_", 1)
        timings[(precision.replace("_", "-"), int(threads))] = value
    return Measured(name, traits, timings)


def test_a_measured_alike_model_outweighs_the_rules() -> None:
    # On this kind of board, int8-static ran 3.4x faster than fp32 on an alike light model
    # (the 16-core Xeon with AMX of the issue, on the EfficientNet layout).
    alike = replace(LIGHT, int8_intensity=28.0)
    seen = [_measured("efficientnet", alike, fp32_8=10.2, int8_static_8=3.0)]
    decision = plan(VNNI, LIGHT, WITH_DATA, seen)
    assert decision.chosen.precision == "int8-static"
    assert decision.chosen.reasons[0] == (
        "int8-static: measured on this kind of board: int8-static ran 3.40x faster than fp32 on "
        "efficientnet (28 MACs per value), alike to this model (22 MACs per value)"
    )
    (fp32,) = (a for a in decision.alternatives if a.precision == "fp32")
    assert fp32.score < decision.chosen.score


def test_a_measured_slowdown_puts_fp32_first_for_a_dense_model_too() -> None:
    alike = replace(DENSE, int8_intensity=90.0)
    seen = [_measured("yolo", alike, fp32_8=8.0, int8_static_8=9.2, int8_static_4=9.0)]
    decision = plan(VNNI, DENSE, WITH_DATA, seen)
    assert decision.chosen.precision == "fp32"
    assert decision.chosen.reasons[0] == (
        "fp32: measured on this kind of board: int8-static ran 1.12x the time of fp32 on yolo "
        "(90 MACs per value), alike to this model (117 MACs per value)"
    )


def test_a_model_unlike_the_measured_ones_keeps_the_rules() -> None:
    far = replace(LIGHT, int8_intensity=117.0 * 2)  # outside the factor ALIKE
    seen = [_measured("other", far, fp32_8=1.0, int8_static_8=5.0)]
    assert plan(VNNI, DENSE, WITH_DATA, seen).chosen == plan(VNNI, DENSE, WITH_DATA).chosen


def test_threads_stop_where_measurements_on_this_kind_stopped_paying() -> None:
    # A model with more work per node ran no faster on 8 threads than on 4.
    bigger = sized(DENSE, 2_000_000_000)
    seen = [_measured("detector", bigger, int8_static_4=10.0, int8_static_8=10.1)]
    decision = plan(VNNI, DENSE, WITH_DATA, seen)
    assert decision.chosen.intra_op_threads == 4
    assert (
        "4 threads: on this kind of board detector (31.2 M MACs per node, this model 15.6 M) ran "
        "1.01x the time on 8 threads as on 4 (int8-static), measured"
    ) in decision.chosen.reasons
    # A model with less work per node says nothing about this one.
    smaller = sized(DENSE, 100_000_000)
    seen = [_measured("small", smaller, int8_static_4=10.0, int8_static_8=10.1)]
    assert plan(VNNI, DENSE, WITH_DATA, seen).chosen.intra_op_threads == 8


def test_threads_the_rules_cut_come_back_where_more_paid_on_lighter_work() -> None:
    light = sized(LIGHT, 16_300_000, 54)  # the rules say 1 thread
    lighter = sized(light, 10_000_000)
    seen = [_measured("tiny", lighter, fp32_1=2.0, fp32_2=1.2)]
    decision = plan(VNNI, light, WITH_DATA, seen)
    assert decision.chosen.intra_op_threads == 2
    assert (
        "2 threads: on this kind of board tiny (0.2 M MACs per node, this model 0.3 M) ran 0.60x "
        "the time on 2 threads as on 1 (fp32), measured"
    ) in decision.chosen.reasons


def test_a_stored_tuning_becomes_evidence_and_an_old_one_is_ignored(tmp_path: Path) -> None:
    trials: list[dict[str, Any]] = [
        {"plan": {"precision": "fp32", "intra_op_threads": 2}, "p50_ms": 3.0, "passed": True},
        {"plan": {"precision": "fp32", "intra_op_threads": 2}, "p50_ms": 2.5, "passed": True},
        {"plan": {"precision": "int8-static", "intra_op_threads": 2}, "p50_ms": 4.0,
         "passed": True},
        {"plan": {"precision": "int8-dynamic", "intra_op_threads": 2}, "p50_ms": None,
         "passed": False, "error": "int8-dynamic fails the gate"},
    ]  # fmt: skip
    with State(str(tmp_path / "state.db")) as state:
        state.record_tuning("k1", "a", "kind-1", "1.32.0", "d1", {}, {}, trials, 5.0,
                            {"name": "mobilenet", "model": asdict(LIGHT)})  # fmt: skip
        state.record_tuning("k0", "a", "kind-1", "1.32.0", "d0", {}, {}, trials, 5.0)
        state.record_tuning("k2", "b", "kind-2", "1.32.0", "d1", {}, {}, trials, 5.0,
                            {"name": "mobilenet", "model": asdict(LIGHT)})  # fmt: skip
        rows = state.tunings("kind-1")
    assert [r["key"] for r in rows] == ["k0", "k1"]  # newest first, kind-2 left out
    found = [Measured.from_tuning(r, ModelTraits) for r in rows]
    assert found[0] is None  # written before tunings kept the model's traits
    learned = found[1]
    assert learned is not None and learned.model == "mobilenet" and learned.traits == LIGHT
    assert dict(learned.p50_ms) == {("fp32", 2): 2.5, ("int8-static", 2): 4.0}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, ModelTraits]:
    folder = tmp_path_factory.mktemp("layouts")
    sample = images(folder / "images.npz", 2, 0)
    return {
        name: traits_of(CompressRequest(model=factory, example=sample, calibration=sample))
        for name, factory in LAYOUTS.items()
    }


@pytest.mark.slow
def test_the_mobile_layouts_blocks_are_counted(layouts: dict[str, ModelTraits]) -> None:
    mobilenet, efficientnet, convnext = (layouts[k] for k in LAYOUTS)
    assert (mobilenet.depthwise_convs, mobilenet.se_gates, mobilenet.weighted_nodes) == (17, 0, 53)
    assert (efficientnet.depthwise_convs, efficientnet.se_gates, efficientnet.tiny_fcs) == (
        16, 16, 32,
    )  # fmt: skip
    assert efficientnet.float_activations >= 2 * 16  # SiLU's sigmoids and the gates'
    assert (convnext.depthwise_convs, convnext.se_gates) == (12, 0)
    # MobileNetV2 1.0 at 224x224: about 300 M multiply-adds (the paper's figure).
    assert 290e6 < mobilenet.macs < 310e6
    assert mobilenet.int8_intensity < LOW_INTENSITY < convnext.int8_intensity
    assert efficientnet.int8_intensity < LOW_INTENSITY


@pytest.mark.slow
def test_the_rules_keep_fp32_for_depthwise_and_squeeze_excite_layouts(
    layouts: dict[str, ModelTraits],
) -> None:
    for name in ("mobilenet-v2", "efficientnet-b0"):
        decision = plan(VNNI, layouts[name], WITH_DATA)
        assert decision.chosen.precision == "fp32", name
        assert decision.chosen.reasons[0].startswith("fp32: static int8 would wrap little work: ")
    reason = plan(VNNI, layouts["efficientnet-b0"], WITH_DATA).chosen.reasons[0]
    assert "16 depthwise convs" in reason and "16 squeeze-excite gates" in reason
    assert "32 tiny FCs" in reason


@pytest.mark.slow
def test_blocks_take_symbolic_sizes_from_the_sample(tmp_path: Path) -> None:
    sample = images(tmp_path / "images.npz", 1, 0)
    artifact = compress(CompressRequest(model=LAYOUTS["mobilenet-v2"], example=sample)).artifact
    model = onnx_model.load(artifact, check=False)
    fixed = blocks(model)
    assert fixed.unsized == 0 and fixed.macs > 0
    # A graph whose input has a symbolic batch: the given sample's batch of 4 scales the MACs.
    name = model.graph.input[0].name
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "batch"
    assert blocks(model, {name: (4, 3, 224, 224)}).macs == 4 * fixed.macs
    assert blocks(model).macs == fixed.macs  # batch 1 when nothing is said


def test_a_tiny_model_measured_alike_in_intensity_says_nothing_of_a_big_one() -> None:
    tiny = sized(LIGHT, 300_000_000 // 100)  # same intensity, 100x fewer multiply-adds
    seen = [_measured("digits", tiny, fp32_8=1.0, int8_static_8=0.2)]
    assert plan(VNNI, LIGHT, WITH_DATA, seen).chosen == plan(VNNI, LIGHT, WITH_DATA).chosen


def test_an_lstm_counts_its_steps_and_shares_one_step_among_threads() -> None:
    """X: 10 steps x batch 1 x 8 inputs, 16 hidden: each step is 4 gates x 16 x (8 + 16)."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.zeros((1, 64, 8), np.float32), "W")
    r = numpy_helper.from_array(np.zeros((1, 64, 16), np.float32), "R")
    graph = helper.make_graph(
        [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=16)], "lstm",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["steps", 1, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)], initializer=[w, r],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    counted = blocks(model, {"x": (10, 1, 8)})
    assert (counted.recurrent_macs, counted.recurrent_step_macs) == (10 * 1536, 1536)
    assert (counted.macs, counted.parallel_macs, counted.weighted_nodes) == (15360, 1536, 1)
    assert counted.intensity == 0.0  # static int8 does not quantize an LSTM: nothing to weigh


def test_a_graph_shape_inference_cannot_finish_leaves_no_file_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ONNX Runtime's symbolic inference saves an incomplete answer in the working directory;
    blocks keeps the partial shapes and writes nothing. An op of an unknown domain stops it."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.zeros((8, 4), np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["h"]),
         helper.make_node("Mystery", ["h"], ["m"], domain="com.example"),
         helper.make_node("MatMul", ["m", "w2"], ["y"])], "partial",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 8])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)],
        initializer=[weight, numpy_helper.from_array(np.zeros((4, 2), np.float32), "w2")],
    )  # fmt: skip
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    monkeypatch.chdir(tmp_path)
    counted = blocks(model)
    assert list(tmp_path.iterdir()) == []
    assert (counted.weighted_nodes, counted.unsized, counted.dense_macs) == (2, 1, 8 * 4)
