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
  measure; fp16 only on a GPU provider. Static int8 needs calibration data. Static int8 goes
  after fp32 where the nodes it would quantize do little work per value they quantize
  (`LOW_INTENSITY`: depthwise convs, squeeze-excite gates, tiny FCs; MobileNetV2 and
  EfficientNet-B0 layouts ran slower in int8), and threads stop where each node's work is
  too small to share (`THREAD_WORK`).
- What tuning measured on this kind of board (`experience`) outweighs the rules where it
  applies (edgeopt.host.planning.experience).
- Memory: a model whose working set (about 2.5x its weights) does not fit the available memory
  with the headroom asked for takes a smaller precision, or is refused.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, cast

from edgeopt.host.errors import PlanError
from edgeopt.host.planning.experience import Measured, precision_evidence, thread_evidence
from edgeopt.proto.capabilities import local_providers
from edgeopt.proto.plan import Precision, RunPlan

__all__ = [
    "BYTES_PER_WEIGHT",
    "EP_PREFERENCE",
    "GPU_EPS",
    "INT8_DOT",
    "LOW_INTENSITY",
    "THREAD_WORK",
    "TINY_MACS",
    "TINY_WEIGHTS",
    "WORKING_SET",
    "Board",
    "Constraints",
    "Decision",
    "Measured",
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
TINY_MACS = 10_000_000
"""Multiply-adds above which a model with tiny weights is not tiny: it reuses each weight many
times (magika: 126 M MACs on 1 MiB of weights, int8-dynamic 0.7x of fp32)."""
LOW_INTENSITY = 32.0
"""Multiply-adds per activation value that static int8 (de)quantizes, below which it rarely
pays: measured on an Intel Xeon (AVX-512 VNNI) at 1/2 threads, int8-static against fp32 ran
1.42/1.87x on the EfficientNet-B0 layout (28 MACs per value: depthwise convs, 32 squeeze-excite
gates), 0.95/1.32x on MobileNetV2 (22), 1.80/1.29x on PP-OCR's MobileNetV3 classifier (13),
and 0.86/0.97x on PP-OCR's detector (41), 0.69/0.85x on YOLOv8n (117), 0.60/0.70x on the
openWakeWord embedding CNN (63); benchmarks/tuning.py has the sweeps."""
THREAD_WORK = 200_000
"""Multiply-adds a thread must get, per weighted node on average, to pay for its wake-up (an
LSTM counts by one step): on an Intel Xeon, PP-OCR's classifier (54 nodes, 0.30 M each) ran
1.4x slower on 2 threads than on 1, openWakeWord's mel front end (3 nodes, 0.47 M each) 0.89x
and its embedding CNN (2.1 M) 0.84x. Set on purpose where those fall; measured tunings on a
kind of board (edgeopt.host.planning.experience) move it for that kind."""
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
    macs: int = 0
    """Multiply-adds of one inference in Conv/MatMul/Gemm with constant weights (0: unknown)."""
    parallel_macs: int = 0
    """The part of them a thread pool can share (an LSTM's steps run one after another)."""
    weighted_nodes: int = 0
    """Conv/ConvTranspose/MatMul/Gemm nodes with constant weights."""
    int8_intensity: float = 0.0
    """MACs per activation value static int8 would (de)quantize (0: unknown); see
    edgeopt.host.compress.blocks."""
    depthwise_convs: int = 0
    """Grouped (depthwise) convolutions."""
    depthwise_share: float = 0.0
    """Share of the MACs in them."""
    se_gates: int = 0
    """Squeeze-and-excite gates (sigmoid-multiply of a pooled tensor)."""
    tiny_fcs: int = 0
    """Weighted nodes doing almost no work (FCs on a 1x1 map)."""
    float_activations: int = 0
    """Nodes static int8 leaves float (SiLU/GELU pieces, LayerNorm, HardSwish)."""

    def wrapped(self) -> str:
        """What static int8 would wrap, in words: "22 MACs per value (17 depthwise convs...)"."""
        parts = []
        if self.depthwise_convs:
            parts.append(f"{self.depthwise_convs} depthwise convs, {self.depthwise_share:.0%} "
                         "of the MACs")  # fmt: skip
        if self.se_gates:
            parts.append(f"{self.se_gates} squeeze-excite gates")
        if self.tiny_fcs:
            parts.append(f"{self.tiny_fcs} tiny FCs")
        if self.float_activations:
            parts.append(f"{self.float_activations} activations that stay float")
        detail = f" ({'; '.join(parts)})" if parts else ""
        return f"{self.int8_intensity:.0f} MACs per value it quantizes{detail}"


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


def _threads(board: Board, model: ModelTraits, wanted: int | None, reasons: list[str]) -> int:
    threads = _cores(board, wanted, reasons)
    if wanted is None and threads > 1 and model.parallel_macs and model.weighted_nodes:
        per_node = model.parallel_macs / model.weighted_nodes
        worth = max(1, int(per_node // THREAD_WORK))
        if worth < threads:
            reasons.append(
                f"{_count(worth, 'thread')}, not {threads}: its {model.weighted_nodes} weighted "
                f"nodes do {per_node / 1e6:.2f} M multiply-adds each on average, too little to "
                "share among more threads (a thread's wake-up costs more than its share saves)"
            )
            threads = worth
    return threads


def _cores(board: Board, wanted: int | None, reasons: list[str]) -> int:
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
    elif model.weight_bytes < TINY_WEIGHTS and not model.macs >= TINY_MACS:
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
    if int8 == "int8-static" and not gpu and 0 < model.int8_intensity < LOW_INTENSITY:
        out = _light_work(out, model)  # (where int8-static led: ARM without dotprod keeps fp32)
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


def _light_work(
    out: list[tuple[Precision, float, str]], model: ModelTraits
) -> list[tuple[Precision, float, str]]:
    """Static int8 wraps too little work: fp32 goes first, int8-static stays to be measured."""
    scores = {p: s for p, s, _ in out}
    if scores.get("int8-static", 0.0) <= scores.get("fp32", 0.0):
        return out
    why = (f"static int8 would wrap little work: {model.wrapped()}, under "
           f"{LOW_INTENSITY:.0f}, where the quantize/dequantize steps cost more than int8 "
           "saves")  # fmt: skip
    fp32 = max((s for p, s, _ in out if p == "fp32"), default=2.0)
    int8 = max((s for p, s, _ in out if p == "int8-static"), default=1.0)
    kept = [(p, s, r) for p, s, r in out if p not in ("fp32", "int8-static")]
    return [
        ("fp32", max(fp32, int8) + 0.1, f"fp32: {why}"),
        ("int8-static", min(fp32, int8) - 0.1, f"int8-static: {why}; measure it"),
        *kept,
    ]


def _measured(
    out: list[tuple[Precision, float, str]], model: ModelTraits, experience: Sequence[Measured]
) -> list[tuple[Precision, float, str]]:
    """What tuning measured on alike models on this kind of board reorders fp32 and int8."""
    int8 = _int8_kind(model)
    found = precision_evidence(model, int8, experience)
    scores = {p: s for p, s, _ in out}
    if found is None or "fp32" not in scores or int8 not in scores:
        return out
    ratio, why = found
    top, second = max(scores[int8], scores["fp32"]), min(scores[int8], scores["fp32"])
    fp32: Precision = "fp32"
    first, then = (fp32, int8) if ratio >= 1 else (int8, fp32)
    return sorted(
        [(first, top + 0.2, f"{first}: {why}"), (then, second, f"{then}: {why}"),
         *((p, s, r) for p, s, r in out if p not in (int8, "fp32"))],
        key=lambda c: -c[1],
    )  # fmt: skip


def plan(
    board: Board,
    model: ModelTraits,
    constraints: Constraints | None = None,
    experience: Sequence[Measured] = (),
) -> Decision:
    """The plan for running `model` on `board`, with reasons and ranked alternatives.

    `experience`: what tuning measured on other models on boards of this kind
    (edgeopt.host.planning.experience); it outweighs the rules where it applies.

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
    threads = _threads(board, model, constraints.threads, reasons)
    if constraints.threads is None and experience:
        ceiling = _cores(board, None, [])
        learned = thread_evidence(model, threads, ceiling, experience)
        if learned is not None:
            threads = learned[0]
            reasons.append(learned[1])
    gpu = provider in GPU_EPS
    if constraints.precision is not None:
        scored = [(constraints.precision, 10.0, f"precision {constraints.precision} as asked")]
    else:
        scored = _measured(_candidates(board, model, constraints, gpu), model, experience)
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


def model_traits(census: object, blocks: object | None = None) -> ModelTraits:
    """Traits from a weight census and, when given, the model's compute.

    `census` from `edgeopt.host.compress.weights.census`, `blocks` from
    `edgeopt.host.compress.blocks.blocks`.
    """
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
        **_compute(blocks),
    )


def _compute(blocks: object | None) -> dict[str, Any]:
    """The compute traits of a `Blocks` (duck-typed: the planner imports no compression code)."""
    if blocks is None:
        return {}
    b = blocks
    if getattr(b, "unsized") * 4 > getattr(b, "weighted_nodes"):  # noqa: B009
        return {}  # shape inference left too much unknown: the sizes would mislead
    return {
        "macs": getattr(b, "macs"),  # noqa: B009
        "parallel_macs": getattr(b, "parallel_macs"),  # noqa: B009
        "weighted_nodes": getattr(b, "weighted_nodes"),  # noqa: B009
        "int8_intensity": getattr(b, "intensity"),  # noqa: B009
        "depthwise_convs": getattr(b, "depthwise_convs"),  # noqa: B009
        "depthwise_share": getattr(b, "depthwise_share"),  # noqa: B009
        "se_gates": getattr(b, "se_gates"),  # noqa: B009
        "tiny_fcs": getattr(b, "tiny_fcs"),  # noqa: B009
        "float_activations": getattr(b, "float_activations"),  # noqa: B009
    }
