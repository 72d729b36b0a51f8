"""How the agent's bearer token travels: one metadata entry, `authorization: Bearer <token>`.

The agent checks it on every `edgeopt.v1.Agent` call; the health and reflection services, which a
load balancer or grpcurl may call without credentials, are exempt.
"""

from __future__ import annotations

__all__ = [
    "METADATA_KEY",
    "SCHEME",
    "UNAUTHENTICATED_PATHS",
    "bearer",
    "read_token_file",
    "token_from_header",
]

METADATA_KEY = "authorization"
"""gRPC metadata keys are lower case; this is the HTTP header name."""

SCHEME = "Bearer"

UNAUTHENTICATED_PATHS = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
)
"""Method path prefixes that need no token."""


def bearer(token: str) -> tuple[str, str]:
    """The metadata entry that carries `token`."""
    return (METADATA_KEY, f"{SCHEME} {token}")


def token_from_header(value: str) -> str | None:
    """The token inside an `authorization` value, or None when it is not a bearer credential."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != SCHEME.lower() or not token.strip():
        return None
    return token.strip()


def read_token_file(path: str) -> str:
    """Read a token file: its first line, stripped.

    Raises:
        ValueError: the file is empty.
        OSError: the file cannot be read.
    """
    with open(path, encoding="utf-8") as f:
        token = f.readline().strip()
    if not token:
        raise ValueError(f"token file {path} is empty")
    return token
