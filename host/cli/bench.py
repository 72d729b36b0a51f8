"""`edgeopt bench`: a model measured on boards, side by side.

edgeopt bench model.onnx --device pi4 --precision int8-static --calibration c.npz --threads 2
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import onnx

from edgeopt.host import bench
from edgeopt.host.cli.common import Session
from edgeopt.host.cli.compress import build_request, compression_options
from edgeopt.host.cli.models import device_options, selection
from edgeopt.host.compress import data as datasets
from edgeopt.host.deploy import DeployOptions, traits_of
from edgeopt.host.output import echo_json, table
from edgeopt.host.state import State
from edgeopt.proto.v1 import agent_pb2


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def _rows(results: list[bench.BenchResult]) -> list[list[str]]:
    rows = []
    for r in results:
        if r.result is None:
            rows.append([r.device, "", "", "", "", "", "", "", "", "", r.error])
            continue
        lat = r.result["latency"]
        half = (lat["ci_high_ms"] - lat["ci_low_ms"]) / 2
        rows.append([
            r.device, str(r.plan.get("precision", "")), str(r.plan.get("intra_op_threads", "")),
            _ms(lat["p50_ms"]), f"±{half / lat['p50_ms']:.1%}" if lat["p50_ms"] else "",
            _ms(lat["p90_ms"]), _ms(lat["p99_ms"]), f"{r.result['throughput']:.1f}/s",
            _ms(r.result["session_load_ms"]), f"{lat['samples']} ({r.result['stop_reason']})", "",
        ])  # fmt: skip
    return rows


def _conditions(results: list[bench.BenchResult]) -> list[str]:
    lines = []
    for r in results:
        if r.result is None:
            continue
        c = r.result["conditions"]
        temps = ", ".join(
            f"{a['type'] or a['zone']} {a['celsius']:.0f}->{b['celsius']:.0f} C"
            for a, b in zip(c["temperatures_before"], c["temperatures_after"], strict=False)
        )
        lines.append(
            f"{r.device}: ONNX Runtime {c['onnxruntime_version']}, governor "
            f"{c['cpu_governor'] or 'unknown'}, load {c['load_average']:.2f}, "
            f"{c['usable_cores']} usable CPUs"
            + (f", {temps}" if temps else "")
            + f", first inference {_ms(r.result['first_inference_ms'])}, peak RSS "
            f"{int(r.result['peak_rss_bytes']) / 2**20:.0f} MiB"
        )
    return lines


class _Progress:
    def __call__(self, device: str, p: agent_pb2.BenchmarkProgress) -> None:
        click.echo(
            f"{device}: {p.repeats} runs, p50 {_ms(p.p50_ms)} ±{p.ci_relative:.1%} "
            f"({p.elapsed_s:.1f} s)",
            err=True,
        )


@click.command("bench")
@click.argument("model")
@device_options
@compression_options
@click.option("--threads", type=int, help="intra-op threads (default: the board's cores)")
@click.option("--provider", help="execution provider (default: CPUExecutionProvider)")
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
              help="time budget of the timed runs per board")  # fmt: skip
@click.option("--target-ci", type=float, default=0.02, show_default=True,
              help="stop when the median's 95 % CI is within this share of it")  # fmt: skip
@click.option("--warmup", type=int, default=5, show_default=True, help="discarded runs")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def bench_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    threads: int | None,
    provider: str | None,
    graph_optimization: str,
    parallel: int,
    inputs: Path | None,
    max_seconds: float,
    target_ci: float,
    warmup: int,
    as_json: bool,
    **compression: Any,
) -> None:
    """Measure MODEL on each selected board, in the variant its plan calls for.

    Without --precision the planner chooses the variant for each board. Takes the compression
    options of `edgeopt compress`. Nothing is activated on the boards. Exit status 1 when any
    board gave no measurement.
    """
    session: Session = ctx.obj
    devices, _ = selection(session, selectors, whole_fleet)
    request = build_request(model, None, **compression)
    planned = ctx.get_parameter_source("precision") == click.core.ParameterSource.DEFAULT
    shapes: dict[str, tuple[int, ...]] = {}
    if request.input_shape is not None and Path(model).suffix == ".onnx":
        specs = datasets.input_specs(onnx.load(model, load_external_data=False))
        if len(specs) == 1:
            shapes = {specs[0].name: request.input_shape}
    options = bench.BenchOptions(
        deploy=DeployOptions(
            request=request, name=Path(model).stem, threads=threads, provider=provider,
            graph_optimization="" if graph_optimization == "all" else graph_optimization,
            parallel=parallel, traits=traits_of(request) if planned else None,
        ),
        inputs=inputs, input_shapes=shapes, max_seconds=max_seconds, target_ci=target_ci,
        warmup=warmup,
    )  # fmt: skip
    with State(session.state) as state:
        results = bench.bench(
            devices, options, state, config=session.client,
            progress=None if as_json or not sys.stderr.isatty() else _Progress(),
        )  # fmt: skip
    if as_json:
        echo_json([
            {"device": r.device, "plan": r.plan, "result": r.result, "error": r.error or None,
             "run": r.run_id}
            for r in results
        ])  # fmt: skip
    else:
        headers = ["DEVICE", "PRECISION", "THREADS", "P50", "CI95", "P90", "P99", "THROUGHPUT",
                   "LOAD", "RUNS", "ERROR"]  # fmt: skip
        click.echo(table(headers, _rows(results)))
        for line in _conditions(results):
            click.echo(line)
    if any(r.result is None for r in results):
        ctx.exit(1)
