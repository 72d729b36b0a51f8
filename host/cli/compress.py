r"""`edgeopt compress` and `edgeopt cache`: options in, `edgeopt.host.compress` calls out.

edgeopt compress model.onnx --precision int8-dynamic -o model.int8.onnx
edgeopt compress model.onnx --precision int8-static --calibration calib.npz \\
        --validate val.npz --max-accuracy-drop 0.01 -o out.onnx
edgeopt compress model.onnx --sweep --validate val.npz --json
edgeopt cache ls | edgeopt cache clear
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

import click

from edgeopt.host.compress import (
    PRECISIONS,
    ArtifactCache,
    CompressionReport,
    CompressRequest,
    Gate,
    compress,
    sensitivity,
    sweep,
)
from edgeopt.host.compress.latency import host_cpu
from edgeopt.host.compress.onnxfile import ModelFacts
from edgeopt.host.compress.prune import Importance
from edgeopt.host.compress.quantize import CalibrationMethodName
from edgeopt.host.compress.quiet import OutputLog
from edgeopt.host.compress.runtime import OptimizationLevel
from edgeopt.host.compress.sweep import SweepRow
from edgeopt.host.report.table import table
from edgeopt.proto.plan import Precision

__all__ = [
    "build_request",
    "cache_clear",
    "cache_cmd",
    "cache_ls",
    "compress_cmd",
    "compression_options",
    "report_json",
    "weights_summary",
]


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def _facts_json(f: ModelFacts) -> dict[str, Any]:
    return {**asdict(f), "sparsity": f.sparsity}


def report_json(r: CompressionReport) -> dict[str, Any]:
    """A report as JSON-ready data."""
    return {
        "input": str(r.input),
        "precision": r.precision,
        "output": str(r.output) if r.output else None,
        "artifact": str(r.artifact),
        "cached": r.cached,
        "seconds": round(r.seconds, 3),
        "before": _facts_json(r.before),
        "after": _facts_json(r.after),
        "size_ratio": r.after.size_bytes / r.before.size_bytes,
        "steps": [
            {"pass": s.name, "config": s.config, "seconds": round(s.seconds, 3), "cached": s.cached}
            for s in r.steps
        ],
        "validation": asdict(r.validation) if r.validation else None,
        "weights": {
            "summary": weights_summary(r),
            "quantized_share": r.weights_after.quantized_share,
            "float16_share": r.weights_after.share("float16"),
            "elements": dict(r.weights_after.elements),
            "kept_float": r.weights_after.kept_float_compute(),
        },
        "notes": list(r.notes),
    }


def weights_summary(r: CompressionReport) -> str:
    """The census line that fits the precision (fp16 counts float16 weights)."""
    if r.precision == "fp16":
        return r.weights_after.summary(("float16",))
    return r.weights_after.summary()


def _report_text(r: CompressionReport) -> str:
    b, a = r.before, r.after
    lines = [
        f"{r.input} -> {r.precision}",
        f"  size        {_mib(b.size_bytes)} -> {_mib(a.size_bytes)} "
        f"({a.size_bytes / b.size_bytes:.0%} of the input)",
        f"  parameters  {b.parameters:,} -> {a.parameters:,}",
    ]
    if b.macs is not None:
        after = f"{a.macs:,}" if a.macs is not None else "n/a (quantized ops)"
        lines.append(f"  MACs        {b.macs:,} -> {after} (batch 1)")
    lines.append(f"  sparsity    {b.sparsity:.1%} -> {a.sparsity:.1%}")
    if r.precision != "fp32":
        lines.append(f"  weights     {weights_summary(r)}")
    for layer, share in sorted(a.layer_sparsity.items()):
        lines.append(f"    {layer:<30} {share:.1%} zeros")
    v = r.validation
    if v is not None:
        lines.append(
            f"  vs fp32     {v.similarity} {v.cosine:.4f}, max |err| {v.max_abs_error:.4g}, "
            f"mean |err| {v.mean_abs_error:.4g} on {v.samples} samples"
        )
        if v.top1_agreement is not None and v.similarity == "cosine":
            lines.append(f"  top-1       agreement {v.top1_agreement:.2%}")
        if v.accuracy is not None and v.reference_accuracy is not None:
            lines.append(
                f"  accuracy    {v.reference_accuracy:.2%} -> {v.accuracy:.2%} "
                f"(drop {(v.reference_accuracy - v.accuracy) * 100:.2f} pt)"
            )
    lines.extend(f"  note        {note}" for note in r.notes)
    how = "no pass needed" if not r.steps else "from the cache" if r.cached else "compressed"
    lines.append(f"  time        {r.seconds:.2f} s ({how})")
    lines.append(f"  artifact    {r.artifact}")
    if r.output:
        lines.append(f"  written     {r.output}")
    return "\n".join(lines)


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(x) for x in text.replace("x", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"want integers like 1,3,224,224, got {text!r}") from None
    if not shape or min(shape) < 1:
        raise click.BadParameter(f"want positive integers like 1,3,224,224, got {text!r}")
    return shape


_COMPRESSION_OPTIONS = [
    click.option(
        "--precision", type=click.Choice(PRECISIONS), default="int8-dynamic", show_default=True
    ),
    click.option(
        "--calibration",
        type=click.Path(path_type=Path, dir_okay=False),
        help=".npz of representative inputs (int8-static)",
    ),
    click.option(
        "--calibration-method",
        type=click.Choice(["minmax", "percentile", "entropy"]),
        default="minmax",
        show_default=True,
    ),
    click.option(
        "--activation-type",
        type=click.Choice(["uint8", "int8"]),
        default="uint8",
        show_default=True,
        help="int8-static activations (uint8 is what ONNX Runtime's x86 kernels are fast at)",
    ),
    click.option(
        "--per-channel/--per-tensor",
        default=True,
        show_default=True,
        help="int8 weight scales per output channel or per tensor",
    ),
    click.option("--block-size", type=int, default=32, show_default=True, help="int4 block size"),
    click.option(
        "--optimize",
        type=click.Choice(["basic", "extended", "layout"]),
        help="save ONNX Runtime's optimized graph first",
    ),
    click.option(
        "--validate",
        "validation",
        type=click.Path(path_type=Path, dir_okay=False),
        help=".npz of held-out inputs (and optional labels) to compare with fp32",
    ),
    click.option(
        "--max-accuracy-drop",
        type=float,
        help="gate: largest allowed accuracy drop as a fraction (0.01 = 1 pt)",
    ),
    click.option("--min-cosine", type=float, help="gate: smallest allowed cosine vs fp32"),
    click.option(
        "--target-ort",
        metavar="VERSION",
        help="the board's ONNX Runtime (e.g. 1.16): lower IR/opset so it loads there",
    ),
    click.option(
        "--example",
        type=click.Path(path_type=Path, dir_okay=False),
        help=".npz of example inputs for exporting a PyTorch model",
    ),
    click.option(
        "--input-shape",
        help="shape of a single input, e.g. 1,3,224,224 (export; shapes of an ONNX model)",
    ),
    click.option(
        "--prune",
        type=float,
        metavar="RATIO",
        help="prune this share of weights (channels with --structured) before export",
    ),
    click.option("--structured", is_flag=True, help="remove whole channels/neurons"),
    click.option(
        "--importance",
        type=click.Choice(["l1", "l2", "taylor"]),
        default="l1",
        show_default=True,
        help="how structured pruning ranks channels",
    ),
    click.option(
        "--finetune",
        type=click.Path(path_type=Path, dir_okay=False),
        help="labelled .npz to fine-tune on after pruning",
    ),
    click.option(
        "--keep-float",
        metavar="NODE,...",
        help="leave nodes float in an fp16/int8 model: names (inside If/Loop bodies their path, "
        "If_0/then_branch/Conv_3), N (the N that hurt most alone), or auto (the fewest that "
        "pass the gate)",
    ),
    click.option("--epochs", type=int, default=3, show_default=True, help="fine-tuning epochs"),
    click.option(
        "--lr",
        type=float,
        default=1e-3,
        show_default=True,
        help="fine-tuning learning rate (transformers want ~5e-5 to 2e-4)",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def compression_options(command: F) -> F:
    """The options that say how to compress, shared by `compress` and `deploy`."""
    for option in reversed(_COMPRESSION_OPTIONS):
        command = option(command)
    return command


def _keep_float(text: str) -> dict[str, Any]:
    """--keep-float: node names, a count N (the top N of the ranking) or `auto`."""
    value = text.strip()
    if value == "auto" or value.isdigit():
        return {"keep_float_search": value}
    return {"keep_float": tuple(n.strip() for n in value.split(",") if n.strip())}


def build_request(model: str, output: Path | None = None, **o: Any) -> CompressRequest:
    """A `CompressRequest` from the values of `compression_options`."""
    if (o["max_accuracy_drop"] is not None or o["min_cosine"] is not None) and o[
        "validation"
    ] is None:
        raise click.UsageError("an accuracy gate needs --validate DATA.npz")
    return CompressRequest(
        model=Path(model) if Path(model).exists() else model,
        precision=cast(Precision, o["precision"]),  # click.Choice checked these
        output=output,
        calibration=o["calibration"],
        calibration_method=cast(CalibrationMethodName, o["calibration_method"]),
        per_channel=o["per_channel"],
        activations=cast(Literal["uint8", "int8"], o["activation_type"]),
        int4_block_size=o["block_size"],
        optimize=cast(OptimizationLevel | None, o["optimize"]),
        validation=o["validation"],
        gate=Gate(max_accuracy_drop=o["max_accuracy_drop"], min_cosine=o["min_cosine"]),
        **_keep_float(o.get("keep_float") or ""),
        target_ort=o["target_ort"],
        example=o["example"],
        input_shape=_shape(o["input_shape"]),
        prune=o["prune"],
        structured=o["structured"],
        importance=cast(Importance, o["importance"]),
        finetune=o["finetune"],
        epochs=o["epochs"],
        lr=o["lr"],
    )


@click.command("compress")
@click.argument("model")
@compression_options
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="where to write the artifact (default: keep it in the cache)",
)
@click.option("--sweep", "do_sweep", is_flag=True, help="every precision, one table")
@click.option(
    "--threads",
    default="1",
    show_default=True,
    metavar="N[,N...]",
    help="with --sweep: intra-op thread counts to time each variant with on this host "
    "(0 = no timing)",
)
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="let ONNX Runtime's and onnx's own output through (it goes to the log file otherwise)",
)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def compress_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    output: Path | None,
    do_sweep: bool,
    threads: str,
    verbose: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Compress MODEL to a precision, check what it costs, and write it.

    MODEL is an ONNX file, a PyTorch file (.pt2 ExportedProgram, TorchScript), or a factory
    `package.module:function` returning a torch.nn.Module (with --example or --input-shape).

    With a gate (--max-accuracy-drop, --min-cosine) and --validate, a variant that loses too
    much is refused: exit status 1, a message naming the metric and the shortfall, no file.
    """
    request = build_request(model, output, **options)
    log = OutputLog(passthrough=verbose)
    if request.keep_float_search and not do_sweep:
        found = sensitivity.search(request, request.keep_float_search, log=log)
        text = _report_text(found.report) + "\n" + "\n".join(_mixed_lines(found))
        click.echo(json.dumps({**report_json(found.report), "keep_float": _mixed_json(found)},
                              indent=2) if as_json else text)  # fmt: skip
        return
    if not do_sweep:
        report = compress(request, log=log)
        click.echo(json.dumps(report_json(report), indent=2) if as_json else _report_text(report))
        return
    if output is not None:
        raise click.UsageError("--sweep keeps its variants in the cache; drop -o")
    rows = sweep(request, log=log, threads=_threads(threads))
    if as_json:
        click.echo(json.dumps([
            {"precision": r.precision, "kept_float": None if r.kept is None else list(r.kept),
             "status": r.status, "rejected": r.rejected,
             "host_latency_ms": {t: h.median_ms for t, h in r.host_latency.items()},
             "host_ratio_vs_fp32": r.host_ratio,
             "report": report_json(r.report) if r.report else None}
            for r in rows
        ], indent=2))  # fmt: skip
    else:
        click.echo(_sweep_table(rows, _threads(threads)))
        click.echo(f"host: {host_cpu()}; latency is this host's, not a board's")
    if all(r.status != "ok" or r.precision == "fp32" for r in rows):
        ctx.exit(1)


def _mixed_lines(found: sensitivity.MixedResult) -> list[str]:
    """What the search kept float and what each node cost alone."""
    r = found.ranking
    if not r.nodes:
        return [f"  keep float  none: the full variant meets the gate (nothing ranked; "
                f"{found.seconds:.0f} s)"]  # fmt: skip
    cost = {n.node: n.output_sqnr for n in r.nodes}
    kept = ", ".join(f"{name} ({cost[name]:.1f} dB alone)" for name in found.kept[:10])
    more = f" and {len(found.kept) - 10} more" if len(found.kept) > 10 else ""
    share = r.macs_share(len(found.kept))
    work = f" ({share:.0%} of the multiply-adds)" if math.isfinite(share) else ""
    lines = [
        f"  keep float  {len(found.kept)} of {len(r.nodes)} converted nodes{work}: "
        f"{kept or 'none'}{more}",
        f"  search      {found.seconds:.0f} s, {found.probes} variants made; the full variant's "
        f"output SQNR {r.output_sqnr:.1f} dB (a node's figure: the output's SQNR with it alone "
        "converted)",
        *(f"  bisection   by {b.order}: "
          + (f"{b.kept} nodes pass" if b.kept else f"none of 1..{b.searched} passes")
          + f" ({b.probes} variants)" for b in found.bisections),
    ]  # fmt: skip
    if r.thin:
        lines.append(f"  note        the ranking rests on {r.samples} sample: thin; give more data")
    return lines


def _mixed_json(found: sensitivity.MixedResult) -> dict[str, Any]:
    return {
        "kept": list(found.kept), "probes": found.probes, "seconds": found.seconds,
        "output_sqnr": found.ranking.output_sqnr, "samples": found.ranking.samples,
        "macs_share": found.ranking.macs_share(len(found.kept)),
        "bisections": [asdict(b) for b in found.bisections],
        "ranking": [{"node": n.node, "op_type": n.op_type, "output_sqnr": n.output_sqnr,
                     "macs": n.macs} for n in found.ranking.nodes],
    }  # fmt: skip


def _threads(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise click.BadParameter(f"want thread counts like 1,2, got {text!r}") from None
    if any(c < 0 for c in counts):
        raise click.BadParameter(f"thread counts cannot be negative, got {text!r}")
    return tuple(c for c in counts if c > 0)


def _sweep_table(rows: list[SweepRow], threads: tuple[int, ...]) -> str:
    body = []
    for row in rows:
        r = row.report
        timing = [
            f"{row.host_latency[t].median_ms:.3g} ms ({row.host_ratio[t]:.2f}x)"
            if t in row.host_latency and t in row.host_ratio
            else ""
            for t in threads
        ]
        if r is None:
            body.append([row.label, "", "", "", "", "", *timing, f"{row.status}: {row.rejected}"])
            continue
        v = r.validation
        share = (
            r.weights_after.share("float16")
            if r.precision == "fp16"
            else r.weights_after.quantized_share
        )
        body.append([
            row.label,
            _mib(r.after.size_bytes),
            f"{r.after.size_bytes / r.before.size_bytes:.0%}",
            "" if r.precision == "fp32" else f"{share:.0%}",
            f"{v.cosine:.4f}" if v else "",
            f"{v.top1_agreement:.2%}" if v and v.top1_agreement is not None else "",
            *timing,
            f"rejected: {row.rejected}" if row.rejected else "ok",
        ])  # fmt: skip
    headers = ["PRECISION", "SIZE", "OF FP32", "WEIGHTS CONVERTED", "COSINE", "TOP-1"]
    headers += [f"HOST {t}T" for t in threads]
    return table([*headers, "VERDICT"], body)


@click.group("cache")
def cache_cmd() -> None:
    """The compressed-artifact cache."""


@cache_cmd.command("ls")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
def cache_ls(as_json: bool) -> None:
    """List cached artifacts."""
    cache = ArtifactCache()
    entries = list(cache.entries())
    if as_json:
        click.echo(json.dumps([
            {"key": e.key, "path": str(e.path), "size_bytes": e.size_bytes,
             "created": e.created, **e.meta}
            for e in entries
        ], indent=2))  # fmt: skip
        return
    click.echo(f"cache: {cache.root}")
    click.echo(table(
        ["KEY", "PASS", "SIZE", "CONFIG"],
        [[e.key[:12], str(e.meta.get("pass", "?")), _mib(e.size_bytes),
          json.dumps(e.meta.get("config", {}))] for e in entries],
    ))  # fmt: skip


@cache_cmd.command("clear")
def cache_clear() -> None:
    """Remove every cached artifact."""
    cache = ArtifactCache()
    count, size = cache.clear()
    click.echo(f"removed {count} artifacts ({_mib(size)}) from {cache.root}")
