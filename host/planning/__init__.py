"""Choosing how a model runs on a board, with no I/O: the planner and the model's traits.

May import: edgeopt.host.errors, edgeopt.host.config, edgeopt.proto, edgeopt.boardfacts.
Measuring candidates on a board (tuning) calls the agent, so it is a workflow.

    planner     Board, ModelTraits, Constraints → Decision (a chosen plan, ranked alternatives)
    experience  what tuning measured on a kind of board (Measured), as the planner's evidence
"""

__all__ = ["plan", "planner"]
