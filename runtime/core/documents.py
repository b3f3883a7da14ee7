"""One `embed_documents` call, decided once: options checked, resolved against the bundle, then texts prepared.

Three frozen values, each made from the one before, so every caller asks the same questions in the same order:
- `DocumentOptions`: what the caller chose, checked without a model (batch jobs check a job's options with it
  before loading one);
- `DocumentCall`: those options resolved against a bundle, still without texts: `auto`, window and stride (the
  window plan), prompt, the mode's table entry (runtime.core.modes), the output shape, the chunk bound. The
  server's batch key: requests with equal calls may share one library call;
- `PreparedDocuments`: a call plus its texts: tokens (a text without tokens is refused here), caller spans checked
  and cut, and the call's `Cost` (runtime.core.budget) before any encoding.
`embed_prepared` then encodes a prepared call and forms each document's vectors as its mode says.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.core.budget import ChunkBudget, Cost, document_cost, packed_lengths
from longvec.runtime.core.chunking import CHUNKINGS, Chunks, make_chunks
from longvec.runtime.core.modes import AUTO, DocumentMode, Passes, lookup
from longvec.runtime.core.pipeline import Pipeline, TokenSequence
from longvec.runtime.core.prompts import prompted_tokens
from longvec.runtime.core.sparse import SparseEncoder, SparseVector, require_stemmer, term_bound, word_count
from longvec.runtime.core.stitch import Stitch
from longvec.runtime.core.text import TextTokenizer, Tokens, require_tokens
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError

DEFAULT_CHUNKING = "tokens"
DEFAULT_CHUNK_TOKENS = 128
# chunk vectors one call may return: 65,536 x 384 float32 is 100 MB; chunk_tokens=1 on a book would be gigabytes
DEFAULT_MAX_CHUNKS = 65_536
# Texts per pipeline call: enough for length-sorted packing across texts, while tokens and outputs of a huge list
# are held one group at a time (and the progress bar moves).
DEFAULT_BATCH_SIZE = 1024
STITCHES = ("center", "weighted")


@dataclass(frozen=True)
class DocumentResult:
    """One document: its vector, its chunks' vectors and where each chunk is, and how much was embedded."""

    vector: np.ndarray  # [dim]
    chunk_vectors: np.ndarray  # [n_chunks, dim]
    chunk_spans: np.ndarray  # [n_chunks, 2] half-open character offsets into the input text
    chunk_token_spans: np.ndarray  # [n_chunks, 2] half-open content-token offsets
    n_tokens: int  # content tokens in the text
    n_tokens_embedded: int  # content tokens that reached the encoder (less than n_tokens only for "truncate")
    n_windows: int  # encoder windows for the document pass
    mode: str
    chunk_sparse: list[SparseVector] | None = None  # one per chunk, from text[start:end], when sparse=True

    def __repr__(self) -> str:
        sparse = "" if self.chunk_sparse is None else ", sparse"
        return (
            f"DocumentResult(mode={self.mode!r}, dim={self.vector.shape[-1]}, chunks={len(self.chunk_spans)}, "
            f"tokens={self.n_tokens}, embedded={self.n_tokens_embedded}, windows={self.n_windows}{sparse})"
        )


@dataclass(frozen=True)
class Output:
    """What the caller asked of the final vectors: Matryoshka truncation, then L2 normalization or not."""

    dimensions: int | None
    normalize: bool

    @classmethod
    def make(cls, dimensions: int | None, normalize: bool | None, dim: int, model_normalizes: bool) -> Output:
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= dim
        ):
            raise InputError(f"dimensions must be in 1..{dim} (this model's size) and an int, got {dimensions!r}")
        return cls(dimensions, model_normalizes if normalize is None else bool(normalize))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.dimensions is not None:
            x = x[..., : self.dimensions]
        return l2_normalize(x) if self.normalize else np.asarray(x, dtype=np.float32)


@dataclass(frozen=True)
class DocumentOptions:
    """The choices of an embed_documents call that need no model to check (InputError for a bad one)."""

    chunking: str = DEFAULT_CHUNKING
    chunk_tokens: int = DEFAULT_CHUNK_TOKENS
    mode: str = AUTO
    stitch: str = "center"
    sparse: bool = False

    def __post_init__(self) -> None:
        if self.mode != AUTO:
            lookup(self.mode)
        if self.chunking not in CHUNKINGS:
            raise InputError(f"chunking must be one of {CHUNKINGS}, got {self.chunking!r}")
        chunk_tokens = self.chunk_tokens
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
            raise InputError(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
        if self.stitch not in STITCHES:
            raise InputError(f"stitch must be 'center' or 'weighted', got {self.stitch!r}")
        if self.sparse:
            require_stemmer()  # before any encoding, not after


@dataclass(frozen=True)
class DocumentCall:
    """An embed_documents call resolved against a bundle (`Embedder.document_call`), before any text."""

    mode: DocumentMode  # "auto" resolved to the bundle's mode
    chunking: str  # "spans" when the caller gives spans
    chunk_tokens: int
    plan: WindowPlan  # window and stride resolved (the bundle's stride for "auto")
    prompt: str | None  # the prompt text put before each text
    prompt_ids: tuple[int, ...]
    overhead: int  # positions besides content in every encoder sequence: framing and prompt
    stitch: Stitch
    sparse: bool
    snap: bool
    output: Output
    max_chunks: int | None
    batch_size: int

    def chunk_budget(self, used: int = 0) -> ChunkBudget:
        return ChunkBudget(self.max_chunks, used)


@dataclass(frozen=True, eq=False)
class PreparedDocuments:
    """A call with its texts, tokenized and costed (`Embedder.prepare_documents`), ready for `embed_prepared`."""

    call: DocumentCall
    texts: list[str]
    tokens: list[Tokens]
    chunks: list[Chunks] | None  # caller spans, checked and cut; packed chunks are cut when encoded
    cost: Cost  # chunks: exact for caller spans, the fewest a packing can give otherwise


def prepare(
    call: DocumentCall,
    tokenizer: TextTokenizer,
    texts: list[str],
    spans: Sequence[Sequence[Sequence[int]]] | None,
    used_chunks: int = 0,
) -> PreparedDocuments:
    """Tokenize, check and cost `texts` (already validated) for `call`; LimitExceeded past its max_chunks (with
    `used_chunks` returned by earlier groups of the same call)."""
    if spans is None and call.chunking == "spans":
        raise InputError("chunking='spans' needs spans=[...] for every text")
    if spans is not None and call.chunking != "spans":
        raise InputError("spans given to a call made without them (document_call(..., spans=True))")
    if spans is not None and len(spans) != len(texts):
        raise InputError(f"spans has {len(spans)} entries for {len(texts)} texts")
    tokens = prompted_tokens(tokenizer, texts, call.prompt, call.prompt_ids)
    require_tokens(tokens)
    budget = call.chunk_budget(used_chunks)
    chunks: list[Chunks] | None = None
    if spans is not None:
        budget.check(sum(len(s) for s in spans))  # before cutting, which itself takes time per span
        chunks = [_spans(i, text, tok, s, call.snap) for i, (text, tok, s) in enumerate(zip(texts, tokens, spans))]
        lengths = [(c.token_spans[:, 1] - c.token_spans[:, 0]).tolist() for c in chunks]
    else:
        lengths = [packed_lengths(len(t), call.chunk_tokens) for t in tokens]
    cost = document_cost([len(t) for t in tokens], call.plan, call.overhead, call.mode, lengths)
    if call.sparse:  # packed chunks tile the text: its words, plus one per cut; caller spans may overlap
        terms = (
            sum(word_count(t) for t in texts) + cost.chunks
            if chunks is None
            else sum(term_bound(t, c.char_spans) for t, c in zip(texts, chunks))
        )
        cost = replace(cost, sparse_terms=terms)
    budget.check(cost.chunks)
    if call.mode.vector_from_chunks and chunks is not None:
        empty = next((i for i, c in enumerate(chunks) if len(c) == 0), None)
        if empty is not None:
            raise InputError(f"spans[{empty}] is empty: mode {call.mode.name!r} pools the document from its chunks")
    return PreparedDocuments(call, texts, tokens, chunks, cost)


def _spans(i: int, text: str, tokens: Tokens, spans: Sequence[Sequence[int]], snap: bool) -> Chunks:
    try:
        return make_chunks(text, tokens, "spans", 0, spans, snap)
    except InputError as e:
        raise type(e)(f"spans[{i}]: {e}") from None


def embed_prepared(
    prepared: PreparedDocuments, pipeline: Pipeline, sparse: SparseEncoder, dim: int, used_chunks: int = 0
) -> list[DocumentResult]:
    """Encode a prepared call and form each document's vectors as its mode says."""
    call, texts, tokens = prepared.call, prepared.texts, prepared.tokens
    mode, plan = call.mode, call.plan
    chunks = prepared.chunks
    if chunks is None:
        chunks = [make_chunks(text, tok, call.chunking, call.chunk_tokens, None) for text, tok in zip(texts, tokens)]
        call.chunk_budget(used_chunks).check(sum(len(c) for c in chunks))
    heads = [min(len(t), plan.content) if mode.doc_pass == "head" else len(t) for t in tokens]
    doc_jobs = (
        [_doc_job(tok, ch, head) for tok, ch, head in zip(tokens, chunks, heads)] if mode.doc_pass is not None else []
    )
    chunk_jobs = (
        [TokenSequence(tok.ids[s:e]) for tok, ch in zip(tokens, chunks) for s, e in ch.token_spans.tolist()]
        if mode.chunk_pass
        else []
    )
    encoded = pipeline.run(doc_jobs + chunk_jobs, plan, call.prompt_ids, call.stitch)
    alone = encoded[len(doc_jobs) :]
    finish = _finish(pipeline)
    results, offset = [], 0
    for i, (tok, ch, head) in enumerate(zip(tokens, chunks, heads)):
        own = alone[offset : offset + len(ch)] if mode.chunk_pass else []
        offset += len(own)
        keep = ch.token_spans[:, 1] <= head  # all of them, unless only the head was embedded
        stacked = np.stack([a.pooled for a in own]) if own else np.zeros((0, dim), np.float32)
        doc = encoded[i] if doc_jobs else None
        vector, chunk_vectors = mode.form(Passes(doc, stacked[keep] if own else stacked, finish))
        results.append(
            DocumentResult(
                vector=call.output(vector),
                chunk_vectors=call.output(chunk_vectors).astype(np.float32, copy=False),
                chunk_spans=ch.char_spans[keep],
                chunk_token_spans=ch.token_spans[keep],
                n_tokens=len(tok),
                n_tokens_embedded=head,
                n_windows=doc.n_windows if doc is not None else sum(a.n_windows for a in own),
                mode=mode.name,
            )
        )
    if call.sparse:
        results = [
            replace(r, chunk_sparse=sparse.documents([text[s:e] for s, e in r.chunk_spans.tolist()]))
            for text, r in zip(texts, results)
        ]
    return results


def _doc_job(tok: Tokens, ch: Chunks, head: int) -> TokenSequence:
    """The document pass over a text's first `head` tokens (all of them unless the mode embeds only the head),
    pooling the chunks that lie inside them."""
    if head == len(tok):
        return TokenSequence(tok.ids, ch.token_spans)
    return TokenSequence(tok.ids[:head], ch.token_spans[ch.token_spans[:, 1] <= head])


def model_normalized(x: np.ndarray, normalize: bool) -> np.ndarray:
    """The model's own normalization of a pooled vector (sentence-transformers' Normalize module, or none)."""
    return l2_normalize(x) if normalize else np.asarray(x, dtype=np.float32)


def _finish(pipeline: Pipeline) -> Callable[[np.ndarray], np.ndarray]:
    normalize = pipeline.config.pooling.normalize
    return lambda x: model_normalized(x, normalize)
