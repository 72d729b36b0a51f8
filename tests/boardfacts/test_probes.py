"""Probe functions one by one, on small texts in the kernel's own formats."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from edgeopt.boardfacts import accelerators, cpu, memory, runtime, system, thermal


def test_meminfo_in_bytes_and_fallback_for_old_kernels() -> None:
    new = memory.parse_meminfo("MemTotal:  3884428 kB\nMemFree: 100 kB\nMemAvailable: 2000 kB\n")
    assert memory.total_bytes(new) == 3884428 * 1024
    assert memory.available_bytes(new) == 2000 * 1024
    old = memory.parse_meminfo("MemTotal: 10 kB\nMemFree: 1 kB\nBuffers: 2 kB\nCached: 3 kB\n")
    assert memory.available_bytes(old) == 6 * 1024
    assert memory.available_bytes(memory.parse_meminfo("garbage\n")) is None


def test_os_release_and_kernel() -> None:
    data = system.parse_os_release('NAME="Debian GNU/Linux"\nVERSION_ID="12"\n# c\nID=debian\n')
    assert data == {"NAME": "Debian GNU/Linux", "VERSION_ID": "12", "ID": "debian"}
    assert system.os_name({"NAME": "Ubuntu", "VERSION": "22.04.5 LTS"}) == "Ubuntu 22.04.5 LTS"
    version = "Linux version 6.1.0-rpi7-rpi-v8 (debian-kernel@lists.debian.org) (gcc-12) #1 SMP"
    assert system.kernel_release(None, version) == "6.1.0-rpi7-rpi-v8"
    assert system.kernel_release("5.10.110\n", version) == "5.10.110"


def test_board_model_prefers_device_tree_then_dmi() -> None:
    assert system.board_model("Raspberry Pi 5 Model B Rev 1.0\x00", "x", "y") == (
        "Raspberry Pi 5 Model B Rev 1.0"
    )
    assert system.board_model(None, "Intel(R) Client Systems\n", "NUC11TNHi5\n") == (
        "Intel(R) Client Systems NUC11TNHi5"
    )


@pytest.mark.parametrize(
    ("kernel", "machine", "emulated"),
    [
        ("x86_64", "aarch64", True),  # qemu-user: uname -m says what it emulates
        ("aarch64", "x86_64", True),
        ("aarch64", "aarch64", False),
        ("aarch64", "armv7l", False),  # a 32-bit userland on a 64-bit ARM kernel is native
        ("x86_64", "i686", False),
        ("", "aarch64", False),  # a kernel older than 6.1 has no /proc/sys/kernel/arch
        (None, "aarch64", False),
    ],
)
def test_emulation_compares_the_kernels_cpu_family_with_uname(
    kernel: str | None, machine: str, emulated: bool
) -> None:
    said = system.emulation(None if kernel is None else kernel + "\n", machine)
    if emulated:
        assert said == f"{machine} code emulated on an {kernel} kernel (qemu-user)"
    else:
        assert said == ""


def test_this_machine_is_not_emulated() -> None:
    import platform
    from pathlib import Path

    arch = Path("/proc/sys/kernel/arch")
    kernel = arch.read_text() if arch.exists() else None
    assert system.emulation(kernel, platform.machine()) == ""


def test_device_id_is_hashed_and_stable() -> None:
    a = system.device_id("0123456789abcdef0123456789abcdef\n", None)
    assert a == system.device_id("0123456789abcdef0123456789abcdef", "ignored")
    assert len(a) == 16 and "0123" not in a
    serial = system.device_id(None, "10000000abcdef")
    assert len(serial) == 16 and serial != a and serial == system.device_id("", "10000000abcdef")
    assert system.device_id(None, None) == ""


def test_temperatures_skip_unreadable_zones() -> None:
    temps = thermal.temperatures(
        {
            "thermal_zone10": ("gpu-thermal\n", "41500\n"),
            "thermal_zone2": ("cpu-thermal\n", "55250\n"),
            "thermal_zone3": ("asleep\n", None),
            "thermal_zone4": ("bad\n", "n/a"),
        }
    )
    assert [(t.zone, t.type, t.celsius) for t in temps] == [
        ("thermal_zone2", "cpu-thermal", 55.25),
        ("thermal_zone10", "gpu-thermal", 41.5),
    ]


@pytest.mark.parametrize(
    ("implementer", "part", "name"),
    [
        ("0x41", "0xd08", "Cortex-A72"),
        ("0x41", "0xD0B", "Cortex-A76"),
        ("0x41", "0xd42", "Cortex-A78AE"),
        ("0x4e", "0x004", "Carmel"),
        ("0x41", "0xfff", "ARM part 0xfff"),
        ("0x99", "0x001", "implementer 0x99 part 0x001"),
    ],
)
def test_arm_core_names(implementer: str, part: str, name: str) -> None:
    assert cpu.arm_core_name(implementer, part) == name


def test_32_bit_kernel_on_armv8_reports_armv7l() -> None:
    info = cpu.parse_cpuinfo(
        "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nFeatures\t: half thumb "
        "fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\n"
        "CPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\n"
        "CPU part\t: 0xd08\nCPU revision\t: 3\n"
    )
    assert cpu.architecture(info) == "armv7l"
    assert cpu.isa_features(info) == ("neon", "vfpv4")
    assert cpu.model_name(info, cpu.clusters(info, {})) == "Cortex-A72"


def test_hybrid_x86_splits_clusters_by_clock() -> None:
    block = "processor\t: {n}\nvendor_id\t: GenuineIntel\nmodel name\t: 12th Gen Intel(R) Core(TM) i5-1235U\nflags\t\t: fpu lm avx2 avx_vnni\n"  # noqa: E501
    info = cpu.parse_cpuinfo("\n".join(block.format(n=n) for n in range(4)))
    found = cpu.clusters(info, {0: "4400000", 1: "4400000", 2: "3300000", 3: "3300000"})
    assert [(c.cpus, c.max_freq_mhz) for c in found] == [((2, 3), 3300), ((0, 1), 4400)]
    assert cpu.isa_features(info) == ("avx2", "avx_vnni")


def test_accelerator_detection() -> None:
    found = {
        "proc/driver/nvidia/version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n",  # noqa: E501
        "proc/driver/nvidia/gpus/0000:01:00.0/information": "Model: \t\t NVIDIA GeForce RTX 3060\nIRQ: 130\n",  # noqa: E501
        "sys/class/drm/renderD128/device/vendor": "0x10de\n",
        "sys/class/drm/renderD129/device/vendor": "0x8086\n",
        "dev/hailo0": "",
        "proc/device-tree/npu@fdab0000/compatible": "rockchip,rk3588-rknpu\x00",
        "etc/nv_tegra_release": "# R36 (release), REVISION: 3.0, GCID: 36191598, BOARD: generic\n",
    }
    names = [(a.kind, a.name, a.path, a.driver_version) for a in accelerators.detect(found)]
    assert names == [
        (
            "gpu",
            "NVIDIA GeForce RTX 3060",
            "/proc/driver/nvidia/gpus/0000:01:00.0/information",
            "550.54.14",
        ),
        ("gpu", "NVIDIA Jetson integrated GPU", "/etc/nv_tegra_release", "L4T R36.3.0"),
        ("npu", "Rockchip RKNPU", "/proc/device-tree/npu@fdab0000/compatible", ""),
        ("npu", "Hailo AI accelerator", "/dev/hailo0", ""),
        ("gpu", "Intel GPU", "/sys/class/drm/renderD129", ""),
    ]
    assert accelerators.detect({}) == ()


def test_probe_model_is_a_valid_onnx_model() -> None:
    import numpy as np

    session = ort.InferenceSession(runtime.probe_model(7, 13), providers=["CPUExecutionProvider"])
    x = np.array([3.5], dtype=np.float32)
    assert session.run(None, {"x": x})[0].tolist() == [3.5]


def test_runtime_limits_are_measured() -> None:
    info = runtime.probe_in_process()
    assert info.version == ort.__version__
    assert info.error == ""
    assert info.max_ir_version is not None and info.max_ir_version >= 9
    assert info.max_opset is not None and info.max_opset >= 19
    # The measured limits are real: a model at the limits loads, one past them does not.
    ort.InferenceSession(
        runtime.probe_model(info.max_ir_version, info.max_opset),
        providers=["CPUExecutionProvider"],
    )
    with pytest.raises(Exception, match="max supported IR version"):
        ort.InferenceSession(
            runtime.probe_model(info.max_ir_version + 1, 13), providers=["CPUExecutionProvider"]
        )


def test_runtime_probe_in_subprocess_matches_and_reports_failure() -> None:
    assert runtime.probe_in_subprocess() == runtime.probe_in_process()
    broken = runtime.probe_in_subprocess(python="/nonexistent/python")
    assert broken.version == "" and broken.error.startswith("onnxruntime probe did not run")


def test_limit_parsing() -> None:
    assert runtime.limit_from_error("... max supported IR version: 9", "ir") == 9
    assert runtime.limit_from_error("support for domain ai.onnx is till opset 19.", "opset") == 19
    assert runtime.limit_from_error("something else", "ir") is None


def test_throttle_flags_parse_as_the_firmware_and_vcgencmd_print_them() -> None:
    assert thermal.throttled("50005\n") == 0x50005  # the sysfs file: "%x\n"
    assert thermal.throttled("throttled=0x0") == 0  # vcgencmd get_throttled
    assert thermal.throttled("") is None and thermal.throttled(None) is None
    assert thermal.throttled("no such thing") is None


@pytest.mark.parametrize(
    ("before", "after", "events"),
    [
        (0, 0, []),
        (0, 0x50005, ["under-voltage", "throttled"]),
        (0x50000, 0x50000, []),  # happened since boot, before the run: not this run's
        (0x0, 0x20000, ["arm frequency capped"]),  # capped during the run, over by its end
        (0x8, 0x0, ["soft temperature limit"]),  # held when the run began
        (None, 0x4, ["throttled"]),
        (0x4, None, []),  # unreadable after the run: nothing claimed
    ],
)
def test_throttle_events_name_what_held_during_the_run(
    before: int | None, after: int | None, events: list[str]
) -> None:
    assert thermal.throttle_events(before, after) == events
