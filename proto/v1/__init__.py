"""Generated code of the `edgeopt.v1` wire contract. Do not edit: run `make proto`."""
