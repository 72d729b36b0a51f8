"""How the host reaches boards: the agent's gRPC client, TLS, fan-out, and SSH.

May import: edgeopt.host.errors, edgeopt.host.config, edgeopt.proto, edgeopt.boardfacts.

    client   AgentClient: every RPC of the contract, resumable pushes, tensors both ways
    tls      the fleet CA, certificates and the client's credentials
    fanout   one call to many devices with a concurrency limit and per-device outcomes
    ssh/     connection, tunnel, facts (capabilities read over SSH), bootstrap (install an agent)
"""

__all__ = ["channel", "client", "fanout", "ssh", "tls", "upload", "wire"]
