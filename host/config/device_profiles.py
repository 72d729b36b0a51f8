"""Device profiles: what a kind of board is, from device_profiles/NAME.toml.

A profile holds the facts a planner needs before it has met a board (architecture, cores and
clusters, ISA features, memory sizes, the execution providers to expect) and notes on what is known
to be fast or slow there. Every file is checked on load; a wrong one raises `ProfileError` naming
the file and the field. `check` holds a live `Capabilities` report against a profile.

Profiles come from the package (`edgeopt.device_profiles`) and, overriding those of the same name,
from `$EDGEOPT_PROFILES` (a folder) or an explicit folder.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from edgeopt.host.config import tomlfile
from edgeopt.host.errors import ProfileError
from edgeopt.proto.capabilities import (
    ARCHITECTURES,
    ISA_FEATURES,
    Capabilities,
    CpuCluster,
    OnnxRuntimeInfo,
)

__all__ = [
    "ENV_VAR",
    "ClusterSpec",
    "DeviceProfile",
    "as_capabilities",
    "Finding",
    "builtin_dir",
    "check",
    "load",
    "load_all",
    "parse",
]

ENV_VAR = "EDGEOPT_PROFILES"


@dataclass(frozen=True)
class ClusterSpec:
    """A cluster of identical cores as the profile expects it."""

    core: str
    """Core name as the agent reports it ("Cortex-A76")."""
    cores: int
    """How many cores."""
    max_freq_mhz: tuple[int, ...] = ()
    """Maximum clocks seen on healthy boards of this kind (firmware and binning vary)."""


@dataclass(frozen=True)
class DeviceProfile:
    """One kind of board."""

    name: str
    """Profile name, equal to the file's stem."""
    description: str
    """One line for people."""
    arch: str
    """Architecture, `uname -m` style."""
    isa_features: tuple[str, ...]
    """Normalized ISA features every board of this kind has."""
    memory_gib: tuple[int, ...] = ()
    """RAM sizes the board is sold with, in GiB; empty when any size is normal."""
    clusters: tuple[ClusterSpec, ...] = ()
    """Core clusters; empty when core counts vary (generic x86 profiles)."""
    expected_providers: tuple[str, ...] = ()
    """ONNX Runtime execution providers a well set-up board offers."""
    accelerators: tuple[str, ...] = ()
    """Accelerators the board has, in words."""
    notes: tuple[str, ...] = ()
    """What is known to be fast or slow on it."""
    path: Path | None = None
    """The file it was read from."""


_KEYS = {
    "name",
    "description",
    "arch",
    "isa_features",
    "memory_gib",
    "expected_providers",
    "accelerators",
    "notes",
    "clusters",
}


def parse(data: dict[str, Any], path: Path) -> DeviceProfile:
    """Build and check a profile from parsed TOML.

    Raises:
        ProfileError: a key is missing, unknown, of the wrong type or value.
    """
    err = ProfileError

    def get(table: dict[str, Any], key: str, kind: type, where: str = "", **kw: Any) -> Any:
        return tomlfile.expect(table, key, kind, path=path, where=where, error=err, **kw)

    tomlfile.reject_unknown(data, _KEYS, path=path, where="", error=err)
    name = get(data, "name", str, required=True)
    if name != path.stem:
        raise err(str(path), f"is {name!r} but the file is named {path.name!r}", "name")
    arch = get(data, "arch", str, required=True)
    if arch not in ARCHITECTURES:
        raise err(
            str(path), f"unknown architecture {arch!r} ({', '.join(sorted(ARCHITECTURES))})", "arch"
        )
    features = tuple(get(data, "isa_features", list, required=True, item=str))
    unknown = sorted(set(features) - ISA_FEATURES)
    if unknown:
        raise err(
            str(path),
            f"unknown feature(s) {', '.join(unknown)}; known: {', '.join(sorted(ISA_FEATURES))}",
            "isa_features",
        )
    clusters = []
    for i, table in enumerate(get(data, "clusters", list, item=dict) or ()):
        where = f"clusters[{i}]"
        tomlfile.reject_unknown(
            table, {"core", "cores", "max_freq_mhz"}, path=path, where=where, error=err
        )
        cores = get(table, "cores", int, where, required=True)
        if cores < 1:
            raise err(str(path), f"must be at least 1, got {cores}", f"{where}.cores")
        clusters.append(
            ClusterSpec(
                core=get(table, "core", str, where, required=True),
                cores=cores,
                max_freq_mhz=tuple(get(table, "max_freq_mhz", list, where, item=int) or ()),
            )
        )
    return DeviceProfile(
        name=name,
        description=get(data, "description", str, required=True),
        arch=arch,
        isa_features=features,
        memory_gib=tuple(get(data, "memory_gib", list, item=int) or ()),
        clusters=tuple(clusters),
        expected_providers=tuple(get(data, "expected_providers", list, item=str) or ()),
        accelerators=tuple(get(data, "accelerators", list, item=str) or ()),
        notes=tuple(get(data, "notes", list, item=str) or ()),
        path=path,
    )


def load(path: Path) -> DeviceProfile:
    """Read and check one profile file.

    Raises:
        ProfileError: unreadable, not TOML, or wrong; the message names the file and field.
    """
    return parse(tomlfile.load(path, ProfileError), path)


def builtin_dir() -> Path:
    """The folder of profiles shipped with edgeopt."""
    return Path(str(resources.files("edgeopt.device_profiles")))


def load_all(extra_dir: Path | None = None) -> dict[str, DeviceProfile]:
    """Every known profile by name: built in, then $EDGEOPT_PROFILES, then `extra_dir`.

    A later folder's profile replaces a built-in one of the same name.

    Raises:
        ProfileError: a profile file is wrong (loading stops at the first one).
    """
    folders = [builtin_dir()]
    if os.environ.get(ENV_VAR):
        folders.append(Path(os.environ[ENV_VAR]).expanduser())
    if extra_dir is not None:
        folders.append(extra_dir)
    profiles: dict[str, DeviceProfile] = {}
    for folder in folders:
        if not folder.is_dir():
            raise ProfileError(str(folder), "profile folder does not exist")
        for path in sorted(folder.glob("*.toml")):
            profile = load(path)
            profiles[profile.name] = profile
    return profiles


Level = Literal["ok", "warn", "mismatch"]


@dataclass(frozen=True)
class Finding:
    """One fact of a live report held against the profile."""

    level: Level
    """"ok", "warn" (unusual but workable) or "mismatch" (not this kind of board)."""
    field: str
    """Which fact ("arch", "clusters", "isa_features", ...)."""
    expected: str
    """What the profile says."""
    actual: str
    """What the board reported."""
    message: str = ""
    """What it means, for people."""


def _memory_class(total_bytes: int) -> int:
    # A "4 GB" board reports about 3.7 GiB after firmware and kernel reservations.
    return int(2 ** max(0, math.ceil(math.log2(total_bytes / 2**30))))


def _check_clusters(profile: DeviceProfile, caps: Capabilities) -> list[Finding]:
    if not profile.clusters:
        return []
    expected = sorted((c.core, c.cores) for c in profile.clusters)
    actual = sorted((c.core_name, len(c.cpus)) for c in caps.clusters)
    shown = ", ".join(f"{n}x {core}" for core, n in expected)
    got = ", ".join(f"{n}x {core}" for core, n in actual) or "unknown"
    if expected != actual:
        return [Finding("mismatch", "clusters", shown, got, "different cores: another board kind")]
    findings = [Finding("ok", "clusters", shown, got)]
    for spec in profile.clusters:
        live = next(c for c in caps.clusters if c.core_name == spec.core)
        if not spec.max_freq_mhz or live.max_freq_mhz is None:
            continue
        ok = live.max_freq_mhz in spec.max_freq_mhz
        findings.append(
            Finding(
                "ok" if ok else "warn",
                f"max_freq_mhz[{spec.core}]",
                "/".join(map(str, spec.max_freq_mhz)),
                str(live.max_freq_mhz),
                "" if ok else "clock differs from healthy boards: firmware cap or overclock?",
            )
        )
    return findings


def check(profile: DeviceProfile, caps: Capabilities) -> list[Finding]:
    """Hold a live report against the profile the inventory declares for it.

    "mismatch" means the board is not of this kind (wrong architecture, cores, missing ISA
    features, a memory size the board is not sold with); "warn" means it is, but something will
    cost speed (a missing execution provider, a lower clock, CPUs outside the agent's affinity).
    """
    findings = [
        Finding(
            "ok" if caps.arch == profile.arch else "mismatch",
            "arch",
            profile.arch,
            caps.arch or "unknown",
        )
    ]
    findings += _check_clusters(profile, caps)
    missing = [f for f in profile.isa_features if f not in caps.isa_features]
    findings.append(
        Finding(
            "mismatch" if missing else "ok",
            "isa_features",
            " ".join(profile.isa_features),
            " ".join(caps.isa_features) or "unknown",
            f"missing: {' '.join(missing)}" if missing else "",
        )
    )
    if profile.memory_gib and caps.memory_total_bytes:
        size = _memory_class(caps.memory_total_bytes)
        findings.append(
            Finding(
                "ok" if size in profile.memory_gib else "mismatch",
                "memory_gib",
                "/".join(map(str, profile.memory_gib)),
                str(size),
            )
        )
    providers = caps.onnxruntime.execution_providers
    absent = [p for p in profile.expected_providers if p not in providers]
    findings.append(
        Finding(
            "warn" if absent else "ok",
            "execution_providers",
            ", ".join(profile.expected_providers),
            ", ".join(providers) or "unknown",
            f"not available: {', '.join(absent)}" if absent else "",
        )
    )
    if caps.emulation:
        findings.append(
            Finding(
                "warn",
                "emulation",
                "none",
                caps.emulation,
                "EMULATED: the report is the imitated board's, its timings are the emulator's",
            )
        )
    usable, logical = caps.usable_cores, caps.logical_cores
    if usable is not None and logical and usable != logical:
        findings.append(
            Finding(
                "warn",
                "usable_cores",
                str(logical),
                str(usable),
                "the agent may run on fewer CPUs than the board has (taskset/cpuset)"
                if usable < logical
                else "the agent may run on more CPUs than the board reports (an emulator)",
            )
        )
    return findings


def as_capabilities(profile: DeviceProfile) -> Capabilities:
    """What a board of this profile would report, as far as the profile says.

    For planning a board that cannot be asked (pull mode, before its first status). Memory is
    the smallest the board is sold with; the ONNX Runtime version is unknown.
    """
    cpus = 0
    clusters = []
    for spec in profile.clusters:
        ids = tuple(range(cpus, cpus + spec.cores))
        cpus += spec.cores
        top = max(spec.max_freq_mhz) if spec.max_freq_mhz else None
        clusters.append(CpuCluster(core_name=spec.core, cpus=ids, max_freq_mhz=top))
    memory = min(profile.memory_gib) << 30 if profile.memory_gib else None
    return Capabilities(
        arch=profile.arch, physical_cores=cpus or None, logical_cores=cpus or None,
        usable_cores=cpus or None, clusters=tuple(clusters),
        isa_features=tuple(profile.isa_features), memory_total_bytes=memory,
        memory_available_bytes=memory, board_model=profile.description,
        onnxruntime=OnnxRuntimeInfo(execution_providers=tuple(profile.expected_providers)),
    )  # fmt: skip
