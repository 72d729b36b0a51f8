"""Board facts: what a board is, read from the text of /proc, /sys and /etc, shared by both sides.

`edgeopt.boardfacts` is imported by the agent (which reports its own board) and by the host
(`edgeopt ssh facts` reads a board over SSH with no agent there, `bench` and `profile` decode the
conditions a board reports), so that both read a board the same way; it imports neither of them,
only the contract (`edgeopt.proto`) and the standard library, and runs on Python 3.8 like the
agent. Each probe is a small pure function from raw text to a typed fact (`cpu`, `memory`,
`thermal`, `system`, `accelerators`; `runtime` measures ONNX Runtime in a child process);
`capabilities` reads the files, from the running board or a captured tree, and calls them.
Tests feed them captured files of real boards kept under tests/boardfacts/data/boards/.
"""

__all__ = ["accelerators", "capabilities", "cpu", "memory", "runtime", "system", "thermal"]
