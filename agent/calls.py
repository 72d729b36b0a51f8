"""One runner request as the agent's layers see it: its refusal, stop or crash as a `Refusal`.

Shared by the serving side (models.py) and the measuring side (measuring.py): the runner's
answer checked (`answered`), tensors marked to travel out of band (`wrapped`), a stop or a crash
translated (`runner_refusals`), and a stored tensor file named by digest (`inputs_path`).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

from edgeopt.agent.manifest import check_digest
from edgeopt.agent.refusal import Refusal
from edgeopt.agent.runner import RunnerCrashed, RunnerStopped, TensorTuple, out_of_band
from edgeopt.agent.store import ModelStore

__all__ = ["answered", "inputs_path", "runner_refusals", "wrapped"]

log = logging.getLogger("edgeopt.agent")


def inputs_path(store: ModelStore, sha256: str) -> str | None:
    """The stored tensor file a request names by digest, checked; None for none."""
    if not sha256:
        return None
    check_digest(sha256)
    path = store.blob(sha256)
    if not path.is_file():
        raise Refusal("NOT_FOUND", f"no tensor file {sha256} in this agent's store; push it")
    return str(path)


@contextlib.contextmanager
def runner_refusals(during: str, restart: Callable[[], None] | None = None) -> Iterator[None]:
    """Turn a runner's stop or death into a Refusal.

    The serving runner is restarted (`restart`, Models' reload of the active models); the
    benchmark runner starts again with its next request (no `restart`).
    """
    try:
        yield
    except RunnerStopped as exc:
        log.warning("%s while %s", exc, during)
        if restart is not None:
            restart()
        code = "DEADLINE_EXCEEDED" if exc.reason == "timeout" else "CANCELLED"
        raise Refusal(code, f"{during} stopped: {exc}") from exc
    except RunnerCrashed as exc:
        log.warning("%s while %s; restarting it", exc, during)
        if restart is not None:
            restart()
        raise Refusal("FAILED_PRECONDITION", f"ONNX Runtime crashed while {during}: {exc}") from exc


def answered(answer: dict[str, Any]) -> dict[str, Any]:
    """The runner's answer, or its refusal raised as one."""
    if not answer.get("ok"):
        raise Refusal(answer.get("code", "INTERNAL"), answer.get("error", "runner error"))
    return answer


def wrapped(tensors: list[TensorTuple] | None) -> list[TensorTuple] | None:
    """Tensors with their bytes marked to travel out of band to the runner (no copy)."""
    if not tensors:
        return tensors
    return [(n, d, s, out_of_band(b)) for n, d, s, b in tensors]
