"""Every error the host raises on purpose, under one root; the CLI maps them in one place.

    EdgeoptError
    ├── ConfigError (ValueError)           a file we read is wrong (names file and field/line)
    │   ├── InventoryError                 the inventory TOML
    │   ├── ProfileError                   a device profile TOML
    │   └── StateError                     the state database (unreachable, newer schema)
    ├── UnknownDevice (KeyError)           --device names nothing in the inventory
    ├── PlanError (ValueError)             the request cannot be planned for the board
    ├── SshError                           an SSH connection or command failed
    │   └── BootstrapError                 the board cannot take the agent, or it did not start
    ├── TlsError (ValueError)              a CA or certificate cannot be made, read or used
    ├── CompressionError                   a compression pass cannot do what was asked
    │   ├── ModelError (ValueError)        the input is not a model we can read
    │   ├── DataError (ValueError)         example/calibration/validation data do not fit
    │   ├── UnsupportedModel               the pass does not apply to this model
    │   │   ├── NothingQuantized           the variant would hold the same weights as the input
    │   │   └── BrokenVariant              the variant outputs inf/NaN where the input does not
    │   ├── TargetError                    the target ONNX Runtime cannot load the result
    │   └── OutputError (OSError)          the artifact cannot be written (read-only, full)
    ├── AccuracyGateFailed                 a variant lost more accuracy than allowed
    ├── RegistryFailed                     an OCI registry refused, failed, or was not reached
    └── AgentError                         an agent answered with a gRPC error, or did not answer
        ├── AgentUnavailable (ConnectionError)   UNAVAILABLE: not listening, unreachable, restarting
        ├── AgentTimeout (TimeoutError)          DEADLINE_EXCEEDED
        ├── Unauthenticated (PermissionError)    UNAUTHENTICATED / PERMISSION_DENIED
        ├── InvalidRequest (ValueError)          INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
        ├── NotFound (LookupError)               NOT_FOUND
        ├── AlreadyExists                        ALREADY_EXISTS
        ├── ResourceExhausted                    RESOURCE_EXHAUSTED: quota, disk, queue full
        ├── DataLoss                             DATA_LOSS: bytes arrived corrupted
        └── AgentInternalError                   INTERNAL / UNKNOWN / anything else

gRPC errors are translated once, at the client boundary, through `STATUS_TO_ERROR`; each
`AgentError` keeps `.device` (the inventory name, when known) and `.status` (the gRPC status name).
The CLI's root group (`edgeopt.host.cli.common.EdgeoptGroup`) turns any of them into one line
and exit status 1. The agent answers with gRPC status codes, never with these. This module
imports nothing outside the standard library.
"""

from __future__ import annotations

__all__ = [
    "STATUS_TO_ERROR",
    "AccuracyGateFailed",
    "AgentError",
    "AgentInternalError",
    "AgentTimeout",
    "AgentUnavailable",
    "AlreadyExists",
    "BootstrapError",
    "BrokenVariant",
    "CompressionError",
    "ConfigError",
    "DataError",
    "DataLoss",
    "EdgeoptError",
    "InvalidRequest",
    "InventoryError",
    "ModelError",
    "NotFound",
    "NothingQuantized",
    "OutputError",
    "PlanError",
    "ProfileError",
    "RegistryFailed",
    "ResourceExhausted",
    "SshError",
    "StateError",
    "TargetError",
    "TlsError",
    "Unauthenticated",
    "UnknownDevice",
    "UnsupportedModel",
    "error_for_status",
]


class EdgeoptError(Exception):
    """Root of every error edgeopt raises on purpose."""


class ConfigError(EdgeoptError, ValueError):
    """A configuration file is unreadable or wrong.

    Attributes:
        path: the file.
        where: the field (dotted key) or line that is wrong, when known.
    """

    def __init__(self, path: str, message: str, where: str | None = None) -> None:
        self.path = path
        self.where = where
        location = f"{path}: {where}" if where else path
        super().__init__(f"{location}: {message}")


class InventoryError(ConfigError):
    """The inventory file is unreadable or wrong."""


class ProfileError(ConfigError):
    """A device profile is unreadable or wrong."""


class StateError(ConfigError):
    """The state database cannot be used (unreachable, newer schema, unreadable)."""


class UnknownDevice(EdgeoptError, KeyError):
    """A selector names no device, group, tag or profile of the inventory.

    Attributes:
        selector: what the user asked for.
        known: the device names the inventory has.
    """

    def __init__(self, selector: str, known: list[str]) -> None:
        self.selector = selector
        self.known = known
        names = ", ".join(known) if known else "(the inventory lists no devices)"
        super().__init__(
            f"no device, group, tag or profile named {selector!r}; known devices: {names}"
        )

    def __str__(self) -> str:
        # KeyError quotes its argument; we want the sentence as it is.
        return str(self.args[0])


class PlanError(EdgeoptError, ValueError):
    """The user's request cannot be planned (an execution provider the board lacks)."""


class SshError(EdgeoptError):
    """An SSH connection or command failed; the message says what and where."""


class BootstrapError(SshError):
    """The board cannot take the agent, or the agent did not start; the message says why."""


class TlsError(EdgeoptError, ValueError):
    """A CA or certificate cannot be made, read or used as asked (the message says which)."""


class CompressionError(EdgeoptError):
    """A compression pass cannot do what was asked; nothing partial is left behind."""


class ModelError(CompressionError, ValueError):
    """The input is not a model edgeopt can read (not ONNX, truncated, malformed)."""


class DataError(CompressionError, ValueError):
    """Example, calibration or validation data do not fit the model (names, shapes, dtypes)."""


class UnsupportedModel(CompressionError):
    """The pass does not apply to this model (no MatMul for int4, an op the quantizer refuses)."""


class NothingQuantized(UnsupportedModel):
    """A precision would leave every weight as it was: refused, saying what would work.

    Dynamic int8 of an all-Conv model, static int8 of weights inside control flow, a model
    already in int8.
    """


class BrokenVariant(UnsupportedModel):
    """The variant computes inf or NaN where the reference does not (float16 overflow)."""


class TargetError(CompressionError):
    """The target ONNX Runtime cannot load the requested variant (too old for its ops)."""


class OutputError(CompressionError, OSError):
    """The artifact cannot be written where asked (read-only or full directory)."""


class AccuracyGateFailed(EdgeoptError):
    """A variant failed the accuracy gate.

    Attributes:
        metric: the metric that failed ("cosine", "label_agreement", "accuracy_drop",
            "top1_disagreement", "label_disagreement").
        value: what the variant reached.
        limit: what the gate required.
    """

    def __init__(self, metric: str, value: float, limit: float, message: str) -> None:
        self.metric = metric
        self.value = value
        self.limit = limit
        super().__init__(message)


class RegistryFailed(EdgeoptError):
    """An OCI registry (pull mode) refused, failed or did not answer; or its address is wrong.

    `status` is the HTTP status (0 when there was no answer).
    """

    def __init__(self, message: str, *, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class AgentError(EdgeoptError):
    """An agent answered with an error, or did not answer.

    Attributes:
        device: the inventory name of the agent, when known.
        status: the gRPC status name ("UNAVAILABLE"), when the error came over gRPC.
        details: the agent's message.
    """

    def __init__(self, details: str, *, device: str | None = None, status: str | None = None):
        self.device = device
        self.status = status
        self.details = details
        prefix = f"{device}: " if device else ""
        suffix = f" ({status})" if status else ""
        super().__init__(f"{prefix}{details}{suffix}")


class AgentUnavailable(AgentError, ConnectionError):
    """The agent is not reachable: not listening, network down, or shutting down."""


class AgentTimeout(AgentError, TimeoutError):
    """The call's deadline passed before the agent answered."""


class Unauthenticated(AgentError, PermissionError):
    """The agent refused our credentials (missing or wrong token)."""


class InvalidRequest(AgentError, ValueError):
    """The agent found the request itself wrong."""


class NotFound(AgentError, LookupError):
    """The agent has no such model, version or upload."""


class AlreadyExists(AgentError):
    """The agent already has what we asked it to create."""


class ResourceExhausted(AgentError):
    """A limit was hit on the agent: quota, disk space or a full work queue."""


class DataLoss(AgentError):
    """Bytes arrived corrupted (digest or size mismatch)."""


class AgentInternalError(AgentError):
    """The agent failed in a way it did not expect (a bug on the board)."""


STATUS_TO_ERROR: dict[str, type[AgentError]] = {
    "UNAVAILABLE": AgentUnavailable,
    "DEADLINE_EXCEEDED": AgentTimeout,
    "UNAUTHENTICATED": Unauthenticated,
    "PERMISSION_DENIED": Unauthenticated,
    "INVALID_ARGUMENT": InvalidRequest,
    "FAILED_PRECONDITION": InvalidRequest,
    "OUT_OF_RANGE": InvalidRequest,
    "NOT_FOUND": NotFound,
    "ALREADY_EXISTS": AlreadyExists,
    "RESOURCE_EXHAUSTED": ResourceExhausted,
    "DATA_LOSS": DataLoss,
}
"""gRPC status name → the error raised for it; anything else is `AgentInternalError`."""


def error_for_status(status: str, details: str, *, device: str | None = None) -> AgentError:
    """Build the `AgentError` subclass that stands for a gRPC status name."""
    cls = STATUS_TO_ERROR.get(status, AgentInternalError)
    return cls(details, device=device, status=status)
