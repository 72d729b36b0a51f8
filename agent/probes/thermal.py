"""Thermal and frequency-scaling facts from sysfs text."""

from __future__ import annotations

from collections.abc import Mapping

from edgeopt.proto.capabilities import Temperature


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
