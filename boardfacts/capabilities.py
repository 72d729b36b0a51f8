"""Assemble a board's `Capabilities` from its file systems and, when live, its running OS.

`Sources` says where the facts come from: the running board (`Sources.live_system()`), or a
captured tree (`Sources.captured(procfs=..., sysfs=..., rootfs=...)`, like node_exporter's
`--path.procfs`). From a captured tree every field comes from the tree, the architecture
included; what only a running system can tell (affinity, Python, libc, ONNX Runtime, free disk,
host name) is left unknown.
A missing or unreadable file leaves its fields unknown and adds a line to `warnings`; it never
raises.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import platform
import shutil
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from edgeopt.boardfacts import accelerators, cpu, memory, system, thermal
from edgeopt.proto.capabilities import Capabilities, CpuCluster, OnnxRuntimeInfo

__all__ = [
    "CAPTURE_PATTERNS",
    "Sources",
    "agent_version",
    "capture",
    "collect",
    "fingerprint",
    "thermal_zones",
    "throttle_flags",
]


def agent_version() -> str:
    """The installed edgeopt version ("0+unknown" when run from a bare source tree)."""
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("edgeopt")
    except PackageNotFoundError:
        return "0+unknown"


@dataclass(frozen=True)
class Sources:
    """Where facts are read from."""

    procfs: Path = Path("/proc")
    """The proc file system (or a captured copy of it)."""
    sysfs: Path = Path("/sys")
    """The sys file system (or a captured copy of it)."""
    rootfs: Path | None = Path("/")
    """Root for /etc and /dev; None when the captured tree has neither."""
    live: bool = True
    """Whether this is the running machine, which may also be asked through system calls."""

    @classmethod
    def live_system(cls) -> Sources:
        """The running board."""
        return cls()

    @classmethod
    def captured(
        cls, procfs: Path | None = None, sysfs: Path | None = None, rootfs: Path | None = None
    ) -> Sources:
        """A captured tree: `rootfs` holds proc/, sys/, etc/, dev/; `procfs`/`sysfs` override."""
        base = rootfs or Path("/nonexistent")
        return cls(
            procfs=procfs or base / "proc",
            sysfs=sysfs or base / "sys",
            rootfs=rootfs,
            live=False,
        )

    def path(self, relative: str) -> Path | None:
        """Map "proc/...", "sys/...", "etc/...", "dev/..." to where it lives in these sources."""
        top, _, rest = relative.partition("/")
        if top == "proc":
            return self.procfs / rest
        if top == "sys":
            return self.sysfs / rest
        return self.rootfs / relative if self.rootfs is not None else None

    def read(self, relative: str) -> str | None:
        """The text of "proc/...", "sys/...", "etc/..." in these sources; None when unreadable."""
        return _Reader(self).read(relative, quiet=True)


@dataclass
class _Reader:
    sources: Sources
    warnings: list[str] = field(default_factory=list)

    def read(self, relative: str, *, quiet: bool = False) -> str | None:
        path = self.sources.path(relative)
        if path is None:
            return None
        try:
            return path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            if not quiet:
                self.warnings.append(f"/{relative}: {exc.strerror or exc}")
            return None

    def glob(self, pattern: str) -> list[str]:
        """Relative paths matching a relative glob pattern."""
        base = self.sources.path(pattern.split("/", 1)[0] + "/")
        if base is None:
            return []
        top = pattern.split("/", 1)[0]
        rest = pattern.split("/", 1)[1]
        return sorted(
            f"{top}/{Path(p).relative_to(base).as_posix()}" for p in glob.glob(str(base / rest))
        )

    def per_cpu(self, cpus: list[int], leaf: str) -> dict[int, str]:
        values = {}
        for n in cpus:
            text = self.read(f"sys/devices/system/cpu/cpu{n}/{leaf}", quiet=True)
            if text is not None:
                values[n] = text
        return values


CAPTURE_PATTERNS: tuple[str, ...] = (
    "proc/cpuinfo",
    "proc/meminfo",
    "proc/version",
    "proc/sys/kernel/osrelease",
    "proc/device-tree/model",
    "sys/firmware/devicetree/base/model",
    "proc/sys/kernel/arch",
    "sys/devices/system/cpu/cpu[0-9]*/cpufreq/cpuinfo_max_freq",
    "sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_governor",
    "sys/devices/system/cpu/cpu[0-9]*/topology/physical_package_id",
    "sys/devices/system/cpu/cpu[0-9]*/topology/core_id",
    "sys/class/thermal/thermal_zone*/type",
    "sys/class/thermal/thermal_zone*/temp",
    "sys/class/dmi/id/sys_vendor",
    "sys/class/dmi/id/product_name",
    "etc/os-release",
    *accelerators.PATTERNS,
)
"""Every file `collect` may read, as globs relative to a root; what `capture` copies.
/etc/machine-id is left out on purpose: a capture is meant to be shared."""


def capture(sources: Sources, dest: Path) -> list[str]:
    """Copy the files `collect` reads into `dest` (a tree `Sources.captured(rootfs=dest)` reads).

    Device nodes and directories that reveal an accelerator become empty files. Returns the
    relative paths written.
    """
    reader = _Reader(sources)
    written = []
    for pattern in CAPTURE_PATTERNS:
        for rel in reader.glob(pattern):
            where = sources.path(rel)
            text = (reader.read(rel, quiet=True) or "") if where and where.is_file() else ""
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            written.append(rel)
    return written


def fingerprint(caps: Capabilities) -> str:
    """Stable hash of the hardware kind: equal for two boards of the same kind.

    Covers architecture, the clusters (core kind, count, max clock), ISA features and the memory
    size class (total RAM rounded up to a power of two GiB, so that a "4 GB" board reporting
    3.7 GiB matches its twins). Nothing that changes with software or load takes part.
    """
    memory_class = None
    if caps.memory_total_bytes:
        memory_class = 2 ** math.ceil(math.log2(max(caps.memory_total_bytes / 2**30, 0.25)))
    canonical = {
        "arch": caps.arch,
        "clusters": [[c.core_name, len(c.cpus), c.max_freq_mhz] for c in caps.clusters],
        "isa": list(caps.isa_features),
        "memory_gib_class": memory_class,
    }
    if caps.emulation:  # an emulated board's timings must never stand for the real kind's
        canonical["emulation"] = caps.emulation
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()
    return digest[:16]


def _thermal_zones(reader: _Reader) -> dict[str, tuple[str | None, str | None]]:
    zones = {}
    for rel in reader.glob("sys/class/thermal/thermal_zone*"):
        zones[rel.rsplit("/", 1)[1]] = (
            reader.read(f"{rel}/type", quiet=True),
            reader.read(f"{rel}/temp", quiet=True),
        )
    return zones


def thermal_zones(sources: Sources) -> dict[str, tuple[str | None, str | None]]:
    """Each thermal zone's name → (text of its `type`, text of its `temp`).

    That is `thermal.temperatures`' argument, read as `collect` reads it; the agent's runner reads
    it before and after a benchmark.
    """
    return _thermal_zones(_Reader(sources))


def throttle_flags(sources: Sources) -> int | None:
    """A Raspberry Pi's firmware throttle flags (`thermal.THROTTLE_FILES`), None elsewhere."""
    reader = _Reader(sources)
    for pattern in thermal.THROTTLE_FILES:
        for rel in reader.glob(pattern):
            flags = thermal.throttled(reader.read(rel, quiet=True))
            if flags is not None:
                return flags
    return None


def _libc() -> str:
    try:
        value = os.confstr("CS_GNU_LIBC_VERSION")
    except (ValueError, OSError):
        value = None
    if value:
        return system.libc_from_confstr(value)
    name, version = platform.libc_ver()
    return f"{name} {version}".strip()


def _free_bytes(path: Path) -> int | None:
    """Free space on the file system that holds `path`, or would hold it once created."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return shutil.disk_usage(candidate).free
    return None


def collect(
    sources: Sources,
    store: Path | None = None,
    runtime: OnnxRuntimeInfo | None = None,
) -> Capabilities:
    """Read every fact the sources offer.

    Args:
        sources: where to read from.
        store: the model store directory whose free space to report (live only).
        runtime: ONNX Runtime facts, measured by the caller (they cost a subprocess, so the agent
            measures them once); None leaves them unknown.
    """
    reader = _Reader(sources)
    cpuinfo_text = reader.read("proc/cpuinfo")
    info = cpu.parse_cpuinfo(cpuinfo_text or "")
    cpus = [cpu.cpu_number(p) for p in info.processors]
    max_freq = reader.per_cpu(cpus, "cpufreq/cpuinfo_max_freq")
    if cpus and not max_freq:
        reader.warnings.append("cpufreq: no cpuinfo_max_freq readable; cluster clocks unknown")
    packages = reader.per_cpu(cpus, "topology/physical_package_id")
    cores = reader.per_cpu(cpus, "topology/core_id")
    core_ids = {n: f"{packages[n].strip()}:{cores[n].strip()}" for n in packages if n in cores}
    clusters: tuple[CpuCluster, ...] = cpu.clusters(info, max_freq)

    meminfo_text = reader.read("proc/meminfo")
    meminfo = memory.parse_meminfo(meminfo_text or "")
    os_release = system.parse_os_release(
        reader.read("etc/os-release", quiet=True) or reader.read("usr/lib/os-release") or ""
    )
    serial = info.board.get("Serial", "")

    found = {}
    for pattern in accelerators.PATTERNS:
        for rel in reader.glob(pattern):
            where = sources.path(rel)
            found[rel] = (reader.read(rel, quiet=True) or "") if where and where.is_file() else ""

    zones = _thermal_zones(reader)

    live = sources.live
    caps = Capabilities(
        arch=cpu.architecture(info) or (platform.machine() if live else ""),
        cpu_vendor=cpu.vendor(info),
        cpu_model=cpu.model_name(info, clusters),
        physical_cores=cpu.physical_cores(info, core_ids),
        logical_cores=len(info.processors) or None,
        usable_cores=len(os.sched_getaffinity(0)) if live else None,
        clusters=clusters,
        isa_features=cpu.isa_features(info),
        memory_total_bytes=memory.total_bytes(meminfo),
        memory_available_bytes=memory.available_bytes(meminfo),
        store_free_bytes=_free_bytes(store) if live and store else None,
        board_model=system.board_model(
            # /proc/device-tree links to the second; a container or a chroot may have only /sys.
            reader.read("proc/device-tree/model", quiet=True)
            or reader.read("sys/firmware/devicetree/base/model", quiet=True),
            reader.read("sys/class/dmi/id/sys_vendor", quiet=True),
            reader.read("sys/class/dmi/id/product_name", quiet=True),
        ),
        os_name=system.os_name(os_release),
        kernel=system.kernel_release(
            reader.read("proc/sys/kernel/osrelease", quiet=True), reader.read("proc/version")
        ),
        libc=_libc() if live else "",
        python_version=platform.python_version() if live else "",
        onnxruntime=runtime or OnnxRuntimeInfo(),
        accelerators=accelerators.detect(found),
        cpu_governor=thermal.governor(
            reader.read("sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", quiet=True)
        ),
        temperatures=thermal.temperatures(zones),
        agent_version=agent_version(),
        device_id=system.device_id(reader.read("etc/machine-id", quiet=True), serial),
        hostname=socket.gethostname() if live else "",
        emulation=system.emulation(
            reader.read("proc/sys/kernel/arch", quiet=True), platform.machine() if live else ""
        ),
        warnings=tuple(reader.warnings),
    )
    return replace(caps, fingerprint=fingerprint(caps))
