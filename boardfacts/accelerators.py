"""Accelerators (GPUs, NPUs, TPUs) revealed by device nodes, /proc and /sys entries.

`PATTERNS` lists the paths (globs relative to the root of a file-system tree) worth reading;
the caller reads those that exist and hands their text to `detect`, which is pure. A directory or
a device node that exists is passed with empty text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from edgeopt.proto.capabilities import Accelerator

__all__ = ["PATTERNS", "PCI_VENDORS", "detect"]

PATTERNS: tuple[str, ...] = (
    # NVIDIA discrete GPUs (proprietary driver).
    "proc/driver/nvidia/version",
    "proc/driver/nvidia/gpus/*/information",
    "dev/nvidia[0-9]*",
    # NVIDIA Jetson (Tegra integrated GPU).
    "etc/nv_tegra_release",
    "dev/nvhost-ctrl-gpu",
    "dev/nvgpu/igpu0",
    "sys/devices/platform/gpu.0",
    "sys/devices/gpu.0",
    # Rockchip NPU (RK3566/RK3568/RK3588) and Arm Mali GPUs, from the device tree.
    "dev/rknpu",
    "proc/device-tree/npu@*/compatible",
    "proc/device-tree/gpu@*/compatible",
    "dev/mali0",
    # Hailo-8/8L (Raspberry Pi AI Kit) and Google Coral Edge TPU (PCIe).
    "dev/hailo[0-9]*",
    "sys/class/hailo_chardev/hailo[0-9]*",
    "dev/apex_[0-9]*",
    "sys/class/apex/apex_[0-9]*",
    # The kernel's compute-accelerator class (Intel NPU, AMD XDNA, ...).
    "sys/class/accel/accel[0-9]*/device/vendor",
    # GPU render nodes of any vendor (Intel iGPU, AMD).
    "sys/class/drm/renderD*/device/vendor",
)

_BY_NODE = (
    ("npu", "Hailo AI accelerator", ("dev/hailo[0-9]*", "sys/class/hailo_chardev/hailo[0-9]*")),
    ("tpu", "Google Coral Edge TPU", ("dev/apex_[0-9]*", "sys/class/apex/apex_[0-9]*")),
)
"""Accelerators known by their device node alone: (kind, name, patterns, first match wins)."""

PCI_VENDORS = {"0x8086": "Intel", "0x1002": "AMD", "0x10de": "NVIDIA", "0x1e60": "Hailo"}


def _matching(found: Mapping[str, str], pattern: str) -> list[str]:
    regex = re.compile(pattern.replace(".", r"\.").replace("*", "[^/]*") + "$")
    return sorted(p for p in found if regex.match(p))


def detect(found: Mapping[str, str]) -> tuple[Accelerator, ...]:
    """Name the accelerators that the existing paths reveal.

    Args:
        found: path relative to the tree's root (as in `PATTERNS`, with globs expanded) → its
            text ("" for directories and device nodes).
    """
    result: list[Accelerator] = []
    result += _nvidia(found)
    result += _jetson(found)
    result += _rockchip_and_mali(found)
    for kind, name, patterns in _BY_NODE:
        for pattern in patterns:
            paths = _matching(found, pattern)
            if paths:
                result += [Accelerator(kind, name, "/" + p) for p in paths]
                break
    for path in _matching(found, "sys/class/accel/accel[0-9]*/device/vendor"):
        vendor = PCI_VENDORS.get(found[path].strip().lower(), found[path].strip())
        result.append(Accelerator("npu", f"{vendor} NPU (accel)".strip(), "/" + path))
    has_discrete_nvidia = any(a.name.startswith("NVIDIA") for a in result)
    for path in _matching(found, "sys/class/drm/renderD*/device/vendor"):
        vendor_id = found[path].strip().lower()
        if vendor_id == "0x10de" and has_discrete_nvidia:
            continue
        vendor = PCI_VENDORS.get(vendor_id, vendor_id)
        result.append(Accelerator("gpu", f"{vendor} GPU", "/" + path.rsplit("/device/", 1)[0]))
    return tuple(result)


def _nvidia(found: Mapping[str, str]) -> list[Accelerator]:
    version = ""
    text = found.get("proc/driver/nvidia/version", "")
    match = re.search(r"Kernel Module(?: for \S+)?\s+(\d+(?:\.\d+)+)", text)
    if match:
        version = match.group(1)
    gpus = []
    for path in _matching(found, "proc/driver/nvidia/gpus/*/information"):
        model = re.search(r"^Model:\s*(.+)$", found[path], re.MULTILINE)
        name = model.group(1).strip() if model else "NVIDIA GPU"
        if not name.startswith("NVIDIA"):
            name = f"NVIDIA {name}"
        gpus.append(Accelerator("gpu", name, "/" + path, version))
    if not gpus:
        gpus = [
            Accelerator("gpu", "NVIDIA GPU", "/" + p, version)
            for p in _matching(found, "dev/nvidia[0-9]*")
        ]
    return gpus


def _jetson(found: Mapping[str, str]) -> list[Accelerator]:
    markers = [
        p
        for p in (
            "dev/nvhost-ctrl-gpu",
            "dev/nvgpu/igpu0",
            "sys/devices/platform/gpu.0",
            "sys/devices/gpu.0",
        )
        if p in found
    ]
    release = found.get("etc/nv_tegra_release", "")
    if not markers and not release:
        return []
    version = ""
    match = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", release)
    if match:
        version = f"L4T R{match.group(1)}.{match.group(2)}"
    path = "/" + (markers[0] if markers else "etc/nv_tegra_release")
    return [Accelerator("gpu", "NVIDIA Jetson integrated GPU", path, version)]


def _rockchip_and_mali(found: Mapping[str, str]) -> list[Accelerator]:
    result = []
    npus = [p for p in _matching(found, "proc/device-tree/npu@*/compatible") if "rknpu" in found[p]]
    if "dev/rknpu" in found:
        npus.insert(0, "dev/rknpu")
    if npus:
        result.append(Accelerator("npu", "Rockchip RKNPU", "/" + npus[0]))
    gpus = [p for p in _matching(found, "proc/device-tree/gpu@*/compatible") if "mali" in found[p]]
    if "dev/mali0" in found:
        gpus.insert(0, "dev/mali0")
    if gpus:
        result.append(Accelerator("gpu", "Arm Mali GPU", "/" + gpus[0]))
    return result
