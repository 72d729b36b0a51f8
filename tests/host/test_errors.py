from __future__ import annotations

import pytest

from edgeopt.host import errors


@pytest.mark.parametrize(
    ("status", "cls", "builtin"),
    [
        ("UNAVAILABLE", errors.AgentUnavailable, ConnectionError),
        ("DEADLINE_EXCEEDED", errors.AgentTimeout, TimeoutError),
        ("UNAUTHENTICATED", errors.Unauthenticated, PermissionError),
        ("INVALID_ARGUMENT", errors.InvalidRequest, ValueError),
        ("NOT_FOUND", errors.NotFound, LookupError),
        ("RESOURCE_EXHAUSTED", errors.ResourceExhausted, errors.AgentError),
        ("DATA_LOSS", errors.DataLoss, errors.AgentError),
        ("INTERNAL", errors.AgentInternalError, errors.AgentError),
        ("SOMETHING_NEW", errors.AgentInternalError, errors.AgentError),
    ],
)
def test_status_table(status: str, cls: type, builtin: type) -> None:
    err = errors.error_for_status(status, "it broke", device="pi4-kitchen")
    assert type(err) is cls
    assert isinstance(err, builtin) and isinstance(err, errors.EdgeoptError)
    assert err.device == "pi4-kitchen" and err.status == status
    assert str(err) == f"pi4-kitchen: it broke ({status})"


def test_unknown_device_lists_known_ones() -> None:
    err = errors.UnknownDevice("pi9", ["pi4-kitchen", "rk-01"])
    assert isinstance(err, KeyError)
    assert str(err) == (
        "no device, group, tag or profile named 'pi9'; known devices: pi4-kitchen, rk-01"
    )
