"""The public entry point: `Embedder.load(bundle)`, then `embed` or `embed_documents`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime.backends import Backend, BackendOptions, GraphFiles, describe, open_backend, pools_on_device
from longvec.runtime.backends.base import check_window
from longvec.runtime.backends.options import TENSORRT_PROVIDER_VARIANT
from longvec.runtime.backends.probe import probe
from longvec.runtime.bundle.defaults import resolve as resolve_defaults
from longvec.runtime.bundle.manifest import MANIFEST_NAME, Manifest
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.core import search as _search
from longvec.runtime.core.chunking import CHUNKINGS, Chunking
from longvec.runtime.core.documents import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CHUNK_TOKENS,
    DEFAULT_MAX_CHUNKS,
    DocumentCall,
    DocumentOptions,
    DocumentResult,
    Output,
    PreparedDocuments,
    embed_prepared,
    model_normalized,
    prepare,
)
from longvec.runtime.core.modes import AUTO, TABLE, Mode, lookup, names
from longvec.runtime.core.onewindow import one_window_pooled
from longvec.runtime.core.pipeline import Batching, Pipeline, PipelineConfig, TokenSequence
from longvec.runtime.core.prompts import prompt_ids, prompted_tokens, resolve_prompt
from longvec.runtime.core.sparse import SparseEncoder, SparseVector
from longvec.runtime.core.stitch import Stitch
from longvec.runtime.core.streaming import groups, progress, renumbered
from longvec.runtime.core.text import TextTokenizer, Tokens, require_tokens, validate_texts
from longvec.runtime.core.windows import WindowPlan
from longvec.runtime.errors import InputError, ManifestError

# Every name `mode=` takes: "auto" (the bundle's default_mode, runtime/bundle/defaults.py) and the modes of the
# table in runtime/core/modes.py, which is where a mode is described.
MODES: tuple[str, ...] = names()
DEFAULT_MODE: Mode = AUTO
# onnxruntime thread spinning for Embedder.load(spin=None): on for a library or `longvec embed` with the cores to
# itself (the README's "Performance": queries, quiet and loaded rows); the server passes spin=False.
DEFAULT_SPIN = True
DEFAULT_CHUNKING: Chunking = "tokens"
DEFAULT_VARIANT = "optimized"
__all__ = [  # the names other modules take from here (the public ones are re-exported by longvec.runtime)
    "CHUNKINGS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_CHUNKING",
    "DEFAULT_CHUNK_TOKENS",
    "DEFAULT_MAX_CHUNKS",
    "DEFAULT_MODE",
    "DEFAULT_SPIN",
    "DEFAULT_VARIANT",
    "MODES",
    "Chunking",
    "DocumentCall",
    "DocumentResult",
    "Embedder",
    "Mode",
    "PreparedDocuments",
]


def similarity(a: np.ndarray | Sequence[np.ndarray], b: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
    """Cosine similarity of every vector of `a` with every vector of `b`: float32 [n, m]; a [dim] vector counts as
    one row (sentence-transformers' `cos_sim`). A zero vector has similarity 0 with everything."""
    left, right = (np.atleast_2d(np.asarray(x, dtype=np.float32)) for x in (a, b))
    if left.ndim != 2 or right.ndim != 2 or left.shape[1] != right.shape[1]:
        raise InputError(f"similarity needs [n, dim] and [m, dim] vectors, got {left.shape} and {right.shape}")
    return l2_normalize(left) @ l2_normalize(right).T


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
        if self.defaults.mode not in TABLE:  # the manifest holds a name; the mode table says what names exist
            known = ", ".join(TABLE)
            raise ManifestError(
                Path(MANIFEST_NAME), f"default_mode {self.defaults.mode!r} is not a mode of this longvec ({known})"
            )
        self.window = window or self.defaults.window
        self._plans: dict[tuple[int | None, int | None, str | None], WindowPlan] = {}
        self._prompts: dict[str | None, tuple[int, ...]] = {}  # prompt text -> its tokens, tokenized once
        self._pipeline = Pipeline(backend, PipelineConfig(manifest.framing, manifest.pooling, batching))
        self._overhead = manifest.framing.overhead
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
            bundle.check_token_ids(tokenizer.id_bound)
            if chosen.engine == "onnxruntime":  # a TensorRT plan's profiles may not admit the probe's shape
                ran = (files.pooled if pools_on_device(backend) else files.states) or bundle.path(chosen.file)
                probe(backend, tokenizer.id_bound, ran)
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
            overhead = self._overhead + len(self._prompt_ids(prompt_text))
            plan = WindowPlan.make(window or self.window, stride, overhead, self.manifest.max_positions)
            if len(self._plans) < 64:  # the few plans that calls ask for, made once (bench/overhead.py)
                self._plans[key] = plan
        return plan

    def _prompt_ids(self, prompt_text: str | None) -> tuple[int, ...]:
        ids = self._prompts.get(prompt_text)
        if ids is None:
            ids = prompt_ids(self.tokenizer, prompt_text)
            if len(self._prompts) < 64:  # the few prompts calls use, as for plans
                self._prompts[prompt_text] = ids
        return ids

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

    def _output(self, dimensions: int | None, normalize: bool | None) -> Output:
        return Output.make(dimensions, normalize, self.dim, self.manifest.pooling.normalize)

    def embed(
        self,
        texts: str | Sequence[str],
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

        texts: the texts; none may be empty. A single str gives one [dim] vector, as sentence-transformers'
            `encode("text")` does.
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
        if isinstance(texts, str):
            one = self.embed(
                [texts],
                prompt,
                window,
                stride,
                prompt_name=prompt_name,
                dimensions=dimensions,
                normalize=normalize,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
            )
            return one[0]
        texts = validate_texts(texts)
        output = self._output(dimensions, normalize)
        if len(texts) == 1 and not show_progress_bar and type(batch_size) is int and batch_size >= 1:
            # a single query: no groups or progress bar (their Python is a visible share of a query's time)
            text = self.resolve_prompt(prompt, prompt_name)
            plan = self._plan(window, stride, text)
            return output(self._pooled(self._tokens(texts, text), plan, self._prompt_ids(text)))
        parts = list(
            self._embed_batches(texts, prompt, prompt_name, window, stride, output, batch_size, show_progress_bar)
        )
        width = output.dimensions or self.dim
        return np.concatenate(parts) if parts else np.zeros((0, width), dtype=np.float32)

    def embed_iter(
        self,
        texts: str | Iterable[str],
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
        text in order, so a corpus never has to fit in memory. Errors name the text by its overall position.
        A single str yields one vector, as fastembed's `embed("text")` does."""
        if isinstance(texts, str):
            texts = [texts]
        output = self._output(dimensions, normalize)
        for offset, batch in groups(texts, batch_size):
            with renumbered(offset):
                batch = validate_texts(batch)
                for vectors in self._embed_batches(
                    batch, prompt, prompt_name, window, stride, output, len(batch), False
                ):
                    yield from vectors

    def encode(
        self,
        sentences: str | Sequence[str],
        prompt_name: str | None = None,
        prompt: str | None = None,
        batch_size: int = 32,
        show_progress_bar: bool | None = None,
        output_value: str | None = "sentence_embedding",
        precision: str = "float32",
        convert_to_numpy: bool = True,
        convert_to_tensor: bool = False,
        device: str | None = None,
        normalize_embeddings: bool = False,
        truncate_dim: int | None = None,
    ) -> np.ndarray | list[np.ndarray]:
        """sentence-transformers' `SentenceTransformer.encode`, for code written against it: `embed` under its
        arguments. A str gives one [dim] vector, a list [n, dim] (a list of [dim] arrays with convert_to_numpy=
        False). normalize_embeddings=False keeps the model's own normalization (as there: a Normalize module still
        applies); truncate_dim is `dimensions`. Only float32 sentence embeddings on the load's device: any other
        output_value, precision, device or convert_to_tensor=True is an InputError, not silently ignored."""
        asked = {
            "output_value": output_value,
            "precision": precision,
            "device": device,
            "convert_to_tensor": convert_to_tensor,
        }
        unsupported = {k: v for k, v in asked.items() if v not in ("sentence_embedding", "float32", None, False)}
        if unsupported:
            raise InputError(
                f"encode supports float32 sentence embeddings on the load's device only, got {unsupported}"
            )
        vectors = self.embed(
            sentences,
            prompt,
            prompt_name=prompt_name,
            dimensions=truncate_dim,
            normalize=True if normalize_embeddings else None,
            batch_size=batch_size,
            show_progress_bar=bool(show_progress_bar),
        )
        return vectors if convert_to_numpy or vectors.ndim == 1 else list(vectors)

    @staticmethod
    def similarity(a: np.ndarray | Sequence[np.ndarray], b: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Cosine similarity of every vector of `a` with every vector of `b`: float32 [n, m], a single [dim]
        vector counting as one row, as sentence-transformers' `similarity` (its default, cosine) gives."""
        return similarity(a, b)

    def _embed_batches(
        self,
        texts: Sequence[str],
        prompt: str | None,
        prompt_name: str | None,
        window: int | None,
        stride: int | None,
        output: Output,
        batch_size: int,
        show_progress_bar: bool,
    ) -> Iterator[np.ndarray]:
        text = self.resolve_prompt(prompt, prompt_name)
        plan = self._plan(window, stride, text)
        ids = self._prompt_ids(text)
        with progress(len(texts), show_progress_bar) as bar:
            for offset, batch in groups(texts, batch_size):
                with renumbered(offset):
                    tokens = self._tokens(batch, text)
                pooled = self._pooled(tokens, plan, ids)
                bar(len(batch))
                yield output(pooled)

    def _pooled(self, tokens: list[Tokens], plan: WindowPlan, prompt: tuple[int, ...]) -> np.ndarray:
        """The model's pooling of each text (not normalized), [n, dim]: a single text that fits one window goes
        to the encoder at once (runtime.core.onewindow: the same vector, a fraction of the Python), others
        through the pipeline's windows and batches."""
        if len(tokens) == 1 and len(tokens[0]) <= plan.content:
            return one_window_pooled(self.backend, self.manifest.framing, self.manifest.pooling, tokens[0].ids, prompt)
        encoded = self._pipeline.run([TokenSequence(t.ids) for t in tokens], plan, prompt)
        return np.stack([e.pooled for e in encoded])

    def _tokens(self, texts: Sequence[str], prompt_text: str | None) -> list[Tokens]:
        tokens = prompted_tokens(self.tokenizer, texts, prompt_text, self._prompt_ids(prompt_text))
        require_tokens(tokens)
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
            window is encoded, as sentence-transformers would; n_tokens_embedded says how much). The modes are
            the table in runtime/core/modes.py.
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
        call = self.document_call(
            chunking, chunk_tokens, window, stride, mode, prompt, stitch, sparse,
            spans=spans is not None, prompt_name=prompt_name, dimensions=dimensions, normalize=normalize,
            snap=snap, batch_size=batch_size, max_chunks=max_chunks,
        )  # fmt: skip
        results: list[DocumentResult] = []
        with progress(len(texts), show_progress_bar) as bar:
            for offset, batch in groups(texts, call.batch_size):
                batch_spans = None if spans is None else spans[offset : offset + len(batch)]
                with renumbered(offset):
                    results.extend(self._documents(call, batch, batch_spans, sum(len(r.chunk_spans) for r in results)))
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
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_chunks: int | None = DEFAULT_MAX_CHUNKS,
    ) -> Iterator[DocumentResult]:
        """`embed_documents` over any iterable, lazily: reads `batch_size` documents at a time and yields one
        DocumentResult per document in order. The same defaults and limits as `embed_documents` (`max_chunks`
        counts every chunk yielded so far). Caller spans are not taken here (use `embed_documents`)."""
        call = self.document_call(
            chunking, chunk_tokens, window, stride, mode, prompt, stitch, sparse,
            prompt_name=prompt_name, dimensions=dimensions, normalize=normalize, batch_size=batch_size,
            max_chunks=max_chunks,
        )  # fmt: skip
        used = 0
        for offset, batch in groups(texts, call.batch_size):
            with renumbered(offset):
                results = self._documents(call, validate_texts(batch), None, used)
            used += sum(len(r.chunk_spans) for r in results)
            yield from results

    def document_call(
        self,
        chunking: Chunking = DEFAULT_CHUNKING,
        chunk_tokens: int = DEFAULT_CHUNK_TOKENS,
        window: int | None = None,
        stride: int | None = None,
        mode: Mode = DEFAULT_MODE,
        prompt: str | None = None,
        stitch: Stitch = "center",
        sparse: bool = False,
        *,
        spans: bool = False,
        prompt_name: str | None = None,
        dimensions: int | None = None,
        normalize: bool | None = None,
        snap: bool = False,
        batch_size: int = DEFAULT_BATCH_SIZE,
        max_chunks: int | None = DEFAULT_MAX_CHUNKS,
    ) -> DocumentCall:
        """What an `embed_documents` call with these arguments will do, decided before any text: the mode
        ("auto" resolved to the bundle's), the window plan, the prompt, the output shape, the chunk bound.
        `spans=True`: the call takes caller spans (chunking "spans"). Raises InputError for any bad argument, as
        the call itself would; `prepare_documents` then takes the texts."""
        options = DocumentOptions("spans" if spans else chunking, chunk_tokens, mode, stitch, sparse)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
        prompt_text = self.resolve_prompt(prompt, prompt_name)
        resolved, stride = self._auto(options.mode, window, stride, prompt_text)
        ids = self._prompt_ids(prompt_text)
        return DocumentCall(
            mode=lookup(resolved),
            chunking=options.chunking,
            chunk_tokens=options.chunk_tokens,
            plan=self._plan(window, stride, prompt_text),
            prompt=prompt_text,
            prompt_ids=ids,
            overhead=self._overhead + len(ids),
            stitch=cast(Stitch, options.stitch),
            sparse=options.sparse,
            snap=bool(snap),
            output=self._output(dimensions, normalize),
            max_chunks=max_chunks,
            batch_size=batch_size,
        )

    def prepare_documents(
        self,
        call: DocumentCall,
        texts: Sequence[str],
        spans: Sequence[Sequence[Sequence[int]]] | None = None,
    ) -> PreparedDocuments:
        """`call` with its texts: tokenized (a text without tokens is an InputError), caller spans checked, and
        the `cost` (content tokens, encoder positions, chunks) known before any encoding. LimitExceeded when the
        call's max_chunks is passed. `embed_prepared` then does the work."""
        texts = validate_texts(texts)
        return prepare(call, self.tokenizer, texts, spans)

    def embed_prepared(self, prepared: PreparedDocuments) -> list[DocumentResult]:
        """Encode a `prepare_documents` value: what `embed_documents` returns for the same arguments."""
        return embed_prepared(prepared, self._pipeline, self.sparse, self.dim)

    def _documents(
        self,
        call: DocumentCall,
        texts: list[str],
        spans: Sequence[Sequence[Sequence[int]]] | None,
        used_chunks: int,
    ) -> list[DocumentResult]:
        """One group of a call: `used_chunks` chunk vectors came from its earlier groups."""
        prepared = prepare(call, self.tokenizer, texts, spans, used_chunks)
        return embed_prepared(prepared, self._pipeline, self.sparse, self.dim, used_chunks)

    def _finish(self, x: np.ndarray) -> np.ndarray:
        """The model's own normalization of a pooled vector (bench/overhead.py times it apart)."""
        return model_normalized(x, self.manifest.pooling.normalize)

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
