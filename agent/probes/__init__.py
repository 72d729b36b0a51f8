"""Probes: small pure functions from the text of /proc, /sys and /etc to typed facts.

`edgeopt.agent.capabilities` reads the files (from the running board or a captured tree) and calls
these; tests feed them captured files of real boards kept under tests/agent/data/boards/.
"""
