"""A few Prometheus metrics, rendered in the text exposition format (no client library needed).

All updates happen on the server's event loop thread, so no locking is needed.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Callable, Sequence

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        i = bisect.bisect_left(self.buckets, value)
        if i < len(self.counts):
            self.counts[i] += 1
        self.sum += value
        self.count += 1

    def render(self, name: str) -> list[str]:
        lines, cumulative = [], 0
        for bound, n in zip(self.buckets, self.counts, strict=True):
            cumulative += n
            lines.append(f'{name}_bucket{{le="{_number(bound)}"}} {cumulative}')
        lines += [f'{name}_bucket{{le="+Inf"}} {self.count}', f"{name}_sum {self.sum:.6f}",
                  f"{name}_count {self.count}"]
        return lines


class Metrics:
    def __init__(self) -> None:
        self.requests: Counter[tuple[str, str, int]] = Counter()
        self.errors: Counter[str] = Counter()
        self.images = 0
        self.batches = Histogram(BATCH_BUCKETS)
        self.request_latency = Histogram(LATENCY_BUCKETS)
        self.inference_latency = Histogram(LATENCY_BUCKETS)
        self.max_batch_seen = 0
        self.queue_depth = 0
        self.inference_restarts: Callable[[], int] = lambda: 0
        self.inference_timeouts: Callable[[], int] = lambda: 0

    def record_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests[(method, route, status)] += 1
        self.request_latency.observe(seconds)

    def record_batch(self, size: int, seconds: float) -> None:
        self.batches.observe(size)
        self.inference_latency.observe(seconds)
        self.images += size
        self.max_batch_seen = max(self.max_batch_seen, size)

    def render(self) -> str:
        out = _header("veil_requests_total", "counter", "HTTP requests by method, route, status")
        out += [f'veil_requests_total{{method="{m}",route="{r}",status="{s}"}} {n}'
                for (m, r, s), n in sorted(self.requests.items())]
        out += _header("veil_errors_total", "counter", "requests answered with an error, by code")
        out += [f'veil_errors_total{{code="{c}"}} {n}' for c, n in sorted(self.errors.items())]
        out += _header("veil_images_total", "counter", "images classified")
        out.append(f"veil_images_total {self.images}")
        out += _header("veil_batch_size", "histogram", "images per dispatched batch")
        out += self.batches.render("veil_batch_size")
        out += _header("veil_batch_size_max", "gauge", "largest inference batch so far")
        out.append(f"veil_batch_size_max {self.max_batch_seen}")
        out += _header("veil_request_latency_seconds", "histogram", "HTTP request latency")
        out += self.request_latency.render("veil_request_latency_seconds")
        out += _header("veil_inference_latency_seconds", "histogram", "model time per batch")
        out += self.inference_latency.render("veil_inference_latency_seconds")
        out += _header("veil_queue_depth", "gauge", "requests waiting for a batch")
        out.append(f"veil_queue_depth {self.queue_depth}")
        out += _header("veil_inference_restarts_total", "counter",
                       "times the inference process was replaced (died or timed out)")
        out.append(f"veil_inference_restarts_total {self.inference_restarts()}")
        out += _header("veil_inference_timeouts_total", "counter",
                       "batches the inference process did not answer in time (it was replaced)")
        out.append(f"veil_inference_timeouts_total {self.inference_timeouts()}")
        return "\n".join(out) + "\n"


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))
