"""`edgeopt profile`: per-operator time of a model on a board.

edgeopt profile model.onnx --device pi4-kitchen       through the agent (Profile RPC)
edgeopt profile model.onnx --ssh pi@raspberrypi.local  one-shot: the board's Python and ORT
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import click

from edgeopt.host.cli.common import Session
from edgeopt.host.cli.output import echo_json
from edgeopt.host.cli.ssh import open_connection, ssh_options
from edgeopt.host.report import op_profile as profile_report
from edgeopt.host.workflows import op_profile as profile
from edgeopt.host.workflows.samples import first_sample, made_up_feed

__all__ = ["profile_cmd"]


def _shape(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Any:
    if not value:
        return None
    try:
        return tuple(int(v) for v in value.split(","))
    except ValueError as exc:
        raise click.BadParameter("comma-separated integers, e.g. 1,3,224,224") from exc


@click.command("profile")
@click.argument("model", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--device", "-d", help="a device of the inventory (through its agent)")
@click.option("--ssh", "ssh_target", metavar="[USER@]HOST[:PORT]",
              help="one-shot over SSH with the board's own python3 and onnxruntime")  # fmt: skip
@click.option("--python", default="python3", show_default=True,
              help="the board's Python for --ssh")  # fmt: skip
@click.option("--runs", type=int, default=20, show_default=True, help="profiled runs")
@click.option("--warmup", type=int, default=3, show_default=True,
              help="runs before, left out of the figures")  # fmt: skip
@click.option("--threads", type=int, default=0, help="intra-op threads (default: ORT's)")
@click.option("--provider", default="CPUExecutionProvider", show_default=True)
@click.option("--inputs", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help=".npz whose first sample is fed (default: made up)")  # fmt: skip
@click.option("--input-shape", callback=_shape, help="dims of a single input, e.g. 1,3,320,320")
@click.option("--top", type=int, default=15, show_default=True, help="nodes listed")
@click.option("--trace", "trace_path", type=click.Path(path_type=Path, dir_okay=False),
              help="save the Chrome trace JSON (opens in Perfetto)")  # fmt: skip
@click.option("--plot", "plot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="save a PNG bar chart of op types and top nodes")  # fmt: skip
@ssh_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def profile_cmd(  # noqa: PLR0917  (click passes each option by name)
    session: Session,
    model: Path,
    device: str | None,
    ssh_target: str | None,
    python: str,
    runs: int,
    warmup: int,
    threads: int,
    provider: str,
    inputs: Path | None,
    input_shape: tuple[int, ...] | None,
    top: int,
    trace_path: Path | None,
    plot_path: Path | None,
    accept_new_host_key: bool,
    identity: Path | None,
    connect_timeout: float,
    as_json: bool,
) -> None:
    """Where MODEL's time goes on a board, operator by operator."""
    if (device is None) == (ssh_target is None):
        raise click.UsageError("say where: --device NAME (its agent) or --ssh [USER@]HOST")
    feed = first_sample(inputs, model) if inputs else None
    if ssh_target is not None:
        with open_connection(ssh_target, accept_new_host_key, identity, connect_timeout) as conn:
            figures, trace, ort, emulation = profile.over_ssh(
                conn, model, feed or made_up_feed(model, input_shape), runs=runs,
                warmup=warmup, threads=threads, python=python,
            )  # fmt: skip
        where = f"{conn.target} (one-shot, ONNX Runtime {ort})"
    else:
        assert device is not None
        (chosen,) = session.reach([session.inventory().get(device)])
        figures, trace, ort, emulation = asyncio.run(profile.through_agent(
            chosen, session.client, model, threads=threads, provider=provider, runs=runs,
            warmup=warmup, feed=feed, input_shape=input_shape, trace=trace_path is not None,
        ))  # fmt: skip
        where = f"{device} (agent, ONNX Runtime {ort})"
        if emulation:  # qemu's timings, not the board's: every output says so
            where += " EMULATED"
    if trace_path is not None:
        trace_path.write_bytes(trace)
    if plot_path is not None:
        profile_report.plot(figures, plot_path, f"{model.name} on {where}", top)
    if as_json:
        echo_json(
            {
                "where": where,
                "emulation": emulation,
                **figures,
                "trace": str(trace_path) if trace_path else None,
            }
        )
        return
    click.echo(f"{model.name} on {where}: {figures['runs']} profiled runs")
    if emulation:
        click.echo(f"EMULATED: {emulation}; these timings say nothing about real hardware")
    click.echo(profile_report.report(figures, top, provider))
    if trace_path is not None:
        click.echo(f"trace: {trace_path} ({len(trace) / 1024:.0f} KiB; open it in Perfetto)")
