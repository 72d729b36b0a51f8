"""Benchmark cases of `edgeopt bench`: the case model, its checks, its order, the Pareto front.

A *case* is one measurement (or the reason there is none) of one model variant on one device
with one thread count and execution provider. Callers pass cases as plain dicts with the keys of
`CaseDict`; every function of the report also takes `Case` objects. Nothing here talks to a board
or to the state database, draws, or formats, and nothing depends on the clock.

- `Case.from_dict` / `checked_cases`: checked cases; malformed ones raise `ValueError` naming
  the case.
- `display_order` / `in_display_order`: presentation order (table, plots, page): by device, then
  the device's providers (each by first appearance), threads and variant (fp32, fp16,
  int8-dynamic, int8-static, int4-weight, then others by name). Data (CSV, records) keeps the
  caller's order.
- `pareto` / `front_of`: the cases no other case beats on size, latency and (when measured)
  accuracy.

The views are drawn from here and import this module, never the reverse: `text` (the terminal
table), `records` (CSV and JSON), `chart` (the PNG) and `html` (the page).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from edgeopt.host.report.names import short_provider
from edgeopt.proto.plan import PRECISIONS

__all__ = [
    "STATUSES",
    "VARIANT_ORDER",
    "Case",
    "CaseDict",
    "CaseLike",
    "Status",
    "checked_cases",
    "display_order",
    "front_of",
    "in_display_order",
    "objectives_of",
    "pareto",
    "variants_of",
]

Status = Literal["ok", "unsupported", "failed", "not run"]
STATUSES: tuple[Status, ...] = ("ok", "unsupported", "failed", "not run")
VARIANT_ORDER: tuple[str, ...] = PRECISIONS
"""Variants in the order every view shows them; others follow by name."""

_TIMING_KEYS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "ci_low_ms", "ci_high_ms")


class CaseDict(TypedDict, total=False):
    """The dict form of a case, as `edgeopt bench` produces it (all keys; see `Case`)."""

    run: str
    device: str
    variant: str
    threads: int
    provider: str
    status: Status
    error: str
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    std_ms: float | None
    ci_low_ms: float | None
    ci_high_ms: float | None
    samples: int
    throughput: float | None
    size_bytes: int | None
    speedup: float | None
    accuracy: dict[str, float] | None
    flags: list[str]


@dataclass(frozen=True)
class Case:
    """One benchmark case, checked: what every view of the report is drawn from."""

    device: str
    """Inventory name of the board (user text: escaped wherever it is shown)."""
    variant: str
    """Model variant: fp32, fp16, int8-dynamic, int8-static, int4-weight or another name."""
    threads: int
    """Intra-op threads of the run."""
    provider: str
    """ONNX Runtime execution provider, e.g. "CPUExecutionProvider"."""
    status: Status
    """"ok" when measured; otherwise why not."""
    run: str = ""
    """Id of the benchmark run in the state database."""
    error: str = ""
    """Why a case is not ok ("" when ok)."""
    p50_ms: float | None = None
    """Median latency; set for every ok case, None otherwise."""
    p90_ms: float | None = None
    """90th percentile latency."""
    p99_ms: float | None = None
    """99th percentile latency."""
    mean_ms: float | None = None
    """Mean latency."""
    std_ms: float | None = None
    """Standard deviation of the latency."""
    ci_low_ms: float | None = None
    """Lower end of the median's confidence interval."""
    ci_high_ms: float | None = None
    """Upper end of the median's confidence interval."""
    samples: int = 0
    """Timed runs behind the statistics."""
    throughput: float | None = None
    """Inferences per second."""
    size_bytes: int | None = None
    """File size of the variant; set for every ok case."""
    speedup: float | None = None
    """p50 of fp32 (same device, threads, provider) over this p50; None without an fp32 case."""
    accuracy: Mapping[str, float] | None = None
    """Validation metrics against fp32, e.g. {"cosine": 0.998, "accuracy_drop": 0.004}."""
    flags: tuple[str, ...] = ()
    """Conditions of the measurement, e.g. ("throttled",)."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], index: int = 0) -> Case:
        """Check and convert one case dict; `index` only names the case in errors.

        Raises:
            ValueError: a required key is missing, a value has the wrong type, the status is
                unknown, or an ok case lacks its p50 or size.
        """
        where = f"case {index}"
        for key in ("device", "variant", "provider", "status"):
            if not isinstance(data.get(key), str):
                raise ValueError(f"{where}: {key!r} must be a string, got {data.get(key)!r}")
        where = f"case {index} ({data['device']}/{data['variant']})"
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"{where}: unknown status {status!r} (one of {', '.join(STATUSES)})")
        timings = {key: _number(data.get(key), key, where) for key in _TIMING_KEYS}
        accuracy = data.get("accuracy")
        if accuracy is not None:
            if not isinstance(accuracy, Mapping):
                raise ValueError(f"{where}: 'accuracy' must be a dict, got {accuracy!r}")
            accuracy = {
                str(k): v
                for k, v in ((k, _number(v, f"accuracy.{k}", where)) for k, v in accuracy.items())
                if v is not None
            }
        flags = data.get("flags") or ()
        if isinstance(flags, str) or not isinstance(flags, Iterable):
            raise ValueError(f"{where}: 'flags' must be a list of strings, got {flags!r}")
        case = cls(
            run=str(data.get("run") or ""),
            device=data["device"],
            variant=data["variant"],
            threads=_integer(data.get("threads"), "threads", where),
            provider=data["provider"],
            status=status,
            error=str(data.get("error") or ""),
            samples=_integer(data.get("samples"), "samples", where),
            throughput=_number(data.get("throughput"), "throughput", where),
            size_bytes=_integer(data["size_bytes"], "size_bytes", where)
            if data.get("size_bytes") is not None
            else None,
            speedup=_number(data.get("speedup"), "speedup", where),
            accuracy=accuracy or None,
            flags=tuple(str(f) for f in flags),
            **timings,
        )
        if status == "ok" and (case.p50_ms is None or case.p50_ms <= 0):
            raise ValueError(f"{where}: an ok case needs a positive p50_ms, got {case.p50_ms!r}")
        if status == "ok" and case.size_bytes is None:
            raise ValueError(f"{where}: an ok case needs size_bytes")
        return case

    @property
    def ok(self) -> bool:
        """Measured."""
        return self.status == "ok"

    @property
    def ep(self) -> str:
        """Short name of the execution provider: CPU, CUDA, TensorRT, ..."""
        return short_provider(self.provider)

    @property
    def ci_percent(self) -> float | None:
        """Half-width of the confidence interval as a percentage of p50."""
        if self.p50_ms is None or self.ci_low_ms is None or self.ci_high_ms is None:
            return None
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.p50_ms * 100

    @property
    def cosine(self) -> float | None:
        """Cosine similarity of the outputs to fp32's, when validated."""
        return None if self.accuracy is None else self.accuracy.get("cosine")

    @property
    def accuracy_drop(self) -> float | None:
        """Accuracy lost against fp32 (a fraction: 0.004 is 0.4 points), when validated."""
        return None if self.accuracy is None else self.accuracy.get("accuracy_drop")

    def to_dict(self) -> dict[str, Any]:
        """The case as a JSON-ready dict with every key of `CaseDict` (no NaN, no tuples)."""
        return {
            "run": self.run, "device": self.device, "variant": self.variant,
            "threads": self.threads, "provider": self.provider, "status": self.status,
            "error": self.error, **{key: getattr(self, key) for key in _TIMING_KEYS},
            "samples": self.samples, "throughput": self.throughput,
            "size_bytes": self.size_bytes, "speedup": self.speedup,
            "accuracy": None if self.accuracy is None else dict(self.accuracy),
            "flags": list(self.flags),
        }  # fmt: skip


CaseLike = Mapping[str, Any] | Case
"""What the functions of the report take for a case."""


def _number(value: object, key: str, where: str) -> float | None:
    """A finite float, or None for None, NaN and infinities (JSON has no NaN)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{where}: {key!r} must be a number, got {value!r}")
    return float(value) if math.isfinite(value) else None


def _integer(value: object, key: str, where: str) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: {key!r} must be an integer, got {value!r}")
    return value


def checked_cases(cases: Iterable[CaseLike]) -> list[tuple[CaseLike, Case]]:
    """Each given case with its checked form, in the caller's order."""
    return [(c, c if isinstance(c, Case) else Case.from_dict(c, i)) for i, c in enumerate(cases)]


def _variant_rank(variant: str) -> tuple[int, str]:
    if variant in VARIANT_ORDER:
        return VARIANT_ORDER.index(variant), ""
    return len(VARIANT_ORDER), variant


def display_order(cases: Sequence[Case]) -> list[int]:
    """Indices of `cases` in presentation order.

    Devices by first appearance, a device's providers by first appearance, then threads, then
    variant.
    """
    first: dict[tuple[str, str], int] = {}
    for i, c in enumerate(cases):
        first.setdefault((c.device, ""), i)
        first.setdefault((c.device, c.provider), i)
    return sorted(
        range(len(cases)),
        key=lambda i: (
            first[cases[i].device, ""],
            first[cases[i].device, cases[i].provider],
            cases[i].threads,
            _variant_rank(cases[i].variant),
        ),
    )


def in_display_order(cases: Sequence[Case]) -> list[Case]:
    """`cases` in presentation order (see `display_order`)."""
    return [cases[i] for i in display_order(cases)]


def variants_of(cases: Iterable[Case]) -> list[str]:
    """The variants present, in `VARIANT_ORDER` (others after, by name)."""
    return sorted({c.variant for c in cases}, key=_variant_rank)


# --- Pareto front -------------------------------------------------------------------------------


def objectives_of(group: Sequence[Case]) -> list[tuple[float, ...]]:
    """Per case, values where smaller is better: size, p50 and, when all have it, accuracy.

    Accuracy counts only when every case of the group was validated, since a case without it can
    be neither better nor worse on it: cosine (negated, higher is better) when all have it, else
    the accuracy drop when all have that.
    """
    base: list[tuple[float, ...]] = [(float(c.size_bytes or 0), c.p50_ms or 0.0) for c in group]
    cosines = [c.cosine for c in group]
    drops = [c.accuracy_drop for c in group]
    if all(v is not None for v in cosines):
        return [(*b, -(v or 0.0)) for b, v in zip(base, cosines, strict=True)]
    if all(v is not None for v in drops):
        return [(*b, v or 0.0) for b, v in zip(base, drops, strict=True)]
    return base


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return all(x <= y for x, y in zip(a, b, strict=True)) and a != b


def front_of(cases: Sequence[Case], per_device: bool) -> set[int]:
    """Indices into `cases` of the non-dominated ok cases."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(cases):
        if c.ok:
            groups.setdefault(c.device if per_device else "", []).append(i)
    front: set[int] = set()
    for members in groups.values():
        values = objectives_of([cases[i] for i in members])
        front.update(
            i
            for i, v in zip(members, values, strict=True)
            if not any(_dominates(w, v) for w in values)
        )
    return front


def pareto(cases: Iterable[CaseLike], *, per_device: bool = True) -> list[CaseLike]:
    """The ok cases that no other ok case beats: the variants worth considering.

    A case is dominated when another is no larger (size_bytes), no slower (p50_ms) and, when
    every compared case carries it, no less accurate (higher cosine, else lower accuracy drop),
    and strictly better on one of these. Cases with identical values do not dominate each other.

    Args:
        cases: case dicts (or `Case` objects).
        per_device: compare only cases of the same device (the default: a board's choice of
            variant, threads and provider); False gives one front over the whole fleet.

    Returns:
        The given objects themselves (not copies), in the caller's order.
    """
    pairs = checked_cases(cases)
    front = front_of([c for _, c in pairs], per_device)
    return [given for i, (given, _) in enumerate(pairs) if i in front]
