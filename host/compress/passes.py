"""The pass abstraction and the pipeline that runs passes through the artifact cache.

A pass is a frozen dataclass (its typed config) with a `name` and `run(src, dst)`, which reads the
model at `src` and writes one self-contained model file at `dst`. The pipeline gives each pass a
fresh temporary directory, checks what it wrote loads as ONNX, and stores it in the cache under a
key made of the input's digest, the pass's name and config (data files by their digest), and the
versions of the libraries that shape the result: a second identical request runs no pass.
*Model: Olive's `Pass` with its config, composed by a workflow.*
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar

from edgeopt.host.compress import onnxfile as onnx_model
from edgeopt.host.compress.cache import ArtifactCache
from edgeopt.host.compress.runtime import require_loadable
from edgeopt.host.errors import (
    CompressionError,
    DataError,
    EdgeoptError,
    ModelError,
    UnsupportedModel,
)

__all__ = ["Pass", "StepResult", "cache_key", "library_versions", "run_pipeline"]


@functools.cache
def library_versions() -> dict[str, str]:
    """What shapes an artifact besides its inputs: library versions and edgeopt's own passes.

    ONNX Runtime is asked for its version (its distribution may be onnxruntime-gpu or another
    name); edgeopt's compression code enters by digest, so an edit to a pass in a development
    install does not serve artifacts made by the old code.
    """
    import onnx  # noqa: PLC0415
    import onnxruntime  # noqa: PLC0415

    versions = {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}
    try:
        versions["torch"] = metadata.version("torch")
    except metadata.PackageNotFoundError:
        versions["torch"] = "absent"
    code = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        code.update(source.read_bytes())
    versions["edgeopt.host.compress"] = code.hexdigest()[:16]
    return versions


@dataclass(frozen=True)
class Pass(abc.ABC):
    """Base of every pass: subclasses are frozen dataclasses whose fields are the config."""

    name: ClassVar[str] = "pass"
    produces_onnx: ClassVar[bool] = True
    """Whether `run` writes an ONNX model (torch-level passes write a PyTorch file)."""

    @abc.abstractmethod
    def run(self, src: Path, dst: Path) -> list[str] | None:
        """Read the model at `src`, write the result at `dst` (one file, no external data).

        Returns notes for the report (what was worked around, what stayed as it was), or None.
        """

    def describe(self) -> dict[str, Any]:
        """The config as JSON-able values (paths as strings)."""
        return {
            f.name: str(v) if isinstance(v, Path) else v
            for f in dataclasses.fields(self)
            if (v := getattr(self, f.name)) is not None
        }

    def cache_key_parts(self) -> dict[str, Any]:
        """The config for the cache key: data files stand for their content's digest.

        Raises:
            DataError: a data file the config names does not exist.
        """
        parts = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                if not value.is_file():
                    raise DataError(f"{self.name}: {f.name} file {value}: no such file")
                value = onnx_model.digest(value)
            parts[f.name] = value
        return parts


@dataclass(frozen=True)
class StepResult:
    """What one pass produced."""

    name: str
    """The pass."""
    config: dict[str, Any]
    """Its config."""
    output: Path
    """The artifact in the cache."""
    seconds: float
    """Time spent (0 when served from the cache)."""
    cached: bool
    """Whether the cache already had it."""
    notes: tuple[str, ...] = ()
    """What the pass said about this model (kept with the artifact, so a cache hit says it too)."""


def _absolute(step: Pass) -> Pass:
    """The same pass with its file paths made absolute (it runs in another directory)."""
    paths = {
        f.name: value.resolve()
        for f in dataclasses.fields(step)
        if isinstance(value := getattr(step, f.name), Path)
    }
    return dataclasses.replace(step, **paths) if paths else step


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Run with `path` as the working directory.

    ONNX Runtime's quantization tools drop files in the working directory and leave them there
    (sym_shape_infer_temp.onnx, and a 90 MB uuid-named .data per call on MiniLM: seen here), so
    every pass runs in a scratch folder that is thrown away afterwards.
    """
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def cache_key(input_digest: str, step: Pass) -> str:
    """The cache key of running `step` on a model with digest `input_digest`."""
    payload = {
        "input": input_digest,
        "pass": step.name,
        "config": step.cache_key_parts(),
        "versions": library_versions(),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _check_output(step: Pass, source: Path, out: Path) -> None:
    """Raise unless ONNX Runtime loads what `step` wrote.

    When the input itself does not load (an operator ONNX Runtime does not know), the error
    names the input rather than the pass.
    """
    try:
        onnx_model.load(out, check=False)
        require_loadable(out)
    except (ModelError, UnsupportedModel) as exc:
        if source.suffix == ".onnx":
            require_loadable(source)  # raises, naming the input, when the input is the problem
        raise CompressionError(
            f"{step.name} wrote a model that ONNX Runtime cannot load: {exc}"
        ) from exc


def run_pipeline(src: Path, steps: Sequence[Pass], cache: ArtifactCache) -> list[StepResult]:
    """Run `steps` in order from `src`; each output feeds the next.

    Raises:
        CompressionError: a pass failed or wrote something that is not a loadable model; the
            cache and the file system hold nothing of the failed step.
    """
    results: list[StepResult] = []
    current = src
    for step in steps:
        key = cache_key(onnx_model.digest(current), step)
        hit = cache.get(key)
        if hit is not None:
            notes = tuple(cache.meta(key).get("notes", ()))
            results.append(StepResult(step.name, step.describe(), hit, 0.0, True, notes))
            current = hit
            continue
        start = time.perf_counter()
        runnable, source = _absolute(step), current.resolve()  # before leaving the cwd
        with (
            tempfile.TemporaryDirectory(prefix=f"edgeopt-{step.name}-") as tmp,
            tempfile.TemporaryDirectory(prefix="edgeopt-cwd-") as scratch,
            _working_directory(Path(scratch)),
        ):
            out = Path(tmp) / ("model.onnx" if step.produces_onnx else "model.pt2")
            try:
                notes = tuple(runnable.run(source, out) or ())
            except EdgeoptError:
                raise
            except Exception as exc:
                # A library deep inside (torch, onnx, onnxruntime) failed: say which pass, and
                # what it said, in one line rather than a traceback.
                first = (str(exc).strip().splitlines() or [""])[0][:300]
                raise CompressionError(
                    f"{step.name} failed on {current.name}: {type(exc).__name__}: {first}"
                ) from exc
            if step.produces_onnx:
                _check_output(step, source, out)
            stray = sorted(p.name for p in Path(tmp).iterdir() if p != out)
            if stray:  # external data would be lost once the file leaves this folder
                raise CompressionError(f"{step.name} left files beside its output: {stray}")
            meta = {"pass": step.name, "config": step.describe(), "notes": list(notes)}
            stored = cache.put(key, out, meta)
        seconds = time.perf_counter() - start
        results.append(StepResult(step.name, step.describe(), stored, seconds, False, notes))
        current = stored
    return results
