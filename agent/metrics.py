"""What the agent served, counted; and Prometheus's text format of it (`--metrics ADDRESS`).

`InferCounts` counts every Infer and InferStream per model name and version: requests, errors
by status, and a latency histogram with fixed bounds. It is always on (a lock and a few
additions per call): ListModels reports it (`InferStats`) for `edgeopt top`. With `--metrics`,
`serve_metrics` serves, through the `prometheus_client` package (pure Python) on its own
thread, what a scrape reads at that moment:

    edgeopt_inference_requests_total{model,version}            counter
    edgeopt_inference_errors_total{model,version,code}          counter
    edgeopt_inference_latency_seconds{model,version}            histogram
    edgeopt_model_active_info{model,version,sha256,precision}   info (1 per active version)
    edgeopt_runner_restarts_total                               counter
    edgeopt_store_bytes, edgeopt_store_quota_bytes              gauges
    edgeopt_uploads_in_flight                                   gauge
    edgeopt_temperature_celsius{zone,type}                      gauge (thermal zones)
    edgeopt_throttled{condition}                                gauge (Raspberry Pi firmware:
                                                                1 now, 0 not; and _since_boot)
    edgeopt_agent_resident_memory_bytes, edgeopt_runner_resident_memory_bytes

The board facts come from `Sources` (the live /proc and /sys, or `--sysfs DIR`, as
node_exporter's `--path.sysfs`). Off by default; on loopback unless an address says otherwise.
"""

from __future__ import annotations

import bisect
import socket
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator

from edgeopt.boardfacts import thermal
from edgeopt.boardfacts.capabilities import Sources, thermal_zones, throttle_flags

if TYPE_CHECKING:
    from edgeopt.agent.models import Models

__all__ = ["BOUNDS_MS", "InferCounts", "Tally", "parse_address", "serve_metrics"]

BOUNDS_MS = (1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)
"""The histogram's upper bounds in milliseconds (an edge board's range: 1 ms to 10 s)."""


@dataclass
class Tally:
    """One (model, version)'s counts."""

    requests: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS_MS) + 1))
    """Non-cumulative: buckets[i] counts latencies in (BOUNDS_MS[i-1], BOUNDS_MS[i]]; the last
    those above every bound."""
    sum_ms: float = 0.0

    def cumulative(self) -> list[int]:
        """Counts at or below each bound, then the total (Prometheus's form)."""
        out, running = [], 0
        for count in self.buckets:
            running += count
            out.append(running)
        return out


class InferCounts:
    """Thread-safe counts of inference per (model, version)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tallies: dict[tuple[str, str], Tally] = {}

    def served(self, model: str, version: str, latency_ms: float) -> None:
        """One inference answered."""
        slot = bisect.bisect_left(BOUNDS_MS, latency_ms)
        with self._lock:
            tally = self._tallies.setdefault((model, version), Tally())
            tally.requests += 1
            tally.buckets[slot] += 1
            tally.sum_ms += latency_ms

    def failed(self, model: str, version: str, code: str) -> None:
        """One inference refused or failed (`code`: the gRPC status name)."""
        with self._lock:
            tally = self._tallies.setdefault((model, version), Tally())
            tally.requests += 1
            tally.errors[code] = tally.errors.get(code, 0) + 1

    def snapshot(self) -> dict[tuple[str, str], Tally]:
        """A copy of every tally."""
        with self._lock:
            return {
                k: Tally(t.requests, dict(t.errors), list(t.buckets), t.sum_ms)
                for k, t in self._tallies.items()
            }

    def by_model(self) -> dict[str, Tally]:
        """Every version of each model together (what ListModels reports), in one pass."""
        out: dict[str, Tally] = {}
        for (name, _), t in self.snapshot().items():
            total = out.setdefault(name, Tally())
            total.requests += t.requests
            for code, n in t.errors.items():
                total.errors[code] = total.errors.get(code, 0) + n
            total.buckets = [a + b for a, b in zip(total.buckets, t.buckets)]
            total.sum_ms += t.sum_ms
        return out


def parse_address(text: str) -> tuple[str, int]:
    """`PORT` (loopback), `HOST:PORT` or `[V6]:PORT`.

    Raises:
        ValueError: not of those forms.
    """
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", text
    if not port.isdigit() or not 0 < int(port) < 65536 or (sep and not host):
        raise ValueError(f"--metrics wants PORT or HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


class _Collector:
    """prometheus_client's custom collector: everything read at scrape time."""

    def __init__(self, models: Models, counts: InferCounts, sources: Sources) -> None:
        self.models, self.counts, self.sources = models, counts, sources

    def describe(self) -> list[Any]:
        return []  # no description up front: every family is made at scrape time

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (  # noqa: PLC0415
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        requests = CounterMetricFamily("edgeopt_inference_requests", "Inference calls answered "
                                       "or refused", labels=["model", "version"])  # fmt: skip
        errors = CounterMetricFamily("edgeopt_inference_errors", "Inference calls refused or "
                                     "failed", labels=["model", "version", "code"])  # fmt: skip
        latency = HistogramMetricFamily("edgeopt_inference_latency_seconds", "Inference time "
                                        "in the runner", labels=["model", "version"])  # fmt: skip
        for (model, version), t in sorted(self.counts.snapshot().items()):
            requests.add_metric([model, version], t.requests)
            for code, n in sorted(t.errors.items()):
                errors.add_metric([model, version, code], n)
            bounds = [*(f"{b / 1000:g}" for b in BOUNDS_MS), "+Inf"]
            latency.add_metric([model, version], list(zip(bounds, t.cumulative())),
                               t.sum_ms / 1000)  # fmt: skip
        yield from (requests, errors, latency)
        yield from self._store(InfoMetricFamily, GaugeMetricFamily, CounterMetricFamily)
        yield from self._board(GaugeMetricFamily)

    def _store(self, info_family: Any, gauge: Any, counter: Any) -> Iterator[Any]:
        store = self.models.store
        active = info_family("edgeopt_model_active", "The active version of each model",
                             labels=["model", "version", "sha256", "precision"])  # fmt: skip
        for name, entry in sorted(store.entries().items()):
            found = entry.find(entry.active) if entry.active else None
            if found is not None:
                active.add_metric([], {"model": name, "version": found.version,
                                       "sha256": found.sha256,
                                       "precision": found.plan.precision})  # fmt: skip
        yield active
        restarts = counter(
            "edgeopt_runner_restarts",
            "Runner processes started after the first (ONNX Runtime crashed, stopped, timed out)",
        )
        restarts.add_metric([], max(0, self.models.runner.generation - 1))
        yield restarts
        yield gauge("edgeopt_store_bytes", "Bytes of artifacts and partial uploads",
                    value=store.used_bytes())  # fmt: skip
        if store.limits.max_store_bytes is not None:
            yield gauge("edgeopt_store_quota_bytes", "The store's quota",
                        value=store.limits.max_store_bytes)  # fmt: skip
        yield gauge("edgeopt_uploads_in_flight", "Uploads (pushes, pulls) being received",
                    value=store.uploads_in_flight())  # fmt: skip
        agent, runner = self.models.memory()
        yield gauge("edgeopt_agent_resident_memory_bytes", "The agent process's RSS", value=agent)
        yield gauge("edgeopt_runner_resident_memory_bytes", "The runner process's RSS (0: none)",
                    value=runner)  # fmt: skip

    def _board(self, gauge: Any) -> Iterator[Any]:
        temps = gauge("edgeopt_temperature_celsius", "Thermal zone readings",
                      labels=["zone", "type"])  # fmt: skip
        for t in thermal.temperatures(thermal_zones(self.sources)):
            temps.add_metric([t.zone, t.type], t.celsius)
        yield temps
        flags = throttle_flags(self.sources)
        if flags is None:
            return
        now = gauge("edgeopt_throttled", "Raspberry Pi firmware: the condition holds now",
                    labels=["condition"])  # fmt: skip
        since = gauge("edgeopt_throttled_since_boot", "Raspberry Pi firmware: the condition "
                      "happened since boot", labels=["condition"])  # fmt: skip
        for bit, name in thermal.THROTTLE_NOW.items():
            now.add_metric([name], 1 if flags & (1 << bit) else 0)
            since.add_metric([name], 1 if flags & (1 << (bit + 16)) else 0)
        yield now
        yield since


def serve_metrics(address: tuple[str, int], models: Models, counts: InferCounts,
                  sources: Sources) -> tuple[Any, int]:  # fmt: skip
    """Serve the metrics on `address` in a thread of its own; (the server, its port).

    Raises:
        OSError: the address cannot be bound.
    """
    import http.server  # noqa: PLC0415

    from prometheus_client import (  # noqa: PLC0415
        CONTENT_TYPE_LATEST,
        CollectorRegistry,
        generate_latest,
    )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(models, counts, sources))

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] not in ("/metrics", "/"):
                self.send_error(404, "the metrics are at /metrics")
                return
            body = generate_latest(registry)
            self.send_response(200)
            self.send_header("Content-Type", CONTENT_TYPE_LATEST)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # scrapes every few seconds: not logged
            pass

    class Server(http.server.ThreadingHTTPServer):
        daemon_threads = True
        address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET

    server = Server(address, Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server, server.server_address[1]
