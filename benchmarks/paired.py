"""Regression calls on a noisy machine: interleaved paired comparisons against the two-run compare.

    python benchmarks/paired.py [--comparisons 40] [--seconds 10] [--mdc-runs 10]

All on one real agent on loopback, the YOLOv8n of the corpus (nudenet 320n) compressed to
int8-static, 2 threads, the corpus's input:
- A slower copy B: A plus extra work that depends on the input (a chain of 64x256 @ 256x256
  MatMuls fed by the input's mean, its sum times 0 added to the first output): the chain's
  cost measured alone on this host sets its length to 5 % (and 2 %) of A's p50, a 20 s
  paired run corrects that length, and a 60 s paired run says what B/A came out as.
- Paired (`bench compare-models`, --threshold 2 %, at most --seconds each, stopping once the
  interval is within 0.5 %): `--comparisons` A/A comparisons (the same artifact on both sides):
  changes called (goal <= 1 of 40); as many A against the 5 % copy: slowdowns found (goal
  >= 36 of 40); and against the 2 % copy (no goal).
- The minimum detectable change after 10, 30 and 60 s of measuring: `--mdc-runs` A/A runs of
  60 s, each read at the block pairs done by 10 s and 30 s too (block medians x runs per
  block give each pair's time); the median of the runs.
- The two-run compare, as a CI job would run it (`bench` A, then `bench` the candidate, then
  `bench compare`), on the same number of pairs of plain runs (--max-seconds 3): with the old
  rule (the medians' 95 % intervals must not overlap, threshold 5 %) and with the runs' block
  medians (the rule `bench compare` uses now), A/A and A against the 5 % copy.
Writes its tables into benchmarks/RESULTS.md between the paired markers.
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import onnx  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest, compress  # noqa: E402
from edgeopt.host.compress.latency import host_cpu, measure_host  # noqa: E402
from edgeopt.host.config.inventory import Device  # noqa: E402
from edgeopt.host.report import history  # noqa: E402
from edgeopt.host.store.state import State  # noqa: E402
from edgeopt.host.transport.client import ClientConfig  # noqa: E402
from edgeopt.host.workflows import bench, compare  # noqa: E402
from edgeopt.host.workflows.plans import DeployOptions  # noqa: E402
from edgeopt.proto import paired  # noqa: E402
from tests.conftest import start_agent  # noqa: E402
from tests.corpus import CORPUS, fetch, make_inputs, write_data  # noqa: E402

THREADS = 2
WIDTH = 256


def _chain(x: str, depth: int, prefix: str) -> tuple[list[onnx.NodeProto], list[TensorProto], str]:
    """Nodes computing a scalar from input `x` through `depth` MatMuls (see the docstring)."""
    rng = np.random.default_rng(0)
    seed = numpy_helper.from_array(rng.standard_normal((64, WIDTH)).astype(np.float32),
                                   f"{prefix}seed")  # fmt: skip
    weight = numpy_helper.from_array(
        (np.linalg.qr(rng.standard_normal((WIDTH, WIDTH)))[0]).astype(np.float32),
        f"{prefix}w",
    )  # an orthogonal matrix: the values neither grow nor vanish along the chain
    nodes = [
        helper.make_node("ReduceMean", [x], [f"{prefix}mean"], keepdims=0),
        helper.make_node("Mul", [f"{prefix}seed", f"{prefix}mean"], [f"{prefix}h0"]),
    ]
    for i in range(depth):
        nodes.append(helper.make_node("MatMul", [f"{prefix}h{i}", f"{prefix}w"],
                                      [f"{prefix}h{i + 1}"]))  # fmt: skip
    nodes.append(helper.make_node("ReduceSum", [f"{prefix}h{depth}"], [f"{prefix}sum"],
                                  keepdims=0))  # fmt: skip
    return nodes, [seed, weight], f"{prefix}sum"


def chain_alone(path: Path, like: onnx.ModelProto, depth: int) -> Path:
    """The extra work as a model of its own, on the same input (to time it alone)."""
    x = like.graph.input[0]
    nodes, weights, out = _chain(x.name, depth, "extra_")
    graph = helper.make_graph(nodes, "chain", [x], [helper.make_tensor_value_info(
        out, TensorProto.FLOAT, [])], weights)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def slower_copy(a: Path, path: Path, depth: int) -> Path:
    """A with the chain's result times 0 added to its first output: the same outputs, more work."""
    model = onnx.load(str(a))
    nodes, weights, out = _chain(model.graph.input[0].name, depth, "extra_")
    target = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [f"{target}_before" if o == target else o for o in node.output]
        node.input[:] = [f"{target}_before" if i == target else i for i in node.input]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "extra_zero")
    nodes += [helper.make_node("Mul", [out, "extra_zero"], ["extra_nothing"]),
              helper.make_node("Add", [f"{target}_before", "extra_nothing"], [target])]  # fmt: skip
    model.graph.node.extend(nodes)
    model.graph.initializer.extend([*weights, zero])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _detectable_at(v: dict, seconds: float) -> float:
    """The minimum detectable change from the block pairs done by `seconds` of measuring."""
    runs = v["block_runs"]
    spent, n = 0.0, 0
    for a_ms, b_ms in zip(v["a_ms"], v["b_ms"], strict=True):
        spent += runs * (a_ms + b_ms) / 1e3
        if spent > seconds:
            break
        n += 1
    return paired.estimate(v["a_ms"][:n], v["b_ms"][:n]).detectable


def _calls(answers: list[compare.Comparison]) -> dict[str, int]:
    out: dict[str, int] = {}
    for a in answers:
        out[a.verdict] = out.get(a.verdict, 0) + 1
    return out


def _cell(calls: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(calls.items()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comparisons", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--mdc-runs", type=int, default=10)
    args = parser.parse_args()
    began = time.monotonic()
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "cache")
        yolo = next(c for c in CORPUS if c.key == "yolov8n-nudenet")
        request = CompressRequest(model=fetch((yolo,))[yolo.key], precision="int8-static",
                                  calibration=write_data(yolo, tmp, 8, 1))  # fmt: skip
        a = compress(request).artifact
        inputs = write_data(yolo, tmp, 1, 2)
        feed = make_inputs(yolo, 1, 2)
        like = onnx.load(str(a))
        (a_ms, chain_ms) = (t.median_ms for t in measure_host(
            [a, chain_alone(tmp / "chain.onnx", like, 40)], feed, threads=THREADS, rounds=60,
            budget_s=60))  # fmt: skip
        per_matmul = chain_ms / 40
        copies = {}
        for share in (0.05, 0.02):
            depth = max(1, round(share * a_ms / per_matmul))
            copies[share] = (slower_copy(a, tmp / f"b{share}.onnx", depth), depth)
        print(f"A {a_ms:.2f} ms, one chain MatMul {per_matmul:.3f} ms alone: depths "
              f"{[d for _, d in copies.values()]}", flush=True)  # fmt: skip
        agent = start_agent(tmp / "agent")
        device = Device(name="pi", address=agent.address, token_file=agent.token_file)
        config = ClientConfig(deadline=30)
        base = compare.CompareOptions(a=a, b=a, threads=THREADS, inputs=inputs,
                                      max_seconds=args.seconds, threshold=0.02)  # fmt: skip
        try:
            with State(str(tmp / "state.db")) as state:

                def one(options: compare.CompareOptions) -> compare.Comparison:
                    _, (answer,) = compare.compare_models([device], options, state,
                                                          config=config)  # fmt: skip
                    return answer

                for share, (path, depth) in list(copies.items()):
                    # The chain alone (its session spinning) is not the chain inside A: one
                    # 20 s paired run corrects the depth to the share.
                    seen = one(replace(base, b=path, max_seconds=20, threshold=1e-4)).found
                    assert seen is not None
                    fixed = max(1, round(depth * share / max(seen.ratio - 1, 1e-3)))
                    copies[share] = (slower_copy(a, path, fixed), fixed)
                    print(f"{share:.0%}: {depth} MatMuls gave {seen.ratio:.4f}; now {fixed}",
                          flush=True)  # fmt: skip
                truth = {s: one(replace(base, b=p, max_seconds=60, threshold=1e-4)).found
                         for s, (p, _) in copies.items()}  # fmt: skip
                print("truth", {s: f.to_dict() if f else None for s, f in truth.items()},
                      flush=True)  # fmt: skip
                aa, ab5, ab2 = [], [], []
                for _ in range(args.comparisons):  # the three kinds take turns
                    aa.append(one(base))
                    ab5.append(one(replace(base, b=copies[0.05][0])))
                    ab2.append(one(replace(base, b=copies[0.02][0])))
                print("paired", _calls(aa), _calls(ab5), _calls(ab2), flush=True)
                mdc: dict[int, list[float]] = {10: [], 30: [], 60: []}
                for _ in range(args.mdc_runs):
                    run = one(replace(base, max_seconds=60, threshold=1e-4))
                    for seconds, seen in mdc.items():
                        seen.append(_detectable_at(run.result["versus"], seconds))
                print("mdc", {s: statistics.median(v) for s, v in mdc.items()}, flush=True)
                options = bench.BenchOptions(
                    deploy=DeployOptions(request=replace(request, model=a, precision="fp32"),
                                         name="yolo"),
                    threads=(THREADS,), max_seconds=3.0, inputs=inputs,
                )  # fmt: skip
                slower = replace(options, deploy=replace(options.deploy, request=replace(
                    options.deploy.request, model=copies[0.05][0])))  # fmt: skip

                def plain(o: bench.BenchOptions) -> dict:
                    run = bench.bench([device], o, state, config=ClientConfig(60))
                    (row,) = state.benchmarks(run=run.id)
                    return row

                two = {"A/A": [], "5 %": []}
                for _ in range(args.comparisons):
                    first, second, candidate = plain(options), plain(options), plain(slower)
                    two["A/A"].append((first, second))
                    two["5 %"].append((second, candidate))
        finally:
            agent.stop()

    def old_rule(x: dict, y: dict) -> str:
        strip = [{**r, "result": {**r["result"], "block_ms": []}} for r in (x, y)]
        return history.judge(strip[0], strip[1])[0]

    def new_rule(x: dict, y: dict) -> str:
        return history.judge(x, y)[0]

    rows = []
    for label, pairs in two.items():
        for rule, judge in (("medians' intervals (old)", old_rule),
                            ("block medians (now)", new_rule)):  # fmt: skip
            calls: dict[str, int] = {}
            for x, y in pairs:
                v = judge(x, y)
                calls[v] = calls.get(v, 0) + 1
            rows.append(f"| two runs, {rule} | {label} | {_cell(calls)} |")
    t5, t2 = truth[0.05], truth[0.02]
    found5 = _calls(ab5).get("slower", 0)
    false_aa = sum(v for k, v in _calls(aa).items() if k in ("slower", "faster"))
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    n = args.comparisons
    text = "\n".join([
        "## Paired comparisons against the two-run compare (`python benchmarks/paired.py`)",
        "",
        f"Measured {when} on {host_cpu()}; one real agent on loopback (the same 2 CPUs as "
        f"the host), YOLOv8n (nudenet 320n) int8-static at {THREADS} threads, the corpus's "
        f"input. A: {a_ms:.2f} ms p50 on this host. The slower copies add a chain of "
        f"64x256 @ 256x256 MatMuls fed by the input (one MatMul {per_matmul:.3f} ms alone): "
        f"{copies[0.05][1]} MatMuls for 5 %, {copies[0.02][1]} for 2 % (the length set from "
        f"the cost alone, then corrected by a 20 s paired run); measured against A "
        f"in a 60 s paired run: B/A {t5.ratio:.4f} ({t5.low:.4f}-{t5.high:.4f}) and "
        f"{t2.ratio:.4f} ({t2.low:.4f}-{t2.high:.4f})." if t5 and t2 else "",
        "",
        f"Paired: `bench compare-models` (--threshold 2 %, --max-seconds {args.seconds:g}, "
        f"stops once the ratio's interval is within 0.5 %), {n} comparisons of each kind, the "
        "three kinds taking turns. Two runs: `bench` A (--max-seconds 3), `bench` again, "
        "`bench` the candidate, then each pair judged by `bench compare`'s rule, threshold 5 %.",
        "",
        "| method | comparison | verdicts |",
        "|---|---|---|",
        f"| paired | A/A | {_cell(_calls(aa))} |",
        f"| paired | A vs 5 % slower | {_cell(_calls(ab5))} |",
        f"| paired | A vs 2 % slower | {_cell(_calls(ab2))} |",
        *rows,
        "",
        f"- False alarms (paired A/A): {false_aa} of {n} (goal <= 1: "
        f"{'met' if false_aa <= 1 else 'not met'}).",
        f"- Slowdowns found (paired, 5 %): {found5} of {n} (goal >= {math.ceil(0.9 * n)}: "
        f"{'met' if found5 >= 0.9 * n else 'not met'}); at 2 %: "
        f"{_calls(ab2).get('slower', 0)} of {n}.",
        "- Minimum detectable change (80 % power) of a paired A/A run after "
        + ", ".join(f"{s} s: {statistics.median(v):.2%}" for s, v in mdc.items())
        + f" (median of {args.mdc_runs} runs of 60 s).",
        f"- Whole benchmark: {(time.monotonic() - began) / 60:.0f} min.",
    ])  # fmt: skip
    print(write_section("paired", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
