"""CPU facts from the text of /proc/cpuinfo and /sys/devices/system/cpu.

Each function takes text (or small dicts of text) and returns a typed value, so the same code reads
the running board and a captured tree of another one. Nothing here touches the file system.

ARM cores are named from their MIDR implementer and part numbers, as the Linux kernel
(arch/arm64/include/asm/cputype.h) and util-linux's lscpu (sys-utils/lscpu-arm.c) decode them.
ISA features are normalized across vendors and kernels: "asimd" and "neon" are both "neon",
"asimddp" is "dotprod", "amx_tile" is "amx", and so on, so the planner asks one question.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from edgeopt.proto.capabilities import CpuCluster

__all__ = [
    "ARM_FEATURES",
    "ARM_IMPLEMENTERS",
    "ARM_PARTS",
    "X86_FEATURES",
    "CpuInfo",
    "architecture",
    "arm_core_name",
    "clusters",
    "core_name",
    "cpu_number",
    "isa_features",
    "model_name",
    "parse_cpuinfo",
    "parse_khz",
    "physical_cores",
    "vendor",
]

ARM_IMPLEMENTERS: dict[str, str] = {
    "0x41": "ARM",
    "0x42": "Broadcom",
    "0x43": "Cavium",
    "0x46": "Fujitsu",
    "0x48": "HiSilicon",
    "0x4e": "NVIDIA",
    "0x50": "APM",
    "0x51": "Qualcomm",
    "0x53": "Samsung",
    "0x56": "Marvell",
    "0x61": "Apple",
    "0x69": "Intel",
    "0x6d": "Microsoft",
    "0xc0": "Ampere",
}
"""MIDR implementer code → vendor."""

ARM_PARTS: dict[tuple[str, str], str] = {
    ("0x41", "0xb76"): "ARM1176",
    ("0x41", "0xc07"): "Cortex-A7",
    ("0x41", "0xc08"): "Cortex-A8",
    ("0x41", "0xc09"): "Cortex-A9",
    ("0x41", "0xc0d"): "Cortex-A17",
    ("0x41", "0xc0f"): "Cortex-A15",
    ("0x41", "0xd01"): "Cortex-A32",
    ("0x41", "0xd02"): "Cortex-A34",
    ("0x41", "0xd03"): "Cortex-A53",
    ("0x41", "0xd04"): "Cortex-A35",
    ("0x41", "0xd05"): "Cortex-A55",
    ("0x41", "0xd06"): "Cortex-A65",
    ("0x41", "0xd07"): "Cortex-A57",
    ("0x41", "0xd08"): "Cortex-A72",
    ("0x41", "0xd09"): "Cortex-A73",
    ("0x41", "0xd0a"): "Cortex-A75",
    ("0x41", "0xd0b"): "Cortex-A76",
    ("0x41", "0xd0c"): "Neoverse-N1",
    ("0x41", "0xd0d"): "Cortex-A77",
    ("0x41", "0xd0e"): "Cortex-A76AE",
    ("0x41", "0xd40"): "Neoverse-V1",
    ("0x41", "0xd41"): "Cortex-A78",
    ("0x41", "0xd42"): "Cortex-A78AE",
    ("0x41", "0xd43"): "Cortex-A65AE",
    ("0x41", "0xd44"): "Cortex-X1",
    ("0x41", "0xd46"): "Cortex-A510",
    ("0x41", "0xd47"): "Cortex-A710",
    ("0x41", "0xd48"): "Cortex-X2",
    ("0x41", "0xd49"): "Neoverse-N2",
    ("0x41", "0xd4a"): "Neoverse-E1",
    ("0x41", "0xd4b"): "Cortex-A78C",
    ("0x41", "0xd4c"): "Cortex-X1C",
    ("0x41", "0xd4d"): "Cortex-A715",
    ("0x41", "0xd4e"): "Cortex-X3",
    ("0x41", "0xd4f"): "Neoverse-V2",
    ("0x41", "0xd80"): "Cortex-A520",
    ("0x41", "0xd81"): "Cortex-A720",
    ("0x41", "0xd82"): "Cortex-X4",
    ("0x41", "0xd84"): "Neoverse-V3",
    ("0x41", "0xd85"): "Cortex-X925",
    ("0x41", "0xd87"): "Cortex-A725",
    ("0x41", "0xd8e"): "Neoverse-N3",
    ("0x4e", "0x003"): "Denver 2",
    ("0x4e", "0x004"): "Carmel",
    ("0x51", "0x800"): "Kryo 2XX Gold",
    ("0x51", "0x801"): "Kryo 2XX Silver",
    ("0x51", "0x802"): "Kryo 3XX Gold",
    ("0x51", "0x803"): "Kryo 3XX Silver",
    ("0x51", "0x804"): "Kryo 4XX Gold",
    ("0x51", "0x805"): "Kryo 4XX Silver",
    ("0x51", "0xc00"): "Falkor",
    ("0x51", "0xc01"): "Saphira",
    ("0x61", "0x022"): "Apple M1 Icestorm",
    ("0x61", "0x023"): "Apple M1 Firestorm",
    ("0xc0", "0xac3"): "Ampere-1",
}
"""(MIDR implementer, part) → core name."""

X86_FEATURES: dict[str, str] = {
    "sse4_1": "sse4_1",
    "sse4_2": "sse4_2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512vl": "avx512vl",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "avx_vnni": "avx_vnni",
    "avx_vnni_int8": "avx_vnni_int8",
    "amx_tile": "amx",
    "amx_int8": "amx_int8",
    "amx_bf16": "amx_bf16",
}
"""x86 /proc/cpuinfo flag → normalized feature (only those that matter for inference)."""

ARM_FEATURES: dict[str, str] = {
    "asimd": "neon",
    "neon": "neon",
    "fphp": "fp16",
    "asimdhp": "fp16",
    "asimddp": "dotprod",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
    "bf16": "bf16",
    "svei8mm": "sve_i8mm",
    "sme": "sme",
    "vfpv4": "vfpv4",
}
"""ARM /proc/cpuinfo Features word → normalized feature."""


@dataclass(frozen=True)
class CpuInfo:
    """/proc/cpuinfo split into its per-processor blocks and the trailing board lines."""

    processors: tuple[Mapping[str, str], ...]
    """One mapping per `processor` block, keys as printed ("CPU part", "flags")."""
    board: Mapping[str, str]
    """Lines outside any processor block (Raspberry Pi kernels print Hardware/Serial/Model)."""


def parse_cpuinfo(text: str) -> CpuInfo:
    """Split /proc/cpuinfo into processor blocks and board lines.

    Blocks are separated by blank lines. A block that has no `processor` key (the Raspberry Pi
    trailer, or a header on old ARM kernels) is folded into `board`.
    """
    processors: list[dict[str, str]] = []
    board: dict[str, str] = {}
    for chunk in re.split(r"\n\s*\n", text):
        block: dict[str, str] = {}
        for line in chunk.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                block[key.strip()] = value.strip()
        if not block:
            continue
        if "processor" in block and block["processor"].isdigit():
            processors.append(block)
        else:
            board.update(block)
    return CpuInfo(tuple(processors), board)


def architecture(info: CpuInfo) -> str:
    """The `uname -m` name of the CPU's architecture, from cpuinfo alone ("" when unclear)."""
    if not info.processors:
        return ""
    first = info.processors[0]
    if "flags" in first or "vendor_id" in first:
        return "x86_64" if "lm" in first.get("flags", "").split() else "i686"
    if "CPU architecture" in first:
        # A 32-bit kernel on an ARMv8 core (Raspberry Pi OS 32-bit) reports 7 and "(v7l)".
        arch = first["CPU architecture"]
        return "aarch64" if arch in {"8", "AArch64"} else "armv7l"
    if first.get("isa", "").startswith("rv64"):
        return "riscv64"
    return ""


def arm_core_name(implementer: str, part: str) -> str:
    """Core name for an ARM MIDR implementer/part pair, e.g. ("0x41", "0xd08") → "Cortex-A72"."""
    key = (implementer.lower(), part.lower())
    if key in ARM_PARTS:
        return ARM_PARTS[key]
    vendor = ARM_IMPLEMENTERS.get(key[0], f"implementer {implementer}")
    return f"{vendor} part {part}"


def vendor(info: CpuInfo) -> str:
    """CPU vendor: Intel/AMD from vendor_id, the MIDR implementer's name on ARM."""
    if not info.processors:
        return ""
    first = info.processors[0]
    vendor_id = first.get("vendor_id", "")
    if vendor_id:
        return {"GenuineIntel": "Intel", "AuthenticAMD": "AMD"}.get(vendor_id, vendor_id)
    implementer = first.get("CPU implementer", "").lower()
    return ARM_IMPLEMENTERS.get(implementer, implementer)


def isa_features(info: CpuInfo) -> tuple[str, ...]:
    """Normalized ISA features common to every processor, sorted.

    On big.LITTLE parts every core has to support a feature for a kernel to rely on it, so the
    intersection is reported (the kernel's own hwcaps are the same).
    """
    sets: list[set[str]] = []
    for proc in info.processors:
        if "flags" in proc:
            words, table = proc["flags"].split(), X86_FEATURES
        else:
            words, table = proc.get("Features", "").split(), ARM_FEATURES
        sets.append({table[w] for w in words if w in table})
    if not sets:
        return ()
    common = set.intersection(*sets)
    # Half precision needs both scalar (fphp) and vector (asimdhp) support on ARM.
    if "flags" not in info.processors[0]:
        arm_words = set(info.processors[0].get("Features", "").split())
        if not {"fphp", "asimdhp"} <= arm_words:
            common.discard("fp16")
    return tuple(sorted(common))


def cpu_number(proc: Mapping[str, str]) -> int:
    """The logical CPU number of a processor block."""
    return int(proc["processor"])


def core_name(proc: Mapping[str, str]) -> str:
    """What kind of core a processor block describes."""
    if "CPU part" in proc:
        return arm_core_name(proc.get("CPU implementer", ""), proc["CPU part"])
    return proc.get("model name", "")


def model_name(info: CpuInfo, clusters: tuple[CpuCluster, ...]) -> str:
    """One line naming the CPU: the x86 model name, or the ARM cores ("4x A55 + 4x A76")."""
    if not info.processors:
        return ""
    first = info.processors[0]
    if "model name" in first and "CPU part" not in first:
        return first["model name"]
    if len(clusters) == 1:
        return clusters[0].core_name
    return " + ".join(f"{len(c.cpus)}x {c.core_name}" for c in clusters)


def parse_khz(text: str | None) -> int | None:
    """A cpufreq value in kHz (the text of cpuinfo_max_freq) as MHz, or None."""
    if text is None:
        return None
    text = text.strip()
    return int(text) // 1000 if text.isdigit() else None


def clusters(info: CpuInfo, max_freq_khz: Mapping[int, str]) -> tuple[CpuCluster, ...]:
    """Group logical CPUs by core kind and maximum frequency, slowest cluster first.

    Args:
        info: parsed /proc/cpuinfo.
        max_freq_khz: CPU number → text of its cpufreq/cpuinfo_max_freq, for those readable.

    Two kinds of core (ARM parts) always make two clusters; cores of one kind with different
    maximum clocks (Intel hybrid parts report one model name for P and E cores, the RK3588's two
    A76 pairs may be binned apart) are split by clock as well.
    """
    groups: dict[tuple[str, str, str, int | None], list[int]] = {}
    for proc in info.processors:
        cpu = cpu_number(proc)
        key = (
            core_name(proc),
            proc.get("CPU implementer", ""),
            proc.get("CPU part", ""),
            parse_khz(max_freq_khz.get(cpu)),
        )
        groups.setdefault(key, []).append(cpu)
    result = [
        CpuCluster(
            core_name=name,
            cpus=tuple(sorted(cpus)),
            max_freq_mhz=mhz,
            implementer=implementer,
            part=part,
        )
        for (name, implementer, part, mhz), cpus in groups.items()
    ]
    result.sort(key=lambda c: (c.max_freq_mhz or 0, c.cpus[0]))
    return tuple(result)


def physical_cores(info: CpuInfo, core_ids: Mapping[int, str]) -> int | None:
    """Count physical cores.

    Args:
        info: parsed /proc/cpuinfo.
        core_ids: CPU number → "package:core" from sysfs topology, for those readable.

    x86 prints `physical id` and `core id` per logical CPU; ARM prints neither and (but for a few
    server parts) has no SMT, so sysfs topology decides there, else one core per CPU.
    """
    if not info.processors:
        return None
    pairs = {
        (p["physical id"], p["core id"])
        for p in info.processors
        if "physical id" in p and "core id" in p
    }
    if pairs:
        return len(pairs)
    if len(core_ids) == len(info.processors):
        return len(set(core_ids.values()))
    return len(info.processors)
