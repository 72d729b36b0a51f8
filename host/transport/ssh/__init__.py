"""Boards over SSH (paramiko): a connection, a tunnel to the agent, facts, bootstrap.

May import: what edgeopt.host.transport may. Nothing a board prints is trusted: every value is
checked (`connection.printable`, the facts' patterns) before it is shown or written.

    connection  log in, run a command with limits, copy files
    tunnel      a local port forwarded to the board's agent
    facts       the board's capabilities read over SSH with its own Python (no agent needed)
    bootstrap/  install and start the agent on a board, write its inventory entry:
        inspection       what the board's system offers, and the refusal of one that cannot
        wheels           edgeopt's wheel built here, its dependencies fetched for the board
        certificates     the agent's certificate from the fleet CA, its TLS files on the board
        service          the agent's systemd unit or shell supervisor: start, wait, stop
        install          the steps in order (`bootstrap`, `remove`)
        inventory_entry  the device's table in the inventory and its token file
"""

__all__ = ["bootstrap", "connection", "facts", "tunnel"]
