"""Capabilities read from captured trees of real boards (sources: data/boards/SOURCES.md).

Every expected value below was checked by hand against the captured files and the board's public
specification; the trees are read through the same CLI path users take (`--rootfs`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgeopt.boardfacts.capabilities import Sources, capture, collect, fingerprint
from tests.conftest import board

# name: (arch, vendor, model, physical, logical, clusters [(core, cpus, MHz)], isa, board model)
EXPECTED = {
    "pi4": (
        "aarch64", "ARM", "Cortex-A72", 4, 4,
        [("Cortex-A72", 4, 1500)],
        ["neon"],
        "Raspberry Pi 4 Model B Rev 1.4",
    ),
    "pi5": (
        "aarch64", "ARM", "Cortex-A76", 4, 4,
        [("Cortex-A76", 4, 2400)],
        ["dotprod", "fp16", "neon"],
        "Raspberry Pi 5 Model B Rev 1.0",
    ),
    "rk3588": (
        "aarch64", "ARM", "4x Cortex-A55 + 4x Cortex-A76", 8, 8,
        [("Cortex-A55", 4, 1800), ("Cortex-A76", 4, 2400)],
        ["dotprod", "fp16", "neon"],
        "",
    ),
    "jetson-orin": (
        "aarch64", "ARM", "Cortex-A78AE", 6, 6,
        [("Cortex-A78AE", 6, 1728)],
        ["dotprod", "fp16", "neon"],
        "",
    ),
    "x86-avx2": (
        "x86_64", "Intel", "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", 4, 8,
        [("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", 8, None)],
        ["avx", "avx2", "f16c", "fma", "sse4_1", "sse4_2"],
        "",
    ),
    # The published dump holds processors 0-2 only (SOURCES.md), hence 3 cores.
    "x86-avx512-vnni": (
        "x86_64", "Intel", "Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", 3, 3,
        [("Intel(R) Xeon(R) Platinum 8275CL CPU @ 3.00GHz", 3, None)],
        ["avx", "avx2", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "f16c", "fma",
         "sse4_1", "sse4_2"],
        "",
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_board_facts(name: str) -> None:
    arch, vendor, model, physical, logical, clusters, isa, board_model = EXPECTED[name]
    caps = collect(Sources.captured(rootfs=board(name)))
    assert caps.arch == arch
    assert caps.cpu_vendor == vendor
    assert caps.cpu_model == model
    assert caps.physical_cores == physical
    assert caps.logical_cores == logical
    assert [(c.core_name, len(c.cpus), c.max_freq_mhz) for c in caps.clusters] == clusters
    assert list(caps.isa_features) == isa
    assert caps.board_model == board_model
    # Nothing of the machine running the test leaks into a captured report.
    assert caps.usable_cores is None
    assert caps.python_version == caps.libc == caps.hostname == ""
    assert caps.store_free_bytes is None
    assert caps.onnxruntime.version == ""


def test_pi4_has_no_dotprod_but_pi5_does() -> None:
    """The fact the planner leans on: int8 on a Pi 4 lacks SDOT/UDOT."""
    pi4 = collect(Sources.captured(rootfs=board("pi4")))
    pi5 = collect(Sources.captured(rootfs=board("pi5")))
    assert not pi4.has("dotprod") and not pi4.has("fp16")
    assert pi5.has("dotprod") and pi5.has("fp16") and not pi5.has("i8mm")


def test_arm_clusters_carry_midr() -> None:
    caps = collect(Sources.captured(rootfs=board("rk3588")))
    assert [(c.implementer, c.part, c.cpus) for c in caps.clusters] == [
        ("0x41", "0xd05", (0, 1, 2, 3)),
        ("0x41", "0xd0b", (4, 5, 6, 7)),
    ]


def test_governor_and_missing_files_become_warnings() -> None:
    caps = collect(Sources.captured(rootfs=board("jetson-orin")))
    assert caps.cpu_governor == "schedutil"
    assert caps.memory_total_bytes is None and caps.memory_available_bytes is None
    assert caps.kernel == "" and caps.os_name == ""
    assert any(w.startswith("/proc/meminfo:") for w in caps.warnings)


def test_complete_tree_reads_memory_os_and_kernel() -> None:
    caps = collect(Sources.captured(rootfs=board("x86-epyc-kvm")))
    assert caps.cpu_vendor == "AMD" and caps.arch == "x86_64"
    assert caps.physical_cores == 2 and caps.logical_cores == 2
    assert caps.memory_total_bytes == 24_684_092 * 1024  # MemTotal: 24684092 kB
    assert caps.os_name == "Debian GNU/Linux 12 (bookworm)"
    assert caps.kernel == "6.18.44-fc-v657"
    assert "avx512_vnni" in caps.isa_features
    assert caps.clusters[0].max_freq_mhz is None  # KVM exposes no cpufreq
    assert any("cpufreq" in w for w in caps.warnings)


def test_empty_tree_leaves_everything_unknown(tmp_path: Path) -> None:
    caps = collect(Sources.captured(procfs=tmp_path, sysfs=tmp_path))
    assert caps.arch == "" and caps.cpu_model == "" and caps.clusters == ()
    assert caps.physical_cores is None and caps.logical_cores is None
    assert caps.isa_features == ()
    assert any(w.startswith("/proc/cpuinfo:") for w in caps.warnings)


def test_truncated_cpuinfo_is_not_a_crash(tmp_path: Path) -> None:
    text = (board("rk3588") / "proc" / "cpuinfo").read_text()
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text(text[: len(text) // 3])
    caps = collect(Sources.captured(rootfs=tmp_path))
    assert caps.arch == "aarch64"
    assert caps.logical_cores is not None and 0 < caps.logical_cores < 8


def test_fingerprint_is_equal_for_equal_hardware_and_differs_otherwise() -> None:
    pi4 = collect(Sources.captured(rootfs=board("pi4")))
    again = collect(Sources.captured(rootfs=board("pi4")))
    pi5 = collect(Sources.captured(rootfs=board("pi5")))
    assert pi4.fingerprint == again.fingerprint == fingerprint(pi4)
    assert len(pi4.fingerprint) == 16
    assert pi4.fingerprint != pi5.fingerprint


def test_board_model_from_sysfs_when_proc_has_no_device_tree(tmp_path: Path) -> None:
    """A chroot or container may mount /sys but show no /proc/device-tree link."""
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc" / "cpuinfo").write_text((board("pi4") / "proc" / "cpuinfo").read_text())
    model = tmp_path / "sys" / "firmware" / "devicetree" / "base" / "model"
    model.parent.mkdir(parents=True)
    model.write_bytes((board("pi4") / "proc" / "device-tree" / "model").read_bytes())
    caps = collect(Sources.captured(rootfs=tmp_path))
    assert caps.board_model == "Raspberry Pi 4 Model B Rev 1.4"


def test_an_emulated_board_never_shares_a_real_boards_fingerprint() -> None:
    from dataclasses import replace

    pi4 = collect(Sources.captured(rootfs=board("pi4")))
    emulated = replace(pi4, emulation="aarch64 code emulated on an x86_64 kernel (qemu-user)")
    assert pi4.emulation == ""  # a captured tree is never live: nothing is emulated
    assert fingerprint(emulated) != pi4.fingerprint


def test_capture_round_trips_the_live_machine(tmp_path: Path) -> None:
    written = capture(Sources.live_system(), tmp_path / "tree")
    assert "proc/cpuinfo" in written
    assert not (tmp_path / "tree" / "etc" / "machine-id").exists()  # never shared
    live = collect(Sources.live_system())
    captured = collect(Sources.captured(rootfs=tmp_path / "tree"))
    assert captured.arch == live.arch
    assert captured.cpu_model == live.cpu_model
    assert captured.isa_features == live.isa_features
    assert captured.clusters == live.clusters
    assert captured.fingerprint == live.fingerprint


def test_cli_reads_a_captured_tree_as_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "edgeopt.agent", "capabilities", "--json",
         "--procfs", str(board("pi4") / "proc"), "--sysfs", str(board("pi4") / "sys")],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    data = json.loads(out)
    assert data["arch"] == "aarch64"
    assert data["cpu_model"] == "Cortex-A72"
    assert data["clusters"][0]["max_freq_mhz"] == 1500
    assert data["memory_total_bytes"] is None


def test_cli_rejects_a_missing_tree(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgeopt.agent", "capabilities", "--procfs", str(tmp_path / "x")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert f"--procfs {tmp_path / 'x'}: not a directory" in done.stderr


def test_the_runners_readers_read_zones_and_throttle_flags_from_a_tree(tmp_path: Path) -> None:
    """What a benchmark's conditions read (agent/runner/measure.py), from a captured tree."""
    from edgeopt.boardfacts.capabilities import thermal_zones, throttle_flags

    for n, (kind, temp) in {"thermal_zone0": ("cpu-thermal\n", "55250\n"),
                            "thermal_zone10": ("gpu-thermal\n", None)}.items():  # fmt: skip
        zone = tmp_path / "sys" / "class" / "thermal" / n
        zone.mkdir(parents=True)
        (zone / "type").write_text(kind)
        if temp is not None:
            (zone / "temp").write_text(temp)
    sources = Sources.captured(rootfs=tmp_path)
    assert thermal_zones(sources) == {
        "thermal_zone0": ("cpu-thermal\n", "55250\n"),
        "thermal_zone10": ("gpu-thermal\n", None),
    }
    assert throttle_flags(sources) is None
    firmware = tmp_path / "sys" / "devices" / "platform" / "soc" / "soc:firmware"
    firmware.mkdir(parents=True)
    (firmware / "get_throttled").write_text("50005\n")
    assert throttle_flags(sources) == 0x50005
    assert sources.read("sys/class/thermal/thermal_zone0/temp") == "55250\n"
    assert sources.read("sys/class/thermal/thermal_zone10/temp") is None
