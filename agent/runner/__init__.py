"""The runner: a child process of the agent that holds the ONNX Runtime sessions.

The agent keeps ONNX Runtime out of its own process: importing it costs ~30 MB, and a model
that crashes it (a segfault in a kernel, an abort in a custom op) must fail one request, not take
the agent down. So loading, smoke-testing and running models happens here, in
`python -m edgeopt.agent.runner`, which the agent talks to over its stdin and stdout with
length-prefixed pickled dicts (both ends are this package; nothing else speaks this protocol).
Tensor bytes travel out of band (pickle protocol 5): written from the sender's buffer and read
into one buffer on the other side, never copied through a pickle.

The package, along its seams:
- `proxy`: the agent's side, `Runner` (start, one request at a time, time limits, kills);
- `framing`: the frames both sides read and write;
- `child`: the child's side, `Child` and `main` (run by `python -m edgeopt.agent.runner`);
- `session`: ONNX Runtime sessions from a model and its `RunPlan`;
- `feeds`: inputs checked and turned into arrays, outputs into wire tensors;
- `measure`: timed runs, their statistics and the conditions they ran in.
The agent imports this package (the names below); only the child imports `child`.

Parent side: `Runner.call(request)` sends one request and waits for its answer; when the child
died (EOF on its stdout), it raises `RunnerCrashed` with the signal or exit status, and the next
call starts a new child. The agent then loads its active models again (see models.py). A call
that outlives its time limit, or whose caller gave up (`cancel` set), kills the child: ONNX
Runtime cannot be interrupted inside a kernel, and a killed child is the only stop that always
works. It raises `RunnerStopped` (a `RunnerCrashed`) saying which.

Requests ("op" and its fields) and answers ("ok" and fields, or "ok": False, "code", "error"):
- load: key, path, plan (a RunPlan, agent.proto's Plan), smoke (list of tensors or None)
  → load_ms, smoke_ms, memory_bytes, inputs, outputs (signatures)
- unload: key
- infer: key, inputs (list of (name, dtype, shape, buffer)) → outputs, latency_ms
- stats → rss_bytes, loaded (key → memory_bytes)
"""

from __future__ import annotations

from edgeopt.agent.runner.framing import OUTPUT_LIMIT, TensorTuple, out_of_band
from edgeopt.agent.runner.measure import median_ci, rss_bytes
from edgeopt.agent.runner.proxy import Runner, RunnerCrashed, RunnerStopped

__all__ = [
    "OUTPUT_LIMIT",
    "Runner",
    "RunnerCrashed",
    "RunnerStopped",
    "TensorTuple",
    "median_ci",
    "out_of_band",
    "rss_bytes",
]
