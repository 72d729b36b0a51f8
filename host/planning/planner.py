"""The planner: which precision, threads and execution provider a board should run a model with.

A pure function: `plan(board, model, constraints) -> Decision`, no I/O. The board is what an
agent reported (`Board.from_capabilities`) or what a device profile promises
(`Board.from_profile`); the model is what its graph says (`ModelTraits`, from
`model_traits`). The rules encode what is known and was measured, and every choice carries its
reason in words; the alternatives are ranked so that tuning (measuring on the board) can try the
next best ones. Rules propose, measurement decides:

- Execution provider: the best the board's ONNX Runtime really offers (TensorRT > CUDA on
  NVIDIA; OpenVINO on Intel; then XNNPACK, ACL, ArmNN; the CPU provider otherwise).
- Threads: the physical cores of the fastest cluster (the big cores on big.LITTLE: a pool that
  spans the little cores waits for them), never more than the CPUs the agent may use.
- Precision: int8 pays where the CPU has int8 dot products (x86 VNNI/AMX, ARM dotprod/i8mm);
  static (QDQ) int8 for convolutions, dynamic int8 for MatMul/Gemm/LSTM models (dynamic int8
  leaves Conv float, and a Conv model's ConvInteger ran 4.9x slower than fp32); on an x86 CPU
  without VNNI int8 still shrinks the model, at ~1.1x speed; on an ARM core without dotprod
  (Cortex-A72) int8 can be slower than fp32, so fp32 leads and int8 is the first alternative to
  measure; fp16 only on a GPU provider. Static int8 needs calibration data.
- Memory: a model whose working set (about 2.5x its weights) does not fit the available memory
  with the headroom asked for takes a smaller precision, or is refused.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import cast

from edgeopt.host.errors import PlanError
from edgeopt.proto.capabilities import local_providers
from edgeopt.proto.plan import Precision, RunPlan

__all__ = [
    "BYTES_PER_WEIGHT",
    "EP_PREFERENCE",
    "GPU_EPS",
    "INT8_DOT",
    "TINY_WEIGHTS",
    "WORKING_SET",
    "Board",
    "Constraints",
    "Decision",
    "ModelTraits",
    "Plan",
    "model_traits",
    "plan",
]

EP_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "XnnpackExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "CPUExecutionProvider",
)
"""Execution providers from most to least preferred when the board offers them."""
GPU_EPS = frozenset({"TensorrtExecutionProvider", "CUDAExecutionProvider"})
INT8_DOT = frozenset({"avx512_vnni", "avx_vnni", "amx", "amx_int8", "dotprod", "i8mm"})
"""ISA features with int8 dot products: int8 inference pays there."""
WORKING_SET = 2.5
"""Memory a session needs, as a multiple of the weight bytes (arena, activations, copies)."""
TINY_WEIGHTS = 1 << 20
"""fp32 weight bytes below which int8 does not pay on a CPU: the weights sit in the L2 cache
already and the quantize/dequantize steps cost more than int8 saves (measured on the 0.4 MiB
digits CNN: 1.05-1.36x slower than fp32, benchmarks/tuning.py)."""
BYTES_PER_WEIGHT: dict[str, float] = {
    "fp32": 4, "fp16": 2, "int8-dynamic": 1, "int8-static": 1, "int4-weight": 0.5,
}  # fmt: skip


@dataclass(frozen=True)
class Board:
    """What the planner knows of a board; None where it is unknown."""

    name: str
    """Device or profile name, for the reasons."""
    arch: str | None = None
    """`uname -m` style."""
    isa_features: frozenset[str] | None = None
    """Normalized ISA features; None when unknown."""
    clusters: tuple[tuple[str, int, int | None], ...] = ()
    """(core name, cores, max MHz) per cluster."""
    physical_cores: int | None = None
    """Physical cores in all."""
    usable_cores: int | None = None
    """CPUs the agent may run on (affinity)."""
    memory_available: int | None = None
    """Bytes of memory available."""
    providers: tuple[str, ...] = ()
    """Execution providers the board's ONNX Runtime offers; empty when unknown."""
    onnxruntime: str = ""
    """The board's ONNX Runtime version, when known."""
    emulation: str = ""
    """Set when the board's CPU is emulated (qemu-user): the rules plan for the CPU it imitates."""

    @classmethod
    def from_capabilities(cls, name: str, caps: object) -> Board:
        """From an agent's `Capabilities` report."""
        c = caps  # duck-typed: the proto dataclass
        clusters = tuple(
            (k.core_name, len(k.cpus), k.max_freq_mhz)
            for k in getattr(c, "clusters", ())
        )  # fmt: skip
        ort = getattr(c, "onnxruntime", None)
        isa = getattr(c, "isa_features", ())
        return cls(
            name=name,
            arch=getattr(c, "arch", None) or None,
            isa_features=frozenset(isa) if isa else None,
            clusters=clusters,
            physical_cores=getattr(c, "physical_cores", None),
            usable_cores=getattr(c, "usable_cores", None),
            memory_available=getattr(c, "memory_available_bytes", None),
            providers=tuple(getattr(ort, "execution_providers", ()) or ()),
            onnxruntime=getattr(ort, "version", "") or "",
            emulation=getattr(c, "emulation", "") or "",
        )

    @classmethod
    def from_profile(cls, profile: object) -> Board:
        """From a device profile (device_profiles/*.toml): the smallest memory it is sold with."""
        p = profile
        clusters = tuple(
            (k.core, k.cores, max(k.max_freq_mhz) if k.max_freq_mhz else None)
            for k in getattr(p, "clusters", ())
        )  # fmt: skip
        memory = getattr(p, "memory_gib", ())
        cores = sum(k[1] for k in clusters) or None
        return cls(
            name=getattr(p, "name", "profile"),
            arch=getattr(p, "arch", None) or None,
            isa_features=frozenset(getattr(p, "isa_features", ())) or None,
            clusters=clusters,
            physical_cores=cores,
            usable_cores=cores,
            memory_available=min(memory) << 30 if memory else None,
            providers=tuple(getattr(p, "expected_providers", ())),
        )


@dataclass(frozen=True)
class ModelTraits:
    """What the planner needs to know about a model."""

    weight_bytes: int
    """float32 bytes of all weights."""
    conv_share: float
    """Share of weight bytes read by Conv/ConvTranspose."""
    matmul_share: float
    """Share read by MatMul/Gemm/Gather (transformers, classifiers' heads, embeddings)."""
    recurrent_share: float = 0.0
    """Share read by LSTM/GRU/RNN."""
    subgraph_share: float = 0.0
    """Share inside If/Loop/Scan bodies (static int8 cannot reach it)."""
    already_quantized: bool = False
    """Its weights are int8/int4 already."""
    matmul_only_share: float = 0.0
    """Share read by MatMul alone (what int4 weight-only quantization reaches)."""


@dataclass(frozen=True)
class Constraints:
    """What the user asks of the plan."""

    calibration: bool = False
    """Calibration data is at hand (static int8 needs it)."""
    memory_headroom: float = 0.25
    """Share of available memory to leave free."""
    precision: Precision | None = None
    """A precision the user chose (the planner then only picks the rest)."""
    provider: str | None = None
    """An execution provider the user chose."""
    threads: int | None = None
    """Intra-op threads the user chose."""


@dataclass(frozen=True)
class Plan:
    """How to run a model on a board, and why."""

    run: RunPlan
    """What the board would be told: the wire's plan (edgeopt.proto.plan)."""
    reasons: tuple[str, ...] = ()
    score: float = 0.0
    """Higher is better; orders the alternatives."""

    @property
    def precision(self) -> Precision:
        """The artifact's precision."""
        return cast(Precision, self.run.precision)

    @property
    def execution_provider(self) -> str:
        """The execution provider."""
        return self.run.execution_provider

    @property
    def intra_op_threads(self) -> int:
        """ONNX Runtime intra-op threads."""
        return self.run.intra_op_threads

    @property
    def inter_op_threads(self) -> int:
        """ONNX Runtime inter-op threads."""
        return self.run.inter_op_threads

    @property
    def graph_optimization_level(self) -> str:
        """ONNX Runtime's graph optimization level."""
        return self.run.graph_optimization_level

    @property
    def execution_mode(self) -> str:
        """ONNX Runtime's execution mode."""
        return self.run.execution_mode


@dataclass(frozen=True)
class Decision:
    """The chosen plan and the ranked alternatives (best first, the choice excluded)."""

    chosen: Plan
    alternatives: tuple[Plan, ...] = field(default_factory=tuple)
    refused: str | None = None
    """Why no plan fits (the model fits nowhere in memory); `chosen` is then the least bad."""


def _provider(board: Board, wanted: str | None, reasons: list[str]) -> str:
    offered = local_providers(board.providers)
    if wanted is not None:
        if offered and wanted not in offered:
            raise PlanError(
                f"{board.name} has no {wanted}; its ONNX Runtime offers {', '.join(offered)}"
            )
        reasons.append(f"execution provider {wanted} as asked")
        return wanted
    if not offered:
        reasons.append("the board's execution providers are unknown: the CPU provider")
        return "CPUExecutionProvider"
    best = next(p for p in (*EP_PREFERENCE, offered[0]) if p in offered)
    reasons.append(f"execution provider {best}, the best of what the board offers")
    return best


def _threads(board: Board, wanted: int | None, reasons: list[str]) -> int:
    usable = board.usable_cores
    if wanted is not None:
        reasons.append(f"{wanted} threads as asked")
        return wanted
    if board.clusters and len(board.clusters) > 1:
        fastest = max(board.clusters, key=lambda k: (k[2] or 0, k[1]))
        threads = fastest[1]
        reasons.append(
            f"{threads} threads: the {fastest[0]} cores, the fastest cluster (a pool spanning "
            "the slower cores waits for them)"
        )
    elif board.physical_cores:
        threads = board.physical_cores
        reasons.append(f"{threads} threads: one per physical core")
    elif usable:
        threads = usable
        reasons.append(f"{threads} threads: the usable CPUs (physical cores unknown)")
    else:
        reasons.append("core count unknown: 1 thread")
        return 1
    if usable and threads > usable:
        reasons.append(f"capped at the {usable} CPUs the agent may use")
        threads = usable
    return threads


def _int8_kind(model: ModelTraits) -> Precision:
    """The int8 flavour that reaches the model's weights."""
    if model.conv_share >= 0.5 and model.subgraph_share < 0.5:
        return "int8-static"
    return "int8-dynamic"


def _candidates(
    board: Board, model: ModelTraits, constraints: Constraints, gpu: bool
) -> list[tuple[Precision, float, str]]:
    """(precision, score, reason) for every precision worth considering on this board."""
    isa = board.isa_features
    fast_int8 = bool(isa and isa & INT8_DOT)
    arm = (board.arch or "").startswith(("aarch64", "arm"))
    int8 = _int8_kind(model)
    out: list[tuple[Precision, float, str]] = []
    if model.already_quantized:
        return [("fp32", 1.0, "the model's weights are int8 already: run it as it is")]
    if gpu:
        out.append(("fp16", 3.0, "fp16 on the GPU provider: half the memory traffic"))
    elif model.weight_bytes < TINY_WEIGHTS:
        kib = model.weight_bytes / 1024
        tiny = (f"fp32: the model is tiny ({kib:.0f} KiB of weights, cached already), so "
                "int8's quantize steps would cost more than they save")  # fmt: skip
        out.append(("fp32", 2.6, tiny))
        out.append((int8, 1.0, f"{int8}: 4x smaller, but on a tiny model rarely faster"))
        return out
    if isa is None:
        out.append(("fp32", 2.0, "ISA unknown: fp32 is the safe choice"))
        out.append((int8, 1.0, f"{int8} may pay if the CPU has int8 dot products: measure"))
    elif fast_int8:
        dots = ", ".join(sorted(isa & INT8_DOT))
        out.append((int8, 2.5, f"{int8}: the CPU has int8 dot products ({dots})"))
        out.append(("fp32", 1.5, "fp32: the reference, when int8 loses too much accuracy"))
    elif arm:
        out.append(("fp32", 2.0, "fp32: no int8 dot products on this ARM core (dotprod/i8mm), "
                    "where int8 can be slower than fp32"))  # fmt: skip
        out.append((int8, 1.8, f"{int8} shrinks the model 4x and may still win: measure it"))
    else:
        out.append((int8, 2.0, f"{int8}: 4x smaller, ~1.1x faster without VNNI"))
        out.append(("fp32", 1.9, "fp32: without VNNI int8 gains little speed"))
    if int8 == "int8-static" and not constraints.calibration:
        out = [
            (p, s - 1.5, r + " (needs --calibration data)") if p == "int8-static" else (p, s, r)
            for p, s, r in out
        ]
    if int8 == "int8-dynamic" and model.conv_share >= 0.5:
        out = [(p, s - 2.0, r) if p == "int8-dynamic" else (p, s, r) for p, s, r in out]
    if model.matmul_only_share >= 0.5:
        out.append(("int4-weight", 1.0, "int4 weight-only MatMul: smallest, usually slower"))
    if arm and isa is not None and "fp16" in isa and not gpu:
        out.append(("fp16", 0.5, "fp16: the core has half-precision arithmetic; measure"))
    return out


def plan(board: Board, model: ModelTraits, constraints: Constraints | None = None) -> Decision:
    """The plan for running `model` on `board`, with reasons and ranked alternatives.

    Raises:
        PlanError: an execution provider the user named is not on the board.
    """
    constraints = constraints or Constraints()
    reasons: list[str] = []
    if board.emulation:
        reasons.append(
            f"EMULATED board ({board.emulation}): planned as the CPU it imitates; what is measured "
            "there says nothing about that CPU's speed"
        )
    provider = _provider(board, constraints.provider, reasons)
    threads = _threads(board, constraints.threads, reasons)
    gpu = provider in GPU_EPS
    if constraints.precision is not None:
        scored = [(constraints.precision, 10.0, f"precision {constraints.precision} as asked")]
    else:
        scored = _candidates(board, model, constraints, gpu)
    # Memory: the working set must fit with the headroom asked for.
    budget = (
        board.memory_available * (1 - constraints.memory_headroom)
        if board.memory_available
        else None
    )
    fitting, too_big = [], []
    for precision, score, why in scored:
        need = model.weight_bytes / 4 * BYTES_PER_WEIGHT[precision] * WORKING_SET
        if budget is not None and need > budget:
            short = f"needs ~{need / 2**20:.0f} MiB, more than the {budget / 2**20:.0f} MiB free"
            too_big.append((precision, score, f"{why}; {short}"))
        else:
            fitting.append((precision, score, why))
    refused = None
    if not fitting:
        refused = (
            f"the model fits nowhere in {board.name}'s memory: even the smallest variant needs "
            f"more than the {budget / 2**20 if budget else 0:.0f} MiB available with "
            f"{constraints.memory_headroom:.0%} headroom"
        )
        fitting = too_big
    elif too_big:
        reasons.append("left out for memory: " + ", ".join(p for p, _, _ in too_big))
    if board.memory_available is None:
        reasons.append("available memory unknown: not checked")
    ranked = sorted(fitting, key=lambda c: -c[1])
    plans = [
        Plan(
            RunPlan(
                precision=p,
                intra_op_threads=threads,
                inter_op_threads=1,
                execution_provider=provider,
                graph_optimization_level="all",
                execution_mode="sequential",
            ),
            reasons=(why, *reasons),
            score=score,
        )
        for p, score, why in ranked
    ]
    chosen = plans[0]
    alternatives = list(plans[1:])
    # A thread count worth measuring beside the rule's: half the cores, or all of them.
    if constraints.threads is None and threads > 1:
        alternatives.append(
            replace(chosen, run=replace(chosen.run, intra_op_threads=max(1, threads // 2)),
                    score=chosen.score - 0.5,
                    reasons=(f"{_count(max(1, threads // 2), 'thread')}: fewer threads can win "
                             "on small models or busy boards", *chosen.reasons[1:]))
        )  # fmt: skip
    alternatives.sort(key=lambda p: -p.score)
    return Decision(chosen, tuple(alternatives), refused)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def model_traits(census: object) -> ModelTraits:
    """Traits from a weight census (`edgeopt.host.compress.weights.census`)."""
    kinds: Counter[str] = Counter()
    for (kind, _storage), n in getattr(census, "kind_elements").items():  # noqa: B009
        kinds[kind] += n
    total = sum(kinds.values()) or 1
    elements = getattr(census, "elements")  # noqa: B009
    sub = getattr(census, "subgraph_elements")  # noqa: B009
    all_elements = sum(elements.values()) or 1
    quantized = (elements["int8"] + elements["int4"]) / all_elements
    return ModelTraits(
        weight_bytes=4 * sum(elements.values()),
        conv_share=(kinds["Conv"] + kinds["ConvTranspose"]) / total,
        matmul_share=(kinds["MatMul"] + kinds["Gemm"] + kinds["Gather"]) / total,
        recurrent_share=(kinds["LSTM"] + kinds["GRU"] + kinds["RNN"]) / total,
        subgraph_share=sum(sub.values()) / all_elements,
        already_quantized=quantized >= 0.99,
        matmul_only_share=kinds["MatMul"] / total,
    )
