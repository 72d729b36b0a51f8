"""Operating-system facts from text: os-release, kernel release, board model, libc, device id."""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "board_model",
    "device_id",
    "emulation",
    "kernel_release",
    "libc_from_confstr",
    "os_name",
    "parse_os_release",
]


def parse_os_release(text: str) -> dict[str, str]:
    """Parse os-release(5): KEY=value lines, values optionally quoted."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


def os_name(os_release: dict[str, str]) -> str:
    """PRETTY_NAME, else NAME and VERSION."""
    if "PRETTY_NAME" in os_release:
        return os_release["PRETTY_NAME"]
    return " ".join(filter(None, (os_release.get("NAME"), os_release.get("VERSION"))))


def kernel_release(osrelease: str | None, version: str | None) -> str:
    """The kernel release, from /proc/sys/kernel/osrelease or else /proc/version."""
    if osrelease and osrelease.strip():
        return osrelease.strip()
    if version:
        match = re.match(r"Linux version (\S+)", version)
        if match:
            return match.group(1)
    return ""


def board_model(
    device_tree_model: str | None, dmi_vendor: str | None, dmi_product: str | None
) -> str:
    """Board name: the device tree's model (ARM), else DMI vendor and product name (x86)."""
    if device_tree_model:
        model = device_tree_model.replace("\x00", "").strip()
        if model:
            return model
    parts = [p.strip() for p in (dmi_vendor, dmi_product) if p and p.strip()]
    return " ".join(parts)


_FAMILIES = {
    "x86_64": "x86", "amd64": "x86", "i386": "x86", "i486": "x86", "i586": "x86", "i686": "x86",
    "aarch64": "arm", "arm64": "arm", "armv6l": "arm", "armv7l": "arm", "armv8l": "arm",
    "arm": "arm",
}  # fmt: skip


def emulation(kernel_arch: str | None, machine: str) -> str:
    """Say so when this userland's code is emulated (qemu-user) on another kind of CPU.

    `kernel_arch` is the running kernel's machine (/proc/sys/kernel/arch, Linux 6.1 and newer),
    `machine` what `uname -m` says to this process: qemu-user answers with the emulated CPU, the
    kernel file cannot lie. A 32-bit ARM userland on a 64-bit ARM kernel is one family, not an
    emulation. Returns "" on real hardware or when the kernel does not tell.
    """
    kernel = (kernel_arch or "").strip()
    if not kernel or not machine:
        return ""
    if _FAMILIES.get(kernel, kernel) == _FAMILIES.get(machine, machine):
        return ""
    return f"{machine} code emulated on an {kernel} kernel (qemu-user)"


def libc_from_confstr(value: str | None) -> str:
    """Normalize `os.confstr("CS_GNU_LIBC_VERSION")` ("glibc 2.36") or a `platform.libc_ver()`."""
    return value.strip() if value else ""


def device_id(machine_id: str | None, serial: str | None) -> str:
    """A stable, unique, non-reversible id of this board from /etc/machine-id or the SoC serial.

    Hashed so that a report can be shared without the raw machine id (machine-id(5) asks for that).
    """
    raw = (machine_id or "").strip() or (serial or "").strip()
    if not raw:
        return ""
    return hashlib.sha256(f"edgeopt-device:{raw}".encode()).hexdigest()[:16]
