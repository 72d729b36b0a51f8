r"""`edgeopt compress` and `edgeopt cache`: options in, `edgeopt.host.compress` calls out.

edgeopt compress model.onnx --precision int8-dynamic -o model.int8.onnx
edgeopt compress model.onnx --precision int8-static --calibration calib.npz \\
        --validate val.npz --max-accuracy-drop 0.01 -o out.onnx
edgeopt compress model.onnx --sweep --validate val.npz --json
edgeopt cache ls | edgeopt cache clear
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, cast

import click

from edgeopt.host.compress import (
    PRECISIONS,
    ArtifactCache,
    CompressionReport,
    CompressRequest,
    Gate,
    compress,
    sweep,
)
from edgeopt.host.compress.model import ModelFacts
from edgeopt.host.compress.optimize import OptimizationLevel
from edgeopt.host.compress.prune import Importance
from edgeopt.host.compress.quantize import CalibrationMethodName
from edgeopt.host.compress.workflow import Precision
from edgeopt.host.output import table


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
    }


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
    for layer, share in sorted(a.layer_sparsity.items()):
        lines.append(f"    {layer:<30} {share:.1%} zeros")
    v = r.validation
    if v is not None:
        lines.append(
            f"  vs fp32     cosine {v.cosine:.4f}, max |err| {v.max_abs_error:.4g}, "
            f"mean |err| {v.mean_abs_error:.4g} on {v.samples} samples"
        )
        if v.top1_agreement is not None:
            lines.append(f"  top-1       agreement {v.top1_agreement:.2%}")
        if v.accuracy is not None and v.reference_accuracy is not None:
            lines.append(
                f"  accuracy    {v.reference_accuracy:.2%} -> {v.accuracy:.2%} "
                f"(drop {(v.reference_accuracy - v.accuracy) * 100:.2f} pt)"
            )
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


@click.command("compress")
@click.argument("model")
@click.option(
    "--precision", type=click.Choice(PRECISIONS), default="int8-dynamic", show_default=True
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="where to write the artifact (default: keep it in the cache)",
)
@click.option(
    "--calibration",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz of representative inputs (int8-static)",
)
@click.option(
    "--calibration-method",
    type=click.Choice(["minmax", "percentile", "entropy"]),
    default="minmax",
    show_default=True,
)
@click.option(
    "--activation-type",
    type=click.Choice(["uint8", "int8"]),
    default="uint8",
    show_default=True,
    help="int8-static activations (uint8 is what ONNX Runtime's x86 kernels are fast at)",
)
@click.option(
    "--per-channel/--per-tensor",
    default=True,
    show_default=True,
    help="int8 weight scales per output channel or per tensor",
)
@click.option("--block-size", type=int, default=32, show_default=True, help="int4 block size")
@click.option(
    "--optimize",
    type=click.Choice(["basic", "extended", "layout"]),
    help="save ONNX Runtime's optimized graph first",
)
@click.option(
    "--validate",
    "validation",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz of held-out inputs (and optional labels) to compare with fp32",
)
@click.option(
    "--max-accuracy-drop",
    type=float,
    help="gate: largest allowed accuracy drop as a fraction (0.01 = 1 pt)",
)
@click.option("--min-cosine", type=float, help="gate: smallest allowed cosine vs fp32")
@click.option(
    "--target-ort",
    metavar="VERSION",
    help="the board's ONNX Runtime (e.g. 1.16): lower IR/opset so it loads there",
)
@click.option(
    "--example",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz of example inputs for exporting a PyTorch model",
)
@click.option("--input-shape", help="shape of a single float32 input for export, e.g. 1,3,224,224")
@click.option(
    "--prune",
    type=float,
    metavar="RATIO",
    help="prune this share of weights (channels with --structured) before export",
)
@click.option("--structured", is_flag=True, help="remove whole channels/neurons")
@click.option(
    "--importance",
    type=click.Choice(["l1", "l2", "taylor"]),
    default="l1",
    show_default=True,
    help="how structured pruning ranks channels",
)
@click.option(
    "--finetune",
    type=click.Path(path_type=Path, dir_okay=False),
    help="labelled .npz to fine-tune on after pruning",
)
@click.option("--epochs", type=int, default=3, show_default=True, help="fine-tuning epochs")
@click.option(
    "--lr",
    type=float,
    default=1e-3,
    show_default=True,
    help="fine-tuning learning rate (transformers want ~5e-5 to 2e-4)",
)
@click.option("--sweep", "do_sweep", is_flag=True, help="every precision, one table")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def compress_cmd(  # noqa: PLR0917  (click passes each option positionally)
    ctx: click.Context,
    model: str,
    precision: str,
    output: Path | None,
    calibration: Path | None,
    calibration_method: str,
    activation_type: str,
    per_channel: bool,
    block_size: int,
    optimize: str | None,
    validation: Path | None,
    max_accuracy_drop: float | None,
    min_cosine: float | None,
    target_ort: str | None,
    example: Path | None,
    input_shape: str | None,
    prune: float | None,
    structured: bool,
    importance: str,
    finetune: Path | None,
    epochs: int,
    lr: float,
    do_sweep: bool,
    as_json: bool,
) -> None:
    """Compress MODEL to a precision, check what it costs, and write it.

    MODEL is an ONNX file, a PyTorch file (.pt2 ExportedProgram, TorchScript), or a factory
    `package.module:function` returning a torch.nn.Module (with --example or --input-shape).

    With a gate (--max-accuracy-drop, --min-cosine) and --validate, a variant that loses too
    much is refused: exit status 1, a message naming the metric and the shortfall, no file.
    """
    if (max_accuracy_drop is not None or min_cosine is not None) and validation is None:
        raise click.UsageError("an accuracy gate needs --validate DATA.npz")
    request = CompressRequest(
        model=Path(model) if Path(model).exists() else model,
        precision=cast(Precision, precision),  # click.Choice checked these
        output=output,
        calibration=calibration,
        calibration_method=cast(CalibrationMethodName, calibration_method),
        per_channel=per_channel,
        activations=cast(Literal["uint8", "int8"], activation_type),
        int4_block_size=block_size,
        optimize=cast(OptimizationLevel | None, optimize),
        validation=validation,
        gate=Gate(max_accuracy_drop=max_accuracy_drop, min_cosine=min_cosine),
        target_ort=target_ort,
        example=example,
        input_shape=_shape(input_shape),
        prune=prune,
        structured=structured,
        importance=cast(Importance, importance),
        finetune=finetune,
        epochs=epochs,
        lr=lr,
    )
    if not do_sweep:
        report = compress(request)
        click.echo(json.dumps(report_json(report), indent=2) if as_json else _report_text(report))
        return
    if output is not None:
        raise click.UsageError("--sweep keeps its variants in the cache; drop -o")
    rows = sweep(request)
    if as_json:
        click.echo(json.dumps([
            {"precision": r.precision, "rejected": r.rejected,
             "report": report_json(r.report) if r.report else None}
            for r in rows
        ], indent=2))  # fmt: skip
    else:
        click.echo(_sweep_table(rows))
    if all(r.rejected for r in rows):
        ctx.exit(1)


def _sweep_table(rows: list[Any]) -> str:
    body = []
    for row in rows:
        r = row.report
        if r is None:
            body.append([row.precision, "", "", "", "", "", f"not made: {row.rejected}"])
            continue
        v = r.validation
        body.append([
            row.precision,
            _mib(r.after.size_bytes),
            f"{r.after.size_bytes / r.before.size_bytes:.0%}",
            f"{v.cosine:.4f}" if v else "",
            f"{v.top1_agreement:.2%}" if v and v.top1_agreement is not None else "",
            f"{r.seconds:.2f}s",
            f"rejected: {row.rejected}" if row.rejected else "ok",
        ])  # fmt: skip
    return table(["PRECISION", "SIZE", "OF FP32", "COSINE", "TOP-1", "TIME", "VERDICT"], body)


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
