"""Model compression as a pipeline of passes, usable from Python without the CLI.

    from edgeopt.host.compress import CompressRequest, compress
    report = compress(CompressRequest(model=Path("m.onnx"), precision="int8-static",
                                      calibration=Path("calib.npz"), output=Path("m.q.onnx")))

Modules: `onnxfile` (load and count), `data` (.npz datasets), `passes` (the `Pass` base and the
cached pipeline), `quantize` (int8 dynamic/static, int4 weight-only, fp16), `optimize` (ORT graph
optimization), `validate` (outputs against the reference, the accuracy gate), `cache`
(the artifact cache), `workflow` (`compress`), `sweep` (every precision, timed on this host),
`weights` (where the weights are and how they are stored), `blocks` (what the compute is
made of: multiply-adds, depthwise convs, squeeze-excite gates, for the planner), `keep_float`
(nodes a precision leaves float, `--keep-float`).

May import: edgeopt.host.errors and edgeopt.proto (and torch, onnx, onnxruntime); no other host
layer: nothing here knows boards, the CLI or the state database.
"""

from edgeopt.host.compress.cache import ArtifactCache
from edgeopt.host.compress.sweep import SweepRow, sweep
from edgeopt.host.compress.validate import Gate, ValidationReport
from edgeopt.host.compress.workflow import CompressionReport, CompressRequest, compress
from edgeopt.proto.plan import PRECISIONS, Precision

__all__ = [
    "PRECISIONS",
    "ArtifactCache",
    "CompressRequest",
    "CompressionReport",
    "Gate",
    "Precision",
    "SweepRow",
    "ValidationReport",
    "compress",
    "sweep",
]
