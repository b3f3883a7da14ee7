"""Prometheus metrics in the text exposition format, written by hand to keep the server's dependencies small.

Only what an operator needs to see the batcher work: requests by route and status, request latency, encoder
batch sizes, tokens, queue depth and requests in flight.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence

LabelValues = tuple[str, ...]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)


def _labels(names: Sequence[str], values: LabelValues) -> str:
    if not names:
        return ""
    escaped = (v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") for v in values)
    return "{" + ",".join(f'{n}="{v}"' for n, v in zip(names, escaped)) + "}"


def _num(x: float) -> str:
    if math.isinf(x):
        return "+Inf"
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class _Metric:
    kind = ""

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help_text, tuple(labels)
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help_text: str, labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self._values: dict[LabelValues, float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + by

    def render(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return self.header() + [f"{self.name}{_labels(self.label_names, k)} {_num(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, *labels: str) -> None:
        with self._lock:
            self._values[labels] = value

    def add(self, delta: float, *labels: str) -> None:
        self.inc(*labels, by=delta)


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help_text: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> None:
        super().__init__(name, help_text, labels)
        self.buckets = (*sorted(buckets), math.inf)
        self._counts: dict[LabelValues, list[int]] = {}
        self._sums: dict[LabelValues, float] = {}
        if not self.label_names:  # an unlabelled histogram exists (all zero) before its first observation
            self._counts[()], self._sums[()] = [0] * len(self.buckets), 0.0

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts = self._counts.setdefault(labels, [0] * len(self.buckets))
            for i, upper in enumerate(self.buckets):
                if value <= upper:
                    counts[i] += 1  # cumulative: every bucket at or above the value
            self._sums[labels] = self._sums.get(labels, 0.0) + value

    def render(self) -> list[str]:
        lines = self.header()
        with self._lock:
            items = sorted((k, list(c), self._sums[k]) for k, c in self._counts.items())
        for key, counts, total in items:
            for upper, count in zip(self.buckets, counts):
                le = _labels((*self.label_names, "le"), (*key, _num(upper)))
                lines.append(f"{self.name}_bucket{le} {count}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {_num(total)}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {counts[-1]}")
        return lines


class Metrics:
    def __init__(self) -> None:
        self.requests = Counter("longvec_requests_total", "HTTP requests by route and status.", ("route", "status"))
        self.latency = Histogram(
            "longvec_request_duration_seconds", "HTTP request latency.", LATENCY_BUCKETS, ("route",)
        )
        self.in_flight = Gauge("longvec_requests_in_flight", "HTTP requests being handled now.")
        self.queue_depth = Gauge("longvec_queue_depth", "Requests waiting for the encoder.")
        self.batch_requests = Histogram(
            "longvec_batch_requests", "Requests that shared one encoder call.", SIZE_BUCKETS
        )
        self.batch_texts = Histogram("longvec_batch_texts", "Texts in one encoder call.", SIZE_BUCKETS)
        self.batch_tokens = Histogram("longvec_batch_tokens", "Content tokens in one encoder call.", TOKEN_BUCKETS)
        self.tokens = Counter("longvec_tokens_total", "Content tokens embedded, by route.", ("route",))
        self.ready = Gauge("longvec_ready", "1 once the model is loaded and warmed up.")
        self.in_flight.set(0)
        self.queue_depth.set(0)
        self.ready.set(0)

    def observe_batch(self, n_requests: int, n_texts: int, n_tokens: int) -> None:
        self.batch_requests.observe(n_requests)
        self.batch_texts.observe(n_texts)
        self.batch_tokens.observe(n_tokens)

    def render(self) -> str:
        metrics: list[Counter | Histogram] = [
            self.requests,
            self.latency,
            self.in_flight,
            self.queue_depth,
            self.batch_requests,
            self.batch_texts,
            self.batch_tokens,
            self.tokens,
            self.ready,
        ]
        return "\n".join(line for m in metrics for line in m.render()) + "\n"
