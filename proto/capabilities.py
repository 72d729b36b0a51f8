"""What a board is and what it can run, as plain frozen dataclasses shared by agent and host.

The agent's probes fill a `Capabilities`; it travels as the `edgeopt.v1.Capabilities` message
(`to_message` / `from_message`), and the host reads, stores and prints it (`to_dict` for JSON).
`None` means "unknown on this board", never zero: the wire uses proto3 `optional` for the same.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Iterable

from edgeopt.proto.v1 import agent_pb2

__all__ = [
    "ARCHITECTURES",
    "ISA_FEATURES",
    "REMOTE_PROVIDERS",
    "Accelerator",
    "Capabilities",
    "CpuCluster",
    "OnnxRuntimeInfo",
    "Temperature",
    "format_summary",
    "from_dict",
    "from_message",
    "local_providers",
    "summary",
    "to_dict",
    "to_message",
]

ISA_FEATURES: frozenset[str] = frozenset(
    {
        # x86
        "sse4_1", "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl",
        "avx512_vnni", "avx512_bf16", "avx512_fp16", "avx_vnni", "avx_vnni_int8",
        "amx", "amx_int8", "amx_bf16",
        # ARM
        "neon", "fp16", "dotprod", "i8mm", "sve", "sve2", "bf16", "sve_i8mm", "sme", "vfpv4",
    }
)  # fmt: skip
"""The normalized ISA feature names the agent reports and profiles may require."""

ARCHITECTURES: frozenset[str] = frozenset({"aarch64", "armv7l", "x86_64", "i686", "riscv64"})
"""Architecture names the agent reports (`uname -m` style)."""


@dataclass(frozen=True)
class CpuCluster:
    """A set of cores of one kind (one per core type on big.LITTLE)."""

    core_name: str
    """Human name of the core ("Cortex-A76"), or the x86 model name."""
    cpus: tuple[int, ...]
    """Logical CPU numbers in the cluster."""
    max_freq_mhz: int | None = None
    """Highest frequency the cores may reach, from cpufreq."""
    implementer: str = ""
    """ARM MIDR implementer as in /proc/cpuinfo ("0x41"); empty on x86."""
    part: str = ""
    """ARM MIDR part number as in /proc/cpuinfo ("0xd0b"); empty on x86."""


@dataclass(frozen=True)
class Temperature:
    """One thermal zone's reading."""

    zone: str
    """Sysfs zone name ("thermal_zone0")."""
    type: str
    """What the zone measures ("cpu-thermal")."""
    celsius: float
    """The reading in degrees Celsius."""


@dataclass(frozen=True)
class Accelerator:
    """A device beside the CPU that may run inference."""

    kind: str
    """"gpu", "npu", "dsp" or "vpu"."""
    name: str
    """What it is, as far as the board tells."""
    path: str = ""
    """The device node or /proc entry that revealed it."""
    driver_version: str = ""
    """Driver version, where the board tells it."""


@dataclass(frozen=True)
class OnnxRuntimeInfo:
    """The ONNX Runtime build on the board and its limits."""

    version: str = ""
    """onnxruntime.__version__; empty when it cannot be imported."""
    max_ir_version: int | None = None
    """Highest model IR version it loads."""
    max_opset: int | None = None
    """Highest ai.onnx opset it officially supports."""
    execution_providers: tuple[str, ...] = ()
    """Available execution providers, in ONNX Runtime's order of preference."""
    error: str = ""
    """Why something above is unknown."""


@dataclass(frozen=True)
class Capabilities:
    """Everything the agent reports about its board; see agent.proto for each field's meaning."""

    arch: str = ""
    """`uname -m` style architecture: "aarch64", "x86_64"."""
    cpu_vendor: str = ""
    """"ARM", "Intel", "AMD", "NVIDIA", ..."""
    cpu_model: str = ""
    """Model name; "4x Cortex-A55 + 4x Cortex-A76" on big.LITTLE."""
    physical_cores: int | None = None
    """Physical cores."""
    logical_cores: int | None = None
    """Logical CPUs (hardware threads)."""
    usable_cores: int | None = None
    """CPUs this process may run on (affinity mask)."""
    clusters: tuple[CpuCluster, ...] = ()
    """Core clusters, slowest first."""
    isa_features: tuple[str, ...] = ()
    """Normalized ISA features, sorted."""
    memory_total_bytes: int | None = None
    """Total RAM."""
    memory_available_bytes: int | None = None
    """RAM available to new work without swapping."""
    store_free_bytes: int | None = None
    """Free space where the agent keeps models."""
    board_model: str = ""
    """Board name from the device tree or DMI."""
    os_name: str = ""
    """os-release PRETTY_NAME."""
    kernel: str = ""
    """Kernel release."""
    libc: str = ""
    """C library and version ("glibc 2.36")."""
    python_version: str = ""
    """Python running the agent."""
    onnxruntime: OnnxRuntimeInfo = field(default_factory=OnnxRuntimeInfo)
    """ONNX Runtime on the board."""
    accelerators: tuple[Accelerator, ...] = ()
    """GPUs and NPUs that are visible."""
    cpu_governor: str = ""
    """cpufreq governor of CPU 0."""
    temperatures: tuple[Temperature, ...] = ()
    """Thermal zone readings."""
    agent_version: str = ""
    """Version of the agent that answered."""
    fingerprint: str = ""
    """Stable hash of the hardware kind."""
    device_id: str = ""
    """Hashed unique id of this board."""
    hostname: str = ""
    """The board's host name."""
    emulation: str = ""
    """How this userland's CPU is emulated ("aarch64 code emulated on an x86_64 kernel
    (qemu-user)"), "" on real hardware: timings measured there say nothing about a real board."""
    warnings: tuple[str, ...] = ()
    """Facts that could not be read, and why."""
    max_message_bytes: int | None = None
    """Largest gRPC message the agent accepts or sends (None: an agent too old to say)."""
    max_infer_bytes: int | None = None
    """Largest sum of tensor bytes one inference takes in or gives out."""
    request_timeout_s: float | None = None
    """Longest a call into ONNX Runtime may run on the board, in seconds."""
    max_benchmark_seconds: float | None = None
    """Longest timed phase a Benchmark may ask for, in seconds."""

    def has(self, feature: str) -> bool:
        """Whether the CPU has a normalized ISA feature ("dotprod", "avx512_vnni")."""
        return feature in self.isa_features


REMOTE_PROVIDERS = frozenset({"AzureExecutionProvider"})
"""Execution providers ONNX Runtime lists that run nothing on the board (Azure's sends each
call to a cloud endpoint): never planned, never benchmarked."""


def local_providers(providers: Iterable[str]) -> list[str]:
    """The execution providers that run on the board itself, in the board's order."""
    return [p for p in providers if p not in REMOTE_PROVIDERS]


def to_dict(caps: Capabilities) -> dict[str, Any]:
    """A JSON-ready dict of `caps` (tuples become lists, unknowns stay None)."""
    return dataclasses.asdict(caps)


def from_dict(data: dict[str, Any]) -> Capabilities:
    """Rebuild `Capabilities` from `to_dict` output (e.g. a stored JSON snapshot)."""
    known = {f.name for f in dataclasses.fields(Capabilities)}
    values = {k: v for k, v in data.items() if k in known}
    values["clusters"] = tuple(
        CpuCluster(**{**c, "cpus": tuple(c["cpus"])}) for c in data.get("clusters", ())
    )
    values["temperatures"] = tuple(Temperature(**t) for t in data.get("temperatures", ()))
    values["accelerators"] = tuple(Accelerator(**a) for a in data.get("accelerators", ()))
    ort = dict(data.get("onnxruntime") or {})
    ort["execution_providers"] = tuple(ort.get("execution_providers", ()))
    values["onnxruntime"] = OnnxRuntimeInfo(**ort)
    for name in ("isa_features", "warnings"):
        values[name] = tuple(data.get(name, ()))
    return Capabilities(**values)


def _optional(message: Any, name: str) -> int | None:
    return int(getattr(message, name)) if message.HasField(name) else None


def to_message(caps: Capabilities) -> agent_pb2.Capabilities:
    """The wire form of `caps`."""
    ort = caps.onnxruntime
    return agent_pb2.Capabilities(
        arch=caps.arch,
        cpu_vendor=caps.cpu_vendor,
        cpu_model=caps.cpu_model,
        physical_cores=caps.physical_cores,
        logical_cores=caps.logical_cores,
        usable_cores=caps.usable_cores,
        clusters=[
            agent_pb2.CpuCluster(
                core_name=c.core_name,
                cpus=c.cpus,
                max_freq_mhz=c.max_freq_mhz,
                implementer=c.implementer,
                part=c.part,
            )
            for c in caps.clusters
        ],
        isa_features=caps.isa_features,
        memory_total_bytes=caps.memory_total_bytes,
        memory_available_bytes=caps.memory_available_bytes,
        store_free_bytes=caps.store_free_bytes,
        board_model=caps.board_model,
        os_name=caps.os_name,
        kernel=caps.kernel,
        libc=caps.libc,
        python_version=caps.python_version,
        onnxruntime=agent_pb2.OnnxRuntimeInfo(
            version=ort.version,
            max_ir_version=ort.max_ir_version,
            max_opset=ort.max_opset,
            execution_providers=ort.execution_providers,
            error=ort.error,
        ),
        accelerators=[
            agent_pb2.Accelerator(
                kind=a.kind, name=a.name, path=a.path, driver_version=a.driver_version
            )
            for a in caps.accelerators
        ],
        cpu_governor=caps.cpu_governor,
        temperatures=[
            agent_pb2.Temperature(zone=t.zone, type=t.type, celsius=t.celsius)
            for t in caps.temperatures
        ],
        agent_version=caps.agent_version,
        fingerprint=caps.fingerprint,
        device_id=caps.device_id,
        hostname=caps.hostname,
        emulation=caps.emulation,
        warnings=caps.warnings,
        max_message_bytes=caps.max_message_bytes,
        max_infer_bytes=caps.max_infer_bytes,
        request_timeout_s=caps.request_timeout_s,
        max_benchmark_seconds=caps.max_benchmark_seconds,
    )


def from_message(msg: agent_pb2.Capabilities) -> Capabilities:
    """The dataclass form of a received `edgeopt.v1.Capabilities`."""
    ort = msg.onnxruntime
    return Capabilities(
        arch=msg.arch,
        cpu_vendor=msg.cpu_vendor,
        cpu_model=msg.cpu_model,
        physical_cores=_optional(msg, "physical_cores"),
        logical_cores=_optional(msg, "logical_cores"),
        usable_cores=_optional(msg, "usable_cores"),
        clusters=tuple(
            CpuCluster(
                core_name=c.core_name,
                cpus=tuple(c.cpus),
                max_freq_mhz=_optional(c, "max_freq_mhz"),
                implementer=c.implementer,
                part=c.part,
            )
            for c in msg.clusters
        ),
        isa_features=tuple(msg.isa_features),
        memory_total_bytes=_optional(msg, "memory_total_bytes"),
        memory_available_bytes=_optional(msg, "memory_available_bytes"),
        store_free_bytes=_optional(msg, "store_free_bytes"),
        board_model=msg.board_model,
        os_name=msg.os_name,
        kernel=msg.kernel,
        libc=msg.libc,
        python_version=msg.python_version,
        onnxruntime=OnnxRuntimeInfo(
            version=ort.version,
            max_ir_version=_optional(ort, "max_ir_version"),
            max_opset=_optional(ort, "max_opset"),
            execution_providers=tuple(ort.execution_providers),
            error=ort.error,
        ),
        accelerators=tuple(
            Accelerator(kind=a.kind, name=a.name, path=a.path, driver_version=a.driver_version)
            for a in msg.accelerators
        ),
        cpu_governor=msg.cpu_governor,
        temperatures=tuple(
            Temperature(zone=t.zone, type=t.type, celsius=t.celsius) for t in msg.temperatures
        ),
        agent_version=msg.agent_version,
        fingerprint=msg.fingerprint,
        device_id=msg.device_id,
        hostname=msg.hostname,
        emulation=msg.emulation,
        warnings=tuple(msg.warnings),
        max_message_bytes=_optional(msg, "max_message_bytes"),
        max_infer_bytes=_optional(msg, "max_infer_bytes"),
        request_timeout_s=msg.request_timeout_s if msg.HasField("request_timeout_s") else None,
        max_benchmark_seconds=(
            msg.max_benchmark_seconds if msg.HasField("max_benchmark_seconds") else None
        ),
    )


def _size(n: int | None) -> str:
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}" if unit != "B" else f"{n} B"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover  (the loop returns at GiB)


def summary(caps: Capabilities) -> list[tuple[str, str]]:
    """(label, value) rows for people: what `capabilities` and `devices show` print."""

    def known(value: object) -> str:
        return "unknown" if value in (None, "") else str(value)

    cores = f"{known(caps.physical_cores)} physical, {known(caps.logical_cores)} logical"
    if caps.usable_cores is not None and caps.usable_cores != caps.logical_cores:
        cores += f", {caps.usable_cores} usable by the agent"
    cpu = known(caps.cpu_model)
    if caps.cpu_vendor and not cpu.startswith(caps.cpu_vendor):
        cpu = f"{caps.cpu_vendor} {cpu}"
    ort = caps.onnxruntime
    ort_text = ort.version or (f"unavailable ({ort.error})" if ort.error else "unknown")
    if ort.version:
        ort_text += f" (IR ≤ {known(ort.max_ir_version)}, opset ≤ {known(ort.max_opset)})"
    rows = [("EMULATED", f"{caps.emulation}: timings say nothing about real hardware")]
    rows = rows if caps.emulation else []
    rows += [
        ("board", known(caps.board_model)),
        ("arch", known(caps.arch)),
        ("cpu", cpu),
        ("cores", cores),
    ]
    for cluster in caps.clusters:
        cpus = ",".join(str(c) for c in cluster.cpus)
        clock = f" @ {cluster.max_freq_mhz} MHz" if cluster.max_freq_mhz else ""
        rows.append(("cluster", f"{len(cluster.cpus)}x {cluster.core_name}{clock} (cpus {cpus})"))
    rows += [
        ("isa", " ".join(caps.isa_features) or "unknown"),
        (
            "memory",
            f"{_size(caps.memory_total_bytes)} total, "
            f"{_size(caps.memory_available_bytes)} available",
        ),
        ("store free", _size(caps.store_free_bytes)),
        ("os", known(caps.os_name)),
        ("kernel", known(caps.kernel)),
        ("libc", known(caps.libc)),
        ("python", known(caps.python_version)),
        ("onnxruntime", ort_text),
        ("providers", ", ".join(ort.execution_providers) or "unknown"),
        (
            "accelerators",
            ", ".join(f"{a.name} ({a.kind}, {a.path})" for a in caps.accelerators) or "none seen",
        ),
        ("governor", known(caps.cpu_governor)),
        (
            "temperatures",
            ", ".join(f"{t.type or t.zone} {t.celsius:.1f}°C" for t in caps.temperatures)
            or "unknown",
        ),
        ("agent", known(caps.agent_version)),
        ("fingerprint", known(caps.fingerprint)),
        ("device id", known(caps.device_id)),
    ]
    rows += [("warning", w) for w in caps.warnings]
    return rows


def format_summary(caps: Capabilities) -> str:
    """`summary` as aligned text lines."""
    rows = summary(caps)
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)
