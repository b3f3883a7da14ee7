"""What a request will cost, computed from token counts before any encoding, and the bounds it must stay under.

The encoder's work is windows x window positions: a document of n content tokens needs `plan.n_windows(n)`
windows for its document pass (one window when its mode embeds only the head), and modes that encode chunks alone
add one pass per chunk: which passes a mode runs is its entry in the mode table (runtime/core/modes.py). Chunks
decide the output's size (one vector each). Both are known, or bounded from below, once the texts are tokenized,
so a request that would exhaust memory or hold the encoder for minutes is refused before it starts. The library
(`Embedder.embed_documents(max_chunks=...)`) and the server (`--max-chunks`, `--max-request-encoder-tokens`, ...)
use these same functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from longvec.runtime.core.modes import DocumentMode, lookup
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import LimitExceeded


@dataclass(frozen=True)
class Cost:
    texts: int
    tokens: int  # content tokens over all texts
    encoder_tokens: int  # positions the encoder will run, framing and padding-free window lengths included
    chunks: int  # vectors returned besides one per text (a lower bound until the texts are chunked)
    # tokens under the chunks, counted once per chunk: the pooling work (and, in modes that encode chunks alone,
    # their encoder work). Equal to `tokens` for chunks that tile the text; overlapping caller spans count again.
    pooled_tokens: int = 0
    # sparse=True: an upper bound on the (chunk, term) pairs of the sparse vectors (words in each chunk's text);
    # 0 without sparse vectors
    sparse_terms: int = 0


def sequence_positions(n_tokens: int, plan: WindowPlan, overhead: int) -> int:
    """Encoder positions for one sequence of `n_tokens` content tokens: one short window, or full windows."""
    if n_tokens <= plan.content:
        return n_tokens + overhead
    return plan.n_windows(n_tokens) * plan.window


def chunk_floor(n_tokens: int, chunk_tokens: int) -> int:
    """The fewest chunks a text of `n_tokens` gets when packed into chunks of at most `chunk_tokens`."""
    return -(-n_tokens // chunk_tokens)


def embed_cost(counts: Sequence[int], plan: WindowPlan, overhead: int) -> Cost:
    """`Embedder.embed`: one pass per text, no chunks."""
    encoder = sum(sequence_positions(n, plan, overhead) for n in counts)
    return Cost(texts=len(counts), tokens=sum(counts), encoder_tokens=encoder, chunks=0)


def document_cost(
    counts: Sequence[int],
    plan: WindowPlan,
    overhead: int,
    mode: DocumentMode | str,
    chunk_lengths: Sequence[Sequence[int]],
) -> Cost:
    """`Embedder.embed_documents`: `chunk_lengths[i]` are the token lengths of text i's chunks (exact for
    caller spans, which may overlap; for packed chunking a lower bound on their number, see `packed_lengths`)."""
    spec = lookup(mode) if isinstance(mode, str) else mode
    encoder = 0
    for n, lengths in zip(counts, chunk_lengths):
        if spec.doc_pass == "whole" or (spec.doc_pass == "head" and n <= plan.content):
            encoder += sequence_positions(n, plan, overhead)
        elif spec.doc_pass == "head":  # one full window, the rest of the text is not embedded
            encoder += plan.window
        if spec.chunk_pass:
            encoder += sum(sequence_positions(k, plan, overhead) for k in lengths)
    return Cost(
        texts=len(counts),
        tokens=sum(counts),
        encoder_tokens=encoder,
        chunks=sum(len(lengths) for lengths in chunk_lengths),
        pooled_tokens=sum(sum(lengths) for lengths in chunk_lengths),
    )


def packed_lengths(n_tokens: int, chunk_tokens: int) -> list[int]:
    """Chunk lengths of a text packed into `chunk_tokens`-token chunks, as if every chunk were full: the fewest
    chunks, and the same total tokens, as any packing (so the same chunk-pass encoder work, give or take framing)."""
    full, rest = divmod(n_tokens, chunk_tokens)
    return [chunk_tokens] * full + ([rest] if rest else [])


@dataclass(frozen=True)
class Limits:
    """Bounds on one call or request; None is unbounded."""

    max_request_tokens: int | None = None
    max_request_encoder_tokens: int | None = None
    max_chunks: int | None = None
    max_pooled_tokens: int | None = None
    max_sparse_terms: int | None = None

    def check(self, cost: Cost, flags: Mapping[str, str] | None = None) -> None:
        """LimitExceeded naming the first bound the cost exceeds: as a library argument, or through `flags`
        (field name -> the server flag that sets it)."""
        checks = (
            ("max_request_tokens", cost.tokens, "content tokens"),
            ("max_request_encoder_tokens", cost.encoder_tokens, "encoder tokens (windows x window positions)"),
            ("max_chunks", cost.chunks, "chunks"),
            ("max_pooled_tokens", cost.pooled_tokens, "chunk tokens to pool (overlapping spans count again)"),
            ("max_sparse_terms", cost.sparse_terms, "sparse (chunk, term) pairs (an upper bound: words per chunk)"),
        )
        for name, value, what in checks:
            bound = getattr(self, name)
            if bound is None or value <= bound:
                continue
            if flags is not None:
                message = f"the request needs {value} {what}; this server accepts at most {bound} per request"
                raise LimitExceeded(f"{message} ({flags[name]})", limit=name)
            raise LimitExceeded(
                f"the call needs {value} {what}, more than {name}={bound}; raise {name} to allow it", limit=name
            )


@dataclass(frozen=True)
class ChunkBudget:
    """The library's memory bound: a call returns at most `max_chunks` chunk vectors; `used` of them came from
    earlier groups of the same call."""

    max_chunks: int | None
    used: int = 0

    def check(self, n_chunks: int) -> None:
        Limits(max_chunks=self.max_chunks).check(Cost(texts=0, tokens=0, encoder_tokens=0, chunks=self.used + n_chunks))
