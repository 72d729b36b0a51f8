"""Reading TOML configuration files with errors that name the file and the field or line.

Both the inventory and the device profiles are TOML; this module turns the standard library's
parse errors and our own type checks into one `ConfigError` subclass chosen by the caller.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from edgeopt.host.errors import ConfigError

__all__ = ["expect", "load", "reject_unknown"]

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def load(path: Path, error: type[ConfigError]) -> dict[str, Any]:
    """Parse a TOML file.

    Raises:
        error: the file cannot be read, or is not valid TOML (the message gives line and column).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(str(path), f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise error(str(path), f"not UTF-8 text: {exc}") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        # The message ends with "(at line L, column C)": keep it, it is what the user needs.
        raise error(str(path), f"not valid TOML: {exc}") from exc
    except RecursionError as exc:  # tomllib parses nested arrays and tables recursively
        raise error(str(path), "not valid TOML: arrays or tables nested too deeply") from exc


_TYPE_NAMES = {
    str: "a string",
    int: "an integer",
    float: "a number",
    list: "a list",
    dict: "a table",
}

_PLURAL_NAMES = {str: "strings", int: "integers", float: "numbers", dict: "tables"}


def expect(
    data: dict[str, Any],
    key: str,
    kind: type,
    *,
    path: Path,
    where: str,
    error: type[ConfigError],
    required: bool = False,
    item: type | None = None,
) -> Any:
    """Fetch `data[key]`, checking its type (and its items' type for lists).

    Args:
        data: the table holding the key.
        key: the key.
        kind: expected Python type (int also accepts nothing else; float accepts int).
        path: the file, for the error.
        where: dotted name of the table ("devices.pi4-kitchen"), for the error.
        error: the `ConfigError` subclass to raise.
        required: raise when the key is absent.
        item: expected type of each list item.

    Returns:
        The value, or None when absent and not required.
    """
    field = _field(where, key)
    if key not in data:
        if required:
            raise error(str(path), f"missing required key {key!r}", field)
        return None
    value = data[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        ok = True
    if not ok:
        raise error(
            str(path), f"must be {_TYPE_NAMES.get(kind, kind.__name__)}, got {value!r}", field
        )
    if item is not None:
        for i, element in enumerate(value):
            if not isinstance(element, item):
                raise error(
                    str(path),
                    f"must hold only {_PLURAL_NAMES.get(item, item.__name__)}, "
                    f"got {element!r} at index {i}",
                    field,
                )
    return value


def reject_unknown(
    data: dict[str, Any], allowed: set[str], *, path: Path, where: str, error: type[ConfigError]
) -> None:
    """Raise on a key outside `allowed` (a typo should not be silently ignored)."""
    for key in data:
        if key not in allowed:
            known = ", ".join(sorted(allowed))
            field = _field(where, key)
            raise error(str(path), f"unknown key {key!r} (known keys: {known})", field)


def _field(where: str, key: str) -> str:
    """The dotted name of `key` in `where`, quoted as TOML does when it is not a plain word.

    A quoted key in the file may hold a newline: shown quoted, the error stays one line.
    """
    shown = key if key and key.isprintable() and '"' not in key else json.dumps(key)
    return f"{where}.{shown}" if where else shown
