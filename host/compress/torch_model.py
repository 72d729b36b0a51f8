"""PyTorch inputs: where a model comes from, and example inputs for it.

A PyTorch model is given as
- an `ExportedProgram` file (`.pt2`, from `torch.export.save`),
- a TorchScript file (`.pt`/`.ts`, from `torch.jit.save`), or
- a factory reference `package.module:function` returning an `nn.Module` (with `--input-shape`
  or example data).
Pickled whole modules (`torch.save(model)`) are refused: loading them runs arbitrary code.

The pipeline works on files, so a factory reference is written to a small JSON file naming the
factory and the digest of the module's source; its cache key then changes when the code does.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import inspect
import json
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.host.compress import data as datasets
from edgeopt.host.errors import DataError, ModelError

__all__ = [
    "REFERENCE_SUFFIX",
    "TORCH_SUFFIXES",
    "as_float32",
    "ensure_importable",
    "example_inputs",
    "forward_argument_names",
    "is_factory_reference",
    "is_torch_input",
    "load",
    "load_exported_program",
    "write_factory_reference",
]

TORCH_SUFFIXES = (".pt2", ".pt", ".ts", ".pth", ".torchscript")
REFERENCE_SUFFIX = ".factory.json"


def is_factory_reference(text: str) -> bool:
    """Whether `text` looks like `package.module:function` rather than a file."""
    module, sep, func = text.partition(":")
    return bool(sep) and module.replace(".", "").replace("_", "").isalnum() and func.isidentifier()


def is_torch_input(path: Path) -> bool:
    """Whether `path` is a PyTorch model file or a factory reference file."""
    return path.name.endswith(REFERENCE_SUFFIX) or path.suffix in TORCH_SUFFIXES


def write_factory_reference(reference: str, folder: Path) -> Path:
    """Resolve `package.module:function` and record it, with its source digest, in a file.

    Raises:
        ModelError: the module cannot be imported or has no such callable.
    """
    module_name, _, func_name = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise ModelError(f"{reference}: cannot import {module_name}: {exc}") from exc
    factory = getattr(module, func_name, None)
    if not callable(factory):
        raise ModelError(f"{reference}: {module_name} has no callable {func_name!r}")
    path = folder / f"{module_name}.{func_name}{REFERENCE_SUFFIX}"
    path.write_text(
        json.dumps({"factory": reference, "model_sha256": _model_digest(reference)}, sort_keys=True)
    )
    return path


def _model_digest(reference: str) -> str:
    """What the factory builds, as a digest: structure, every weight, and its classes' modules.

    Code in another module, or weights read from a file, change it too, so a cached export is
    never served for a model that changed.
    """
    module = _call_factory(reference)
    h = hashlib.sha256(repr(module).encode())
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    for cls in {type(m) for m in module.modules()}:
        if cls.__module__.startswith("torch."):
            continue
        with contextlib.suppress(OSError, TypeError):
            h.update(inspect.getsource(sys.modules[cls.__module__]).encode())
    return h.hexdigest()


def _call_factory(reference: str) -> Any:
    import torch  # noqa: PLC0415

    module_name, _, func_name = reference.partition(":")
    module = getattr(importlib.import_module(module_name), func_name)()
    if not isinstance(module, torch.nn.Module):
        raise ModelError(f"{reference} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval()


def load_exported_program(path: Path) -> Any:
    """The `torch.export.ExportedProgram` in a `.pt2` file.

    Raises:
        ModelError: not one.
    """
    import torch  # noqa: PLC0415

    try:
        return torch.export.load(str(path))
    except Exception as exc:
        raise ModelError(f"{path}: not a torch.export ExportedProgram: {exc}") from exc


def load(path: Path) -> Any:
    """The `torch.nn.Module` that `path` holds (or refers to), in eval mode.

    Raises:
        ModelError: not a model file we load, or the factory did not return a module.
    """
    import torch  # noqa: PLC0415

    if path.name.endswith(REFERENCE_SUFFIX):
        return _call_factory(json.loads(path.read_text())["factory"])
    if not path.is_file():
        raise ModelError(f"{path}: no such file")
    if path.suffix == ".pt2":
        return load_exported_program(path).module()
    try:
        with warnings.catch_warnings():
            # torch 2.13 deprecates TorchScript; users still have .pt files, so we read them.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:
        raise ModelError(
            f"{path}: not a TorchScript file ({str(exc).splitlines()[0][:200]}); save with "
            "torch.jit.save or torch.export.save (pickled modules are not loaded: they run code)"
        ) from exc


def example_inputs(
    example: Path | None, input_shape: tuple[int, ...] | None, names: list[str] | None = None
) -> dict[str, np.ndarray]:
    """Named example inputs: from an `.npz` (names in file order), or float32 of `input_shape`.

    Raises:
        DataError: neither given, or the file is unreadable.
    """
    if example is not None:
        arrays = datasets.read_npz(example, "example")
        return {k: as_float32(v) for k, v in arrays.items() if k != "labels"}
    if input_shape is not None:
        rng = np.random.default_rng(0)
        return {(names or ["input"])[0]: rng.standard_normal(input_shape).astype(np.float32)}
    raise DataError(
        "exporting a PyTorch model needs example inputs: --example DATA.npz or --input-shape"
    )


def as_float32(array: np.ndarray) -> np.ndarray:
    """float64 (numpy's default) becomes float32, what PyTorch models are made of."""
    return array.astype(np.float32) if array.dtype == np.float64 else array


def forward_argument_names(module: Any) -> list[str] | None:
    """The parameter names of `module.forward`, when Python can tell them."""
    try:
        params = inspect.signature(module.forward).parameters
    except (TypeError, ValueError, AttributeError):
        return None
    names = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    return names or None


def ensure_importable(folder: Path) -> None:
    """Let factory references name modules in `folder` (the current directory, as python -m)."""
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
