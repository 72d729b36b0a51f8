"""The board's own applications and the active model: the stable path and the activation hook.

A real agent; an application process on the "board" that loads `STORE/active/NAME/model.onnx`
with ONNX Runtime over and over while the model flips between two versions 50 times; a hook
that checks, for every switch, that the path it is given holds the version it is told.
"""

from __future__ import annotations

import asyncio
import grp
import hashlib
import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

from edgeopt.host.transport.client import AgentClient
from edgeopt.proto.v1 import agent_pb2
from tests.conftest import RunningAgent
from tests.models import DigitsModel


@pytest.fixture(scope="module")
def versions(digits: DigitsModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The digits CNN as two versions whose metadata says which one they are."""
    folder = tmp_path_factory.mktemp("labelled")
    out = {}
    for label in ("v1", "v2"):
        model = onnx.load(str(digits.onnx))
        onnx.helper.set_model_props(model, {"version": label})
        onnx.save(model, str(folder / f"{label}.onnx"))
        out[label] = folder / f"{label}.onnx"
    return out


HOOK = textwrap.dedent("""\
    import hashlib, json, os, sys
    e = os.environ
    plan = json.load(open(e["EDGEOPT_MODEL_PLAN"]))
    digest = hashlib.sha256(open(e["EDGEOPT_MODEL_PATH"], "rb").read()).hexdigest()
    fine = plan["version"] == e["EDGEOPT_MODEL_VERSION"] and digest == e["EDGEOPT_MODEL_SHA256"]
    with open(sys.argv[1], "a") as log:
        log.write(json.dumps({k[8:].lower(): v for k, v in e.items()
                              if k.startswith("EDGEOPT_")} | {"fine": fine}) + "\\n")
""")

APP = textwrap.dedent("""\
    import json, os, sys, time
    import onnxruntime as ort
    link, until, log = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    loads = failures = 0
    seen = set()
    while time.time() < until:
        try:
            folder = os.path.realpath(link)  # one version's folder: its model and its plan
            version = json.load(open(os.path.join(folder, "plan.json")))["version"]
            session = ort.InferenceSession(os.path.join(folder, "model.onnx"),
                                           providers=["CPUExecutionProvider"])
            said = session.get_modelmeta().custom_metadata_map["version"]
            if said != version:
                raise RuntimeError(f"plan.json says {version}, the model {said}")
            stable = ort.InferenceSession(os.path.join(link, "model.onnx"),
                                          providers=["CPUExecutionProvider"])
            seen.add(stable.get_modelmeta().custom_metadata_map["version"])
            loads += 1
        except Exception as exc:
            failures += 1
            print(repr(exc), file=sys.stderr)
    json.dump({"loads": loads, "failures": failures, "seen": sorted(seen)}, open(log, "w"))
""")


def _push_both(agent: RunningAgent, versions: dict[str, Path]) -> None:
    async def go() -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            for label, path in versions.items():
                await client.push(path, "digits", version=label)

    asyncio.run(go())


def _activate(agent: RunningAgent, labels: list[str]) -> None:
    """Activate each label in turn ("rollback": roll back instead)."""

    async def go() -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            for label in labels:
                if label == "rollback":
                    await client.rollback("digits")
                else:
                    await client.activate("digits", label)

    asyncio.run(go())


def _models(agent: RunningAgent) -> agent_pb2.ModelList:
    async def go() -> agent_pb2.ModelList:
        async with AgentClient(agent.address, token=agent.token) as client:
            return await client.list_models()

    return asyncio.run(go())


def _wait_lines(path: Path, count: int, timeout: float = 60.0) -> list[dict[str, object]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= count:
            break
        time.sleep(0.1)
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_applications_load_the_active_model_through_50_switches(
    agent_factory: Callable[..., RunningAgent], versions: dict[str, Path], tmp_path: Path
) -> None:
    (tmp_path / "hook.py").write_text(HOOK)
    hook_log = tmp_path / "hook.log"
    agent = agent_factory("--on-activate", f"{sys.executable} {tmp_path / 'hook.py'} {hook_log}")
    _push_both(agent, versions)
    _activate(agent, ["v1"])
    link = agent.store / "active" / "digits"
    assert (link / "model.onnx").read_bytes() == versions["v1"].read_bytes()
    plan = json.loads((link / "plan.json").read_text())
    assert (plan["name"], plan["version"]) == ("digits", "v1")
    assert plan["sha256"] == hashlib.sha256(versions["v1"].read_bytes()).hexdigest()

    # An application on the board, loading the active model over and over meanwhile.
    app_log = tmp_path / "app.json"
    (tmp_path / "app.py").write_text(APP)
    app = subprocess.Popen([sys.executable, str(tmp_path / "app.py"), str(link),
                            str(time.time() + 20), str(app_log)],
                           stderr=subprocess.PIPE, text=True)  # fmt: skip
    switches = ["v2", "v1"] * 25
    _activate(agent, ["v2", "rollback"] * 25)  # a deploy, then a rollback, 25 times
    _, errors = app.communicate(timeout=120)
    result = json.loads(app_log.read_text())
    assert result["failures"] == 0, errors
    assert result["loads"] >= 10 and result["seen"] == ["v1", "v2"]

    lines = _wait_lines(hook_log, 51)
    assert [line["model_version"] for line in lines] == ["v1", *switches]
    assert [line["previous_version"] for line in lines] == ["", "v1", *switches[:-1]]
    assert all(line["fine"] for line in lines)  # each path held the version it was told
    assert {line["model_link"] for line in lines} == {str(link / "model.onnx")}
    hooked = next(m for m in _models(agent).models if m.name == "digits")
    assert hooked.hook.ok and hooked.hook.version == "v1"

    # The stable path from the agent's command line, and what it says without one.
    def path(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "edgeopt.agent", "path", *args, "--store", str(agent.store)]
        return subprocess.run(cmd, capture_output=True, text=True, check=False)

    found = path("digits")
    assert (found.returncode, found.stdout.strip()) == (0, str(link / "model.onnx"))
    real = path("digits", "--resolve", "--plan")
    assert json.loads(Path(real.stdout.strip()).read_text())["version"] == "v1"
    missing = path("other")
    assert missing.returncode == 1 and "other has no active version" in missing.stderr
    # Only the active version's folder and the one before it are kept.
    kept = sorted(p.name.split(".")[1] for p in (agent.store / "active").glob(".digits@*"))
    assert kept == ["digits@v1", "digits@v2"]


def test_a_failing_hook_is_shown_and_never_undoes_the_switch(
    agent_factory: Callable[..., RunningAgent], versions: dict[str, Path]
) -> None:
    agent = agent_factory("--on-activate", "echo reload refused; exit 3")
    _push_both(agent, versions)
    _activate(agent, ["v1"])
    deadline = time.monotonic() + 20
    while not (hooked := next(m for m in _models(agent).models if m.name == "digits")).HasField(
        "hook"
    ) and time.monotonic() < deadline:  # fmt: skip
        time.sleep(0.1)
    assert (hooked.active_version, hooked.hook.ok) == ("v1", False)
    assert hooked.hook.error == "exit status 3: reload refused"
    assert os.path.realpath(agent.store / "active" / "digits").split("@")[1].startswith("v1")


def test_a_hook_past_its_time_limit_is_killed(
    agent_factory: Callable[..., RunningAgent], versions: dict[str, Path]
) -> None:
    agent = agent_factory("--on-activate", "sleep 30", "--on-activate-timeout", "0.5s")
    _push_both(agent, versions)
    _activate(agent, ["v2"])
    deadline = time.monotonic() + 20
    hooked = next(m for m in _models(agent).models if m.name == "digits")
    while not hooked.HasField("hook") and time.monotonic() < deadline:
        time.sleep(0.1)
        hooked = next(m for m in _models(agent).models if m.name == "digits")
    assert hooked.active_version == "v2" and not hooked.hook.ok
    assert hooked.hook.error == "killed after its time limit of 0.5 s"
    assert hooked.hook.seconds < 5


def test_removing_a_model_removes_its_stable_path(
    agent_factory: Callable[..., RunningAgent], versions: dict[str, Path]
) -> None:
    agent = agent_factory()
    _push_both(agent, versions)
    _activate(agent, ["v1", "v2"])
    assert (agent.store / "active" / "digits").is_symlink()

    async def remove() -> None:
        async with AgentClient(agent.address, token=agent.token) as client:
            await client.delete("digits", "", force=True)

    asyncio.run(remove())
    assert not (agent.store / "active" / "digits").exists()
    assert list((agent.store / "active").glob(".digits@*")) == []
    assert list((agent.store / "blobs").iterdir()) == []  # no hard link keeps bytes behind


CLIENT = textwrap.dedent("""\
    import sys
    import grpc
    from edgeopt.proto.v1 import agent_pb2, agent_pb2_grpc
    with grpc.insecure_channel("unix:" + sys.argv[1]) as channel:
        stub = agent_pb2_grpc.AgentStub(channel)
        try:
            listing = stub.ListModels(agent_pb2.ListModelsRequest(), timeout=10)
        except grpc.RpcError as exc:
            print(exc.code().name, exc.details())
            sys.exit(1)
    print("ok", ",".join(m.name + "@" + m.active_version for m in listing.models))
""")


def _as(user: str, script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `script` with this venv's Python as `user` (its own group only)."""
    gid = pwd.getpwnam(user).pw_gid
    cmd = ["setpriv", f"--reuid={user}", f"--regid={gid}", "--clear-groups",
           sys.executable, str(script), *args]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to other users needs root")
def test_the_local_socket_serves_its_group_without_a_token_and_no_one_else(
    agent_factory: Callable[..., RunningAgent], versions: dict[str, Path]
) -> None:
    folder = Path(tempfile.mkdtemp(prefix="edgeopt-sock-", dir="/tmp"))
    folder.chmod(0o755)  # other users may reach the folder; the socket's mode decides the rest
    socket = folder / "agent.sock"
    try:
        agent = agent_factory("--local-socket", str(socket), "--local-socket-group", "daemon")
        _push_both(agent, versions)
        _activate(agent, ["v2"])
        info = socket.stat()
        assert stat.S_ISSOCK(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o660
        assert info.st_gid == grp.getgrnam("daemon").gr_gid
        (folder / "client.py").write_text(CLIENT)

        member = _as("daemon", folder / "client.py", str(socket))  # in the socket's group
        assert (member.returncode, member.stdout.strip()) == (0, "ok digits@v2"), member.stderr
        outsider = _as("nobody", folder / "client.py", str(socket))  # not in it
        assert outsider.returncode == 1
        assert outsider.stdout.startswith("UNAVAILABLE") and "Permission denied" in outsider.stdout

        async def infer_over_the_socket() -> str:  # no token: the socket is the guard
            async with AgentClient(f"unix:{socket}") as client:
                x = np.zeros((1, 1, 8, 8), np.float32)
                _, reply = await client.infer("digits", {"image": x})
                return reply.version

        assert asyncio.run(infer_over_the_socket()) == "v2"
        # README's example client, as written there, on this socket.
        readme = (Path(__file__).parents[2] / "README.md").read_text()
        example = readme.split("```python\n  import grpc, numpy as np", 1)[1].split("```", 1)[0]
        code = textwrap.dedent("  import grpc, numpy as np" + example)
        code = code.replace("/run/edgeopt/agent.sock", str(socket))
        ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=False, timeout=60)  # fmt: skip
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.startswith("v2 {")
        agent.stop()
        assert not socket.exists()  # removed on shutdown
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_the_local_socket_refuses_a_mode_that_lets_others_in(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgeopt.agent", "serve", "--local-socket", str(tmp_path / "s"),
         "--local-socket-mode", "666", "--store", str(tmp_path / "store")],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2
    assert "others would reach the agent without a token" in done.stderr
