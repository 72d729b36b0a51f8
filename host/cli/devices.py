"""`edgeopt devices` and `edgeopt profiles`: what the boards are and what they should be."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from edgeopt.host.cli.common import Session, gib
from edgeopt.host.cli.output import echo_json
from edgeopt.host.cli.publish import read_views, registry_options, registry_table, view_json
from edgeopt.host.config import device_profiles as profiles
from edgeopt.host.errors import ProfileError
from edgeopt.host.report.table import table
from edgeopt.host.transport import fanout as fleet
from edgeopt.proto.capabilities import Capabilities, format_summary, to_dict

__all__ = ["devices", "devices_check", "devices_show", "profiles_cmd", "profiles_show"]


def _device_row(report: fleet.DeviceReport) -> list[str]:
    d = report.device
    caps = report.capabilities
    if caps is None:
        return [d.name, d.address, "no", "", "", "", "", "", str(report.error)]
    ort = caps.onnxruntime
    eps = ",".join(p.removesuffix("ExecutionProvider") for p in ort.execution_providers)
    return [
        d.name,
        d.address,
        "yes",
        f"{caps.arch} EMULATED" if caps.emulation else caps.arch,
        _cores(caps),
        gib(caps.memory_total_bytes),
        ort.version or "?",
        eps or "?",
        "",
    ]


def _cores(caps: Capabilities) -> str:
    """Physical cores, with logical CPUs after a slash when SMT makes them differ ("4/8")."""
    physical, logical = caps.physical_cores, caps.logical_cores
    if physical is None:
        return str(logical or "?")
    return str(physical) if logical in (None, physical) else f"{physical}/{logical}"


def _report_json(report: fleet.DeviceReport) -> dict[str, Any]:
    return {
        "name": report.device.name,
        "address": report.device.address,
        "profile": report.device.profile,
        "reachable": report.reachable,
        "seconds": round(report.seconds, 3),
        "error": str(report.error) if report.error else None,
        "error_status": getattr(report.error, "status", None),
        "capabilities": to_dict(report.capabilities) if report.capabilities else None,
    }


@click.group(invoke_without_command=True)
@click.option(
    "--device",
    "-d",
    "selectors",
    multiple=True,
    metavar="X",
    help="a device, group, tag or profile name (repeatable); default: every device",
)
@click.option("--fleet", "whole_fleet", is_flag=True, help="every device of the inventory")
@click.option(
    "--parallel", type=int, default=32, show_default=True, help="devices contacted at once"
)
@registry_options
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def devices(  # noqa: PLR0917  (click passes each option by name)
    ctx: click.Context,
    /,
    selectors: tuple[str, ...],
    whole_fleet: bool,
    parallel: int,
    registry: str | None,
    registry_credentials: Path | None,
    registry_ca: Path | None,
    as_json: bool,
) -> None:
    """List devices and what their agents report; unreachable ones are shown as such.

    With --registry: the boards in pull mode, from their statuses in the registry (desired and
    reported versions, converged or not, errors, when each was last heard of); no board is
    dialed. Exit status 1 when any selected device did not answer (or, with --registry, has
    not converged).
    """
    if ctx.invoked_subcommand is not None:
        return
    session: Session = ctx.obj
    if registry is not None:
        pulling, views = read_views(session, selectors, whole_fleet, registry,
                                    registry_credentials, registry_ca)  # fmt: skip
        pulling.close()
        if as_json:
            echo_json([view_json(v) for v in views])
        else:
            click.echo(registry_table(views))
        if not all(v.state == "converged" for v in views):
            ctx.exit(1)
        return
    chosen = session.reach(session.inventory().select(selectors, fleet=whole_fleet))
    reports = fleet.probe(chosen, session.client, parallel)
    if as_json:
        echo_json([_report_json(r) for r in reports])
    else:
        headers = ["NAME", "ADDRESS", "REACHABLE", "ARCH", "CORES", "MEMORY", "ORT", "EPS", "ERROR"]
        click.echo(table(headers, [_device_row(r) for r in reports]))
    if not all(r.reachable for r in reports):
        ctx.exit(1)


def _one_report(session: Session, name: str) -> tuple[fleet.DeviceReport, Capabilities]:
    (device,) = session.reach([session.inventory().get(name)])
    report = fleet.probe([device], session.client)[0]
    if report.error is not None:
        raise report.error
    if report.capabilities is None:  # pragma: no cover  (a report has one or the other)
        raise click.ClickException(f"{name}: no report and no error")
    return report, report.capabilities


@devices.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def devices_show(session: Session, name: str, as_json: bool) -> None:
    """The full capability report of one device."""
    report, caps = _one_report(session, name)
    if as_json:
        echo_json(_report_json(report))
        return
    click.echo(f"{name} ({report.device.address}, profile {report.device.profile or 'none'})")
    click.echo(format_summary(caps))


@devices.command("check")
@click.argument("name")
@click.option("--profile", "profile_name", help="hold against this profile instead")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def devices_check(ctx: click.Context, name: str, profile_name: str | None, as_json: bool) -> None:
    """Hold a device's live report against its declared profile.

    Exit status 1 when the board is not of the profile's kind (a "mismatch").
    """
    session: Session = ctx.obj
    (device,) = session.reach([session.inventory().get(name)])
    wanted = profile_name or device.profile
    if not wanted:
        raise click.ClickException(
            f"device {name!r} declares no profile: add `profile = ...` to its inventory entry "
            "or pass --profile"
        )
    known = session.profiles()
    if wanted not in known:
        raise ProfileError(wanted, f"no such profile; known: {', '.join(sorted(known))}")
    _, caps = _one_report(session, name)
    findings = profiles.check(known[wanted], caps)
    if as_json:
        echo_json({"device": name, "profile": wanted, "findings": [asdict(f) for f in findings]})
    else:
        rows = [[f.level.upper(), f.field, f.expected, f.actual, f.message] for f in findings]
        click.echo(f"{name} against profile {wanted}:")
        click.echo(table(["", "FIELD", "PROFILE", "DEVICE", "NOTE"], rows))
    if any(f.level == "mismatch" for f in findings):
        ctx.exit(1)


def _profile_json(p: profiles.DeviceProfile) -> dict[str, Any]:
    data = asdict(p)
    data["path"] = str(p.path) if p.path else None
    return data


@click.group("profiles", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_context
def profiles_cmd(ctx: click.Context, as_json: bool) -> None:
    """The known board profiles (device_profiles/)."""
    if ctx.invoked_subcommand is not None:
        return
    known = ctx.obj.profiles()
    if as_json:
        echo_json([_profile_json(p) for p in known.values()])
        return
    rows = [
        [
            p.name,
            p.arch,
            " + ".join(f"{c.cores}x {c.core}" for c in p.clusters) or "any",
            " ".join(p.isa_features),
            p.description,
        ]
        for p in known.values()
    ]
    click.echo(table(["NAME", "ARCH", "CORES", "ISA", "DESCRIPTION"], rows))


@profiles_cmd.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts")
@click.pass_obj
def profiles_show(session: Session, name: str, as_json: bool) -> None:
    """One profile in full, with its notes."""
    known = session.profiles()
    if name not in known:
        raise ProfileError(name, f"no such profile; known: {', '.join(sorted(known))}")
    p = known[name]
    if as_json:
        echo_json(_profile_json(p))
        return
    click.echo(f"{p.name}: {p.description}  ({p.path})")
    click.echo(f"arch {p.arch}; isa {' '.join(p.isa_features)}")
    for c in p.clusters:
        click.echo(f"cluster {c.cores}x {c.core} @ {'/'.join(map(str, c.max_freq_mhz))} MHz")
    if p.memory_gib:
        click.echo(f"memory {'/'.join(map(str, p.memory_gib))} GiB")
    click.echo(f"providers {', '.join(p.expected_providers)}")
    for note in p.notes:
        click.echo(f"- {note}")
