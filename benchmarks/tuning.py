"""Regret of the planner and of tuning, against an exhaustive sweep on the same board.

    python benchmarks/tuning.py [--budget 30] [--rounds 5]      (or `make bench`)

The board is a real agent on this machine. For each model (the digits CNN, all-MiniLM-L6-v2,
the three mobile CNN layouts of tests/mobile.py and every public model of the corpus): every
precision x {1, 2} threads is made by the compression pipeline, held to the same accuracy gate
on the host, and measured with the agent's Benchmark, about a second each, in `--rounds`
interleaved rounds, the median kept (the exhaustive sweep). The rules-only
plan is what `edgeopt plan` chooses with nothing measured on this kind of board; the tuned
plan is what `deploy --tune` chooses within its budget; "rules + measured" is what `edgeopt
plan` chooses once every *other* model was tuned on this kind of board (leave one out: the
planner weighs their trials, edgeopt.host.planning.experience). Where tuning chose a mixed
variant (a precision that failed the gate on the board, with the fewest nodes kept float that
pass it), that variant joins the sweep, made and measured the same way. Regret = the sweep's
p50 of that plan / the sweep's best p50 (same run, same measurement), so 1.00 means it found
the best.
Tuning cost: wall time and candidates measured; a second tune of the same kind of board
measures nothing. Writes its table into benchmarks/RESULTS.md between the tuning markers.

    python benchmarks/tuning.py --models mobilenet-v2,ppocr-cls   (a few of them)
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from results import write_section  # noqa: E402

from edgeopt.host.compress import CompressRequest, Gate, compress  # noqa: E402
from edgeopt.host.compress import data as datasets  # noqa: E402
from edgeopt.host.compress.latency import host_cpu  # noqa: E402
from edgeopt.host.compress.onnxfile import load  # noqa: E402
from edgeopt.host.config.inventory import Device  # noqa: E402
from edgeopt.host.errors import EdgeoptError  # noqa: E402
from edgeopt.host.planning import planner  # noqa: E402
from edgeopt.host.planning.plan import DevicePlan  # noqa: E402
from edgeopt.host.store.state import State  # noqa: E402
from edgeopt.host.transport.client import AgentClient, ClientConfig, to_tensors  # noqa: E402
from edgeopt.host.workflows.plans import experience, traits_of  # noqa: E402
from edgeopt.host.workflows.tune import TuneOptions, tune_device  # noqa: E402
from edgeopt.proto.v1 import agent_pb2  # noqa: E402
from tests.conftest import RunningAgent, start_agent  # noqa: E402
from tests.corpus import CORPUS, fetch, write_data  # noqa: E402
from tests.mobile import LAYOUTS, images  # noqa: E402
from tests.models import minilm_data, train_digits_cnn  # noqa: E402

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8-static", "int4-weight")
THREADS = (1, 2)


async def _push(agent: RunningAgent, paths: set[Path]) -> dict[Path, str]:
    """Each distinct artifact pushed once: its path → its digest on the agent."""
    async with AgentClient(agent.address, token=agent.token) as client:
        return {path: (await client.push(path, "")).sha256 for path in paths}


async def _round(
    agent: RunningAgent, variants: dict[tuple[str, int], str], feed: dict[str, Any]
) -> dict[tuple[str, int], float]:
    """One round: every variant (by digest) measured once, about a second, with the agent's
    Benchmark."""
    out = {}
    async with AgentClient(agent.address, token=agent.token) as client:
        for (label, threads), sha in variants.items():
            result = await client.benchmark(
                agent_pb2.BenchmarkRequest(
                    sha256=sha, inputs=to_tensors(feed), max_seconds=1, target_ci=0.02,
                    plan=agent_pb2.Plan(intra_op_threads=threads, inter_op_threads=1),
                )
            )  # fmt: skip
            out[(label, threads)] = result.latency.p50_ms
    return out


def measure(
    agent: RunningAgent, variants: dict[tuple[str, int], Path], feed: dict[str, Any],
    rounds: int,
) -> dict[tuple[str, int], float]:  # fmt: skip
    """(label, threads) → the median p50 over `rounds` interleaved rounds (a burst of load on
    this shared machine lands on one round of one variant, not on one variant's only figure)."""
    digests = asyncio.run(_push(agent, set(variants.values())))
    shas = {key: digests[path] for key, path in variants.items()}
    seen = [asyncio.run(_round(agent, shas, feed)) for _ in range(rounds)]
    return {key: float(np.median([r[key] for r in seen])) for key in variants}


def first_batch(request: CompressRequest) -> dict[str, Any]:
    """The first batch of the validation data: what every variant is measured on."""
    reference = compress(replace(request, precision="fp32", validation=None))
    data = datasets.load(request.validation, load(reference.artifact), purpose="validation")  # type: ignore[arg-type]
    return next(data.batches(data.fixed_batch or 1))


def variants(request: CompressRequest) -> dict[tuple[str, int], Path | str]:
    """(precision, threads) → the artifact, or the reason it is out (not made, fails the gate)."""
    table: dict[tuple[str, int], Path | str] = {}
    for precision in PRECISIONS:
        try:
            report = compress(replace(request, precision=precision))  # type: ignore[arg-type]
        except EdgeoptError as exc:
            for t in THREADS:
                table[(precision, t)] = str(exc).split(":")[0][:60]
            continue
        for t in THREADS:
            table[(precision, t)] = report.artifact
    return table


def mixed(request: CompressRequest, plan: DevicePlan) -> dict[tuple[str, int], Path | str]:
    """The tuned plan when it keeps nodes float (a variant the sweep does not hold), made the
    same way, under its label ("int8-static +11 float")."""
    made = compress(replace(request, precision=plan.precision, keep_float=plan.keep_float))
    return {(plan.label, t): made.artifact for t in THREADS}


def tune(agent: RunningAgent, request: CompressRequest, name: str, state: State,
         budget: float, caps: Any, traits: planner.ModelTraits) -> Any:  # fmt: skip
    device = Device(name="local", address=agent.address, token_file=agent.token_file)
    options = TuneOptions(request=request, name=name, traits=traits, budget_s=budget)
    return asyncio.run(tune_device(device, caps, options, state, config=ClientConfig(60)))


def regret(
    key: tuple[str, int] | None,
    timed: dict[tuple[str, int], float],
    table: dict[tuple[str, int], Any],
    best: tuple[str, int],
) -> str:
    """The sweep's p50 of `key` over the best p50, or why there is none."""
    if key is None:
        return "n/a (no plan)"
    if key not in timed:
        return f"n/a ({table.get(key, 'not in the sweep')})"
    return f"{timed[key] / timed[best]:.2f}"


def deployed(decision: planner.Decision, timed: dict[tuple[str, int], float]) -> tuple[str, int]:
    """What deploy runs for this decision: its precision, or, where that variant is out (fails
    the gate or changes nothing), the planner's next precision at the same threads (as
    edgeopt.host.workflows.plans.fall_back does)."""
    threads = decision.chosen.intra_op_threads
    ranked = dict.fromkeys(p.precision for p in (decision.chosen, *decision.alternatives))
    for precision in ranked:
        if (precision, threads) in timed:
            return precision, threads
    return decision.chosen.precision, threads


def shown(key: tuple[str, int], decision: planner.Decision) -> str:
    """The plan deploy runs, and what it fell back from."""
    first = decision.chosen.precision
    fell = f" (fell back from {first})" if key[0] != first else ""
    return f"{key[0]}, {key[1]}T{fell}"


async def _caps(agent: RunningAgent) -> Any:
    async with AgentClient(agent.address, token=agent.token) as client:
        return await client.capabilities()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--models", default="", help="comma-separated labels (default: all)")
    args = parser.parse_args()
    wanted = {m for m in args.models.split(",") if m}
    rows, sweeps, later = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        os.environ["EDGEOPT_CACHE_DIR"] = str(tmp / "cache")
        (tmp / "digits").mkdir()
        digits = train_digits_cnn(tmp / "digits")
        calib, val = minilm_data(tmp)
        models: list[tuple[str, CompressRequest]] = [
            ("digits CNN", CompressRequest(
                model=digits.onnx, calibration=digits.calibration, validation=digits.validation,
                gate=Gate(max_accuracy_drop=0.01))),
            ("all-MiniLM-L6-v2", CompressRequest(
                model="tests.models:minilm_embedder", example=calib, calibration=calib,
                validation=val, gate=Gate(min_cosine=0.99))),
        ]  # fmt: skip
        cal_images, val_images = images(tmp / "images-cal.npz", 8, 1), images(tmp / "val.npz", 4, 2)
        for key, factory in LAYOUTS.items():
            models.append((key, CompressRequest(
                model=factory, example=cal_images, calibration=cal_images, validation=val_images,
                gate=Gate(min_cosine=0.99))))  # fmt: skip
        for m in CORPUS:
            if wanted and m.key not in wanted:
                continue
            path = fetch((m,))[m.key]
            models.append((m.key, CompressRequest(
                model=path, calibration=write_data(m, tmp, 8, 1),
                validation=write_data(m, tmp, 4, 2), gate=Gate(min_cosine=0.99))))  # fmt: skip
        models = [(label, r) for label, r in models if not wanted or label in wanted]
        agent = start_agent(tmp / "agent")
        try:
            caps = asyncio.run(_caps(agent))
            board = planner.Board.from_capabilities("local", caps)
            with State(str(tmp / "state.db")) as state:
                for label, request in models:
                    feed = first_batch(request)
                    made = variants(request)
                    traits = traits_of(request)
                    rules = planner.plan(board, traits, planner.Constraints(calibration=True))
                    tuned = tune(agent, request, label.split()[0].lower(), state, args.budget,
                                 caps, traits)  # fmt: skip
                    again = tune(agent, request, label.split()[0].lower(), state, args.budget,
                                 caps, traits)  # fmt: skip
                    tuned_key = (tuned.best.label, tuned.best.threads) \
                        if tuned.best else None  # fmt: skip
                    if tuned.best and tuned.best.keep_float:
                        made.update(mixed(request, tuned.best))
                    paths = {k: v for k, v in made.items() if isinstance(v, Path)}
                    timed = measure(agent, paths, feed, args.rounds)
                    table: dict[tuple[str, int], Any] = {**made, **timed}
                    best_key = min(timed, key=lambda k: timed[k])
                    rules_key = deployed(rules, timed)

                    measured = sum(1 for t in tuned.trials if t.p50_ms is not None)
                    rules_regret = regret(rules_key, timed, table, best_key)
                    tuned_cell = f"{tuned_key[0]}, {tuned_key[1]}T" if tuned_key else "-"
                    later.append((label, traits, timed, table, best_key))
                    rows.append([
                        label, f"{best_key[0]}, {best_key[1]}T: {timed[best_key]:.3g} ms",
                        shown(rules_key, rules), rules_regret, tuned_cell,
                        regret(tuned_key, timed, table, best_key),
                        f"{tuned.seconds:.0f} s, {measured} measured",
                        "reused, 0 measured" if again.reused else "measured again",
                    ])  # fmt: skip
                    cells = " ".join(
                        f"{p}/{t}T={v:.3g}" if isinstance(v, float) else f"{p}/{t}T=out"
                        for (p, t), v in table.items()
                    )
                    sweeps.append(f"- {label}: {cells}")
                    print(" | ".join(rows[-1]), flush=True)
                # What the planner says once every other model was tuned on this kind of board.
                learned = experience(state, caps)
                for row, (label, traits, timed, table, best_key) in zip(rows, later, strict=True):
                    others = [m for m in learned if m.model != label.split()[0].lower()]
                    again_plan = planner.plan(board, traits, planner.Constraints(calibration=True),
                                              others)  # fmt: skip
                    learned_key = deployed(again_plan, timed)
                    row[4:4] = [shown(learned_key, again_plan),
                                regret(learned_key, timed, table, best_key)]  # fmt: skip
                    print(label, "rules + measured:", row[4], row[5],
                          again_plan.chosen.reasons[0], flush=True)  # fmt: skip
        finally:
            agent.stop()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        "## Regret of the rules and of tuning (`python benchmarks/tuning.py`)",
        "",
        f"Measured {when} on {host_cpu()}, a real agent on loopback as the board. Gate: digits "
        "accuracy drop <= 1 pt; the others cosine >= 0.99 on their validation data. Regret = "
        "sweep p50 of the chosen plan / best sweep p50 (goals: tuned <= 1.05, rules <= 1.15); "
        f"a sweep p50 is the median of {args.rounds} interleaved rounds of about a second. "
        "'rules + measured': the plan once every other model was tuned on this kind of board "
        "(leave one out). Where the chosen variant fails the gate or changes nothing, deploy "
        "falls back to the planner's next precision, and so does the table. The three layouts "
        "have random weights (tests/mobile.py). A mixed variant tuning chose ('int8-static +11 "
        "float': a precision that failed the gate on the board, with the fewest nodes kept "
        "float that pass it on the host) joins the sweep, made and measured the same way. "
        f"Tuning budget {args.budget:.0f} s per board.",
        "",
        "| model | best in the sweep | rules chose | rules regret | rules + measured chose "
        "| its regret | tuning chose | tuned regret | tuning cost | second board of the kind |",
        "|---|---|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "The sweeps (p50 ms; out = not made or failing the gate):",
        *sweeps,
    ])  # fmt: skip
    print(write_section("tuning", text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
