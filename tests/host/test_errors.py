from __future__ import annotations

import ast
import inspect
from pathlib import Path

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


def test_every_host_error_is_declared_once_under_the_root() -> None:
    """No module of host/ but errors.py declares an exception; all descend from EdgeoptError."""
    host = Path(errors.__file__).resolve().parent
    elsewhere = [
        f"{path.relative_to(host)}:{node.lineno} {node.name}"
        for path in sorted(host.rglob("*.py")) if path.name != "errors.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.ClassDef)
        and any(getattr(b, "id", getattr(b, "attr", "")).endswith(("Error", "Exception"))
                for b in node.bases)
    ]  # fmt: skip
    assert elsewhere == []
    declared = [c for _, c in inspect.getmembers(errors, inspect.isclass)
                if issubclass(c, BaseException) and c.__module__ == errors.__name__]  # fmt: skip
    assert len(declared) > 20
    assert all(issubclass(c, errors.EdgeoptError) for c in declared)
