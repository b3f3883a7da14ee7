"""The public entry point: `Embedder.load(bundle)`, then `embed` or `embed_documents`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, cast

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.backends import Backend, BackendOptions, GraphFiles, describe, open_backend
from longvec.runtime.backends.base import check_window
from longvec.runtime.backends.options import TENSORRT_PROVIDER_VARIANT
from longvec.runtime.bundle.defaults import resolve as resolve_defaults
from longvec.runtime.bundle.manifest import Manifest
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.core import search as _search
from longvec.runtime.core.budget import ChunkBudget as Budget
from longvec.runtime.core.budget import chunk_floor
from longvec.runtime.core.chunking import CHUNKINGS, Chunks, make_chunks
from longvec.runtime.core.pipeline import Batching, Encoded, Pipeline, PipelineConfig, TokenSequence
from longvec.runtime.core.prompts import prompt_ids, prompted_tokens, resolve_prompt
from longvec.runtime.core.sparse import SparseEncoder, SparseVector, require_stemmer
from longvec.runtime.core.stitch import Stitch
from longvec.runtime.core.streaming import groups, progress, renumbered
from longvec.runtime.core.text import TextTokenizer, Tokens, validate_texts
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError

Mode = Literal["auto", "late", "naive", "window_mean", "truncate", "blend"]
Chunking = Literal["tokens", "sentences", "paragraphs", "spans"]
# "auto": the bundle's default_mode (runtime/bundle/defaults.py: chosen from the model's trained length)
MODES: tuple[str, ...] = ("auto", "late", "naive", "window_mean", "truncate", "blend")
DEFAULT_MODE: Mode = "auto"
# onnxruntime thread spinning for Embedder.load(spin=None): on for a library or `longvec embed` with the cores to
# itself (the README's "Performance": queries, quiet and loaded rows); the server passes spin=False.
DEFAULT_SPIN = True
DEFAULT_CHUNKING: Chunking = "tokens"
DEFAULT_CHUNK_TOKENS = 128
# chunk vectors one call may return: 65,536 x 384 float32 is 100 MB; chunk_tokens=1 on a book would be gigabytes
DEFAULT_MAX_CHUNKS = 65_536
DEFAULT_VARIANT = "optimized"
# Texts per pipeline call: enough for length-sorted packing across texts, while tokens and outputs of a huge list
# are held one group at a time (and the progress bar moves).
DEFAULT_BATCH_SIZE = 1024


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
class _Output:
    """What the caller asked of the final vectors: Matryoshka truncation, then L2 normalization or not."""

    dimensions: int | None
    normalize: bool

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if self.dimensions is not None:
            x = x[..., : self.dimensions]
        return l2_normalize(x) if self.normalize else np.asarray(x, dtype=np.float32)


class Embedder:
    """Embeds texts of any length with an exported bundle: no truncation, no torch.

    Create one with `Embedder.load(bundle_dir)`; it is a context manager (`close()` frees the encoder session).
    `embed` gives one vector per text, `embed_documents` a document vector plus chunk vectors with character
    spans; `embed_iter` / `embed_documents_iter` do the same lazily for corpora that do not fit in memory.
    Safe to share between threads only if the backend is (onnxruntime sessions are)."""

    def __init__(
        self,
        backend: Backend,
        tokenizer: TextTokenizer,
        manifest: Manifest,
        window: int | None = None,
        batching: Batching = Batching(),
        name: str | None = None,
    ) -> None:
        self.backend = backend
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.name = name or manifest.name or manifest.source.name  # the model's own name, as served and logged
        # embed_documents(mode="auto") uses the bundle's mode and, with stride=None, its stride; an explicit mode and
        # `embed` keep half-overlapping windows for stride=None (document vectors need the overlap: bench/RESULTS.md)
        self.defaults = resolve_defaults(manifest)
        self.window = window or self.defaults.window
        self._plans: dict[tuple[int | None, int | None, str | None], WindowPlan] = {}
        self._pipeline = Pipeline(backend, PipelineConfig(manifest.framing, manifest.pooling, batching))
        self._overhead = len(manifest.framing.prefix_ids) + len(manifest.framing.suffix_ids)
        self.sparse = SparseEncoder()  # BM25 weights for sparse=True; needs the `sparse` extra only when used
        WindowPlan.make(self.window, None, self._overhead, manifest.max_positions)  # fail early on a bad window

    @classmethod
    def load(
        cls,
        bundle_dir: str | Path,
        variant: str = DEFAULT_VARIANT,
        threads: int | None = None,
        window: int | None = None,
        max_batch_tokens: int = Batching.max_tokens,
        verify: bool = True,
        device: str = "cpu",
        pooled: bool | None = None,
        tensorrt_provider: bool = False,
        spin: bool | None = None,
    ) -> Embedder:
        """Open a bundle written by `longvec export`.

        bundle_dir: the bundle directory.
        variant: which graph to run, one the bundle holds ("fp32", "optimized", "int8", "fp16", and the
            "tensorrt-..." plans `longvec build-engine` adds; see `longvec inspect` or `Bundle.variant_names()`).
        threads: encoder threads; None lets onnxruntime use every core.
        window: encoder positions per window, framing and prompt included; None: the bundle's default, else the
            length the model was trained on (e.g. 256 for all-MiniLM-L6-v2), capped at its maximum positions.
        max_batch_tokens: padded tokens per encoder call (memory vs. throughput); left at its CPU default on a GPU
            it becomes GPU_BATCHING's; windows per call never exceed what the engine admits
            (runtime.core.pipeline.Batching.for_backend).
        verify: check the sha256 of the files this load reads (tokenizer and graph).
        device: "cpu" (default), "cuda" (onnxruntime-gpu or a TensorRT plan; BackendUnavailable when it cannot
            run) or "auto" (CUDA when a session really runs on it, else CPU, decided here at load); `provider` says
            which runs.
        pooled: run the variant's pooled graph (default: yes where the variant has one, as measured on CPU and
            wanted on GPUs).
        tensorrt_provider: onnxruntime's TensorRT execution provider (GPU only; InputError on device="cpu"). It
            runs the unfused graph only (variant="fp32", as an fp32 engine); other variants are refused. For an
            fp16 TensorRT engine use `longvec build-engine` and load its variant.
        spin: whether onnxruntime's idle threads spin-wait for the next batch. None: DEFAULT_SPIN (yes, for a
            process that has the machine's cores to itself); pass False where other busy processes share the cores
            (`longvec serve` does): spinning threads then steal the cores the work needs.

        Raises BundleError (or a subclass naming the file) for a bundle that cannot be used, BackendUnavailable
        when the engine for the variant is not installed, InputError for an impossible window."""
        bundle = Bundle.open(bundle_dir, verify=False)
        chosen = bundle.variant(variant)
        m = bundle.manifest
        if tensorrt_provider and chosen.engine == "onnxruntime" and chosen.name != TENSORRT_PROVIDER_VARIANT:
            # TensorRT's parser does not take onnxruntime's fused ops: it would get only the MatMuls between them
            raise InputError(
                f"tensorrt_provider=True runs the unfused graph only: load variant={TENSORRT_PROVIDER_VARIANT!r}, "
                f"not {chosen.name!r} (its fused onnxruntime operators are not TensorRT's)"
            )
        files = GraphFiles(
            bundle.path(chosen.file),
            None if chosen.pooled_file is None else bundle.path(chosen.pooled_file),
            m.input_names,
        )
        if verify:  # the files this load reads, not every variant in the bundle
            graph = chosen.pooled_file if pooled is not False and chosen.pooled_file else chosen.file
            bundle.verify((m.tokenizer_file, graph))
        options = BackendOptions(
            threads=threads,
            device=device,
            pooled=pooled,
            tensorrt_provider=tensorrt_provider,
            spin=DEFAULT_SPIN if spin is None else spin,
            window=window or resolve_defaults(m).window,
        )
        backend = open_backend(chosen.engine, files, m.hidden_size, options)
        try:
            check_window(backend.capabilities, options.window or 0)
            tokenizer = TextTokenizer.from_file(bundle.path(m.tokenizer_file))
        except BaseException:
            backend.close()
            raise
        budget = None if max_batch_tokens == Batching.max_tokens else max_batch_tokens  # the default: the device's
        return cls(backend, tokenizer, m, window, Batching.for_backend(backend.capabilities, budget), bundle.model_name)

    def with_backend(
        self, backend: Backend, tokenizer: TextTokenizer | None = None, max_batch_tokens: int | None = None
    ) -> Embedder:
        """This embedder's model, window and name in front of another backend (usually a wrapper of its own, e.g.
        a cancellable or a timed one) and optionally another tokenizer, batched by the same policy as `load`
        (Batching.for_backend): the token budget stays this embedder's unless `max_batch_tokens` is given."""
        batching = Batching.for_backend(backend.capabilities, max_batch_tokens or self.batching.max_tokens)
        return Embedder(backend, tokenizer or self.tokenizer, self.manifest, self.window, batching, self.name)

    @property
    def batching(self) -> Batching:
        """Token budget and batch size of the encoder calls (larger on a GPU)."""
        return self._pipeline.batching

    @property
    def provider(self) -> str:
        """What runs the encoder, e.g. "onnxruntime CPUExecutionProvider (token-state graph)"."""
        return describe(self.backend)

    @property
    def dim(self) -> int:
        """Dimensions of the vectors (before any `dimensions=` truncation)."""
        return self.manifest.hidden_size

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Embedder({self.name!r}, dim={self.dim}, window={self.window})"

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Content tokens of each text, without framing or prompt: what `n_tokens` of a result will say.
        Blank texts are allowed here (0 tokens)."""
        return [len(t) for t in self.tokenizer.encode(validate_texts(texts, allow_blank=True))]

    def plan(
        self,
        window: int | None = None,
        stride: int | None = None,
        prompt: str | None = None,
        *,
        prompt_name: str | None = None,
    ) -> WindowPlan:
        """The windows a call with these arguments would use: `.content` tokens of text per window, `.stride`,
        `.n_windows(n_tokens)`. Arguments as for `embed`; raises InputError for an impossible window or stride."""
        return self._plan(window, stride, self.resolve_prompt(prompt, prompt_name))

    def _plan(self, window: int | None, stride: int | None, prompt_text: str | None) -> WindowPlan:
        key = (window, stride, prompt_text)
        plan = self._plans.get(key)
        if plan is None:
            overhead = self._overhead + len(prompt_ids(self.tokenizer, prompt_text))
            plan = WindowPlan.make(window or self.window, stride, overhead, self.manifest.max_positions)
            if len(self._plans) < 64:  # the few plans that calls ask for, made once (bench/overhead.py)
                self._plans[key] = plan
        return plan

    def _auto(
        self, mode: str, window: int | None, stride: int | None, prompt_text: str | None
    ) -> tuple[str, int | None]:
        """mode="auto": the bundle's mode and, with stride=None, its stride (runtime/bundle/defaults.py)."""
        if mode != "auto":
            return mode, stride
        if stride is None:
            stride = self.defaults.stride(self._plan(window, None, prompt_text).content)
        return self.defaults.mode, stride

    def resolve_prompt(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The prompt text a call would put before each text: `prompt` (literal), else the bundle's prompt named
        `prompt_name`, else the bundle's default prompt, else None, as sentence-transformers resolves it."""
        return resolve_prompt(self.manifest.prompts, self.manifest.default_prompt, prompt, prompt_name)

    def _output(self, dimensions: int | None, normalize: bool | None) -> _Output:
        if dimensions is not None and (
            isinstance(dimensions, bool) or not isinstance(dimensions, int) or not 1 <= dimensions <= self.dim
        ):
            raise InputError(f"dimensions must be an int in 1..{self.dim}, got {dimensions!r}")
        return _Output(dimensions, self.manifest.pooling.normalize if normalize is None else bool(normalize))

    def embed(
        self,
        texts: Sequence[str],
        prompt: str | None = None,
        window: int | None = None,
        stride: int | None = None,
        *,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """One vector per text, float32 [n, dim]. A text longer than one window is embedded whole (windows,
        stitched, pooled), never truncated.

        texts: the texts (a list, not a single str); none may be empty.
        prompt: literal text put before each text (e.g. "query: "); "" means no prompt, not even the default.
        window: encoder positions per window; None: the embedder's window.
        stride: tokens between window starts; None: half-overlapping windows.
        prompt_name: one of the bundle's prompts by name (`manifest.prompts`); an unknown name is an InputError
            listing the known ones. With neither prompt nor prompt_name, the bundle's default prompt applies (as
            in sentence-transformers); most bundles have none.
        dimensions: keep the first `dimensions` components (Matryoshka truncation), renormalized when the vectors
            are normalized.
        normalize: L2-normalize the vectors; None: as the model does (sentence-transformers' Normalize module).
        batch_size: texts per pipeline call (bounds memory for long lists; windows are packed by tokens inside).
        show_progress_bar: a progress bar on stderr (tqdm when installed)."""
        texts = validate_texts(texts)
        output = self._output(dimensions, normalize)
        parts = list(
            self._embed_batches(texts, prompt, prompt_name, window, stride, output, batch_size, show_progress_bar)
        )
        width = output.dimensions or self.dim
        return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)

    def embed_iter(
        self,
        texts: Iterable[str],
        prompt: str | None = None,
        window: int | None = None,
        stride: int | None = None,
        *,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
    ) -> Iterator[np.ndarray]:
        """`embed` over any iterable, lazily: reads `batch_size` texts at a time and yields one [dim] vector per
        text in order, so a corpus never has to fit in memory. Errors name the text by its overall position."""
        output = self._output(dimensions, normalize)
        for offset, batch in groups(texts, batch_size):
            with renumbered(offset):
                batch = validate_texts(batch)
                for vectors in self._embed_batches(
                    batch, prompt, prompt_name, window, stride, output, len(batch), False
                ):
                    yield from vectors

    def _embed_batches(
        self,
        texts: Sequence[str],
        prompt: str | None,
        prompt_name: str | None,
        window: int | None,
        stride: int | None,
        output: _Output,
        batch_size: int,
        show_progress_bar: bool,
    ) -> Iterator[np.ndarray]:
        text = self.resolve_prompt(prompt, prompt_name)
        plan = self._plan(window, stride, text)
        ids = prompt_ids(self.tokenizer, text)
        with progress(len(texts), show_progress_bar) as bar:
            for offset, batch in groups(texts, batch_size):
                with renumbered(offset):
                    jobs = [TokenSequence(t.ids) for t in self._tokens(batch, text)]
                encoded = self._pipeline.run(jobs, plan, ids)
                bar(len(batch))
                yield output(np.stack([e.pooled for e in encoded]))

    def _tokens(self, texts: Sequence[str], prompt_text: str | None) -> list[Tokens]:
        tokens = prompted_tokens(self.tokenizer, texts, prompt_text)
        for i, t in enumerate(tokens):
            if len(t) == 0:
                raise InputError(f"texts[{i}] has no tokens for this model's tokenizer")
        return tokens

    def embed_documents(
        self,
        texts: Sequence[str],
        chunking: Chunking = DEFAULT_CHUNKING,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        window: int | None = None,
        stride: int | None = None,
        mode: Mode = DEFAULT_MODE,
        spans: Sequence[Sequence[Sequence[int]]] | None = None,
        prompt: str | None = None,
        stitch: Stitch = "center",
        sparse: bool = False,
        *,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        snap: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        show_progress_bar: bool = False,
        max_chunks: int | None = DEFAULT_MAX_CHUNKS,
    ) -> list[DocumentResult]:
        """A document vector plus chunk vectors with character spans, for texts of any length.

        texts: the documents (a list, not a single str); none may be empty.
        chunking: "tokens" (fixed token counts, cut at word boundaries), "sentences" / "paragraphs" (whole
            sentences / paragraphs packed up to chunk_tokens), or "spans" (your own, see spans).
        chunk_tokens: at most this many tokens per chunk.
        window: encoder positions per window; None: the embedder's window.
        stride: tokens between window starts; None: the bundle's default stride with mode="auto" (3/4 of the
            window's content for short-context models), else half-overlapping windows.
        mode: "auto" (default: the bundle's mode, `self.defaults`, decided at export from the model's trained
            length; `blend` for short-context models, `late` for long-context ones), "late" (chunks pooled from
            the states of the whole document, each chunk saw its neighbours),
            "naive" (each chunk encoded alone; the document vector is their mean), "blend" (normalized sum of
            the two), "window_mean" (document vector = mean of the windows' vectors), "truncate" (only the first
            window is encoded, as sentence-transformers would; n_tokens_embedded says how much).
        spans: per text, character spans [(start, end), ...] to use as chunks (implies chunking="spans"); each
            must cover whole tokens unless snap=True.
        prompt: literal text put before each text; "" means no prompt, not even the default.
        stitch: "center" (each token from the window where it is most central) or "weighted" (a weighted mean
            over the windows that cover it).
        sparse: also return `chunk_sparse`, BM25 term weights of each chunk's text.
        prompt_name: one of the bundle's prompts by name; with neither prompt nor prompt_name the bundle's
            default prompt applies (as in sentence-transformers).
        dimensions: keep the first `dimensions` components of every vector (Matryoshka truncation), renormalized
            when the vectors are normalized.
        normalize: L2-normalize document and chunk vectors; None: as the model does.
        snap: widen caller spans that start or end inside a token to the whole token instead of refusing them;
            `chunk_spans` returns the widened spans.
        batch_size: documents per pipeline call.
        show_progress_bar: a progress bar on stderr (tqdm when installed).
        max_chunks: at most this many chunk vectors in the result (a memory bound: chunk_tokens=1 on a book would
            be gigabytes): a call that would pass it is refused (LimitExceeded) before the group of `batch_size`
            documents that passes it is encoded. None: no bound."""
        texts = validate_texts(texts)
        if spans is not None and len(spans) != len(texts):
            raise InputError(f"spans has {len(spans)} entries for {len(texts)} texts")
        text = self.resolve_prompt(prompt, prompt_name)
        resolved, stride = self._auto(mode, window, stride, text)
        args = self._document_args(chunking, chunk_tokens, resolved, spans, stitch, sparse)
        output = self._output(dimensions, normalize)
        plan = self._plan(window, stride, text)
        results: list[DocumentResult] = []
        with progress(len(texts), show_progress_bar) as bar:
            for offset, batch in groups(texts, batch_size):
                batch_spans = None if spans is None else spans[offset : offset + len(batch)]
                bound = Budget(max_chunks, sum(len(r.chunk_spans) for r in results))
                with renumbered(offset):
                    results.extend(self._documents(batch, batch_spans, plan, text, output, snap, *args, bound))
                bar(len(batch))
        return results

    def embed_documents_iter(
        self,
        texts: Iterable[str],
        chunking: Chunking = DEFAULT_CHUNKING,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        window: int | None = None,
        stride: int | None = None,
        mode: Mode = DEFAULT_MODE,
        prompt: str | None = None,
        stitch: Stitch = "center",
        sparse: bool = False,
        *,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        batch_size: int = 256,
    ) -> Iterator[DocumentResult]:
        """`embed_documents` over any iterable, lazily: reads `batch_size` documents at a time and yields one
        DocumentResult per document in order. Caller spans are not taken here (use `embed_documents`)."""
        text = self.resolve_prompt(prompt, prompt_name)
        resolved, stride = self._auto(mode, window, stride, text)
        args = self._document_args(chunking, chunk_tokens, resolved, None, stitch, sparse)
        output = self._output(dimensions, normalize)
        plan = self._plan(window, stride, text)
        for offset, batch in groups(texts, batch_size):
            with renumbered(offset):
                yield from self._documents(validate_texts(batch), None, plan, text, output, False, *args)

    @staticmethod
    def _document_args(
        chunking: str, chunk_tokens: int, mode: str, spans: object, stitch: str, sparse: bool
    ) -> tuple[str, int, str, str, bool]:
        """Validate the options of a documents call before any work; return them with chunking resolved."""
        if mode not in MODES or mode == "auto":  # "auto" was resolved to the bundle's mode by then
            raise InputError(f"mode must be one of {MODES}, got {mode!r}")
        if chunking not in CHUNKINGS:
            raise InputError(f"chunking must be one of {CHUNKINGS}, got {chunking!r}")
        if spans is not None:
            chunking = "spans"
        if isinstance(chunk_tokens, bool) or not isinstance(chunk_tokens, int) or chunk_tokens < 1:
            raise InputError(f"chunk_tokens must be a positive int, got {chunk_tokens!r}")
        if stitch not in ("center", "weighted"):
            raise InputError(f"stitch must be 'center' or 'weighted', got {stitch!r}")
        if sparse:
            require_stemmer()  # before any encoding, not after
        return chunking, chunk_tokens, mode, stitch, sparse

    def _documents(
        self,
        texts: list[str],
        spans: Sequence[Sequence[Sequence[int]]] | None,
        plan: WindowPlan,
        prompt_text: str | None,
        output: _Output,
        snap: bool,
        chunking: str,
        chunk_tokens: int,
        mode: str,
        stitch: str,
        sparse: bool,
        bound: Budget = Budget(None),
    ) -> list[DocumentResult]:
        tokens = self._tokens(texts, prompt_text)
        if spans is not None:  # before chunking, which itself takes time per chunk
            bound.check(sum(len(s) for s in spans))
        else:
            bound.check(sum(chunk_floor(len(t), chunk_tokens) for t in tokens))
        chunks = [
            make_chunks(text, tok, chunking, chunk_tokens, None if spans is None else spans[i], snap)
            for i, (text, tok) in enumerate(zip(texts, tokens))
        ]
        bound.check(sum(len(c) for c in chunks))
        if mode == "naive":  # its document vector is the mean of the chunks: there must be one
            empty = next((i for i, c in enumerate(chunks) if len(c) == 0), None)
            if empty is not None:
                raise InputError(f"spans[{empty}] is empty: mode 'naive' pools the document from its chunks")
        # naive chunks are encoded alone and the document vector is their mean: no whole-document pass
        doc_jobs = [] if mode == "naive" else [self._doc_job(tok, ch, plan, mode) for tok, ch in zip(tokens, chunks)]
        chunk_jobs = (
            [TokenSequence(tok.ids[s:e]) for tok, ch in zip(tokens, chunks) for s, e in ch.token_spans.tolist()]
            if mode in ("naive", "blend")
            else []
        )
        ids = prompt_ids(self.tokenizer, prompt_text)
        encoded = self._pipeline.run(doc_jobs + chunk_jobs, plan, ids, cast(Stitch, stitch))
        docs: Sequence[Encoded | None] = encoded[: len(doc_jobs)] if doc_jobs else [None] * len(texts)
        alone = encoded[len(doc_jobs) :]
        results = []
        offset = 0
        for tok, ch, doc in zip(tokens, chunks, docs):
            own = alone[offset : offset + len(ch)] if alone else []
            offset += len(own)
            results.append(self._result(tok, ch, doc, own, plan, mode, output))
        if sparse:
            results = [
                replace(r, chunk_sparse=self.sparse.documents([text[s:e] for s, e in r.chunk_spans.tolist()]))
                for text, r in zip(texts, results)
            ]
        return results

    def embed_sparse_queries(self, texts: Sequence[str]) -> list[SparseVector]:
        """Query-side sparse vectors (weight 1 per distinct term) matching `embed_documents(sparse=True)`."""
        return self.sparse.queries(validate_texts(texts, allow_blank=True))

    def search(
        self,
        query: str | Sequence[str],
        documents: Sequence[str] | Sequence[DocumentResult],
        *,
        top_k: int = _search.DEFAULT_TOP_K,
        hybrid: bool = True,
        fusion: _search.Fusion = _search.DEFAULT_FUSION,
        alpha: float = _search.DEFAULT_ALPHA,
        texts: Sequence[str] | None = None,
        snap: bool = False,
        chunking: Chunking = DEFAULT_CHUNKING,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        mode: Mode = DEFAULT_MODE,
        prompt_name: str | None = None,
        show_progress_bar: bool = False,
        prompt: str | None = None,
    ) -> list[_search.Hit] | list[list[_search.Hit]]:
        """The passages that answer `query`: every chunk of every document ranked, the best `top_k` returned as
        hits (`documents[hit.document][hit.start:hit.end]` is the passage; `hit.text` holds it when the texts are
        known). One query string gives a list of hits; a list of queries gives one list per query, the documents
        embedded once per call.

        documents: texts (embedded here with `chunking`, `chunk_tokens`, `mode`), or DocumentResults already
            embedded (e.g. read back from a batch job), searched as they are.
        hybrid: dense cosine fused with BM25 over the same chunk spans (IDF over the chunks searched); False:
            dense only. Hybrid needs sparse chunk vectors: DocumentResults embedded with sparse=True, or `texts`.
        fusion, alpha: how the two are fused (runtime/core/search.py; the defaults measured best, README "Search").
        texts: the documents' texts when `documents` are DocumentResults (for `hit.text`, snippets and BM25).
        snap: fill `hit.snippet`, the hit widened to sentence boundaries for display (the score is the chunk's).
        prompt_name, prompt: the queries' prompt, by the bundle's name for it (e.g. "query") or as literal text;
            neither: the bundle's default prompt."""
        queries, single = _search.queries_of(query)
        _search.check_options(top_k, fusion, alpha)
        given, results = _search.split_documents(documents)
        if given is not None:
            texts, results = (
                given,
                self.embed_documents(
                    given, chunking, chunk_tokens, mode=mode, sparse=hybrid, show_progress_bar=show_progress_bar
                ),
            )
        corpus = _search.Corpus.of(_search.with_sparse(results or [], texts, self.sparse if hybrid else None), hybrid)
        if not queries:
            return []
        vectors = self.embed(queries, prompt, prompt_name=prompt_name)
        sparse = self.embed_sparse_queries(queries) if hybrid else None
        hits = _search.rank(corpus, vectors, sparse, top_k, fusion, alpha, texts, snap)
        return hits[0] if single else hits

    @staticmethod
    def _doc_job(tok: Tokens, ch: Chunks, plan: WindowPlan, mode: str) -> TokenSequence:
        if mode == "truncate":
            head = min(len(tok), plan.content)
            inside = ch.token_spans[ch.token_spans[:, 1] <= head]
            return TokenSequence(tok.ids[:head], inside)
        return TokenSequence(tok.ids, ch.token_spans)

    def _finish(self, x: np.ndarray) -> np.ndarray:
        return l2_normalize(x) if self.manifest.pooling.normalize else np.asarray(x, dtype=np.float32)

    def _result(
        self,
        tok: Tokens,
        ch: Chunks,
        doc: Encoded | None,
        alone: Sequence[Encoded],
        plan: WindowPlan,
        mode: str,
        output: _Output,
    ) -> DocumentResult:
        """Vectors as the model gives them (its own normalization inside each mode), then `output` shapes them."""
        char_spans, token_spans = ch.char_spans, ch.token_spans
        n_embedded = len(tok)
        if mode in ("naive", "blend"):
            naive = np.stack([a.pooled for a in alone]) if alone else np.zeros((0, self.dim), np.float32)
        if doc is None:  # naive: chunks alone, the document vector is their mean
            return DocumentResult(
                vector=output(l2_normalize(naive).mean(axis=0)),
                chunk_vectors=output(naive),
                chunk_spans=char_spans,
                chunk_token_spans=token_spans,
                n_tokens=len(tok),
                n_tokens_embedded=n_embedded,
                n_windows=sum(a.n_windows for a in alone),
                mode=mode,
            )
        late = doc.span_means
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
            vector=output(vector),
            chunk_vectors=output(chunk_vectors).astype(np.float32, copy=False),
            chunk_spans=char_spans,
            chunk_token_spans=token_spans,
            n_tokens=len(tok),
            n_tokens_embedded=n_embedded,
            n_windows=doc.n_windows,
            mode=mode,
        )
