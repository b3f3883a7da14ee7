"""Prometheus metrics (prometheus_client, in a registry of the app's own): requests by route and status, errors by
code, request latency split into its stages (admission and tokenizing, queue, inference), input lengths, encoder
batch sizes, tokens, queue depth, requests in flight, readiness. `METRICS` lists every family for the README."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536, 262144)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "longvec_requests_total", "HTTP requests by route and status.", ("route", "status"), registry=r
        )
        self.latency = Histogram(
            "longvec_request_duration_seconds", "HTTP request latency.", ("route",), buckets=LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge("longvec_requests_in_flight", "HTTP requests being handled now.", registry=r)
        self.queue_depth = Gauge("longvec_queue_depth", "Requests waiting for the encoder.", registry=r)
        self.encoder_busy = Gauge("longvec_encoder_busy", "1 while the encoder worker runs a library call.", registry=r)
        self.batch_requests = Histogram(
            "longvec_batch_requests", "Requests that shared one encoder call.", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_texts = Histogram(
            "longvec_batch_texts", "Texts in one encoder call.", buckets=SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            "longvec_batch_tokens", "Content tokens in one encoder call.", buckets=TOKEN_BUCKETS, registry=r
        )
        self.tokens = Counter("longvec_tokens_total", "Content tokens embedded, by route.", ("route",), registry=r)
        self.ready = Gauge("longvec_ready", "1 once the model is loaded and warmed up.", registry=r)
        # what runs, as labels (the Prometheus "info" idiom): an alert can tell a GPU box that fell to the CPU
        self.model = Gauge(
            "longvec_model_info",
            "1, labelled with the served model, its variant and the provider that actually runs it.",
            ("model", "variant", "provider"),
            registry=r,
        )
        self.errors = Counter(
            "longvec_errors_total",
            "Error answers by route and error code (as in the body).",
            ("route", "code"),
            registry=r,
        )
        self.tokenization = Histogram(
            "longvec_tokenization_duration_seconds",
            "Admission of a request: its checks, tokenizing and cost, before it queues.",
            ("route",),
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.queue_time = Histogram(
            "longvec_queue_duration_seconds",
            "Time a request waited for the encoder worker.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.inference = Histogram(
            "longvec_inference_duration_seconds",
            "The library call that encoded a request (shared with the requests batched with it).",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.input_tokens = Histogram(
            "longvec_request_input_tokens",
            "Content tokens per admitted request.",
            ("route",),
            buckets=TOKEN_BUCKETS,
            registry=r,
        )

    def observe_batch(self, n_requests: int, n_texts: int, n_tokens: int) -> None:
        self.batch_requests.observe(n_requests)
        self.batch_texts.observe(n_texts)
        self.batch_tokens.observe(n_tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def families(self) -> list[tuple[str, str, str]]:
        """(name, type, help) of every metric family, as /metrics lists them."""
        return [
            (m.name + ("_total" if m.type == "counter" else ""), m.type, m.documentation)
            for m in self.registry.collect()
        ]
