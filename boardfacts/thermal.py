"""Thermal and frequency-scaling facts from sysfs text."""

from __future__ import annotations

from collections.abc import Mapping

from edgeopt.proto.capabilities import Temperature

__all__ = [
    "THROTTLE_FILES",
    "THROTTLE_NOW",
    "governor",
    "temperatures",
    "throttle_events",
    "throttled",
]


def temperatures(zones: Mapping[str, tuple[str | None, str | None]]) -> tuple[Temperature, ...]:
    """Readings of thermal zones.

    Args:
        zones: zone name ("thermal_zone0") → (text of its `type`, text of its `temp`), the latter
            in millidegrees Celsius as the kernel prints it.

    Zones whose temperature is unreadable (some report EINVAL or EAGAIN while asleep) are skipped.
    """
    result = []
    for zone in sorted(zones, key=_zone_order):
        kind, temp = zones[zone]
        if temp is None:
            continue
        try:
            millidegrees = int(temp.strip())
        except ValueError:
            continue
        result.append(Temperature(zone, (kind or "").strip(), millidegrees / 1000.0))
    return tuple(result)


def _zone_order(zone: str) -> tuple[int, str]:
    digits = "".join(ch for ch in zone if ch.isdigit())
    return (int(digits) if digits else 0, zone)


def governor(text: str | None) -> str:
    """The cpufreq scaling governor ("ondemand"), or "" when unreadable."""
    return text.strip() if text else ""


THROTTLE_FILES = (
    "sys/devices/platform/soc/soc:firmware/get_throttled",
    "sys/devices/platform/*/*:firmware/get_throttled",
)
"""Where a Raspberry Pi's firmware driver (raspberrypi firmware, `get_throttled`) prints its
throttle flags as hex ("50005"): the first is the Pi 4's path, the second covers SoC nodes
named otherwise."""

THROTTLE_NOW = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled",
                3: "soft temperature limit"}  # fmt: skip
"""Bits 0-3 say what holds now; bits 16-19 say the same has happened since boot."""


def throttled(text: str | None) -> int | None:
    """The firmware's throttle flags from `get_throttled`'s hex text; None when unreadable."""
    if text is None:
        return None
    value = text.strip().lower()
    value = value.split("=", 1)[-1]  # vcgencmd's "throttled=0x50005" form too
    try:
        return int(value, 16)
    except ValueError:
        return None


def throttle_events(before: int | None, after: int | None) -> list[str]:
    """What throttled a run, by name.

    A condition counts when it held before or after the run (bits 0-3), or first happened
    during it (its since-boot bit, 16-19, clear before and set after).
    """
    if after is None:
        return []
    now = after | (before or 0)
    during = (after >> 16) & ~((before or 0) >> 16) if before is not None else 0
    return [name for bit, name in THROTTLE_NOW.items() if (now | during) & (1 << bit)]
