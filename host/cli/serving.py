"""What the boards serve: list it, run it, roll it back, remove it.

edgeopt models --device pi4 [--json]
edgeopt infer NAME --device pi4 --input x.npz -o y.npz
edgeopt rollback NAME --device pi4
edgeopt remove NAME[@VERSION] --device pi4 [--force]
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from edgeopt.host.cli.common import Session, device_options, mib, selection
from edgeopt.host.cli.output import echo_json
from edgeopt.host.cli.publish import read_views, registry_options, registry_rollback
from edgeopt.host.compress.data import read_npz
from edgeopt.host.config.inventory import Device
from edgeopt.host.report import outputs as outputs_report
from edgeopt.host.report.table import table
from edgeopt.host.transport.client import AgentClient
from edgeopt.host.transport.fanout import on_agents
from edgeopt.host.transport.wire import as_record

__all__ = ["COMMANDS", "infer_cmd", "models_cmd", "remove_cmd", "rollback_cmd"]

T = TypeVar("T")


def _each(
    devices: list[Device],
    session: Session,
    call: Callable[[AgentClient], Awaitable[T]],
    parallel: int = 16,
) -> list[tuple[Device, T | None, str]]:
    """`call` on every device through the fan-out; an error is that device's row, not the end."""
    outcomes = asyncio.run(on_agents(devices, call, session.client, parallel=parallel))
    return [(o.device, o.value, o.reason) for o in outcomes]


@click.command("models")
@device_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def models_cmd(
    ctx: click.Context, selectors: tuple[str, ...], whole_fleet: bool, as_json: bool
) -> None:
    """The models on each device: names, versions, digests, the active one, sizes, memory."""
    session: Session = ctx.obj
    devices, _ = selection(session, selectors, whole_fleet)
    answers = _each(devices, session, lambda c: c.list_models())
    if as_json:
        echo_json([
            {"device": d.name, "error": error or None,
             "models": as_record(listing, every_field=False)
             if listing else None}
            for d, listing, error in answers
        ])  # fmt: skip
    else:
        rows = []
        for device, listing, error in answers:
            if listing is None:
                rows.append([device.name, "", "", "", "", "", "", error])
                continue
            for m in listing.models:
                active = next((v for v in m.versions if v.active), None)
                hook = ""
                if m.HasField("hook"):
                    hook = (
                        f"hook for {m.hook.version} failed: {m.hook.error}" if not m.hook.ok else ""
                    )
                rows.append([
                    device.name, m.name, m.active_version or "-",
                    ",".join(v.version for v in m.versions),
                    active.sha256[:12] if active else "", mib(active.size) if active else "",
                    mib(m.memory_bytes) if m.loaded else "not loaded", hook[:120],
                ])  # fmt: skip
            if not listing.models:
                rows.append([device.name, "(none)", "", "", "", "", "", ""])
        headers = ["DEVICE", "NAME", "ACTIVE", "VERSIONS", "DIGEST", "SIZE", "MEMORY", "ERROR"]
        click.echo(table(headers, rows))
    if any(error for _, _, error in answers):
        ctx.exit(1)


@click.command("infer")
@click.argument("name")
@click.option("--device", "-d", "selector", required=True, help="one device")
@click.option(
    "--input",
    "input_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    required=True,
    help=".npz of the model's inputs by name, samples along the first axis (a model with a "
    "fixed batch runs once per batch, the outputs joined)",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz for the output tensors; sequences and maps (ZipMap) go to the same name .json",
)
@click.option("--version", "version_label", default="", help="a version (default: the active)")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def infer_cmd(  # noqa: PLR0917  (click passes each option by name)
    session: Session,
    name: str,
    selector: str,
    input_path: Path,
    output: Path | None,
    version_label: str,
    as_json: bool,
) -> None:
    """Run NAME on a board on the given inputs; print (and save) the outputs."""
    devices = session.reach(session.inventory().select([selector]))
    if len(devices) != 1:
        raise click.UsageError(
            f"infer runs on one device; {selector!r} selects {len(devices)}: "
            + ", ".join(d.name for d in devices)
        )
    # Every member's header is checked before numpy allocates what it declares; a DataError is
    # one line, through the root group.
    feed = read_npz(input_path, "input")

    async def call(client: AgentClient) -> Any:
        return await client.infer_batches(name, feed, version_label, timeout=max(60.0,
                                  session.client.deadline))  # fmt: skip

    ((device, answer, error),) = _each(devices, session, call)
    if answer is None:
        raise click.ClickException(error)
    outputs, reply = answer
    written = outputs_report.save(output, outputs) if output is not None else []
    if as_json:
        echo_json({
            "device": device.name, "name": name, "version": reply.version,
            "latency_ms": reply.latency_ms,
            "output_file": str(written[0]) if written else None,
            "output_files": [str(w) for w in written],
            "outputs": {k: outputs_report.as_json(v) for k, v in outputs.items()},
        })  # fmt: skip
        return
    click.echo(f"{device.name}: {name} {reply.version} in {reply.latency_ms:.2f} ms")
    for key, value in outputs.items():
        click.echo(f"  {key}: {outputs_report.summary(value)}")
    if written:
        click.echo(f"  written {', '.join(str(w) for w in written)}")


@click.command("rollback")
@click.argument("name")
@device_options
@registry_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def rollback_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    name: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    registry: str | None,
    registry_credentials: Path | None,
    registry_ca: Path | None,
    as_json: bool,
) -> None:
    """Make the previously active version of NAME active again on each device.

    With --registry (boards in pull mode), each device's desired state is pointed back to the
    artifact it named before; the boards follow at their next poll.
    """
    session: Session = ctx.obj
    if registry is not None:
        fleet, views = read_views(session, selectors, whole_fleet, registry,
                                  registry_credentials, registry_ca)  # fmt: skip
        registry_rollback(ctx, name, [v.device for v in views], fleet, as_json)
        return
    devices, _ = selection(session, selectors, whole_fleet)
    answers = _each(devices, session, lambda c: c.rollback(name, timeout=60.0))
    rows = [
        [d.name, a.previous_version, a.version, ""] if a else [d.name, "", "", error]
        for d, a, error in answers
    ]
    if as_json:
        echo_json([dict(zip(["device", "from", "to", "error"], r, strict=True)) for r in rows])
    else:
        click.echo(table(["DEVICE", "FROM", "TO", "ERROR"], rows))
    if any(error for _, _, error in answers):
        ctx.exit(1)


@click.command("remove")
@click.argument("target", metavar="NAME[@VERSION]")
@device_options
@click.option("--force", is_flag=True, help="also remove the active version (it stops serving)")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def remove_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    target: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Remove a version (or every version) of a model; the active one only with --force."""
    session: Session = ctx.obj
    name, _, version = target.partition("@")
    devices, _ = selection(session, selectors, whole_fleet)
    answers = _each(devices, session, lambda c: c.delete(name, version, force))
    rows = [
        [d.name, ",".join(a.versions_removed), mib(a.bytes_freed), ""]
        if a else [d.name, "", "", error]
        for d, a, error in answers
    ]  # fmt: skip
    if as_json:
        echo_json([dict(zip(["device", "removed", "freed", "error"], r, strict=True))
                   for r in rows])  # fmt: skip
    else:
        click.echo(table(["DEVICE", "REMOVED", "FREED", "ERROR"], rows))
    if any(error for _, _, error in answers):
        ctx.exit(1)


COMMANDS = (models_cmd, infer_cmd, rollback_cmd, remove_cmd)
