"""`python -m edgeopt.agent.runner`: the runner child, serving the agent over its stdin/stdout."""

import sys

from edgeopt.agent.runner.child import main

__all__ = ["main"]

sys.exit(main())
