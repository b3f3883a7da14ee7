"""The public entry point: `Embedder.load(bundle)`, then `embed` or `embed_documents`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.backends import Backend, open_backend
from longvec.runtime.bundle.defaults import resolve as resolve_defaults
from longvec.runtime.bundle.manifest import Manifest
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.core.batching import pack_by_length
from longvec.runtime.core.chunking import CHUNKINGS, Chunks, make_chunks
from longvec.runtime.core.pipeline import Batching, Encoded, Job, Pipeline
from longvec.runtime.core.sparse import SparseEncoder, SparseVector, require_stemmer
from longvec.runtime.core.stitch import Stitch
from longvec.runtime.core.text import TextTokenizer, Tokens, validate_texts
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError

Mode = Literal["auto", "late", "naive", "window_mean", "truncate", "blend"]
MODES: tuple[str, ...] = ("late", "naive", "window_mean", "truncate", "blend")
# "auto": the bundle's default_mode (runtime/bundle/defaults.py: chosen from the model's trained length)
DEFAULT_MODE: Mode = "auto"
DEFAULT_CHUNK_TOKENS = 128
# onnxruntime thread spinning for Embedder.load(spin=None): on for a library or `longvec embed` with the cores to
# itself (the README's "Performance": queries, quiet and loaded rows); the server passes spin=False.
DEFAULT_SPIN = True


@dataclass(frozen=True)
class DocumentResult:
    vector: np.ndarray  # [dim]
    chunk_vectors: np.ndarray  # [n_chunks, dim]
    chunk_spans: np.ndarray  # [n_chunks, 2] half-open character offsets into the input text
    chunk_token_spans: np.ndarray  # [n_chunks, 2] half-open content-token offsets
    n_tokens: int  # content tokens in the text
    n_tokens_embedded: int  # content tokens that reached the encoder (less than n_tokens only for "truncate")
    n_windows: int  # encoder windows for the document pass
    mode: str
    chunk_sparse: list[SparseVector] | None = None  # one per chunk, from text[start:end], when sparse=True


class Embedder:
    def __init__(
        self,
        backend: Backend,
        tokenizer: TextTokenizer,
        manifest: Manifest,
        window: int | None = None,
        batching: Batching = Batching(),
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.manifest = manifest
        # embed_documents(mode="auto") uses the bundle's mode and, with stride=None, its stride; an explicit mode and
        # `embed` keep half-overlapping windows for stride=None (document vectors need the overlap: bench/RESULTS.md)
        self.defaults = resolve_defaults(manifest)
        self.window = window or self.defaults.window
        self._pipeline = Pipeline(backend, manifest.framing, manifest.pooling, batching)
        self._batching = batching
        self._plans: dict[tuple[int | None, int | None], WindowPlan] = {}
        self._overhead = len(manifest.framing.prefix_ids) + len(manifest.framing.suffix_ids)
        self.sparse = SparseEncoder()  # BM25 weights for sparse=True; needs the `sparse` extra only when used
        WindowPlan.make(self.window, None, self._overhead, manifest.max_positions)  # fail early on a bad window

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        variant: str = "optimized",
        threads: int | None = None,
        window: int | None = None,
        max_batch_tokens: int = Batching.max_tokens,
        verify: bool = True,
        spin: bool | None = None,
    ) -> Embedder:
        """`spin`: whether onnxruntime's idle threads spin-wait for the next batch. None: DEFAULT_SPIN (yes, for a
        process that has the machine's cores to itself); pass False where other busy processes share the cores
        (`longvec serve` does): spinning threads then steal the cores the work needs."""
        bundle = Bundle.open(bundle_dir, verify=False)
        chosen = bundle.variant(variant)
        if verify:  # the files this load reads, not every variant in the bundle
            bundle.verify((bundle.manifest.tokenizer_file, chosen.file))
        spin = DEFAULT_SPIN if spin is None else spin
        backend = open_backend(chosen.engine, bundle.path(chosen.file), bundle.manifest.hidden_size, threads, spin)
        tokenizer = TextTokenizer.from_file(bundle.path(bundle.manifest.tokenizer_file))
        return cls(backend, tokenizer, bundle.manifest, window, Batching(max_tokens=max_batch_tokens))

    @property
    def dim(self) -> int:
        return self.manifest.hidden_size

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t) for t in self.tokenizer.encode(validate_texts(texts, allow_blank=True))]

    def plan(self, window: int | None = None, stride: int | None = None, prompt: str | None = None) -> WindowPlan:
        cached = self._plans.get((window, stride)) if prompt is None else None
        if cached is None:
            cached = self._make_plan(window, stride, prompt)
            if prompt is None and len(self._plans) < 64:  # the few plans calls without a prompt ask for, once
                self._plans[(window, stride)] = cached
        return cached

    def _make_plan(self, window: int | None, stride: int | None, prompt: str | None) -> WindowPlan:
        overhead = self._overhead + len(self._prompt_ids(prompt))
        window = window or self.window
        return WindowPlan.make(window, stride, overhead, self.manifest.max_positions)

    def _prompt_ids(self, prompt: str | None) -> tuple[int, ...]:
        """The prompt's tokens as they come out in front of a text. sentence-transformers tokenizes prompt + text
        as one string, and in byte-level BPE a prompt's trailing space belongs to the next word ("query: " + "hi"
        -> "query", ":", "Ġhi"), so that space is not a token of the prompt."""
        if prompt is None:
            return ()
        return self.tokenizer.ids(self.manifest.prompts.get(prompt, prompt).rstrip())

    def _prompted_tokens(self, texts: Sequence[str], prompt: str) -> list[Tokens]:
        """Content tokens of each text as tokenized right after the prompt (offsets still index the text)."""
        prefix = self.manifest.prompts.get(prompt, prompt)
        prompt_ids = np.asarray(self._prompt_ids(prompt), dtype=np.int64)
        k = len(prompt_ids)
        out = []
        for text, joint in zip(texts, self.tokenizer.encode([prefix + t for t in texts])):
            if len(joint) > k and np.array_equal(joint.ids[:k], prompt_ids):
                out.append(Tokens(joint.ids[k:], np.maximum(joint.offsets[k:] - len(prefix), 0)))
            else:  # the text's first characters merged into the prompt's last token: tokenize the text alone
                out.extend(self.tokenizer.encode([text]))
        return out

    def _finish(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x) if self.manifest.pooling.normalize else np.asarray(x, dtype=np.float32)

    def embed(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        window: int | None = None,
        stride: int | None = None,
    ) -> np.ndarray:
        """One vector per text, float32 [n, dim]. A text longer than one window is embedded whole (windows,
        stitched, pooled), never truncated. `prompt` is a prompt name from the bundle or literal text."""
        texts = validate_texts(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        plan = self.plan(window, stride, prompt)
        if prompt is None:
            ids = self.tokenizer.encode_ids(texts)
            for i, row in enumerate(ids):
                if row.shape[0] == 0:
                    raise InputError(f"texts[{i}] has no tokens for this model's tokenizer")
            if max(row.shape[0] for row in ids) <= plan.content:
                return self._finish(self._embed_short(ids))
        else:
            ids = [t.ids for t in self.tokenizer_checked(texts, prompt)]
        encoded = self._pipeline.run([Job(i) for i in ids], plan, self._prompt_ids(prompt))
        return self._finish(np.stack([e.pooled for e in encoded]))

    def _embed_short(self, ids: list[np.ndarray]) -> np.ndarray:
        """Texts that each fit one window, no prompt (every query): framed, packed and pooled here without the
        pipeline's per-text stitching state. The same batches and the same arithmetic as the pipeline (a one-window
        text pools as that window alone), at a fraction of its per-call Python (bench/overhead.py)."""
        framing = self.manifest.framing
        pre, suf = len(framing.prefix_ids), len(framing.suffix_ids)
        lengths = [row.shape[0] + pre + suf for row in ids]
        out = np.empty((len(ids), self.backend.hidden_size), dtype=np.float32)
        batches = (
            [np.zeros(1, np.int64)]
            if len(ids) == 1
            else pack_by_length(lengths, self._batching.max_tokens, self._batching.max_batch)
        )
        pooling = self.manifest.pooling.mode
        for batch in batches:
            rows = batch.tolist()
            width = max(lengths[r] for r in rows)
            input_ids = np.full((len(rows), width), framing.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                n = lengths[r]
                input_ids[k, :pre] = framing.prefix_ids
                input_ids[k, pre : n - suf] = ids[r]
                input_ids[k, n - suf : n] = framing.suffix_ids
                mask[k, :n] = 1
            states = self.backend.run(input_ids, mask)
            for k, r in enumerate(rows):
                window = states[k, : lengths[r]]
                if pooling == "mean":
                    out[r] = window.mean(axis=0, dtype=np.float32)
                else:
                    out[r] = window[0] if pooling == "cls" else window[-1]
        return out

    def tokenizer_checked(self, texts: Sequence[str], prompt: str | None = None) -> list[Tokens]:
        tokens = self.tokenizer.encode(texts) if prompt is None else self._prompted_tokens(texts, prompt)
        for i, t in enumerate(tokens):
            if len(t) == 0:
                raise InputError(f"texts[{i}] has no tokens for this model's tokenizer")
        return tokens

    def embed_documents(
        self,
        texts: Sequence[str],
        chunking: str = "tokens",
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        window: int | None = None,
        stride: int | None = None,
        mode: str = DEFAULT_MODE,
        spans: Sequence[Sequence[Sequence[int]]] | None = None,
        prompt: str | None = None,
        stitch: Stitch = "center",
        sparse: bool = False,
    ) -> list[DocumentResult]:
        """A document vector plus chunk vectors with character spans, for texts of any length. `sparse=True`
        adds `chunk_sparse`: BM25 term weights of each chunk's text (see longvec.runtime.core.sparse).
        `mode="auto"`: the bundle's default mode (`self.defaults`) and, with `stride=None`, its default stride; any
        other mode with `stride=None` gets half-overlapping windows."""
        texts = validate_texts(texts)
        if mode == "auto":
            mode = self.defaults.mode
            if stride is None:
                stride = self.defaults.stride(self.plan(window, None, prompt).content)
        if mode not in MODES:
            raise InputError(f"mode must be 'auto' or one of {MODES}, got {mode!r}")
        if chunking not in CHUNKINGS:
            raise InputError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
        if spans is not None:
            chunking = "spans"
            if len(spans) != len(texts):
                raise InputError(f"spans has {len(spans)} entries for {len(texts)} texts")
        if not isinstance(chunk_tokens, int) or chunk_tokens < 1:
            raise InputError(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
        if stitch not in ("center", "weighted"):
            raise InputError(f"stitch must be 'center' or 'weighted', got {stitch!r}")
        if sparse:
            require_stemmer()  # before any encoding, not after
        plan = self.plan(window, stride, prompt)
        prompt_ids = self._prompt_ids(prompt)
        tokens = self.tokenizer_checked(texts, prompt)
        chunks = [
            make_chunks(text, tok, chunking, chunk_tokens, None if spans is None else spans[i])
            for i, (text, tok) in enumerate(zip(texts, tokens))
        ]
        # naive chunks are encoded alone and the document vector is their mean: no whole-document pass
        doc_jobs = [] if mode == "naive" else [self._doc_job(tok, ch, plan, mode) for tok, ch in zip(tokens, chunks)]
        chunk_jobs = (
            [Job(tok.ids[s:e]) for tok, ch in zip(tokens, chunks) for s, e in ch.token_spans.tolist()]
            if mode in ("naive", "blend")
            else []
        )
        encoded = self._pipeline.run(doc_jobs + chunk_jobs, plan, prompt_ids, stitch)
        docs: Sequence[Encoded | None] = encoded[: len(doc_jobs)] if doc_jobs else [None] * len(texts)
        alone = encoded[len(doc_jobs) :]
        results = []
        offset = 0
        for tok, ch, doc in zip(tokens, chunks, docs):
            own = alone[offset : offset + len(ch)] if alone else []
            offset += len(own)
            results.append(self._result(tok, ch, doc, own, plan, mode))
        if sparse:
            results = [
                replace(r, chunk_sparse=self.sparse.documents([text[s:e] for s, e in r.chunk_spans.tolist()]))
                for text, r in zip(texts, results)
            ]
        return results

    def embed_sparse_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Query-side sparse vectors (weight 1 per distinct term) matching `embed_documents(sparse=True)`."""
        return self.sparse.queries(validate_texts(texts, allow_blank=True))

    @staticmethod
    def _doc_job(tok: Tokens, ch: Chunks, plan: WindowPlan, mode: str) -> Job:
        if mode == "truncate":
            head = min(len(tok), plan.content)
            inside = ch.token_spans[ch.token_spans[:, 1] <= head]
            return Job(tok.ids[:head], inside)
        return Job(tok.ids, ch.token_spans)

    def _result(
        self, tok: Tokens, ch: Chunks, doc: Encoded | None, alone: Sequence[Encoded], plan: WindowPlan, mode: str
    ) -> DocumentResult:
        char_spans, token_spans = ch.char_spans, ch.token_spans
        n_embedded = len(tok)
        if mode in ("naive", "blend"):
            naive = self._finish(np.stack([a.pooled for a in alone]))
        if doc is None:  # naive: chunks alone, the document vector is their mean
            return DocumentResult(
                vector=self._finish(l2_normalize(naive).mean(axis=0)),
                chunk_vectors=naive,
                chunk_spans=char_spans,
                chunk_token_spans=token_spans,
                n_tokens=len(tok),
                n_tokens_embedded=n_embedded,
                n_windows=sum(a.n_windows for a in alone),
                mode=mode,
            )
        late = self._finish(doc.span_means)
        if mode == "late":
            vector, chunk_vectors = doc.pooled, late
        elif mode == "window_mean":
            vector, chunk_vectors = self._finish(doc.window_pooled).mean(axis=0), late
        elif mode == "blend":
            vector, chunk_vectors = doc.pooled, l2_normalize(l2_normalize(naive) + l2_normalize(late))
        else:  # truncate: only the head was encoded; chunks past it are not returned
            n_embedded = min(len(tok), plan.content)
            keep = token_spans[:, 1] <= n_embedded
            vector, chunk_vectors = doc.pooled, late
            char_spans, token_spans = char_spans[keep], token_spans[keep]
        return DocumentResult(
            vector=self._finish(vector),
            chunk_vectors=chunk_vectors.astype(np.float32, copy=False),
            chunk_spans=char_spans,
            chunk_token_spans=token_spans,
            n_tokens=len(tok),
            n_tokens_embedded=n_embedded,
            n_windows=doc.n_windows,
            mode=mode,
        )
