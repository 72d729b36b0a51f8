from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from edgeopt.boardfacts.capabilities import Sources, collect
from edgeopt.host.config import device_profiles as profiles
from edgeopt.host.errors import ProfileError
from edgeopt.proto.capabilities import OnnxRuntimeInfo
from tests.conftest import board

REQUIRED = {"pi4", "pi5", "rk3588", "jetson-orin-nano", "x86-avx2", "x86-avx512-vnni"}


def test_shipped_profiles_load() -> None:
    known = profiles.load_all()
    assert set(known) >= REQUIRED
    for p in known.values():
        assert p.notes, f"{p.name} has no notes for the planner"
    rk = known["rk3588"]
    assert [(c.core, c.cores) for c in rk.clusters] == [("Cortex-A55", 4), ("Cortex-A76", 4)]


@pytest.mark.parametrize(
    ("name", "profile"),
    [("pi4", "pi4"), ("pi5", "pi5"), ("rk3588", "rk3588"), ("x86-avx2", "x86-avx2"),
     ("x86-avx512-vnni", "x86-avx512-vnni")],
)  # fmt: skip
def test_real_boards_match_their_profile(name: str, profile: str) -> None:
    caps = collect(Sources.captured(rootfs=board(name)))
    caps = replace(caps, onnxruntime=OnnxRuntimeInfo("1.20.0", 10, 21, ("CPUExecutionProvider",)))
    findings = profiles.check(profiles.load_all()[profile], caps)
    assert [f for f in findings if f.level == "mismatch"] == []


def test_jetson_orin_nx_is_not_an_orin_nano_by_clock_only() -> None:
    """The NX's 1728 MHz is a Super-mode Nano clock too; cores and ISA match, EPs do not."""
    caps = collect(Sources.captured(rootfs=board("jetson-orin")))
    caps = replace(caps, onnxruntime=OnnxRuntimeInfo("1.20.0", 10, 21, ("CPUExecutionProvider",)))
    findings = {f.field: f for f in profiles.check(profiles.load_all()["jetson-orin-nano"], caps)}
    assert findings["clusters"].level == "ok"
    assert findings["execution_providers"].level == "warn"
    assert "TensorrtExecutionProvider" in findings["execution_providers"].message


def test_wrong_board_is_a_mismatch() -> None:
    caps = collect(Sources.captured(rootfs=board("rk3588")))
    findings = {f.field: f for f in profiles.check(profiles.load_all()["pi4"], caps)}
    assert findings["clusters"].level == "mismatch"
    assert findings["clusters"].actual == "4x Cortex-A55, 4x Cortex-A76"
    pi4 = collect(Sources.captured(rootfs=board("pi4")))
    findings = {f.field: f for f in profiles.check(profiles.load_all()["pi5"], pi4)}
    assert findings["isa_features"].level == "mismatch"
    assert findings["isa_features"].message == "missing: fp16 dotprod"


def _write(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(body)
    return path


BASE = 'name = "b"\ndescription = "d"\narch = "aarch64"\nisa_features = ["neon"]\n'


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("name = 'b'\n", "arch: missing required key 'arch'"),
        (BASE.replace('"b"', '"c"'), "name: is 'c' but the file is named 'b.toml'"),
        (BASE.replace("aarch64", "arm64"), "arch: unknown architecture 'arm64'"),
        (BASE.replace('["neon"]', '["neon", "avx9"]'), "isa_features: unknown feature(s) avx9"),
        (BASE + "colour = 'red'\n", "colour: unknown key 'colour'"),
        (
            BASE + "[[clusters]]\ncore = 'A72'\ncores = 0\n",
            "clusters[0].cores: must be at least 1, got 0",
        ),
        (
            BASE + "[[clusters]]\ncore = 'A72'\ncores = '4'\n",
            "clusters[0].cores: must be an integer, got '4'",
        ),
        (
            BASE + "memory_gib = [4, 'x']\n",
            "memory_gib: must hold only integers, got 'x' at index 1",
        ),
        (BASE + "notes = [\n", "not valid TOML"),
    ],
)
def test_malformed_profile_names_file_and_field(tmp_path: Path, body: str, message: str) -> None:
    path = _write(tmp_path, "b", body)
    with pytest.raises(ProfileError) as info:
        profiles.load(path)
    assert str(info.value).startswith(f"{path}: {message}")


def test_user_folder_overrides_builtin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "pi4", BASE.replace('"b"', '"pi4"'))
    monkeypatch.setenv("EDGEOPT_PROFILES", str(tmp_path))
    assert profiles.load_all()["pi4"].description == "d"
    monkeypatch.setenv("EDGEOPT_PROFILES", str(tmp_path / "nope"))
    with pytest.raises(ProfileError, match="profile folder does not exist"):
        profiles.load_all()
