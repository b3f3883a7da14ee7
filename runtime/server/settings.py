"""What a server was started with: the served name, the key, every limit and timeout. One frozen value, made by
`longvec serve` from its flags and read by every part of the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from longvec.runtime.core.budget import Limits

LogFormat = Literal["text", "json"]


@dataclass(frozen=True)
class ServeSettings:
    model_name: str  # the name clients send as `model` and see in /v1/models
    api_key: str | None = None
    default_prompt_name: str | None = None  # the prompt of a request that names none; None: the bundle's default
    # the encoder: padded tokens per encoder call, and the content-token budget of requests grouped into one
    # library call. 1,024 (4 windows of 256) bounds how long a cancelled request keeps the encoder: one call took
    # 0.35 s on 2 cores under load 11, and 4, 8 and 16 windows per call gave the same tokens/s within 12%.
    max_batch_tokens: int = 1024
    max_queue: int = 256  # requests waiting; one more gets 429
    # content tokens waiting (a request alone in the queue is always let in): 8 of the largest requests, whose
    # bodies and tokens the queue holds in memory, and which take minutes each to encode on a small CPU
    max_queue_tokens: int = 1_048_576
    # cheap limits, checked before tokenizing
    max_body_bytes: int = 4 * 2**20
    max_items: int = 2048  # texts or documents per request
    # the cost model's limits, checked after tokenizing and before any encoding (longvec.runtime.core.budget)
    max_request_tokens: int = 131_072
    max_request_encoder_tokens: int = 262_144
    max_chunks: int = 4096
    min_chunk_tokens: int = 16
    min_stride: int = 32
    # time
    request_timeout: float = 300.0  # from admission to the answer; 504 past it, the encoder stops within a batch
    graceful_timeout: float = 30.0  # SIGTERM: in-flight requests get this long, then are cancelled
    header_timeout: float = 10.0  # a request's headers must arrive within this, from its first byte
    body_timeout: float = 60.0  # and its body within this, from the end of its headers
    keep_alive_timeout: float = 30.0
    # a response the client does not read for this long (its send buffer not shrinking) is dropped with its
    # connection, so a client that never reads cannot pin a rendered response in memory
    write_timeout: float = 30.0
    max_connections: int = 256
    cors_allow_origins: tuple[str, ...] = ()
    log_format: LogFormat = "text"
    started_by: dict[str, str] = field(default_factory=dict, compare=False)  # variant, threads... for the logs

    @property
    def limits(self) -> Limits:
        return Limits(
            max_request_tokens=self.max_request_tokens,
            max_request_encoder_tokens=self.max_request_encoder_tokens,
            max_chunks=self.max_chunks,
        )

    def summary(self) -> dict[str, int | float]:
        """The limits a client can hit, as /info and the startup line show them (whole seconds as ints)."""
        return {
            "max_body_bytes": self.max_body_bytes,
            "max_items": self.max_items,
            "max_request_tokens": self.max_request_tokens,
            "max_request_encoder_tokens": self.max_request_encoder_tokens,
            "max_chunks": self.max_chunks,
            "min_chunk_tokens": self.min_chunk_tokens,
            "min_stride": self.min_stride,
            "max_queue": self.max_queue,
            "max_queue_tokens": self.max_queue_tokens,
            "request_timeout": _number(self.request_timeout),
        }


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


def flag(name: str) -> str:
    """A settings field as the `longvec serve` flag that sets it."""
    return "--" + name.replace("_", "-")
