"""What every command prints for scripts: indented JSON."""

from __future__ import annotations

import json

import click

__all__ = ["echo_json"]


def echo_json(data: object) -> None:
    """Print `data` as indented JSON (unknown types as strings)."""
    click.echo(json.dumps(data, indent=2, default=str))
