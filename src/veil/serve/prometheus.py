"""The server's Prometheus metrics (prometheus_client), one registry per app.

All updates happen on the server's event loop thread. The inference process's restarts and
timeouts are read from it when /metrics is scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MEDIA_TYPE = CONTENT_TYPE_LATEST

disable_created_metrics()  # no `*_created` series beside each counter: nothing here reads them


class _InferenceCounters(Collector):
    """Counters kept by the inference process, read at scrape time."""

    def __init__(self) -> None:
        self.restarts: Callable[[], int] = lambda: 0
        self.timeouts: Callable[[], int] = lambda: 0

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily("veil_inference_restarts", "times the inference process was "
                                  "replaced (died or timed out)", value=self.restarts())
        yield CounterMetricFamily("veil_inference_timeouts", "batches the inference process did "
                                  "not answer in time (it was replaced)", value=self.timeouts())


class Metrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("veil_requests", "HTTP requests by method, route, status",
                                ["method", "route", "status"], registry=registry)
        self.errors = Counter("veil_errors", "requests answered with an error, by code",
                              ["code"], registry=registry)
        self.images = Counter("veil_images", "images classified", registry=registry)
        self.batches = Histogram("veil_batch_size", "images per dispatched batch",
                                 buckets=BATCH_BUCKETS, registry=registry)
        self.max_batch = Gauge("veil_batch_size_max", "largest inference batch so far",
                               registry=registry)
        self.request_latency = Histogram("veil_request_latency_seconds", "HTTP request latency",
                                         buckets=LATENCY_BUCKETS, registry=registry)
        self.inference_latency = Histogram("veil_inference_latency_seconds",
                                           "model time per batch", buckets=LATENCY_BUCKETS,
                                           registry=registry)
        self.queue = Gauge("veil_queue_depth", "requests waiting for a batch", registry=registry)
        self.inference = _InferenceCounters()
        registry.register(self.inference)
        self._max_batch_seen = 0

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.request_latency.observe(seconds)

    def record_error(self, code: str) -> None:
        self.errors.labels(code).inc()

    def record_batch(self, size: int, seconds: float) -> None:
        self.batches.observe(size)
        self.inference_latency.observe(seconds)
        self.images.inc(size)
        if size > self._max_batch_seen:
            self._max_batch_seen = size
            self.max_batch.set(size)

    def record_queue_depth(self, depth: int) -> None:
        self.queue.set(depth)

    def watch_inference(self, restarts: Callable[[], int], timeouts: Callable[[], int]) -> None:
        self.inference.restarts, self.inference.timeouts = restarts, timeouts

    def render(self) -> str:
        return generate_latest(self.registry).decode()
