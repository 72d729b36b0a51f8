"""edgeopt-agent: runs on each board; reports it, stores models, runs and measures them.

What it may import: the contract (`edgeopt.proto`), the board facts (`edgeopt.boardfacts`), its
own modules, the standard library, and grpcio, protobuf, numpy and onnxruntime (ONNX Runtime only
in its runner child). Never `edgeopt.host` (the host talks to it over gRPC, even in tests), never
torch: tests/test_layers.py and tests/agent/test_imports.py (a fresh interpreter) hold this. It
runs on Python 3.8 and newer.

Its map, callers above what they call:

    cli ─> server ─> interceptors            (token auth, request parsing)
             ├─> pull ─> models, plancheck    (pull mode: poll a registry, download, activate)
             └─> service ─> messages          (protobuf ⇄ checked plans, tensors, answers)
                    │          └─> plancheck
                    └─> models ─> measuring   (Benchmark, Profile: a runner of their own)
                          │   └─> calls       (a runner's answer, stop or crash as a Refusal)
                          ├─> store ─> manifest, uploads, refusal
                          └─> runner/         (the child process that holds ONNX Runtime)
                                proxy (the agent's side) ─ framing ─ child ─> session, feeds,
                                measure; session ─> plancheck, modelcheck
    tls: certificates and the token, for server and cli.

Everything below the service raises `Refusal` (refusal.py), which the service answers with its
gRPC status. A run plan travels as `edgeopt.proto.plan.RunPlan` from the wire to the store and
the runner.
"""

from __future__ import annotations

__all__: list[str] = []
