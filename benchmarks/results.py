"""Write one benchmark's section of benchmarks/RESULTS.md, leaving the others as they are."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")


def markers(name: str) -> tuple[str, str]:
    """The comment lines that delimit section `name`."""
    return f"<!-- BEGIN {name} -->", f"<!-- END {name} -->"


def write_section(name: str, body: str) -> str:
    """Replace (or append) section `name` with `body`; returns the section as written."""
    begin, end = markers(name)
    section = f"{begin}\n{body.strip()}\n{end}"
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if begin in text:
        head, rest = text.split(begin, 1)
        text = head + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    return section
