"""The `edgeopt` console script on an install without the host's packages (a board's)."""

from __future__ import annotations

import subprocess
import sys


def test_without_the_host_packages_edgeopt_says_what_to_install() -> None:
    # A board's base install has no click: blocking its import here stands in for that install
    # (the 3.8/3.9 agents of tests/agent/test_old_pythons.py show the too-old-Python refusal).
    code = "import sys; sys.modules['click'] = None; from edgeopt.host import main; main()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=60)  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""
    assert done.stderr == (
        "edgeopt's host commands need the host's packages (import of click halted; None in "
        "sys.modules): pip install 'edgeopt[host]'. On a board, run edgeopt-agent.\n"
    )
