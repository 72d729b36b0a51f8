"""`edgeopt plan`: what the planner would choose for a model on a board, and why.

edgeopt plan model.onnx --device pi4             # from the board's live report (and what
                                                 # tuning measured on boards of its kind)
edgeopt plan model.onnx --profile rk3588 --json  # offline, from device_profiles/ alone
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from edgeopt.host.cli.common import Session
from edgeopt.host.cli.compress import build_request
from edgeopt.host.cli.output import echo_json
from edgeopt.host.errors import ProfileError
from edgeopt.host.planning import planner
from edgeopt.host.planning.experience import Measured
from edgeopt.host.report.table import table
from edgeopt.host.store.state import State
from edgeopt.host.transport import fanout as fleet
from edgeopt.host.workflows.plans import experience, traits_of

__all__ = ["plan_cmd"]


def _plan_json(p: planner.Plan) -> dict[str, Any]:
    return {
        "precision": p.precision, "execution_provider": p.execution_provider,
        "intra_op_threads": p.intra_op_threads, "inter_op_threads": p.inter_op_threads,
        "graph_optimization_level": p.graph_optimization_level,
        "execution_mode": p.execution_mode, "reasons": list(p.reasons), "score": p.score,
    }  # fmt: skip


@click.command("plan")
@click.argument("model")
@click.option("--device", "-d", "device_name", help="a device of the inventory (asked live)")
@click.option("--profile", "profile_name", help="a board profile (offline)")
@click.option(
    "--calibration",
    type=click.Path(path_type=Path, dir_okay=False),
    help="calibration data will be at hand (static int8 becomes possible)",
)
@click.option("--threads", type=int, help="keep this thread count")
@click.option("--provider", help="keep this execution provider")
@click.option("--headroom", type=float, default=0.25, show_default=True,
              help="share of the board's available memory to leave free")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def plan_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    device_name: str | None,
    profile_name: str | None,
    calibration: Path | None,
    threads: int | None,
    provider: str | None,
    headroom: float,
    as_json: bool,
) -> None:
    """The plan for MODEL on a device or a profile: precision, threads, provider, reasons.

    Then the ranked alternatives that `deploy --tune` would measure. Exit status 1 when the
    model fits nowhere in the board's memory.
    """
    session: Session = ctx.obj
    if (device_name is None) == (profile_name is None):
        raise click.UsageError("say --device NAME (live) or --profile NAME (offline), one of them")
    if profile_name is not None:
        known = session.profiles()
        if profile_name not in known:
            raise ProfileError(profile_name, f"no such profile; known: {', '.join(sorted(known))}")
        board = planner.Board.from_profile(known[profile_name])
        learned: tuple[Measured, ...] = ()
    else:
        (device,) = session.reach([session.inventory().get(str(device_name))])
        (report,) = fleet.probe([device], session.client)
        if report.error is not None:
            raise report.error
        assert report.capabilities is not None
        board = planner.Board.from_capabilities(device.name, report.capabilities)
        with State(session.state) as state:  # what tuning measured on boards of this kind
            learned = experience(state, report.capabilities)
    options = {
        "precision": "fp32", "calibration": calibration, "calibration_method": "minmax",
        "per_channel": True, "activation_type": "uint8", "block_size": 32, "optimize": None,
        "validation": None, "max_accuracy_drop": None, "min_cosine": None, "target_ort": None,
        "example": None, "input_shape": None, "prune": None, "structured": False,
        "importance": "l1", "finetune": None, "epochs": 3, "lr": 1e-3,
    }  # fmt: skip
    traits = traits_of(build_request(model, None, **options))
    decision = planner.plan(  # a PlanError is one line, through the root group
        board, traits,
        planner.Constraints(calibration=calibration is not None, provider=provider,
                            threads=threads, memory_headroom=headroom),
        learned,
    )  # fmt: skip
    if as_json:
        echo_json({
            "board": board.name, "model": model, "traits": asdict(traits),
            "chosen": _plan_json(decision.chosen),
            "alternatives": [_plan_json(a) for a in decision.alternatives],
            "refused": decision.refused,
        })  # fmt: skip
    else:
        c = decision.chosen
        click.echo(f"{model} on {board.name}: {c.precision}, {c.intra_op_threads} threads, "
                   f"{c.execution_provider}")  # fmt: skip
        for reason in c.reasons:
            click.echo(f"  - {reason}")
        rows = [[a.precision, str(a.intra_op_threads), a.execution_provider, a.reasons[0]]
                for a in decision.alternatives]  # fmt: skip
        if rows:
            click.echo("alternatives, best first:")
            click.echo(table(["PRECISION", "THREADS", "PROVIDER", "WHY"], rows))
        if decision.refused:
            click.echo(f"refused: {decision.refused}")
    if decision.refused:
        ctx.exit(1)
