"""Boards over SSH (paramiko): a connection, a tunnel to the agent, facts, bootstrap.

May import: what edgeopt.host.transport may. Nothing a board prints is trusted: every value is
checked (`connection.printable`, the facts' patterns) before it is shown or written.

    connection  log in, run a command with limits, copy files
    tunnel      a local port forwarded to the board's agent
    facts       the board's capabilities read over SSH with its own Python (no agent needed)
    bootstrap   install and start the agent on a board, write its inventory entry
"""
