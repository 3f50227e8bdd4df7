"""`/metrics` in Prometheus' text format: runs by state, the queue, request latency, and event lag (how long a
live event took from its worker writing it to a WebSocket sending it). Runs by state are counted in the catalog,
its runs synced first (cheap: it reads only what the logs gained)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Gauge, Histogram, generate_latest

from cardmetry.orchestrator.local import LocalExecutor
from cardmetry.store.database import Catalog
from cardmetry.store.home import Home

CONTENT_TYPE = CONTENT_TYPE_LATEST
STATES = ("created", "running", "succeeded", "failed", "stopped", "cancelled")


class ServerMetrics:
    """The server's metrics, in a registry of their own (two apps in one process, as in tests, never mix)."""

    def __init__(self, home: Home, executor: LocalExecutor, catalog: Catalog) -> None:
        self.home, self.executor, self.catalog = home, executor, catalog
        self.registry = CollectorRegistry()
        self.request_seconds = Histogram(
            "cardmetry_request_seconds", "HTTP request latency by route", ["method", "route"], registry=self.registry
        )
        self.event_lag_seconds = Histogram(
            "cardmetry_event_lag_seconds", "From a worker writing a live event to a WebSocket sending it",
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0), registry=self.registry,
        )
        self.runs = Gauge("cardmetry_runs", "Runs by state", ["state"], registry=self.registry)
        self.queued = Gauge("cardmetry_queue_length", "Runs waiting for a worker", registry=self.registry)
        self.workers = Gauge("cardmetry_workers", "Worker processes training now", registry=self.registry)

    def render(self) -> bytes:
        states = self._run_states()
        for state in sorted(set(STATES) | set(states)):
            self.runs.labels(state=state).set(states.get(state, 0))
        self.queued.set(len(self.executor.queued()))
        self.workers.set(len(self.executor.running()))
        return generate_latest(self.registry)

    def _run_states(self) -> dict[str, int]:
        self.catalog.sync_runs()
        return self.catalog.run_states()
