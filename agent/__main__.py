"""`python -m edgeopt.agent` is `edgeopt-agent`."""

import sys

from edgeopt.agent.cli import main

sys.exit(main())
