"""Where a request is admitted: every check that can refuse it runs here, cheapest first, before it may queue
for the encoder.

1. (before this module: the gate's API key, body bytes and UTF-8, and the schema's types)
2. item count, then each text through the library's own check (`text_problem`: empty, lone surrogates), no
   tokenizing yet
3. options: dimensions, window and stride (the library's window planner), the server's minimum stride and
   chunk size, spans given exactly when chunking is "spans"
4. tokenize once (the tokens are kept for the library call, which then does not tokenize again), then the cost
   model (longvec.runtime.core.budget): content tokens, encoder tokens, chunks, each against its limit -> 413

Admission is plain synchronous code; the routes run it on a worker thread when a request is large.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

from longvec.runtime.core.budget import Cost, document_cost, embed_cost, packed_lengths
from longvec.runtime.core.chunking import chunk_by_spans
from longvec.runtime.core.prompts import prompted_tokens
from longvec.runtime.core.text import TextTokenizer, Tokens, text_problem
from longvec.runtime.embedder import Embedder, Mode
from longvec.runtime.errors import InputError, LimitExceeded, LongvecError
from longvec.runtime.server.errors import with_param
from longvec.runtime.server.options import DocumentOptions, EmbedOptions, Options
from longvec.runtime.server.schema import DocumentsRequest, EmbeddingRequest
from longvec.runtime.server.settings import ServeSettings, flag


class TokenMemo(TextTokenizer):
    """The served Embedder's tokenizer: texts tokenized at admission are not tokenized again by the library
    call. Entries are keyed by the text object itself (identity, not equality) and dropped when the request
    ends; any other text is tokenized as usual. A prompted text is tokenized as prompt + text, a string the
    library makes again: those entries are keyed by their content."""

    def __init__(self, inner: TextTokenizer) -> None:  # no super().__init__: everything else is `inner`'s
        self.inner = inner
        self._kept: dict[int, tuple[str, Tokens]] = {}
        self._joint: dict[str, Tokens] = {}
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def encode(self, texts: Sequence[str]) -> list[Tokens]:
        texts = list(texts)
        with self._lock:
            found = [self._kept.get(id(t)) for t in texts]
            hits = [f[1] if f is not None and f[0] is t else self._joint.get(t) for f, t in zip(found, texts)]
        missing = [i for i, h in enumerate(hits) if h is None]
        for i, tokens in zip(missing, self.inner.encode([texts[i] for i in missing])):
            hits[i] = tokens
        return [h for h in hits if h is not None]

    def ids(self, text: str) -> tuple[int, ...]:
        return self.inner.ids(text)

    def keep(self, texts: Sequence[str], prompt_text: str | None = None) -> list[Tokens]:
        """Each text's content tokens as the library will see them (after `prompt_text`, if any)."""
        if prompt_text:
            joint = [prompt_text + t for t in texts]
            seen = self.inner.encode(joint)
            with self._lock:
                self._joint.update(zip(joint, seen))
            return prompted_tokens(self, texts, prompt_text)  # from the entries just kept
        tokens = self.inner.encode(texts)
        with self._lock:
            self._kept.update((id(t), (t, tok)) for t, tok in zip(texts, tokens))
        return tokens

    def forget(self, texts: Sequence[str], prompt_text: str | None = None) -> None:
        with self._lock:
            for t in texts:
                entry = self._kept.get(id(t))
                if entry is not None and entry[0] is t:
                    del self._kept[id(t)]
                if prompt_text:
                    self._joint.pop(prompt_text + t, None)


@dataclass(frozen=True)
class Admitted:
    options: Options
    texts: list[str]
    extras: list[Any]  # per text: caller spans, or None
    cost: Cost
    prompt_text: str | None = None  # the resolved prompt the texts were tokenized after


class Admission:
    def __init__(self, settings: ServeSettings, emb: Embedder, memo: TokenMemo) -> None:
        self.settings, self.emb, self.memo = settings, emb, memo
        self._flags = {name: flag(name) for name in ("max_request_tokens", "max_request_encoder_tokens", "max_chunks")}

    def embeddings(self, body: EmbeddingRequest) -> Admitted:
        single = isinstance(body.input, str)
        texts = [body.input] if isinstance(body.input, str) else body.input
        self._dimensions(body.dimensions)
        self._texts(texts, "input", "input" if single else "input[{i}]")
        prompt, prompt_name, prompt_text = self._prompt(body.prompt, body.prompt_name)
        plan = self.emb.plan(prompt=prompt, prompt_name=prompt_name)
        with self._kept_on_success(texts, prompt_text):
            tokens = self._tokenize(texts, "input" if single else "input[{i}]", prompt_text)
            cost = embed_cost([len(t) for t in tokens], plan, plan.window - plan.content)
            self._check(cost, "input")
        return Admitted(EmbedOptions(prompt, prompt_name), texts, [None] * len(texts), cost, prompt_text)

    def documents(self, body: DocumentsRequest) -> Admitted:
        s = self.settings
        texts = [d.text for d in body.documents]
        self._dimensions(body.dimensions)
        self._texts(texts, "documents", "documents[{i}].text")
        if body.sparse and (missing := _sparse_missing()):
            raise with_param(InputError(f"sparse not available: {missing}"), "sparse")
        for i, doc in enumerate(body.documents):
            if (body.chunking == "spans") != (doc.spans is not None):
                item = f"documents[{i}].spans"
                raise with_param(InputError(f"{item} must be given if and only if chunking is 'spans'"), item)
        if body.chunking != "spans" and body.chunk_tokens < s.min_chunk_tokens:
            # a too-small value, not a too-large request: 422 (it still names the flag)
            message = f"chunk_tokens={body.chunk_tokens} is below this server's minimum {s.min_chunk_tokens}"
            raise with_param(InputError(f"{message} ({flag('min_chunk_tokens')})"), "chunk_tokens")
        prompt, prompt_name, prompt_text = self._prompt(body.prompt, body.prompt_name)
        mode: Mode = body.mode
        stride = body.stride
        try:
            if mode == "auto":  # the bundle's mode and stride, resolved here so the cost is the real one
                mode = cast(Mode, self.emb.defaults.mode)
                if stride is None:
                    stride = self.emb.defaults.stride(
                        self.emb.plan(body.window, None, prompt, prompt_name=prompt_name).content
                    )
            plan = self.emb.plan(body.window, stride, prompt, prompt_name=prompt_name)  # impossible window/stride: here
        except InputError as e:
            raise with_param(e, "stride" if str(e).startswith("stride") else "window") from None
        if body.stride is not None and body.stride < min(s.min_stride, plan.content):
            message = f"stride={plan.stride} is below this server's minimum {s.min_stride}"
            raise with_param(InputError(f"{message} ({flag('min_stride')})"), "stride")
        with self._kept_on_success(texts, prompt_text):
            tokens = self._tokenize(texts, "documents[{i}].text", prompt_text)
            if body.chunking == "spans":
                lengths = [
                    self._span_lengths(i, text, tok, doc.spans or [], body.snap)
                    for i, (text, tok, doc) in enumerate(zip(texts, tokens, body.documents))
                ]
            else:
                lengths = [packed_lengths(len(t), body.chunk_tokens) for t in tokens]
            cost = document_cost([len(t) for t in tokens], plan, plan.window - plan.content, mode, lengths)
            self._check(cost, "documents")
        options = DocumentOptions(
            body.chunking,
            body.chunk_tokens,
            mode,
            body.window,
            stride,
            body.sparse,
            s.max_chunks,
            prompt,
            prompt_name,
            body.snap,
        )
        return Admitted(options, texts, [d.spans for d in body.documents], cost, prompt_text)

    def _prompt(self, prompt: str | None, prompt_name: str | None) -> tuple[str | None, str | None, str | None]:
        """(prompt, prompt_name) for the library call, the server's default name applied, and the prompt text
        they resolve to (the library's own resolution: an unknown name is a 422 listing the known ones)."""
        if prompt is None and prompt_name is None:
            prompt_name = self.settings.default_prompt_name
        try:
            return prompt, prompt_name, self.emb.resolve_prompt(prompt, prompt_name)
        except InputError as e:
            raise with_param(e, "prompt" if prompt is not None and prompt_name is None else "prompt_name") from None

    def _texts(self, texts: list[str], name: str, label: str) -> None:
        """Cheap checks, no tokenizing: how many, and each text as the library itself validates it."""
        if len(texts) > self.settings.max_items:
            message = f"{name} has {len(texts)} items; this server accepts at most {self.settings.max_items}"
            raise with_param(LimitExceeded(f"{message} per request ({flag('max_items')})", "max_items"), name)
        if not texts:
            raise with_param(InputError(f"{name} is an empty list; there is nothing to embed"), name)
        for i, text in enumerate(texts):
            problem = text_problem(text)
            if problem is not None:
                item = label.format(i=i)
                raise with_param(InputError(f"{item} {problem}"), item)

    @contextmanager
    def _kept_on_success(self, texts: list[str], prompt_text: str | None) -> Iterator[None]:
        """Tokens kept for the library call are dropped again if the request is refused."""
        try:
            yield
        except BaseException:
            self.memo.forget(texts, prompt_text)
            raise

    def _tokenize(self, texts: list[str], label: str, prompt_text: str | None) -> list[Tokens]:
        tokens = self.memo.keep(texts, prompt_text)
        for i, t in enumerate(tokens):
            if len(t) == 0:
                item = label.format(i=i)
                raise with_param(InputError(f"{item} has no tokens for this model's tokenizer"), item)
        return tokens

    def _span_lengths(self, i: int, text: str, tokens: Tokens, spans: list[list[int]], snap: bool) -> list[int]:
        """Token lengths of caller spans (they may overlap: naive mode encodes each one alone)."""
        try:
            token_spans = chunk_by_spans(text, tokens, spans, snap).token_spans
        except InputError as e:
            raise with_param(InputError(f"documents[{i}].spans: {e}"), f"documents[{i}].spans") from None
        return (token_spans[:, 1] - token_spans[:, 0]).tolist()

    def _check(self, cost: Cost, name: str) -> None:
        try:
            self.settings.limits.check(cost, self._flags)
        except LimitExceeded as e:
            raise with_param(e, name) from None

    def _dimensions(self, dimensions: int | None) -> None:
        dim = self.emb.dim
        if dimensions is not None and not 1 <= dimensions <= dim:
            raise with_param(
                InputError(f"dimensions must be in 1..{dim} (this model's size), got {dimensions}"), "dimensions"
            )

    def release(self, admitted: Admitted) -> None:
        self.memo.forget(admitted.texts, admitted.prompt_text)


def _sparse_missing() -> str | None:
    """Why sparse chunk vectors cannot be made here, or None when they can."""
    try:
        from longvec.runtime.core.sparse import require_stemmer

        require_stemmer()
    except (ImportError, LongvecError) as e:
        return str(e)
    return None
