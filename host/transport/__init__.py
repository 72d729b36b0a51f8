"""How the host reaches boards: the agent's gRPC client, TLS, fan-out, and SSH.

May import: edgeopt.host.errors, edgeopt.host.config, edgeopt.proto, edgeopt.boardfacts.

    client   AgentClient: every RPC of the contract, resumable pushes, tensors both ways
    tls      the fleet CA, certificates and the client's credentials
    fanout   one call to many devices with a concurrency limit and per-device outcomes
    ssh/     connection, tunnel, facts (capabilities read over SSH), bootstrap (install an agent)

Every way of reaching an agent ends in the same gRPC client: a device with `ssh` set in the
inventory is reached through an `ssh.tunnel` to its agent's port, which the CLI's session opens
for the length of a command (`edgeopt.host.cli.common.Session.reach`); a new way to reach
boards (a broker, a reverse tunnel) goes beside ssh/ and is opened there the same way, with
its inventory key in `edgeopt.host.config.inventory`.
"""

__all__ = ["channel", "client", "fanout", "ssh", "tls", "upload", "wire"]
