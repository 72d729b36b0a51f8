"""A read-only or full output folder: a clear error and no partial file (real tmpfs mounts)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edgeopt.host.compress import CompressRequest, compress
from edgeopt.host.errors import OutputError
from tests.models import DigitsModel


@contextlib.contextmanager
def _tmpfs(where: Path, options: str) -> Iterator[Path]:
    """Mount a tmpfs with `options` at `where` for the test, or skip saying why it cannot."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        pytest.skip(reason=f"cannot mount a tmpfs here ({done.stderr.strip()}); needs root")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs: too small for the artifact."""
    with _tmpfs(tmp_path / "full", "size=64k") as where:
        yield where


@pytest.fixture
def read_only_fs(tmp_path: Path) -> Iterator[Path]:
    """A read-only tmpfs (root ignores permission bits, so chmod would prove nothing)."""
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as where:
        yield where


def test_full_output_folder(digits: DigitsModel, small_fs: Path) -> None:
    out = small_fs / "model.onnx"
    with pytest.raises(OutputError) as info:
        compress(CompressRequest(model=digits.onnx, precision="fp16", output=out))
    assert str(info.value) == f"cannot write {out}: No space left on device"
    assert list(small_fs.iterdir()) == []  # no partial artifact, no temporary file


def test_read_only_output_folder(digits: DigitsModel, read_only_fs: Path) -> None:
    out = read_only_fs / "model.onnx"
    with pytest.raises(OutputError) as info:
        compress(CompressRequest(model=digits.onnx, precision="int8-dynamic", output=out))
    assert str(info.value) == f"cannot write {out}: Read-only file system"
    assert list(read_only_fs.iterdir()) == []


def test_missing_output_folder(digits: DigitsModel, tmp_path: Path) -> None:
    out = tmp_path / "no" / "such" / "model.onnx"
    with pytest.raises(OutputError, match=f"cannot write {out}: No such file or directory"):
        compress(CompressRequest(model=digits.onnx, precision="int8-dynamic", output=out))
