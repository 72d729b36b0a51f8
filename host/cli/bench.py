"""`edgeopt bench`: a model and its variants measured on boards, side by side, and its history.

The commands, each a thin layer over `edgeopt.host.workflows.bench`, `history` and `report`:

    edgeopt bench model.onnx --fleet                       every device, its planned variant
    edgeopt bench model.onnx --device lab --variants fp32,int8-static --threads 1,2
    edgeopt bench model.onnx --fleet --json --csv out.csv --plot fleet.png --html report.html
    edgeopt bench history --device pi4 --model model.onnx  runs over time, changes called
    edgeopt bench compare RUN_A RUN_B                      what got faster or slower
    edgeopt bench compare-models A.onnx B.onnx --device pi4  B against A, interleaved on the board
"""

from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Any

import click
import onnx

from edgeopt.host import report
from edgeopt.host.cli.common import Session, device_options, selection
from edgeopt.host.cli.compress import build_request, compression_options
from edgeopt.host.cli.output import echo_json
from edgeopt.host.compress import data as datasets
from edgeopt.host.compress.latency import host_cpu
from edgeopt.host.errors import InvalidRequest
from edgeopt.host.report import history
from edgeopt.host.report.table import table
from edgeopt.host.store.state import State
from edgeopt.host.transport.client import file_digest
from edgeopt.host.workflows import bench
from edgeopt.host.workflows import compare as paired_compare
from edgeopt.host.workflows.plans import DeployOptions, traits_of

__all__ = ["bench_cmd", "compare_cmd", "compare_models_cmd", "history_cmd", "run_cmd"]


class _BenchGroup(click.Group):
    """`bench MODEL ...` runs a benchmark; `bench history|compare ...` reads the history."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group("bench", cls=_BenchGroup)
def bench_cmd() -> None:
    """Measure MODEL on boards (`bench MODEL ...`, see `bench run --help`), or read history."""


def _csv(kind: type, name: str) -> Any:
    def parse(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[Any, ...]:
        if not value:
            return ()
        try:
            items = tuple(kind(v.strip()) for v in value.split(",") if v.strip())
        except ValueError as exc:
            raise click.BadParameter(f"a comma-separated list of {name}: {exc}") from exc
        if kind is str and name == "variants":
            unknown = [v for v in items if v not in bench.VARIANTS]
            if unknown:
                raise click.BadParameter(
                    f"unknown variant {', '.join(unknown)}; the variants are "
                    f"{', '.join(bench.VARIANTS)}"
                )
        return items

    return parse


class _LiveCases:
    """One line per device on a terminal, updated as its cases progress (rich)."""

    def __init__(self, devices: list[str]) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415

        self.rows = dict.fromkeys(devices, "waiting")
        self.live = Live(console=Console(stderr=True), refresh_per_second=4, transient=True)

    def __call__(self, device: str, text: str) -> None:
        from rich.table import Table  # noqa: PLC0415

        self.rows[device] = text
        grid = Table("device", "now", box=None)
        for name, now in self.rows.items():
            grid.add_row(name, now)
        self.live.update(grid)


@bench_cmd.command("run")
@click.argument("model")
@device_options
@compression_options
@click.option("--variants", callback=_csv(str, "variants"), metavar="LIST",
              help=f"precisions to measure on every device ({','.join(bench.VARIANTS)}); "
              "default: the one each board's plan calls for (overrides --precision)")  # fmt: skip
@click.option("--threads", callback=_csv(int, "thread counts"), metavar="LIST",
              help="intra-op thread counts, e.g. 1,2,4 (default: the board's cores)")  # fmt: skip
@click.option("--provider", "providers", callback=_csv(str, "providers"), metavar="LIST",
              help="execution providers (default: the plan's, else the CPU's)")  # fmt: skip
@click.option(
    "--graph-optimization",
    type=click.Choice(["disable", "basic", "extended", "all"]),
    default="all",
    show_default=True,
)
@click.option("--parallel", type=int, default=8, show_default=True, help="boards at once")
@click.option(
    "--inputs",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz whose first sample is fed (default: --validate, else --calibration, else made up)",
)
@click.option("--max-seconds", type=float, default=10.0, show_default=True,
              help="time budget of the timed runs per case")  # fmt: skip
@click.option("--target-ci", type=float, default=0.02, show_default=True,
              help="stop when the median's 95 % CI is within this share of it")  # fmt: skip
@click.option("--warmup", type=int, default=5, show_default=True, help="discarded runs")
@click.option("--cooldown", type=float, default=0.0, show_default=True, metavar="SECONDS",
              help="pause between two cases on one board")  # fmt: skip
@click.option("--deadline", "run_deadline", type=float, metavar="SECONDS",
              help="wall-time limit of the whole run; unfinished cases are marked")  # fmt: skip
@click.option("--interleave", is_flag=True,
              help="measure each variant against the first of --variants (same threads and "
              "provider) in alternating blocks on the board: speed-ups from the pairs")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.option("--csv", "csv_path", type=click.Path(path_type=Path, dir_okay=False),
              help="write one row per case")  # fmt: skip
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="write a PNG: latency, speed-up vs fp32, size vs latency")  # fmt: skip
@click.option("--html", "html_path", type=click.Path(path_type=Path, dir_okay=False),
              help="write one self-contained HTML page: the table and the plots")  # fmt: skip
@click.pass_context
def run_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    variants: tuple[str, ...],
    threads: tuple[int, ...],
    providers: tuple[str, ...],
    graph_optimization: str,
    parallel: int,
    inputs: Path | None,
    max_seconds: float,
    target_ci: float,
    warmup: int,
    cooldown: float,
    run_deadline: float | None,
    interleave: bool,
    as_json: bool,
    csv_path: Path | None,
    plot_path: Path | None,
    html_path: Path | None,
    **compression: Any,
) -> None:
    """Measure MODEL on each selected board: its variants x threads x providers.

    Without --variants or --precision the planner chooses the variant for each board. Takes the
    compression options of `edgeopt compress`. Nothing is activated on the boards. Every case
    goes into the history under one run id. Exit status 1 when any case has no measurement
    (unsupported cases excepted).
    """
    session: Session = ctx.obj
    request = build_request(model, None, **compression)
    if request.keep_float_search:
        raise click.UsageError(
            "--keep-float N|auto searches with `edgeopt compress`; here, name the nodes it found"
        )
    devices, chosen = selection(session, selectors, whole_fleet)
    planned = (ctx.get_parameter_source("precision") == click.core.ParameterSource.DEFAULT
               and not variants)  # fmt: skip
    _check_interleave(interleave, variants)
    shapes: dict[str, tuple[int, ...]] = {}
    if request.input_shape is not None and Path(model).suffix == ".onnx":
        specs = datasets.input_specs(onnx.load(model, load_external_data=False))
        if len(specs) == 1:
            shapes = {specs[0].name: request.input_shape}
    options = bench.BenchOptions(
        deploy=DeployOptions(
            request=request, name=Path(model).stem,
            graph_optimization="" if graph_optimization == "all" else graph_optimization,
            parallel=parallel, traits=traits_of(request) if planned else None,
        ),
        inputs=inputs, input_shapes=shapes, max_seconds=max_seconds, target_ci=target_ci,
        warmup=warmup, variants=variants, threads=threads, providers=providers,
        cooldown_s=cooldown, deadline_s=run_deadline, selection=chosen, interleave=interleave,
    )  # fmt: skip
    live = None if as_json or not sys.stderr.isatty() else _LiveCases([d.name for d in devices])
    with State(session.state) as state:
        if live is not None:
            with live.live:
                run = bench.bench(devices, options, state, config=session.client, progress=live)
        else:
            run = bench.bench(devices, options, state, config=session.client)
    rows = bench.report_rows(run)
    meta = {
        "model": model, "run": run.id, "devices": chosen,
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "host CPU": host_cpu(),
    }  # fmt: skip
    if csv_path:
        report.write_csv(rows, csv_path)
    if plot_path:
        report.plot(rows, plot_path)
    if html_path:
        report.write_html(rows, html_path, f"edgeopt bench: {Path(model).name}", meta)
    if as_json:
        results = {str(c.case_id): c.result for c in run.cases if c.result}
        records = [{**r, "case": row["case"], "paired": row["paired"]}
                   for r, row in zip(report.to_records(rows), rows, strict=True)]  # fmt: skip
        echo_json({"run": run.id, "status": run.status, "cases": records, "results": results})
    else:
        click.echo(f"run {run.id} ({run.status})")
        click.echo(report.terminal_table(rows))
        for line in [*_interleaved(rows), *_conditions(run)]:
            click.echo(line)
    if any(c.status in ("failed", "not run") for c in run.cases):
        ctx.exit(1)


def _check_interleave(interleave: bool, variants: tuple[str, ...]) -> None:
    if interleave and len(variants) < 2:
        raise click.UsageError("--interleave measures variants against the first: name two or "
                               "more with --variants")  # fmt: skip


def _interleaved(rows: list[dict[str, Any]]) -> list[str]:
    """One line per case measured against its baseline in alternating blocks."""
    out = []
    for r in rows:
        p = r.get("paired")
        if p:
            out.append(
                f"{r['device']} {r['variant']} {r['threads']}T: interleaved with the first "
                f"variant: {1 / p['ratio']:.3f}x its speed (95 % {1 / p['high']:.3f}-"
                f"{1 / p['low']:.3f}x, {p['pairs']} block pairs; could detect "
                f"{p['detectable']:.1%})"
            )
    return out


def _conditions(run: bench.BenchRun) -> list[str]:
    lines = []
    seen = set()
    for c in run.cases:
        if c.result is None or c.device in seen:
            continue
        seen.add(c.device)
        k = c.result["conditions"]
        temps = ", ".join(
            f"{a['type'] or a['zone']} {a['celsius']:.0f}->{b['celsius']:.0f} C"
            for a, b in zip(k["temperatures_before"], k["temperatures_after"], strict=False)
        )
        lines.append(
            f"{c.device}: ONNX Runtime {k['onnxruntime_version']}, governor "
            f"{k['cpu_governor'] or 'unknown'}, load {k['load_average']:.2f}, "
            f"{k['usable_cores']} usable CPUs" + (f", {temps}" if temps else "")
        )
    return lines


@bench_cmd.command("history")
@click.option("--device", "-d", "device", help="one device's runs")
@click.option("--model", "model", help="one model's runs (its file: matched by digest)")
@click.option("--limit", type=int, default=200, show_default=True)
@click.option("--threshold", type=float, default=history.THRESHOLD, show_default=True,
              help="smallest change of the median called a change")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def history_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    device: str | None,
    model: str | None,
    limit: int,
    threshold: float,
    as_json: bool,
) -> None:
    """Benchmark runs over time, each against the previous run of the same case."""
    session: Session = ctx.obj
    digest = None
    if model is not None:
        path = Path(model)
        digest = file_digest(path) if path.is_file() else model
    with State(session.state) as state:
        rows = state.benchmarks(device, limit, model_digest=digest)
    line = history.timeline(rows, threshold)
    if as_json:
        echo_json([
            {"case": r["id"], "run": r["run"], "taken": r["taken"], "device": r["device"],
             "model": r["model"], "model_digest": r["model_digest"],
             "variant": r["precision"], "threads": r["threads"], "provider": r["provider"],
             "p50_ms": r["result"]["latency"]["p50_ms"], "ci_low_ms":
             r["result"]["latency"]["ci_low_ms"], "ci_high_ms":
             r["result"]["latency"]["ci_high_ms"], "flags": r["flags"], "change": words}
            for r, words in line
        ])  # fmt: skip
        return
    if not line:
        click.echo("no measured benchmark runs match")
        return
    out = []
    for r, words in line:
        lat = r["result"]["latency"]
        when = datetime.datetime.fromtimestamp(r["taken"], datetime.UTC)
        half = (lat["ci_high_ms"] - lat["ci_low_ms"]) / 2
        out.append([when.strftime("%Y-%m-%d %H:%M"), r["run"] or str(r["id"]), r["device"],
                    _model(r), r["precision"], str(r["threads"]), f"{lat['p50_ms']:.3g} ms",
                    f"±{half / lat['p50_ms']:.1%}", ",".join(r["flags"]), words])  # fmt: skip
    click.echo(table(["WHEN", "RUN", "DEVICE", "MODEL", "VARIANT", "THREADS", "P50", "CI95",
                      "FLAGS", "CHANGE"], out))  # fmt: skip


def _model(row: dict[str, Any]) -> str:
    """A row's model in a table: its file name and the start of its digest."""
    digest = row.get("model_digest") or ""
    return f"{Path(row['model']).name} {digest[:8]}".strip()


@bench_cmd.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--threshold", type=float, default=history.THRESHOLD, show_default=True,
              help="smallest change of the median called a change")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def compare_cmd(
    ctx: click.Context, run_a: str, run_b: str, threshold: float, as_json: bool
) -> None:
    """What got faster or slower from RUN_A to RUN_B, beyond the noise.

    Cases are matched by device, model, variant, threads and provider. Exit status (for CI
    gates): 1 when anything got slower, else 2 when some case was too noisy to call, else 0.
    Two runs are two sessions: `bench compare-models` measures both sides interleaved in one.
    """
    session: Session = ctx.obj
    with State(session.state) as state:
        rows = {}
        for run in (run_a, run_b):
            rows[run] = state.benchmarks(run=run, limit=100_000)
            if not rows[run]:
                raise click.ClickException(
                    f"{run}: no such benchmark run (see `edgeopt bench history`)"
                )
        earlier = [r for device in {r["device"] for r in rows[run_a]}
                   for r in state.benchmarks(device, limit=10_000)]  # fmt: skip
    changes, alone = history.compare(rows[run_a], rows[run_b], threshold, earlier)
    if as_json:
        echo_json({
            "changes": [{"case": history.name(c.key), "model": c.after["model"],
                         "verdict": c.verdict, "ratio": c.ratio, "words": c.words}
                        for c in changes],
            "unmatched": alone,
        })  # fmt: skip
    else:
        click.echo(table(["CASE", "MODEL", "VERDICT", "CHANGE"],
                         [[history.name(c.key), _model(c.after), c.verdict, c.words]
                          for c in changes]))  # fmt: skip
        for line in alone:
            click.echo(line)
    if any(c.verdict == "slower" for c in changes):
        ctx.exit(1)
    if any(c.verdict == "undecided" for c in changes):
        ctx.exit(2)


@bench_cmd.command("compare-models")
@click.argument("model_a", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("model_b", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@device_options
@click.option("--threads", type=int, default=0, help="intra-op threads of both (default: ONNX "
              "Runtime's on the board)")  # fmt: skip
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False),
              help=".npz whose first sample both are fed (default: made up)")  # fmt: skip
@click.option("--threshold", type=click.FloatRange(0.001, 1), default=0.02, show_default=True,
              help="smallest change of B/A called a change")  # fmt: skip
@click.option("--max-seconds", type=click.FloatRange(0.1, 3600), default=60.0,
              show_default=True, help="measuring budget per board (it stops sooner once the "
              "ratio's interval is within a quarter of the threshold)")  # fmt: skip
@click.option("--block-runs", type=click.IntRange(0, 1000), default=0,
              help="runs per block (default: about 50 ms of the slower model)")  # fmt: skip
@click.option("--seed", type=int, default=0, help="the block order's random seed (0: fresh)")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def compare_models_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model_a: Path,
    model_b: Path,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    threads: int,
    inputs: Path | None,
    threshold: float,
    max_seconds: float,
    block_runs: int,
    seed: int,
    as_json: bool,
) -> None:
    """Is MODEL_B faster or slower than MODEL_A on each board? Measured interleaved.

    Both run on the board in alternating blocks in one session, the order of each pair of
    blocks random, so slow spells hit both. Each board gives the ratio B/A with its 95 %
    interval and the smallest change the run could have seen. Exit status: 1 when B is
    slower beyond --threshold on any board, 2 when a board could not decide (too noisy within
    --max-seconds, or it stopped answering), 0 otherwise.
    """
    session: Session = ctx.obj
    devices, _ = selection(session, selectors, whole_fleet)
    options = paired_compare.CompareOptions(
        a=model_a, b=model_b, threads=threads, inputs=inputs, max_seconds=max_seconds,
        threshold=threshold, block_runs=block_runs, seed=seed,
    )  # fmt: skip
    try:
        paired_compare.check_inputs(model_a, model_b)
    except InvalidRequest as exc:  # exit status 2: no decision (1 would say "slower")
        click.echo(f"Error: {exc}", err=True)
        ctx.exit(2)
    with State(session.state) as state:
        run, answers = paired_compare.compare_models(devices, options, state,
                                                     config=session.client)  # fmt: skip
    if as_json:
        echo_json({"run": run, "a": str(model_a), "b": str(model_b),
                   "devices": [a.record() for a in answers]})  # fmt: skip
    else:
        click.echo(f"run {run}: B = {model_b.name} against A = {model_a.name}")
        click.echo(table(["DEVICE", "VERDICT", "B/A", "95 % INTERVAL", "DETECTABLE", "DETAIL"], [
            [a.device, a.verdict, f"{a.found.ratio:.4f}" if a.found else "-",
             f"{a.found.low:.4f}-{a.found.high:.4f}" if a.found else "-",
             f"{a.found.detectable:.2%}" if a.found else "-", a.words]
            for a in answers
        ]))  # fmt: skip
    ctx.exit(paired_compare.exit_status(answers))
