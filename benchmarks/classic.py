"""Classic ML models through the whole path, against a real agent on loopback.

    python benchmarks/classic.py [--rounds 20]      (or `make bench`)

The models of tests/classic.py (scikit-learn and LightGBM, trained here on scikit-learn's bundled
data, converted by skl2onnx and onnxmltools with their defaults). For each: every precision made
by the `edgeopt compress` command line (outcome, size, cosine on the held-out rows), this host's
latency of what was made (interleaved rounds, ratios to fp32 from the same run), then `edgeopt
deploy` and `edgeopt infer` on a real agent: the share of rows whose label equals the library's
`predict`, the largest difference from `predict_proba`, and the agent's Benchmark p50 at 1
thread on one row. Writes its table into benchmarks/RESULTS.md between the classic markers.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from corpus import PRECISIONS, measure_made, run_cli  # noqa: E402
from results import write_section  # noqa: E402

from edgeopt.host.cli import cli  # noqa: E402
from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.transport.client import AgentClient, to_tensors  # noqa: E402
from edgeopt.proto.v1 import agent_pb2  # noqa: E402
from tests import classic  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402

MODELS = (classic.forest, classic.mlp_pipeline, classic.lightgbm, classic.tabular_pipeline)


def on_board(tmp: Path, agent: RunningAgent, model: classic.ClassicModel) -> dict[str, Any]:
    """Deploy and infer through the CLI; compare with the library; Benchmark one row."""
    inv = tmp / "edgeopt.toml"
    inv.write_text(f'[devices.b]\naddress = "{agent.address}"\ntoken_file = "{agent.token_file}"\n')
    base = ["--inventory", str(inv), "--state", str(tmp / "state.db")]
    np.savez(tmp / "x.npz", **model.inputs)  # type: ignore[arg-type]
    name = model.onnx.stem.replace("_", "-")
    runner = CliRunner()
    deployed = runner.invoke(cli, [*base, "deploy", str(model.onnx), "--device", "b", "--name",
                                   name])  # fmt: skip
    assert deployed.exit_code == 0, deployed.output
    out = tmp / f"{name}.npz"
    infer = runner.invoke(cli, [*base, "infer", name, "--device", "b", "--input",
                                str(tmp / "x.npz"), "-o", str(out)])  # fmt: skip
    assert infer.exit_code == 0, infer.output
    with np.load(out, allow_pickle=False) as saved:
        labels = next(iter(saved.values()))
    ((_, maps),) = json.loads(out.with_suffix(".json").read_text()).items()
    keys = [str(c) for c in model.classes]
    proba = np.asarray([[m[k] for k in keys] for m in maps["value"]])
    expected = np.asarray(model.predict())
    agree = float((labels.astype(expected.dtype) == expected).mean())

    async def bench() -> float:
        async with AgentClient(agent.address, token=agent.token) as client:
            sha = (await client.push(model.onnx, "")).sha256
            row = {k: v[:1].astype(object) if v.dtype.kind == "U" else v[:1]
                   for k, v in model.inputs.items()}  # fmt: skip
            result = await client.benchmark(agent_pb2.BenchmarkRequest(
                sha256=sha, inputs=to_tensors(row), max_seconds=3, target_ci=0.02,
                plan=agent_pb2.Plan(intra_op_threads=1, inter_op_threads=1)))  # fmt: skip
            return float(result.latency.p50_ms)

    return {
        "agree": agree, "proba": float(np.abs(proba - model.predict_proba()).max()),
        "rows": len(expected), "p50": asyncio.run(bench()), "type": maps["type"],
    }  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    rows, board_rows = [], []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        agent = start_agent(tmp / "agent")
        try:
            for make in MODELS:
                model = make(tmp)
                data = tmp / f"{model.onnx.stem}-data.npz"
                np.savez(data, **model.inputs)  # type: ignore[arg-type]
                outcomes = [run_cli(model.onnx, p, data, data) for p in PRECISIONS]
                measure_made(outcomes, data, args.rounds)
                ops = sorted({n.op_type for n in onnx.load(str(model.onnx)).graph.node
                              if n.domain == "ai.onnx.ml"})  # fmt: skip
                for o in outcomes:
                    verdict = o.status if o.status == "ok" else f"{o.status}: {o.message[:140]}"
                    ratios = " / ".join(f"{o.ratio[t]:.2f}" for t in (1, 2) if t in o.ratio)
                    size = "" if o.size_ratio is None else f"{o.size_ratio:.0%}"
                    cosine = "" if o.cosine is None else f"{o.cosine:.4f}"
                    rows.append(f"| {make.__name__} | {', '.join(ops)} | {o.precision} | "
                                f"{size} | {cosine} | {ratios} | {verdict} |")  # fmt: skip
                seen = on_board(tmp, agent, model)
                board_rows.append(
                    f"| {make.__name__} | {seen['type']} | {seen['rows']} | "
                    f"{seen['agree']:.0%} | {seen['proba']:.1e} | {seen['p50']:.3f} ms |"
                )
                print(board_rows[-1], flush=True)
        finally:
            agent.stop()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Classic ML models end to end (`python benchmarks/classic.py`)",
        "",
        f"Measured {when} on {host_cpu()}, ONNX Runtime {ort.__version__}. The models of "
        "tests/classic.py: a random forest (digits), StandardScaler + MLP with string class "
        "names (iris), LightGBM (breast cancer, onnxmltools), one-hot over string columns + "
        "logistic regression (wine); converters' defaults (ZipMap on). Compress: the CLI with "
        "the held-out rows as calibration and validation data; latency ratio to fp32 at 1 / 2 "
        f"threads, one row (batch 1), median of {args.rounds} interleaved rounds.",
        "",
        "| model | ai.onnx.ml ops | precision | size | cosine | vs fp32 1T / 2T | outcome |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "On a real agent (`edgeopt deploy`, then `edgeopt infer` of the held-out rows; the "
        "agent's Benchmark on one row at 1 thread):",
        "",
        "| model | probabilities output | rows | labels equal to predict | max abs diff to "
        "predict_proba | agent p50 |",
        "|---|---|---|---|---|---|",
        *board_rows,
    ])  # fmt: skip
    print(write_section("classic", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
