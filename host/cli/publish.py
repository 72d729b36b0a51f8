"""Pull mode's commands: `edgeopt publish`, `devices --registry`, `deployments --registry`.

Boards in pull mode are never dialed: these commands talk to the OCI registry only (see
edgeopt.host.workflows.publish and edgeopt.host.transport.registry). Which registry: `--registry`,
else `$EDGEOPT_REGISTRY`, else the `registry` the selected inventory devices share. Which
devices: `--device`/`--fleet` from the inventory, or, for names the inventory does not hold,
the devices the registry knows.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from edgeopt.host.cli.common import Session, device_options
from edgeopt.host.cli.compress import build_request, compression_options
from edgeopt.host.cli.deploy import LineProgress
from edgeopt.host.cli.output import echo_json
from edgeopt.host.config.inventory import Device
from edgeopt.host.errors import EdgeoptError, UnknownDevice
from edgeopt.host.report.table import table
from edgeopt.host.store.state import State
from edgeopt.host.transport.registry import DeviceView, FleetRegistry, registry_for
from edgeopt.host.workflows.plans import DeployOptions, traits_of
from edgeopt.host.workflows.publish import Publisher, PublishOptions, rollback_desired

__all__ = ["publish_cmd", "registry_options", "registry_rollback", "registry_table"]


def registry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--registry, --registry-credentials, --registry-ca."""
    for option in reversed([
        click.option("--registry", envvar="EDGEOPT_REGISTRY", metavar="oci://HOST:PORT/REPO",
                     help="the OCI registry of boards in pull mode ($EDGEOPT_REGISTRY)"),
        click.option("--registry-credentials", type=click.Path(path_type=Path, dir_okay=False),
                     envvar="EDGEOPT_REGISTRY_CREDENTIALS",
                     help="docker config.json (or {username, password} JSON) with the login"),
        click.option("--registry-ca", type=click.Path(path_type=Path, dir_okay=False),
                     help="CA (PEM) the registry's TLS certificate is checked with"),
    ]):  # fmt: skip
        command = option(command)
    return command


def open_registry(
    url: str | None, credentials: Path | None, ca: Path | None, devices: Sequence[Device] = ()
) -> FleetRegistry:
    """The registry the options (or the devices' inventory entries) name."""
    if not url:
        named = {d.registry for d in devices if d.registry}
        if len(named) != 1:
            raise click.UsageError(
                "say which registry: --registry oci://HOST:PORT/REPO (or $EDGEOPT_REGISTRY, or "
                "`registry` on the inventory's devices)"
            )
        url = named.pop()
    return registry_for(url, credentials, ca)


def chosen_devices(
    session: Session, selectors: tuple[str, ...], whole_fleet: bool
) -> list[Device] | None:
    """The inventory's devices for the selection; None when it has none of them (or no file)."""
    if not session.inventory_path.exists():
        return None
    try:
        return session.inventory().select(selectors, fleet=whole_fleet)
    except UnknownDevice:
        return None


def _registry_devices(
    registry: FleetRegistry, selectors: tuple[str, ...], whole_fleet: bool
) -> list[Device]:
    """Devices by name: --fleet is every one the registry knows.

    A name it does not know yet is fine (publish writes its first desired state).
    """
    names = registry.devices() if whole_fleet else list(selectors)
    return [Device(name=n, address="") for n in names]


@click.command("publish")
@click.argument("model")
@device_options
@registry_options
@compression_options
@click.option("--name", help="the model's name on the boards (default: the file's stem)")
@click.option("--version", "version_label", default="",
              help="version label (default: d<deployment id>)")  # fmt: skip
@click.option("--threads", type=int, help="intra-op threads (default: the board's cores)")
@click.option("--provider", help="execution provider (default: CPUExecutionProvider)")
@click.option("--profile", "profile_name",
              help="plan every board as this profile (boards that never reported)")  # fmt: skip
@click.option("--canary", type=int, default=0,
              help="boards that go first; the rest wait for their statuses")  # fmt: skip
@click.option("--canary-wait", type=float, default=600.0, show_default=True,
              help="seconds to wait for the canaries to converge")  # fmt: skip
@click.option("--wait", type=float, default=0.0,
              help="seconds to wait for every board to converge (default: 0, not)")  # fmt: skip
@click.option("--smoke", type=click.Path(path_type=Path, dir_okay=False),
              help=".npz whose first sample is the boards' smoke input")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def publish_cmd(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    model: str,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    registry: str | None,
    registry_credentials: Path | None,
    registry_ca: Path | None,
    name: str | None,
    version_label: str,
    threads: int | None,
    provider: str | None,
    profile_name: str | None,
    canary: int,
    canary_wait: float,
    wait: float,
    smoke: Path | None,
    as_json: bool,
    **compression: Any,
) -> None:
    """Publish MODEL for boards that pull: artifacts and desired states into an OCI registry.

    Plans each board from what it last reported (its status in the registry, the host's
    last snapshot) or --profile; compresses once per distinct plan; uploads each artifact once
    (what the registry has is not sent); writes each board's desired state. Exit status 0 when
    every board's desired state was written (and, with --wait or --canary, it converged).
    """
    session: Session = ctx.obj
    if not selectors and not whole_fleet:
        raise click.UsageError("say which devices: --device NAME|GROUP|TAG|PROFILE, or --fleet")
    request = build_request(model, None, **compression)
    if request.keep_float_search:
        raise click.UsageError("--keep-float N|auto searches with `edgeopt compress`")
    devices = chosen_devices(session, selectors, whole_fleet)
    fleet = open_registry(registry, registry_credentials, registry_ca, devices or [])
    if devices is None:
        devices = _registry_devices(fleet, selectors, whole_fleet)
    if not devices:
        raise click.UsageError(f"the selection {' '.join(selectors) or '--fleet'} has no devices")
    profile = None
    known = session.profiles()
    if profile_name is not None:
        if profile_name not in known:
            raise click.UsageError(f"no device profile {profile_name!r}; see `edgeopt profiles`")
        profile = known[profile_name]
    planned = ctx.get_parameter_source("precision") == click.core.ParameterSource.DEFAULT
    options = DeployOptions(
        request=request, name=name or Path(model).stem, version=version_label, threads=threads,
        provider=provider, canary=canary, smoke=smoke,
        traits=traits_of(request) if planned else None,
    )  # fmt: skip
    with State(session.state) as state:
        publisher = Publisher(devices, options, state, fleet,
                              PublishOptions(profile, known, wait, canary_wait),
                              progress=LineProgress())  # fmt: skip
        try:
            report = publisher.run(" ".join(selectors) or "--fleet")
        finally:
            fleet.close()
    rows = [[r.device, r.outcome, r.plan.precision if r.plan else "", r.version,
             r.previous_version, str(r.bytes_sent), r.error] for r in report.results]  # fmt: skip
    if as_json:
        echo_json({
            "deployment": report.deployment, "outcome": report.outcome,
            "registry": str(fleet), "compressions": report.compressions,
            "artifacts": len(report.artifacts), "bytes_uploaded": publisher.bytes_uploaded,
            "devices": [{"device": r.device, "outcome": r.outcome,
                         "precision": r.plan.precision if r.plan else "", "version": r.version,
                         "previous": r.previous_version, "bytes_sent": r.bytes_sent,
                         "phases": {k: round(v, 3) for k, v in r.phases.items()},
                         "error": r.error} for r in report.results],
        })  # fmt: skip
    else:
        click.echo(table(["DEVICE", "OUTCOME", "PRECISION", "VERSION", "WAS", "SENT", "ERROR"],
                         rows))  # fmt: skip
        click.echo(f"deployment {report.deployment}: {report.outcome}; {publisher.bytes_uploaded} "
                   f"bytes uploaded to {fleet}")  # fmt: skip
    if not report.ok:
        ctx.exit(1)


def _age(epoch: float) -> str:
    seconds = max(0.0, time.time() - epoch)
    return f"{seconds:.0f}s" if seconds < 120 else (
        f"{seconds / 60:.0f}m" if seconds < 7200 else f"{seconds / 3600:.0f}h"
    )  # fmt: skip


def view_json(view: DeviceView) -> dict[str, Any]:
    """One device's desired and reported state as JSON."""
    status = view.status
    return {
        "device": view.device, "state": view.state,
        "desired": [{"name": m.name, "version": m.version, "artifact": m.artifact}
                    for m in (view.desired.models if view.desired else ())],
        "generation": view.desired.generation if view.desired else 0,
        "reported": [{"name": m.name, "version": m.version, "state": m.state, "error": m.error}
                     for m in (status.models if status else ())],
        "reported_generation": status.generation if status else 0,
        "updated": status.updated if status else None,
        "error": (status.error if status else "") or view.status_error,
        "agent_version": status.agent_version if status else "",
    }  # fmt: skip


def registry_table(views: list[DeviceView]) -> str:
    """Desired vs reported, one row per device and model."""
    rows = []
    for view in views:
        status = view.status
        reported = {m.name: m for m in (status.models if status else ())}
        wanted = view.desired.models if view.desired else ()
        error = (status.error if status else "") or view.status_error
        seen = _age(status.updated) if status else "never"
        if not wanted:
            rows.append([view.device, "", "", "", view.state, seen, error])
        for m in wanted:
            got = reported.get(m.name)
            detail = got.error if got and got.error else error
            rows.append([view.device, m.name, m.version, got.version if got else "",
                         view.state if not got or got.state == "active" else got.state, seen,
                         detail[:120]])  # fmt: skip
    return table(["DEVICE", "MODEL", "DESIRED", "ACTIVE", "STATE", "SEEN", "ERROR"], rows)


def read_views(  # noqa: PLR0917  (the options of the commands that call it, as they come)
    session: Session,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    registry: str | None,
    credentials: Path | None,
    ca: Path | None,
) -> tuple[FleetRegistry, list[DeviceView]]:
    """The registry and the selected devices' views (every device it knows by default)."""
    devices = chosen_devices(session, selectors, whole_fleet) if selectors or whole_fleet else None
    fleet = open_registry(registry, credentials, ca, devices or [])
    names = [d.name for d in devices] if devices is not None else (
        list(selectors) if selectors else fleet.devices()
    )  # fmt: skip
    return fleet, [fleet.view(n) for n in names]


def registry_rollback(
    ctx: click.Context, name: str, devices: list[str], fleet: FleetRegistry, as_json: bool
) -> None:
    """`rollback --registry`: each device's desired state back to the artifact before."""
    rows = []
    for device in devices:
        try:
            back = rollback_desired(fleet, device, name)
            assert back is not None  # without first_removes it names a version or raises
            rows.append([device, back.previous_version, back.version, ""])
        except EdgeoptError as exc:
            rows.append([device, "", "", str(exc)])
    fleet.close()
    if as_json:
        echo_json([dict(zip(["device", "from", "to", "error"], r, strict=True)) for r in rows])
    else:
        click.echo(table(["DEVICE", "FROM", "TO", "ERROR"], rows))
    if any(r[3] for r in rows):
        ctx.exit(1)


def watch(
    fleet_views: Callable[[], list[DeviceView]], every: float, until: float
) -> list[DeviceView]:
    """Print the table every `every` seconds until every board settled or `until` passed.

    Settled: converged, or failed (it applied the desired state and refused some of it, which
    no wait changes).
    """
    start = time.monotonic()
    while True:
        views = fleet_views()
        text = registry_table(views)
        if sys.stdout.isatty():
            click.echo("\x1b[2J\x1b[H", nl=False)
        click.echo(f"{time.strftime('%H:%M:%S')}\n{text}")
        settled = all(v.state in ("converged", "failed") for v in views)
        if settled or time.monotonic() - start >= until:
            return views
        time.sleep(every)
