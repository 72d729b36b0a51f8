"""What the host reads from files: the inventory (read and written), device profiles, TOML.

May import: edgeopt.host.errors, edgeopt.proto, edgeopt.boardfacts. Nothing else of the host.

    tomlfile         TOML reading with file-and-line errors
    inventory        the fleet: devices, groups, tags, SSH and TLS settings (read and write)
    device_profiles  known board kinds (device_profiles/*.toml and the user's own)
"""

__all__ = ["device_profiles", "inventory", "tomlfile"]
