"""Offline graph optimization with ONNX Runtime, saved to a file.

Levels: "basic" (constant folding, redundant node removal: portable), "extended" (operator
fusions such as attention and GELU: portable across machines with the same ONNX Runtime
execution provider) and "layout" (NCHWc and other layout changes tuned to this machine's CPU:
only for boards with the same ISA). ONNX Runtime applies the same optimizations at session load;
doing them offline saves that time on the board and lets the result be inspected.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from edgeopt.host.compress.passes import Pass
from edgeopt.host.compress.runtime import OptimizationLevel, require_loadable, session_options

__all__ = ["GraphOptimize"]


@dataclass(frozen=True)
class GraphOptimize(Pass):
    """Save ONNX Runtime's optimized graph."""

    name: ClassVar[str] = "optimize"
    level: OptimizationLevel = "extended"
    """How far to go; see the module docstring."""

    def run(self, src: Path, dst: Path) -> None:
        """Optimize `src` into `dst`."""
        options = session_options(self.level)
        options.optimized_model_filepath = str(dst)  # type: ignore[attr-defined]
        require_loadable(src, options)  # loading it writes the optimized graph
