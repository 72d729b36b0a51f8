"""The export pass: PyTorch → ONNX, one file, dynamic batch (and sequence) axes, checked.

Uses PyTorch's TorchScript-based exporter (`dynamo=False`): on this project's models it is
several times faster than the torch.export-based one and writes a single file with no external
data. After export the ONNX model is run with ONNX Runtime on the example inputs and its outputs
are held against PyTorch's; a difference beyond `tolerance` is an error, not a warning.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgeopt.host.compress import torch_model
from edgeopt.host.compress.passes import Pass
from edgeopt.host.compress.runtime import quiet_logger, session_options
from edgeopt.host.errors import CompressionError, DataError

__all__ = ["Export"]


def _rename_inputs(model: Any, renames: dict[str, str]) -> None:
    """Rename graph inputs (and every reference to them) in place."""
    for value in model.graph.input:
        value.name = renames.get(value.name, value.name)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if name in renames:
                node.input[i] = renames[name]


def _flatten(output: Any) -> list[tuple[str, Any]]:
    """Named output tensors of a forward call (tensor, tuple/list, or dict-like)."""
    import torch  # noqa: PLC0415

    if isinstance(output, torch.Tensor):
        return [("output", output)]
    if isinstance(output, dict) or hasattr(output, "items"):
        return [(str(k), v) for k, v in output.items() if isinstance(v, torch.Tensor)]
    if isinstance(output, (tuple, list)):
        return [(f"output_{i}", v) for i, v in enumerate(output) if isinstance(v, torch.Tensor)]
    raise CompressionError(f"cannot export a model whose forward returns {type(output).__name__}")


@dataclass(frozen=True)
class Export(Pass):
    """Export a PyTorch model to ONNX."""

    name: ClassVar[str] = "export"
    example: Path | None = None
    """`.npz` of example inputs, named as `forward`'s arguments (file order if names differ)."""
    input_shape: tuple[int, ...] | None = None
    """Shape of a single float32 input, when no example file is given."""
    opset: int = 17
    """ai.onnx opset to export to."""
    tolerance: float = 1e-3
    """Largest allowed |ONNX - PyTorch| relative to the largest |PyTorch| output (at least 1)."""

    def run(self, src: Path, dst: Path) -> None:
        """Export the model at `src` (file or factory reference) to `dst`."""
        if src.suffix == ".pt2":
            self._run_exported_program(src, dst)
            return
        import torch  # noqa: PLC0415

        module = torch_model.load(src)
        forward_names = torch_model.forward_argument_names(module)
        example = torch_model.example_inputs(self.example, self.input_shape, forward_names)
        names = list(example)
        if forward_names and set(names) <= set(forward_names):
            names = [n for n in forward_names if n in example]  # forward's order
        elif forward_names and len(names) > len(forward_names):
            raise DataError(
                f"example data names {names} do not fit forward({', '.join(forward_names)})"
            )
        tensors = tuple(torch.from_numpy(example[n]) for n in names)
        with torch.no_grad():
            expected = _flatten(module(*tensors))
        output_names = [n for n, _ in expected]
        sequence = next(
            (t.shape[1] for t in tensors if not t.is_floating_point() and t.dim() >= 2), None
        )
        dynamic_axes: dict[str, dict[int, str]] = {}
        for n, t in zip(names, tensors, strict=True):
            axes = {0: "batch"}
            if sequence is not None and not t.is_floating_point() and t.dim() >= 2:
                axes[1] = "sequence"
            dynamic_axes[n] = axes
        for n, t in expected:
            axes = {0: "batch"}
            if sequence is not None and t.dim() >= 3 and t.shape[1] == sequence:
                axes[1] = "sequence"
            dynamic_axes[n] = axes
        with warnings.catch_warnings():
            # The TorchScript exporter announces its deprecation; we choose it on purpose.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            # Tracing notes Python-level branches; the output check below is the real test.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)  # type: ignore[attr-defined]
            torch.onnx.export(
                module,
                tensors,
                str(dst),
                input_names=names,
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=self.opset,
                do_constant_folding=True,
                dynamo=False,
            )
        self._check(dst, dict(zip(names, (example[n] for n in names), strict=True)), expected)

    def _run_exported_program(self, src: Path, dst: Path) -> None:
        """Export a `.pt2` with the torch.export-based exporter, folded into one file.

        An ExportedProgram carries its own graph and dynamic dims, which that exporter reads
        directly; the external data it writes is folded in so no `.data` file is left behind.
        """
        import onnx  # noqa: PLC0415
        import torch  # noqa: PLC0415

        program = torch_model.load_exported_program(src)
        with (
            tempfile.TemporaryDirectory() as scratch,
            warnings.catch_warnings(),
            contextlib.redirect_stdout(io.StringIO()),  # its progress lines would spoil --json
            quiet_logger("torch.onnx"),
        ):
            warnings.simplefilter("ignore")
            tmp = Path(scratch) / "model.onnx"
            try:
                torch.onnx.export(
                    program, (), str(tmp), dynamo=True, opset_version=max(self.opset, 18)
                )
            except Exception as exc:
                first = str(exc).splitlines()[0]
                raise CompressionError(f"cannot export {src.name}: {first}") from exc
            model = onnx.load(str(tmp))  # pulls the external data in
        constants = {x.name for x in model.graph.initializer}
        names = [i.name for i in model.graph.input if i.name not in constants]
        example = torch_model.example_inputs(self.example, self.input_shape, names)
        if len(example) == len(names) and set(example) != set(names):
            # As with the TorchScript path, inputs take the example data's names (file order).
            _rename_inputs(model, dict(zip(names, example, strict=True)))
            names = list(example)
        onnx.save_model(model, str(dst), save_as_external_data=False)
        tensors = tuple(torch.from_numpy(example[n]) for n in names)
        with torch.no_grad():
            expected = _flatten(program.module()(*tensors))
        outputs = [o.name for o in model.graph.output]
        named = [(o, t) for o, (_, t) in zip(outputs, expected, strict=True)]
        self._check(dst, {n: example[n] for n in names}, named)

    def _check(
        self, path: Path, feed: dict[str, np.ndarray], expected: list[tuple[str, Any]]
    ) -> None:
        import onnxruntime as ort  # noqa: PLC0415

        session = ort.InferenceSession(
            str(path), session_options(), providers=["CPUExecutionProvider"]
        )
        got = session.run([n for n, _ in expected], feed)
        for (name, want), have in zip(expected, got, strict=True):
            want_np = want.detach().numpy()
            error = float(np.abs(want_np - have).max()) if want_np.size else 0.0
            scale = max(1.0, float(np.abs(want_np).max()) if want_np.size else 1.0)
            if error > self.tolerance * scale:
                raise CompressionError(
                    f"exported ONNX differs from PyTorch on output {name!r}: max |error| "
                    f"{error:.3g} > {self.tolerance * scale:.3g}"
                )
