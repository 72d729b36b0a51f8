"""The wheels a board installs, made on the host: edgeopt's own, and its dependencies offline.

`build_wheel` builds edgeopt's wheel from this source tree, cached under a digest of the agent's
sources (agent/, boardfacts/, proto/ and pyproject.toml), so an edit makes a new one.
`download_wheels` fetches the agent's dependencies for the board's platform with pip on the host
(`--platform` for each tag the board's pip accepts, `--only-binary=:all:`), cached per
requirement set.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from edgeopt.host.errors import BootstrapError
from edgeopt.host.transport.ssh.bootstrap.inspection import Inspection

__all__ = ["ROOT", "build_wheel", "default_cache", "download_wheels", "platform_tags"]

ROOT = Path(__file__).resolve().parents[4]
"""The source tree (host/transport/ssh/bootstrap/ is four folders down): the wheel's sources."""


def _source_digest() -> str:
    files = sorted(p for d in ("agent", "boardfacts", "proto") for p in (ROOT / d).rglob("*")
                   if p.is_file() and "__pycache__" not in p.parts)  # fmt: skip
    h = hashlib.sha256((ROOT / "pyproject.toml").read_bytes())
    for path in files:
        h.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def default_cache() -> Path:
    """Where bootstrap keeps its wheels between runs: $XDG_CACHE_HOME/edgeopt/bootstrap."""
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "edgeopt" / "bootstrap"


def build_wheel(cache: Path) -> Path:
    """Edgeopt's wheel built from this source tree (cached by the agent's sources' digest).

    Raises:
        BootstrapError: no source tree here (edgeopt installed from a wheel: pass --wheel).
    """
    if not (ROOT / "pyproject.toml").is_file():
        raise BootstrapError("no edgeopt source tree next to this install: pass --wheel FILE")
    out = cache / f"wheel-{_source_digest()}"
    found = sorted(out.glob("edgeopt-*.whl"))
    if found:
        return found[0]
    out.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "-w", str(out), str(ROOT)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    found = sorted(out.glob("edgeopt-*.whl"))
    if done.returncode != 0 or not found:
        raise BootstrapError(f"building the agent's wheel failed: {done.stderr.strip()[-500:]}")
    return found[0]


# The legacy manylinux names and the glibc each stands for (PEP 600).
_LEGACY_MANYLINUX = {(2, 17): "manylinux2014", (2, 12): "manylinux2010", (2, 5): "manylinux1"}


def platform_tags(arch: str, glibc: tuple[int, int]) -> list[str]:
    """Every platform tag pip on the board accepts, best first, to pass as pip's --platform.

    What `packaging.tags` derives on a glibc board: manylinux_2_N for each N from the board's
    glibc down to the first of its architecture (2.5 on x86, 2.17 elsewhere), each legacy alias
    (manylinux2014, 2010, 1) beside its equivalent, then linux_ARCH. pip given --platform tries
    exactly the tags listed: one left out and a wheel that carries only it is not found.
    """
    major, minor = glibc
    oldest = 5 if arch in ("x86_64", "i686") else 17
    tags = []
    for m in range(minor, oldest - 1, -1):
        tags.append(f"manylinux_{major}_{m}_{arch}")
        legacy = _LEGACY_MANYLINUX.get((major, m))
        if legacy:
            tags.append(f"{legacy}_{arch}")
    return [*tags, f"linux_{arch}"]


def _requirements_digest(wheel: Path) -> str:
    """A short hash of what the wheel requires (its METADATA's Requires-Dist and -Python)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        lines = archive.read(name).decode("utf-8", "replace").splitlines()
    wanted = sorted(x for x in lines if x.startswith(("Requires-Dist:", "Requires-Python:")))
    return hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:12]


def download_wheels(wheel: Path, board: Inspection, cache: Path) -> Path:
    """The agent's dependencies as wheels for the board's platform, fetched on the host."""
    assert board.python is not None and board.glibc is not None  # check() refused the others
    py = f"{board.python[0]}{board.python[1]}"
    # One folder per requirement set: a wheel whose dependencies changed never meets the old set
    # (the wheel's name stays edgeopt-0.1.0 across edits, so it cannot be the key).
    glibc = f"{board.glibc[0]}.{board.glibc[1]}"
    out = cache / f"deps-{board.arch}-glibc{glibc}-py{py}-{_requirements_digest(wheel)}"
    stamp = out / ".done"
    if stamp.exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
           "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
           "--dest", str(out), str(wheel)]  # fmt: skip
    for tag in platform_tags(board.arch, board.glibc):
        cmd += ["--platform", tag]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise BootstrapError(
            f"downloading the agent's wheels for {board.arch}, Python {py}: "
            f"{done.stderr.strip()[-800:]}"
        )
    stamp.touch()
    return out
