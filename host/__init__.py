"""edgeopt, the host controller: fleet inventory, device profiles, agent clients and the CLI.

The host talks to agents only over gRPC (`edgeopt.host.client`); it never imports the agent.
"""
