"""edgeopt, the host controller: compression, planning, deployment, benchmarks and the CLI.

The host talks to agents only over gRPC (`edgeopt.host.transport.client`); it never imports the
agent. Both import `edgeopt.proto` (the contract) and `edgeopt.boardfacts` (the probes' parsers).
Each folder is one layer, and imports only the layers below it (tests/test_layers.py holds it):

    cli ──> workflows ──> planning, transport, compress, store ──> config ──> errors
     └────> report ─────────────────────────────────────────────────┘

    errors.py   every error the host raises on purpose, under one root (EdgeoptError)
    config/     inventory, device profiles, TOML
    compress/   pruning, quantization, export, validation, the artifact cache
    planning/   the planner (pure): precision, threads and provider from a board's report
    transport/  the agent client, TLS, fan-out, SSH (connection, tunnel, facts, bootstrap)
    store/      the state database
    workflows/  deploy, bench, tune, op profiling
    report/     tables, CSV, charts, HTML, history of changes
    cli/        click only: options, output, one module per command group

This module alone is kept parsable by Python 3.8 (ruff checks it as such): it holds the `edgeopt`
console script, which the base install (the agent's, Python 3.8 and newer) puts on a board too,
where it must say in words that the host needs a newer Python rather than fail on syntax.
"""

import sys

__all__ = ["MIN_PYTHON", "main"]

MIN_PYTHON = (3, 10)
"""The oldest Python the host runs on; the agent's is pyproject's requires-python (3.8)."""


def main() -> None:
    """The `edgeopt` console script: the host's CLI, or one line saying this Python is too old.

    On a Python older than `MIN_PYTHON` it exits with status 2 (a usage error) before importing
    any of the host's modules.
    """
    if sys.version_info < MIN_PYTHON:
        have = ".".join(str(n) for n in sys.version_info[:3])
        need = ".".join(str(n) for n in MIN_PYTHON)
        sys.stderr.write(f"edgeopt (the host) needs Python {need} or newer; this is Python "
                         f"{have}. On a board, run edgeopt-agent.\n")  # fmt: skip
        raise SystemExit(2)
    # Imported only here: the CLI's modules use syntax an old Python cannot parse.
    try:
        from edgeopt.host.cli import main as cli_main  # noqa: PLC0415
    except ImportError as exc:  # the base install (a board's) has the agent's packages only
        sys.stderr.write(f"edgeopt's host commands need the host's packages ({exc}): pip "
                         "install 'edgeopt[host]'. On a board, run edgeopt-agent.\n")  # fmt: skip
        raise SystemExit(2) from None

    cli_main()
