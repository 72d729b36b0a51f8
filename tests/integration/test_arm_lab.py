"""The emulated Raspberry Pi 4 (tests/arm_lab.py): the real agent on Debian bullseye's arm64
userland (Python 3.9, glibc 2.31) under qemu-user, seen through `edgeopt` as users see a board.

The lab's root is built once (debootstrap, about 3 minutes, then cached as a zstd tarball); when
the cache is empty this module builds it, unless EDGEOPT_ARM_LAB_BUILD=0 says not to (the skip
then says so). It needs root and Debian's qemu-user-static, debootstrap and binfmt-support, which
`make system-packages` installs.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner, Result
from packaging.utils import canonicalize_name

from edgeopt.host.cli import cli
from tests import arm_lab, corpus
from tests.agent.test_wheel_sets import AGENT_SET

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

DEVICE = "arm-test"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[arm_lab.Lab, arm_lab.State]]:
    reason = arm_lab.unavailable_reason()
    if reason:
        pytest.skip(f"ARM lab unavailable: {reason}")
    if not arm_lab.base_tarball().exists() and os.environ.get("EDGEOPT_ARM_LAB_BUILD") == "0":
        pytest.skip(
            f"no cached arm64 root at {arm_lab.base_tarball()} and EDGEOPT_ARM_LAB_BUILD=0: "
            "`make arm-lab` builds it once (about 3 minutes)"
        )
    board = arm_lab.Lab(name=DEVICE, run_dir=tmp_path_factory.mktemp("arm-lab"), subnet=251)
    try:
        state = board.start(log=print)
        yield board, state
    finally:
        board.stop(quiet=True)


def _edgeopt(state: arm_lab.State, tmp: Path, *args: str) -> str:
    result = CliRunner().invoke(
        cli,
        ["--inventory", state.inventory, "--state", str(tmp / "state.db"), *args],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    return result.stdout  # progress lines go to stderr


def _over_ssh(state: arm_lab.State, tmp: Path, *args: str) -> Result:
    """`edgeopt` as a person with the board's host key in known_hosts and its login key."""
    env = arm_lab.ssh_client_env(state, tmp)
    base = ["--inventory", str(tmp / "edgeopt.toml"), "--state", str(tmp / "state.db"),
            "--deadline", "60"]  # fmt: skip
    return CliRunner(env=env).invoke(cli, [*base, *args], catch_exceptions=False)


def test_the_board_reports_a_pi4_and_says_it_is_emulated(lab, tmp_path: Path) -> None:
    _, state = lab
    shown = json.loads(_edgeopt(state, tmp_path, "devices", "show", DEVICE, "--json"))
    caps = shown["capabilities"]
    assert caps["arch"] == "aarch64"
    assert (caps["cpu_vendor"], caps["cpu_model"]) == ("ARM", "Cortex-A72")
    assert (caps["physical_cores"], caps["logical_cores"]) == (4, 4)
    # What cannot be faked is reported as it is: the CPUs the agent may run on are this host's.
    assert caps["usable_cores"] == len(os.sched_getaffinity(0))
    assert "neon" in caps["isa_features"] and "dotprod" not in caps["isa_features"]
    assert caps["board_model"] == "Raspberry Pi 4 Model B Rev 1.4"
    assert caps["os_name"] == "Debian GNU/Linux 11 (bullseye)"
    assert caps["libc"] == "glibc 2.31"
    assert re.fullmatch(r"3\.9\.\d+", caps["python_version"])
    assert caps["onnxruntime"]["version"] and not caps["onnxruntime"]["error"]
    if arm_lab.native():
        assert caps["emulation"] == ""
    else:
        kernel = platform.machine()
        assert caps["emulation"] == f"aarch64 code emulated on an {kernel} kernel (qemu-user)"
        text = _edgeopt(state, tmp_path, "devices", "show", DEVICE)
        assert text.splitlines()[1].startswith("EMULATED")
        listed = _edgeopt(state, tmp_path, "devices").splitlines()
        assert listed[1].split()[3:5] == ["aarch64", "EMULATED"]
        checked = CliRunner().invoke(
            cli, ["--inventory", state.inventory, "devices", "check", DEVICE],
            catch_exceptions=False,
        )  # fmt: skip
        rows = {line.split()[1]: line.split()[0] for line in checked.output.splitlines()[2:]}
        # The board's kind matches the Pi 4 profile; what it cannot fake is called out.
        assert rows["arch"] == rows["clusters"] == rows["isa_features"] == "OK"
        assert rows["emulation"] == "WARN"
        # The CPUs the agent may use are this host's: a warning unless the host has four.
        assert rows.get("usable_cores") == ("WARN" if caps["usable_cores"] != 4 else None)


def test_the_planner_plans_it_as_a_pi4(lab, tmp_path: Path) -> None:
    """A Conv model from the wild (YOLOv8n, PyTorch 2.3 export): no dynamic int8 on a Pi 4."""
    _, state = lab
    yolo = corpus.fetch(tuple(m for m in corpus.CORPUS if m.key == "yolov8n-nudenet"))
    model = str(yolo["yolov8n-nudenet"])
    plan = json.loads(_edgeopt(state, tmp_path, "plan", model, "--device", DEVICE, "--json"))
    chosen = plan["chosen"]
    usable = len(os.sched_getaffinity(0))
    assert chosen["intra_op_threads"] == min(4, usable)
    assert "4 threads: one per physical core" in chosen["reasons"]
    precisions = [chosen["precision"], *(a["precision"] for a in plan["alternatives"])]
    assert "int8-dynamic" not in precisions
    if not arm_lab.native():
        assert any(r.startswith("EMULATED board") for r in chosen["reasons"])
    # The same model on the Pi 4's profile (all four cores usable) gets four threads.
    offline = json.loads(_edgeopt(state, tmp_path, "plan", model, "--profile", "pi4", "--json"))
    assert offline["chosen"]["intra_op_threads"] == 4
    assert offline["chosen"]["precision"] == chosen["precision"]


def test_deploy_activate_infer_benchmark_and_profile(lab, digits, tmp_path: Path) -> None:
    board, state = lab
    out = _edgeopt(state, tmp_path, "deploy", str(digits.onnx), "--device", DEVICE,
                   "--name", "digits")  # fmt: skip
    assert "1 of 1 devices ok" in out
    models = json.loads(_edgeopt(state, tmp_path, "models", "--device", DEVICE, "--json"))
    assert "digits" in json.dumps(models)
    images = np.load(digits.validation)["image"][:16]
    np.savez(tmp_path / "in.npz", image=images)
    _edgeopt(state, tmp_path, "infer", "digits", "-d", DEVICE, "--input",
             str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))  # fmt: skip
    on_board = np.load(tmp_path / "out.npz")["logits"]
    here = ort.InferenceSession(str(digits.onnx)).run(None, {"image": images})[0]
    # aarch64 kernels and x86 kernels sum in different orders: close, not equal.
    np.testing.assert_allclose(on_board, here, rtol=1e-4, atol=1e-4)
    assert (on_board.argmax(1) == here.argmax(1)).all()
    bench = json.loads(_edgeopt(state, tmp_path, "bench", str(digits.onnx), "--device", DEVICE,
                                "--warmup", "2", "--json"))  # fmt: skip
    cases = bench["cases"]
    assert [c["status"] for c in cases] == ["ok"]
    assert cases[0]["p50_ms"] > 0 and cases[0]["samples"] > 0
    if not arm_lab.native():
        assert cases[0]["flags"][0] == "EMULATED"
    assert not any(f.startswith("THROTTLED") for f in cases[0]["flags"])  # a healthy Pi's "0"
    # Under-voltage cannot be caused here: the board's firmware file says it instead (a stand-in
    # for the fault, read by the real agent through its /sys), and the run is flagged.
    flags_file = board.run_dir / "board" / arm_lab.THROTTLE_FILE
    flags_file.write_text("50005\n")
    try:
        again = json.loads(
            _edgeopt(state, tmp_path, "bench", str(digits.onnx), "--device", DEVICE,
                     "--warmup", "1", "--max-seconds", "1", "--json")
        )  # fmt: skip
    finally:
        flags_file.write_text("0\n")
    assert "THROTTLED: under-voltage, throttled" in again["cases"][0]["flags"]
    profiled = json.loads(_edgeopt(state, tmp_path, "profile", str(digits.onnx), "--device",
                                   DEVICE, "--runs", "5", "--json"))  # fmt: skip
    assert profiled["runs"] == 5
    assert any("Conv" in row["op_type"] for row in profiled["op_types"]), profiled["op_types"]
    assert profiled["emulation"] == ("" if arm_lab.native() else caps_emulation(state, tmp_path))


def caps_emulation(state: arm_lab.State, tmp: Path) -> str:
    shown = json.loads(_edgeopt(state, tmp, "devices", "show", DEVICE, "--json"))
    return str(shown["capabilities"]["emulation"])


def test_the_install_is_the_agents_wheel_set_and_nothing_was_built(lab) -> None:
    board, _ = lab
    script = (
        "import json, importlib.metadata as m; "
        "print(json.dumps(sorted([d.metadata['Name'], d.version] for d in m.distributions())))"
    )
    listed = subprocess.run(
        ["chroot", str(board.root), f"{arm_lab.VENV}/bin/python", "-c", script],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    installed = {canonicalize_name(n): v for n, v in json.loads(listed.stdout)}
    agent = {n: v for n, v in installed.items() if n not in arm_lab.SEEDS}
    assert "torch" not in installed
    assert set(agent) <= AGENT_SET, f"outside the agent's set: {set(agent) - AGENT_SET}"
    assert {"edgeopt", "grpcio", "protobuf", "numpy", "onnxruntime"} <= set(agent)
    # Each came from one of the wheels fetched on the host: same name and version.
    wheels = board.root / arm_lab.WHEELS.lstrip("/")
    shipped = set()
    for path in wheels.glob("*.whl"):
        name, version = path.name.split("-")[:2]
        shipped.add((canonicalize_name(name), version))
    assert {(n, v) for n, v in agent.items()} <= shipped
    # No compiler on the board: pip could not have built anything there.
    found = [
        str(p)
        for d in ("usr/bin", "usr/local/bin", "bin")
        for name in arm_lab.COMPILERS
        if (p := board.root / d / name).exists()
    ]
    assert found == []


def test_ssh_facts_read_the_same_board_the_agent_reports(lab, tmp_path: Path) -> None:
    _, state = lab
    result = _over_ssh(state, tmp_path, "ssh", "facts", state.ssh_target, "--json")
    assert result.exit_code == 0, result.output
    remote = json.loads(result.stdout)["capabilities"]
    agent = json.loads(_edgeopt(state, tmp_path, "devices", "show", DEVICE, "--json"))
    agent = agent["capabilities"]
    for name in ("arch", "cpu_vendor", "cpu_model", "physical_cores", "logical_cores",
                 "usable_cores", "clusters", "isa_features", "board_model", "os_name", "libc",
                 "python_version", "emulation", "device_id"):  # fmt: skip
        assert remote[name] == agent[name], name
    # The board's own python3 has no onnxruntime: the agent lives in its venv.
    assert remote["onnxruntime"]["error"].startswith("cannot import onnxruntime")


def test_ssh_bootstrap_installs_a_second_agent_on_the_emulated_board(
    lab, digits, tmp_path: Path
) -> None:
    """The user's path to a new board: bootstrap over SSH with wheels fetched here, on the
    board's Python 3.9 and aarch64; then deploy and infer through the SSH tunnel; remove."""
    _, state = lab
    installed = _over_ssh(state, tmp_path, "ssh", "bootstrap", state.ssh_target, "--name",
                          "arm-ssh", "--offline", "--port", "50052", "--start-timeout", "180",
                          "--json")  # fmt: skip
    assert installed.exit_code == 0, installed.output
    done = json.loads(installed.stdout)
    assert done["manager"] == "supervisor"  # no systemd in the emulated root
    assert done["address"] == "127.0.0.1:50052" and done["folder"] == "/root/.edgeopt"
    shown = _over_ssh(state, tmp_path, "devices", "show", "arm-ssh", "--json")
    assert shown.exit_code == 0, shown.output
    caps = json.loads(shown.stdout)["capabilities"]
    assert (caps["arch"], caps["cpu_model"]) == ("aarch64", "Cortex-A72")
    assert re.fullmatch(r"3\.9\.\d+", caps["python_version"])
    deployed = _over_ssh(state, tmp_path, "deploy", str(digits.onnx), "--device", "arm-ssh",
                         "--name", "digits", "--json")  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    images = np.load(digits.validation)["image"][:4]
    np.savez(tmp_path / "in.npz", image=images)
    inferred = _over_ssh(state, tmp_path, "infer", "digits", "-d", "arm-ssh", "--input",
                         str(tmp_path / "in.npz"), "-o", str(tmp_path / "out.npz"))  # fmt: skip
    assert inferred.exit_code == 0, inferred.output
    here = ort.InferenceSession(str(digits.onnx)).run(None, {"image": images})[0]
    np.testing.assert_allclose(np.load(tmp_path / "out.npz")["logits"], here, rtol=1e-4,
                               atol=1e-4)  # fmt: skip
    # One-shot profiling over SSH with the board's own Python (the venv bootstrap made).
    python = "/root/.edgeopt/venv/bin/python"
    profiled = _over_ssh(state, tmp_path, "profile", str(digits.onnx), "--ssh",
                         state.ssh_target, "--python", python, "--runs", "2", "--json")  # fmt: skip
    assert profiled.exit_code == 0, profiled.output
    out = json.loads(profiled.stdout)
    assert out["runs"] == 2 and out["nodes"]
    assert out["emulation"] == caps["emulation"]
    removed = _over_ssh(state, tmp_path, "ssh", "remove", "arm-ssh", "--purge")
    assert removed.exit_code == 0, removed.output
    assert "[devices.arm-ssh]" not in (tmp_path / "edgeopt.toml").read_text()


def test_stop_never_removes_a_folder_that_holds_no_lab(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a lab")
    with pytest.raises(arm_lab.LabError) as refused:
        arm_lab.Lab(run_dir=tmp_path).stop()
    assert str(refused.value) == (
        f"{tmp_path} holds no ARM lab (.edgeopt-arm-lab.json missing): not touching it"
    )
    assert (tmp_path / "notes.txt").read_text() == "not a lab"


def test_a_second_lab_cannot_take_the_first_ones_name_or_subnet(lab, tmp_path: Path) -> None:
    _, state = lab
    same_name = arm_lab.Lab(name=DEVICE, run_dir=tmp_path / "a", subnet=253)
    with pytest.raises(arm_lab.LabError) as refused:
        same_name.start(log=print)
    assert str(refused.value) == (
        f"a lab named {DEVICE} already runs from another folder (network namespace "
        f"eo-{DEVICE} exists): stop it, or choose another name"
    )
    same_subnet = arm_lab.Lab(name="arm-other", run_dir=tmp_path / "b", subnet=251)
    with pytest.raises(arm_lab.LabError) as refused:
        same_subnet.start(log=print)
    assert str(refused.value).startswith("10.77.251.0/24 is in use here (")
    # Nothing was made for them, and the first lab serves on.
    assert list((tmp_path / "a").iterdir()) == list((tmp_path / "b").iterdir()) == []
    shown = json.loads(_edgeopt(state, tmp_path, "devices", "show", DEVICE, "--json"))
    assert shown["reachable"] is True


@pytest.mark.parametrize("key", ["magika-v1", "ppocr-cls"])
def test_models_from_the_wild_give_on_aarch64_what_they_give_here(
    lab, key: str, tmp_path: Path
) -> None:
    """magika (tf2onnx) and PP-OCR's direction classifier (Paddle2ONNX), deployed with their
    own inputs as the smoke check, run on the board's aarch64 kernels."""
    _, state = lab
    model = next(m for m in corpus.CORPUS if m.key == key)
    path = corpus.fetch((model,))[key]
    data = corpus.write_data(model, tmp_path, 2, seed=5)
    deployed = json.loads(_edgeopt(state, tmp_path, "deploy", str(path), "--device", DEVICE,
                                   "--precision", "fp32", "--name", key, "--smoke", str(data),
                                   "--json"))  # fmt: skip
    assert deployed["devices"][0]["outcome"] == "ok", deployed["devices"][0]["error"]
    _edgeopt(state, tmp_path, "infer", key, "-d", DEVICE, "--input", str(data), "-o",
             str(tmp_path / "out.npz"))  # fmt: skip
    with np.load(data) as npz:
        feed = dict(npz)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    here = dict(zip([o.name for o in session.get_outputs()], session.run(None, feed),
                    strict=True))  # fmt: skip
    with np.load(tmp_path / "out.npz") as npz:
        on_board = dict(npz)
    assert set(on_board) == set(here)
    for name, value in here.items():
        np.testing.assert_allclose(on_board[name], value, rtol=1e-3, atol=1e-4, err_msg=name)


def test_static_int8_keeps_its_accuracy_on_the_boards_kernels(lab, digits, tmp_path: Path) -> None:
    """The same int8 artifact on aarch64 (the board) and on this host: its accuracy on the
    digits' validation set, measured on the board itself, is the host's within a point."""
    _, state = lab
    int8 = tmp_path / "digits-int8.onnx"
    _edgeopt(state, tmp_path, "compress", str(digits.onnx), "--precision", "int8-static",
             "--calibration", str(digits.calibration), "-o", str(int8))  # fmt: skip
    deployed = json.loads(_edgeopt(state, tmp_path, "deploy", str(int8), "--device", DEVICE,
                                   "--precision", "fp32", "--name", "int8", "--json"))  # fmt: skip
    assert deployed["devices"][0]["outcome"] == "ok", deployed["devices"][0]["error"]
    with np.load(digits.validation) as validation:
        images, labels = validation["image"], validation["labels"]
    np.savez(tmp_path / "val.npz", image=images)
    _edgeopt(state, tmp_path, "infer", "int8", "-d", DEVICE, "--input",
             str(tmp_path / "val.npz"), "-o", str(tmp_path / "out.npz"))  # fmt: skip
    with np.load(tmp_path / "out.npz") as npz:
        on_board = npz["logits"].argmax(1)
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    here = session.run(None, {"image": images})[0].argmax(1)
    board_accuracy, host_accuracy = (on_board == labels).mean(), (here == labels).mean()
    print(
        f"int8 digits accuracy: board {board_accuracy:.4f}, host {host_accuracy:.4f}, "
        f"argmax agreement {(on_board == here).mean():.4f}"
    )
    assert abs(board_accuracy - host_accuracy) <= 0.01
    assert (on_board == here).mean() >= 0.99
