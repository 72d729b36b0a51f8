"""Memory facts from the text of /proc/meminfo."""

from __future__ import annotations

__all__ = ["available_bytes", "parse_meminfo", "total_bytes"]


def parse_meminfo(text: str) -> dict[str, int]:
    """Map each /proc/meminfo key to bytes ("MemTotal:  3884428 kB" → 3977654272)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        parts = rest.split()
        if not sep or not parts or not parts[0].isdigit():
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        values[key.strip()] = int(parts[0]) * scale
    return values


def total_bytes(meminfo: dict[str, int]) -> int | None:
    """Total usable RAM."""
    return meminfo.get("MemTotal")


def available_bytes(meminfo: dict[str, int]) -> int | None:
    """RAM that new work can get without swapping.

    MemAvailable is the kernel's own estimate (Linux ≥ 3.14); on older kernels free + buffers +
    page cache is the usual approximation.
    """
    if "MemAvailable" in meminfo:
        return meminfo["MemAvailable"]
    parts = [meminfo.get(k) for k in ("MemFree", "Buffers", "Cached")]
    if any(p is None for p in parts):
        return None
    return sum(p for p in parts if p is not None)
