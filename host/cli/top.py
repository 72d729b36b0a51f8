"""`edgeopt top`: a live view of how the fleet's models run (see edgeopt.host.workflows.top)."""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import click

from edgeopt.host.cli.common import Session, device_options, selection
from edgeopt.host.cli.output import echo_json
from edgeopt.host.report.table import table
from edgeopt.host.workflows import top

__all__ = ["top_cmd"]


def _board_cells(board: top.Board) -> tuple[str, str]:
    hottest = board.hottest
    temp = f"{hottest:.1f} C" if hottest is not None else "-"
    throttled = ",".join(board.listing.throttled) if board.listing else ""
    return temp, throttled or "-"


def _render(now: top.Snapshot, before: top.Snapshot | None) -> str:
    lines = []
    by_device: dict[str, list[top.ModelRow]] = {}
    for row in top.rows(now, before):
        by_device.setdefault(row.device, []).append(row)
    cells = []
    for name, board in sorted(now.boards.items()):
        if not board.reachable:
            cells.append([name, "no", "", "", "", "", "", "", board.error[:60]])
            continue
        temp, throttled = _board_cells(board)
        found = by_device.get(name) or []
        if not found:
            cells.append([name, "yes", "(none)", "", "", "", "", temp, throttled])
        for row in found:
            rate = f"{row.rate:.1f}/s" if row.rate is not None else "..."
            p50 = f"{row.p50_ms:.2f} ms" if row.p50_ms is not None else "-"
            cells.append([name, "yes", row.model, row.version, rate, p50, str(row.errors), temp,
                          throttled])  # fmt: skip
    reachable = sum(b.reachable for b in now.boards.values())
    lines.append(f"{time.strftime('%H:%M:%S')}  {reachable}/{len(now.boards)} reachable, "
                 f"refreshed in {now.seconds:.2f} s")  # fmt: skip
    lines.append(table(["DEVICE", "UP", "MODEL", "VERSION", "RATE", "P50", "ERRORS", "TEMP",
                        "THROTTLED"], cells))  # fmt: skip
    return "\n".join(lines)


def _json(now: top.Snapshot, before: top.Snapshot, every: float) -> dict[str, Any]:
    rows = top.rows(now, before)
    return {
        "interval_s": every, "refresh_s": round(now.seconds, 4),
        "devices": [{
            "device": name, "reachable": b.reachable, "error": b.error or None,
            "temperatures": {t.zone: t.celsius for t in b.listing.temperatures}
            if b.listing else {},
            "throttled": list(b.listing.throttled) if b.listing else [],
            "models": [{"model": r.model, "version": r.version, "rate": r.rate,
                        "p50_ms": r.p50_ms, "errors": r.errors}
                       for r in rows if r.device == name],
        } for name, b in sorted(now.boards.items())],
    }  # fmt: skip


@click.command("top")
@device_options
@click.option("--every", type=float, default=2.0, show_default=True, help="seconds per refresh")
@click.option("--count", type=int, default=0, help="refreshes, then exit (default: until ^C)")
@click.option("--parallel", type=int, default=64, show_default=True, help="boards asked at once")
@click.option("--json", "as_json", is_flag=True,
              help="once, for scripts: two snapshots --every apart, rates between")  # fmt: skip
@click.pass_context
def top_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    every: float,
    count: int,
    parallel: int,
    as_json: bool,
) -> None:
    """How the selected boards' models run: rate, median latency, errors, temperature, throttling.

    One ListModels per board per refresh; the rates and medians are those of the interval
    between two refreshes. Exit status 1 when a board did not answer (with --json or --count).
    """
    session: Session = ctx.obj
    devices, _ = selection(session, selectors, whole_fleet)

    def snap() -> top.Snapshot:
        return asyncio.run(top.take(devices, session.client, parallel))

    before = snap()
    if as_json:
        time.sleep(every)
        now = snap()
        echo_json(_json(now, before, every))
        if not all(b.reachable for b in now.boards.values()):
            ctx.exit(1)
        return
    shown = 0
    now = before
    view = None
    if sys.stdout.isatty():  # a terminal: one table, redrawn in place (rich)
        from rich.live import Live  # noqa: PLC0415
        from rich.text import Text  # noqa: PLC0415

        view = Live(Text(""), auto_refresh=False)
        view.start()
    try:
        while True:
            text = _render(now, before if now is not before else None)
            if view is not None:
                view.update(Text(text), refresh=True)
            else:
                click.echo(text)
            shown += 1
            if count and shown >= count:
                break
            time.sleep(every)
            before, now = now, snap()
    except KeyboardInterrupt:
        return
    finally:
        if view is not None:
            view.stop()
    if not all(b.reachable for b in now.boards.values()):
        ctx.exit(1)
