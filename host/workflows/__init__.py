"""What the commands do, end to end: deploy, benchmark, tune, profile.

May import: errors, config, compress, planning, transport, store (never cli or report).

    deploy      ask, compress once per distinct plan, push, activate, record
    bench       variants, threads and providers measured on boards, recorded
    tune        the planner's candidates measured on a board, the fastest that passes kept
    op_profile  per-operator timing through the agent or one-shot over SSH
"""

__all__ = ["artifacts", "bench", "deploy", "op_profile", "plans", "samples", "tune"]
