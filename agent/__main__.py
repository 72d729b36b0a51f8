"""`python -m edgeopt.agent` is `edgeopt-agent`."""

import sys

from edgeopt.agent.cli import main

__all__ = ["main"]

sys.exit(main())
