"""Known board kinds, one TOML file each; read through `edgeopt.host.config.device_profiles`."""
