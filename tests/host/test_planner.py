"""The planner's decisions for every board profile, and for what it cannot know."""

from __future__ import annotations

import onnx
import pytest

from edgeopt.host.compress.normalize import normalize
from edgeopt.host.compress.weights import census
from edgeopt.host.config import device_profiles as profiles
from edgeopt.host.errors import PlanError
from edgeopt.host.planning.planner import (
    TINY_WEIGHTS,
    Board,
    Constraints,
    ModelTraits,
    model_traits,
    plan,
)
from tests.models import DigitsModel

DETECTOR = ModelTraits(weight_bytes=12 << 20, conv_share=0.97, matmul_share=0.0)
TRANSFORMER = ModelTraits(
    weight_bytes=90 << 20, conv_share=0.0, matmul_share=0.99, matmul_only_share=0.9
)
WITH_DATA = Constraints(calibration=True)

# profile → (detector precision, transformer precision, threads, provider)
EXPECTED = {
    "pi4": ("fp32", "fp32", 4, "CPUExecutionProvider"),
    "pi5": ("int8-static", "int8-dynamic", 4, "CPUExecutionProvider"),
    "rk3588": ("int8-static", "int8-dynamic", 4, "CPUExecutionProvider"),
    "jetson-orin-nano": ("fp16", "fp16", 6, "TensorrtExecutionProvider"),
    "x86-avx2": ("int8-static", "int8-dynamic", 1, "CPUExecutionProvider"),
    "x86-avx512-vnni": ("int8-static", "int8-dynamic", 1, "CPUExecutionProvider"),
}


@pytest.fixture(scope="module")
def known() -> dict[str, profiles.DeviceProfile]:
    return profiles.load_all(None)


def test_every_profile_has_an_expectation(known: dict[str, profiles.DeviceProfile]) -> None:
    assert set(known) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_the_decision_for_each_profile(name: str, known: dict[str, profiles.DeviceProfile]) -> None:
    board = Board.from_profile(known[name])
    detector, transformer, threads, provider = EXPECTED[name]
    d = plan(board, DETECTOR, WITH_DATA)
    t = plan(board, TRANSFORMER, WITH_DATA)
    assert (d.chosen.precision, t.chosen.precision) == (detector, transformer)
    assert d.chosen.execution_provider == provider
    if known[name].clusters:
        assert d.chosen.intra_op_threads == threads
    assert d.chosen.reasons and all(isinstance(r, str) and r for r in d.chosen.reasons)
    assert d.refused is None and d.alternatives
    # Dynamic int8 never leads for a convolutional model.
    assert d.chosen.precision != "int8-dynamic"


def test_pi4_puts_int8_first_among_the_alternatives(
    known: dict[str, profiles.DeviceProfile],
) -> None:
    d = plan(Board.from_profile(known["pi4"]), DETECTOR, WITH_DATA)
    assert d.chosen.reasons[0].startswith("fp32: no int8 dot products on this ARM core")
    assert d.alternatives[0].precision == "int8-static"
    assert "measure it" in d.alternatives[0].reasons[0]


def test_big_little_runs_on_the_big_cores(known: dict[str, profiles.DeviceProfile]) -> None:
    d = plan(Board.from_profile(known["rk3588"]), DETECTOR, WITH_DATA)
    assert d.chosen.intra_op_threads == 4
    assert any("Cortex-A76 cores, the fastest cluster" in r for r in d.chosen.reasons)


def test_vnni_without_calibration_data_keeps_fp32_and_says_why(
    known: dict[str, profiles.DeviceProfile],
) -> None:
    d = plan(Board.from_profile(known["x86-avx512-vnni"]), DETECTOR, Constraints())
    assert d.chosen.precision == "fp32"
    static = next(a for a in d.alternatives if a.precision == "int8-static")
    assert static.reasons[0].endswith("(needs --calibration data)")


def test_a_board_that_says_nothing_gets_safe_choices() -> None:
    d = plan(Board(name="mystery"), DETECTOR, WITH_DATA)
    assert d.chosen.precision == "fp32" and d.chosen.intra_op_threads == 1
    assert d.chosen.execution_provider == "CPUExecutionProvider"
    reasons = " | ".join(d.chosen.reasons)
    for said in ("ISA unknown", "core count unknown: 1 thread",
                 "execution providers are unknown", "available memory unknown"):  # fmt: skip
        assert said in reasons


def test_threads_never_exceed_the_usable_cpus() -> None:
    board = Board(name="pinned", arch="x86_64", isa_features=frozenset({"avx2"}),
                  physical_cores=8, usable_cores=2)  # fmt: skip
    d = plan(board, DETECTOR, WITH_DATA)
    assert d.chosen.intra_op_threads == 2
    assert "capped at the 2 CPUs the agent may use" in d.chosen.reasons


def test_an_execution_provider_the_board_lacks(known: dict[str, profiles.DeviceProfile]) -> None:
    with pytest.raises(PlanError) as caught:
        plan(Board.from_profile(known["pi4"]), DETECTOR,
             Constraints(provider="CUDAExecutionProvider"))  # fmt: skip
    assert (
        str(caught.value) == "pi4 has no CUDAExecutionProvider; its ONNX Runtime offers "
        "CPUExecutionProvider"
    )


def test_a_model_that_fits_nowhere_in_memory(known: dict[str, profiles.DeviceProfile]) -> None:
    huge = ModelTraits(weight_bytes=8 << 30, conv_share=0.0, matmul_share=1.0)
    d = plan(Board.from_profile(known["pi4"]), huge, WITH_DATA)
    assert d.refused is not None
    assert d.refused.startswith("the model fits nowhere in pi4's memory")
    # A model that fits only when smaller gets the smaller precision.
    big = ModelTraits(weight_bytes=1 << 30, conv_share=0.0, matmul_share=1.0)
    board = Board(name="small", arch="x86_64", isa_features=frozenset({"avx2"}),
                  physical_cores=4, memory_available=2 << 30)  # fmt: skip
    chosen = plan(board, big, WITH_DATA).chosen
    assert chosen.precision in ("int8-dynamic", "int4-weight")
    assert any(r.startswith("left out for memory: ") and "fp32" in r for r in chosen.reasons)


def test_an_int8_model_runs_as_it_is(known: dict[str, profiles.DeviceProfile]) -> None:
    done = ModelTraits(weight_bytes=1 << 20, conv_share=1.0, matmul_share=0.0,
                       already_quantized=True)  # fmt: skip
    d = plan(Board.from_profile(known["pi5"]), done, WITH_DATA)
    assert d.chosen.precision == "fp32"
    assert d.chosen.reasons[0] == "the model's weights are int8 already: run it as it is"


def test_traits_from_a_real_model(digits: DigitsModel) -> None:
    model, _ = normalize(onnx.load(str(digits.onnx)))
    traits = model_traits(census(model))
    assert traits.conv_share > 0.3 and traits.matmul_share > 0.3  # 3 Conv, 2 Linear layers
    assert traits.weight_bytes == 4 * sum(census(model).elements.values())
    assert not traits.already_quantized


def test_a_tiny_model_stays_fp32_even_with_int8_dot_products(
    known: dict[str, profiles.DeviceProfile], digits: DigitsModel
) -> None:
    model, _ = normalize(onnx.load(str(digits.onnx)))
    traits = model_traits(census(model))
    assert traits.weight_bytes < TINY_WEIGHTS  # the digits CNN: well under 1 MiB
    d = plan(Board.from_profile(known["x86-avx512-vnni"]), traits, WITH_DATA)
    assert d.chosen.precision == "fp32"
    kib = traits.weight_bytes / 1024
    assert d.chosen.reasons[0] == (
        f"fp32: the model is tiny ({kib:.0f} KiB of weights, cached already), so int8's "
        "quantize steps would cost more than they save"
    )
    assert d.alternatives[0].precision in ("int8-dynamic", "int8-static")
    # A GPU board still takes fp16 for it: the rule is about CPU kernels.
    assert plan(Board.from_profile(known["jetson-orin-nano"]), traits).chosen.precision == "fp16"


def test_an_emulated_board_is_planned_as_its_cpu_and_says_it_is_emulated(known) -> None:
    from dataclasses import replace

    pi4 = Board.from_profile(known["pi4"])
    emulated = replace(pi4, emulation="aarch64 code emulated on an x86_64 kernel (qemu-user)")
    real, fake = plan(pi4, DETECTOR, WITH_DATA), plan(emulated, DETECTOR, WITH_DATA)
    assert (fake.chosen.precision, fake.chosen.intra_op_threads) == (
        real.chosen.precision,
        real.chosen.intra_op_threads,
    )
    assert not any("EMULATED" in r for r in real.chosen.reasons)
    assert any(r.startswith("EMULATED board (aarch64 code emulated") for r in fake.chosen.reasons)


def test_every_case_measured_on_an_emulated_board_is_flagged() -> None:
    from edgeopt.host.workflows.bench import flags_of

    quiet = {"conditions": {"other_cpu_load": 0.0, "temperatures_after": []}}
    assert flags_of(quiet) == []
    assert flags_of(quiet, "aarch64 code emulated on an x86_64 kernel (qemu-user)") == ["EMULATED"]
    busy = {"conditions": {"other_cpu_load": 0.5, "temperatures_after": []}}
    assert flags_of(busy, "x") == ["EMULATED", "loaded 50%"]


def test_a_run_the_pis_firmware_throttled_is_flagged() -> None:
    from edgeopt.host.workflows.bench import flags_of

    pi = {"conditions": {"temperatures_after": [], "throttled_before": 0x0,
                         "throttled_after": 0x50005}}  # fmt: skip
    assert flags_of(pi) == ["THROTTLED: under-voltage, throttled"]
    calm = {"conditions": {"temperatures_after": [], "throttled_before": 0x50000,
                           "throttled_after": 0x50000}}  # fmt: skip
    assert flags_of(calm) == []
