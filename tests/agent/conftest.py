"""Fixtures of the agent's tests: edgeopt's wheel, as boards get it."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgeopt.host.transport.ssh import bootstrap


@pytest.fixture(scope="session")
def agent_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Edgeopt's wheel built from this tree: what `ssh bootstrap` uploads and a board installs."""
    return bootstrap.build_wheel(tmp_path_factory.mktemp("wheel"))
