"""`edgeopt deploy`, the deployments it recorded, and the tunings it remembers.

edgeopt deploy model.onnx --device pi4 --precision int8-static --calibration calib.npz
edgeopt deploy model.onnx --device shelf --parallel 8 --canary 1
edgeopt deployments [--json]
edgeopt tune ls [--json]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from edgeopt.host.cli.common import Session, device_options, mib, selection
from edgeopt.host.cli.compress import build_request, compression_options
from edgeopt.host.cli.output import echo_json
from edgeopt.host.planning.plan import DevicePlan
from edgeopt.host.report.table import table
from edgeopt.host.store.state import State
from edgeopt.host.workflows.deploy import Deployer, DeployReport, DeviceResult
from edgeopt.host.workflows.plans import DeployOptions, TuneSettings, traits_of

__all__ = [
    "COMMANDS",
    "LineProgress",
    "LiveProgress",
    "deploy_cmd",
    "deployments_cmd",
    "tune_cmd",
    "tune_ls",
]

T = TypeVar("T")


class LineProgress:
    """Phase changes as lines on stderr (a log file or CI)."""

    def phase(self, device: str, phase: str) -> None:
        """A device entered a phase."""
        click.echo(f"{device}: {phase}", err=True)

    def sent(self, device: str, done: int, total: int) -> None:
        """Bytes pushed (only the end is worth a line here)."""
        if done == total:
            click.echo(f"{device}: pushed {mib(total)}", err=True)

    def finished(self, result: DeviceResult) -> None:
        """A device is done."""
        tail = f": {result.error}" if result.error else ""
        click.echo(f"{result.device}: {result.outcome}{tail}", err=True)


class LiveProgress(LineProgress):
    """A live table on a terminal: one row per device, its phase and bytes (rich)."""

    def __init__(self, devices: Sequence[str]) -> None:
        from rich.console import Console  # noqa: PLC0415
        from rich.live import Live  # noqa: PLC0415

        self.rows: dict[str, list[str]] = {d: ["waiting", ""] for d in devices}
        self.live = Live(console=Console(stderr=True), refresh_per_second=8, transient=True)

    def _table(self) -> Any:
        from rich.table import Table  # noqa: PLC0415

        grid = Table("device", "phase", "bytes", box=None)
        for device, (phase, sent) in self.rows.items():
            grid.add_row(device, phase, sent)
        return grid

    def phase(self, device: str, phase: str) -> None:
        """A device entered a phase."""
        self.rows[device][0] = phase
        self.live.update(self._table())

    def sent(self, device: str, done: int, total: int) -> None:
        """Bytes pushed so far."""
        self.rows[device][1] = f"{mib(done)} / {mib(total)}"
        self.live.update(self._table())

    def finished(self, result: DeviceResult) -> None:
        """A device is done."""
        self.rows[result.device][0] = result.outcome
        self.live.update(self._table())


def _result_json(r: DeviceResult) -> dict[str, Any]:
    return {
        "device": r.device, "outcome": r.outcome, "version": r.version, "sha256": r.sha256,
        "plan": r.plan.record() if r.plan else {}, "bytes_sent": r.bytes_sent,
        "already_present": r.already_present,
        "previous_version": r.previous_version, "canary": r.canary, "error": r.error or None,
        "phases": {k: round(v, 3) for k, v in r.phases.items()}, "tuning": r.tuning,
    }  # fmt: skip


def _report_text(report: DeployReport, name: str, state: State) -> str:
    rows = []
    for r in report.results:
        phases = " ".join(f"{k} {v:.1f}s" for k, v in r.phases.items())
        sent = "0 (had it)" if r.already_present else mib(r.bytes_sent) if r.bytes_sent else ""
        rows.append([
            r.device, r.outcome + (" (canary)" if r.canary else ""), r.version, r.sha256[:12],
            r.plan.precision if r.plan else "", str(r.plan.threads) if r.plan else "",
            sent, phases, r.error,
        ])  # fmt: skip
    headers = ["DEVICE", "OUTCOME", "VERSION", "DIGEST", "PRECISION", "THREADS", "SENT",
               "PHASES", "ERROR"]  # fmt: skip
    ok = sum(r.outcome == "ok" for r in report.results)
    lines = [
        table(headers, rows),
        f"{name}: {ok} of {len(report.results)} devices ok ({report.outcome}); "
        f"{report.compressions} compression(s) run, {len(report.artifacts)} distinct artifact(s); "
        f"deployment #{report.deployment} recorded in {state.shown}",
    ]
    return "\n".join(lines)


@click.command("deploy")
@click.argument("model")
@device_options
@compression_options
@click.option("--name", help="the model's name on the boards (default: the file's stem)")
@click.option("--version", "version_label", default="", help="version label (default: v1, v2...)")
@click.option("--threads", type=int, help="intra-op threads (default: the board's cores)")
@click.option("--provider", help="execution provider (default: CPUExecutionProvider)")
@click.option(
    "--graph-optimization",
    type=click.Choice(["disable", "basic", "extended", "all"]),
    default="all",
    show_default=True,
    help="ONNX Runtime graph optimization on the board",
)
@click.option("--parallel", type=int, default=8, show_default=True, help="boards at once")
@click.option("--canary", type=int, default=0, help="boards that go first; halt if one fails")
@click.option(
    "--smoke",
    type=click.Path(path_type=Path, dir_okay=False),
    help=".npz whose first sample is the smoke input (default: --validate, else --calibration)",
)
@click.option("--tune", is_flag=True, help="measure the planner's candidates on each board")
@click.option("--tune-budget", type=float, default=60.0, show_default=True,
              help="seconds of measuring per board")  # fmt: skip
@click.option("--tune-top", type=int, default=4, show_default=True, help="candidates at most")
@click.option("--retune", is_flag=True, help="measure again, even for a kind of board tuned before")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def deploy_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    name: str | None,
    version_label: str,
    threads: int | None,
    provider: str | None,
    graph_optimization: str,
    parallel: int,
    canary: int,
    smoke: Path | None,
    tune: bool,
    tune_budget: float,
    tune_top: int,
    retune: bool,
    as_json: bool,
    **compression: Any,
) -> None:
    """Compress MODEL for each selected board, push it, activate it, smoke-test it.

    Without --precision the planner chooses precision, threads and provider for each board
    from what it reports (see `edgeopt plan`). Takes the compression options of `edgeopt
    compress`. One compression per distinct plan;
    pushes send only what a board lacks and resume when cut; a board that fails never blocks
    the others. Exit status 0 only when every selected device succeeded.
    """
    session: Session = ctx.obj
    request = build_request(model, None, **compression)
    if request.keep_float_search:
        raise click.UsageError(
            "--keep-float N|auto searches with `edgeopt compress`; here, name the nodes it found"
        )
    devices, chosen = selection(session, selectors, whole_fleet)
    planned = ctx.get_parameter_source("precision") == click.core.ParameterSource.DEFAULT
    if (tune or retune) and not planned:
        raise click.UsageError("--tune chooses the precision itself: drop --precision")
    stem = (
        model.rpartition(":")[2]
        if ":" in model and not Path(model).exists()  # a package.module:factory reference
        else Path(model).stem
    )
    options = DeployOptions(
        request=request, name=name or stem, version=version_label, threads=threads,
        provider=provider, graph_optimization="" if graph_optimization == "all"
        else graph_optimization, parallel=parallel, canary=canary, smoke=smoke,
        traits=traits_of(request) if planned else None,
        tune=TuneSettings(tune_budget, tune_top, retune) if tune or retune else None,
    )  # fmt: skip
    progress = (
        LiveProgress([d.name for d in devices]) if sys.stderr.isatty() and not as_json
        else LineProgress()
    )  # fmt: skip
    with State(session.state) as state:
        deployer = Deployer(devices, options, state, config=session.client, progress=progress)
        if isinstance(progress, LiveProgress):
            with progress.live:
                report = deployer.run(chosen)
        else:
            report = deployer.run(chosen)
        if as_json:
            echo_json({
                "deployment": report.deployment, "name": options.name, "outcome": report.outcome,
                "compressions": report.compressions, "artifacts": len(report.artifacts),
                "devices": [_result_json(r) for r in report.results],
            })  # fmt: skip
        else:
            click.echo(_report_text(report, options.name, state))
    if not report.ok:
        ctx.exit(1)


@click.command("deployments")
@click.option("--limit", type=int, default=20, show_default=True, help="how many, newest first")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.option(
    "--registry",
    envvar="EDGEOPT_REGISTRY",
    metavar="oci://HOST:PORT/REPO",
    help="show the pull-mode boards' desired vs reported state from this registry",
)
@click.option(
    "--registry-credentials",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="EDGEOPT_REGISTRY_CREDENTIALS",
    help="the registry login (docker config.json)",
)
@click.option(
    "--registry-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    help="CA (PEM) for the registry's TLS",
)
@click.option(
    "--device",
    "-d",
    "selectors",
    multiple=True,
    metavar="X",
    help="with --registry: these devices only (default: every one it knows)",
)
@click.option("--watch", is_flag=True, help="with --registry: refresh until all converged")
@click.option("--every", type=float, default=2.0, show_default=True, help="seconds per refresh")
@click.option(
    "--timeout",
    type=float,
    default=600.0,
    show_default=True,
    help="with --watch: give up after this many seconds",
)
@click.pass_context
def deployments_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    limit: int,
    as_json: bool,
    registry: str | None,
    registry_credentials: Path | None,
    registry_ca: Path | None,
    selectors: tuple[str, ...],
    watch: bool,
    every: float,
    timeout: float,
) -> None:
    """Deployment history from the host's state database.

    With --registry: where each pull-mode board stands (desired vs reported, converged or
    not, errors); --watch refreshes until every board converged (exit 0), or one failed or
    --timeout passed (exit 1).
    """
    session: Session = ctx.obj
    if registry is not None:
        from edgeopt.host.cli import publish  # noqa: PLC0415  (it imports this module)

        fleet, views = publish.read_views(session, selectors, False, registry,
                                          registry_credentials, registry_ca)  # fmt: skip
        names = [v.device for v in views]
        if watch and not as_json:
            views = publish.watch(lambda: [fleet.view(n) for n in names], every, timeout)
        elif as_json:
            echo_json([publish.view_json(v) for v in views])
        else:
            click.echo(publish.registry_table(views))
        fleet.close()
        if not all(v.state == "converged" for v in views):
            ctx.exit(1)
        return
    if watch or selectors:
        raise click.UsageError("--watch and --device follow boards in a registry: give --registry")
    with State(session.state) as state:
        history = state.deployments(limit)
    if as_json:
        echo_json(history)
        return
    rows = []
    for d in history:
        ok = sum(x["outcome"] == "ok" for x in d["devices"])
        rows.append([
            str(d["id"]), _when(d["started"]), d["name"], d["model"], d["outcome"],
            f"{ok}/{len(d['devices'])}", str(d["options"].get("precision", "")),
        ])  # fmt: skip
    click.echo(table(["ID", "STARTED", "NAME", "MODEL", "OUTCOME", "OK", "PRECISION"], rows))


def _when(epoch: float) -> str:
    import datetime  # noqa: PLC0415

    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


@click.group("tune")
def tune_cmd() -> None:
    """Remembered tuning results (see `deploy --tune`)."""


@tune_cmd.command("ls")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def tune_ls(session: Session, as_json: bool) -> None:
    """Every remembered answer: kind of board, ONNX Runtime, model, constraints, the winner."""
    with State(session.state) as state:
        rows = state.tunings()
    if as_json:
        echo_json(rows)
        return
    click.echo(table(
        ["WHEN", "DEVICE", "FINGERPRINT", "ORT", "MODEL", "BEST", "THREADS", "MEASURED"],
        [[_when(r["taken"]), r["device"], r["fingerprint"], r["onnxruntime_version"],
          r["model_digest"][:12], DevicePlan.from_record(r["best"]).label,
          str(r["best"]["intra_op_threads"]),
          f"{sum(1 for t in r['trials'] if t['passed'])} in {r['seconds']:.0f} s"]
         for r in rows],
    ))  # fmt: skip


COMMANDS = (deploy_cmd, deployments_cmd, tune_cmd)
