"""Where a request is admitted: every check that can refuse it runs here, cheapest first, before it may queue
for the encoder.

1. (before this module: the gate's API key, body bytes and UTF-8, and the schema's types)
2. item count, then each text through the library's own check (`text_problem`: empty, lone surrogates), no
   tokenizing yet
3. options: the server's own rules (spans given exactly when chunking is "spans", minimum chunk size and
   stride), and everything else as the library decides it: `Embedder.document_call` resolves mode, window,
   stride and dimensions exactly as the call itself will
4. tokenize once (the tokens are kept for the library call, which then does not tokenize again), then
   `Embedder.prepare_documents`: texts without tokens, caller spans, and the call's cost (runtime.core.budget):
   content tokens, encoder tokens, chunks, each against the server's limit -> 413

Admission is plain synchronous code; the routes run it on a worker thread when a request is large.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

from longvec.runtime.core.budget import Cost, embed_cost
from longvec.runtime.core.documents import Output
from longvec.runtime.core.prompts import prompted_tokens
from longvec.runtime.core.text import TextTokenizer, Tokens, require_tokens, text_problem
from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import BackendUnavailable, InputError, LimitExceeded, LongvecError, OverloadedError
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

    @property
    def queue_tokens(self) -> int:
        """What the request weighs in the queue (--max-queue-tokens) and in a shared library call: the encoder
        positions it will run, not its content tokens (a window-512, stride-32 request runs 15x its tokens)."""
        return self.cost.encoder_tokens


class InFlight:
    """Characters being admitted (tokenized and costed) at once: admission runs on a thread pool, and tokenizing
    holds several times a text's size, so concurrent large bodies are bounded together, not only one by one. A
    request alone always enters; one that would pass the bound while others are admitted gets 429."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held = 0
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, chars: int) -> Iterator[None]:
        with self._lock:
            if self._held and self._held + chars > self.limit:
                raise OverloadedError(
                    f"{self._held} characters are being admitted; with {chars} more this server would pass its "
                    f"bound of {self.limit} (twice {flag('max_body_bytes')}); retry"
                )
            self._held += chars
        try:
            yield
        finally:
            with self._lock:
                self._held -= chars


class Admission:
    def __init__(self, settings: ServeSettings, emb: Embedder, memo: TokenMemo) -> None:
        self.settings, self.emb, self.memo = settings, emb, memo
        # the output and pooling bounds of the cost model, from the flags a user knows: pooling as many chunk tokens
        # as the encoder may run positions, and as many sparse pairs as the chunk vectors have components
        self.limits = replace(
            settings.limits,
            max_pooled_tokens=settings.max_request_encoder_tokens,
            max_sparse_terms=settings.max_chunks * emb.dim,
        )
        names = ("max_request_tokens", "max_request_encoder_tokens", "max_chunks")
        self._flags = {name: flag(name) for name in names}
        self._flags |= {"max_pooled_tokens": flag("max_request_encoder_tokens"), "max_sparse_terms": flag("max_chunks")}
        self.in_flight = InFlight(2 * settings.max_body_bytes)

    def embeddings(self, body: EmbeddingRequest) -> Admitted:
        single = isinstance(body.input, str)
        texts = [body.input] if isinstance(body.input, str) else body.input
        self._dimensions(body.dimensions)
        self._texts(texts, "input", "input" if single else "input[{i}]")
        prompt, prompt_name, prompt_text = self._prompt(body.prompt, body.prompt_name)
        plan = self.emb.plan(prompt=prompt, prompt_name=prompt_name)
        with self.in_flight.hold(sum(len(t) for t in texts)), self._kept_on_success(texts, prompt_text):
            tokens = self._tokenize(texts, "input" if single else "input[{i}]", prompt_text)
            cost = embed_cost([len(t) for t in tokens], plan, plan.window - plan.content)
            self._check(cost, "input")
        return Admitted(EmbedOptions(prompt, prompt_name), texts, [None] * len(texts), cost, prompt_text)

    def documents(self, body: DocumentsRequest) -> Admitted:
        s = self.settings
        texts = [d.text for d in body.documents]
        self._texts(texts, "documents", "documents[{i}].text")
        for i, doc in enumerate(body.documents):
            if (body.chunking == "spans") != (doc.spans is not None):
                item = f"documents[{i}].spans"
                raise with_param(InputError(f"{item} must be given if and only if chunking is 'spans'"), item)
        if body.chunking != "spans" and body.chunk_tokens < s.min_chunk_tokens:
            # a too-small value, not a too-large request: 422 (it still names the flag)
            message = f"chunk_tokens={body.chunk_tokens} is below this server's minimum {s.min_chunk_tokens}"
            raise with_param(InputError(f"{message} ({flag('min_chunk_tokens')})"), "chunk_tokens")
        prompt, prompt_name, prompt_text = self._prompt(body.prompt, body.prompt_name)
        try:  # everything the library decides about the call, decided by the library (no texts yet)
            call = self.emb.document_call(
                body.chunking, body.chunk_tokens, body.window, body.stride, body.mode, prompt, sparse=body.sparse,
                spans=body.chunking == "spans", prompt_name=prompt_name, dimensions=body.dimensions,
                snap=body.snap, max_chunks=s.max_chunks,
            )  # fmt: skip
        except (InputError, BackendUnavailable, ImportError) as e:
            raise with_param(_as_input(e), _option_param(e)) from None
        if body.stride is not None and body.stride < min(s.min_stride, call.plan.content):
            message = f"stride={call.plan.stride} is below this server's minimum {s.min_stride}"
            raise with_param(InputError(f"{message} ({flag('min_stride')})"), "stride")
        spans = [d.spans or [] for d in body.documents] if call.chunking == "spans" else None
        with self.in_flight.hold(sum(len(t) for t in texts)), self._kept_on_success(texts, prompt_text):
            self._tokenize(texts, "documents[{i}].text", prompt_text)
            try:
                prepared = self.emb.prepare_documents(call, texts, spans)
            except InputError as e:
                raise _per_document(e) from None
            self._check(prepared.cost, "documents")
        options = DocumentOptions(call)
        return Admitted(options, texts, [d.spans for d in body.documents], prepared.cost, prompt_text)

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
        bound, floor = self.settings.max_request_tokens, 0
        for text in texts:  # a floor from the characters: no text is tokenized that surely passes the bound
            floor += self.emb.tokenizer.min_tokens(text)
            if floor > bound:
                message = (
                    f"the request needs more than {bound} content tokens (at least {floor}, counted from its "
                    f"characters before tokenizing); this server accepts at most {bound} per request"
                )
                error = LimitExceeded(f"{message} ({flag('max_request_tokens')})", "max_request_tokens")
                raise with_param(error, name)

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
        try:  # a text without tokens is refused as the library refuses it
            require_tokens(tokens)
        except InputError as e:
            raise _relabel(e, label) from None
        return tokens

    def _check(self, cost: Cost, name: str) -> None:
        try:
            self.limits.check(cost, self._flags)
        except LimitExceeded as e:
            raise with_param(e, name) from None

    def _dimensions(self, dimensions: int | None) -> None:
        try:
            Output.make(dimensions, None, self.emb.dim, model_normalizes=True)  # the library's own check
        except InputError as e:
            raise with_param(e, "dimensions") from None

    def release(self, admitted: Admitted) -> None:
        self.memo.forget(admitted.texts, admitted.prompt_text)


_TEXT_INDEX = re.compile(r"texts\[(\d+)\]")


def _relabel(error: InputError, label: str) -> LongvecError:
    """The library's error about `texts[i]`, naming the item as the request does (`documents[i].text`)."""
    match = _TEXT_INDEX.search(str(error))
    if match is None:
        return error
    item = label.format(i=int(match.group(1)))
    return with_param(type(error)(_TEXT_INDEX.sub(item, str(error), count=1)), item)


def _per_document(error: InputError) -> LongvecError:
    """A library error about one document (`texts[i] ...`, `spans[i]: ...`), naming the request's field."""
    spans = re.match(r"spans\[(\d+)\]", str(error))
    if spans is not None:
        item = f"documents[{spans.group(1)}].spans"
        return with_param(type(error)(item + str(error)[spans.end() :]), item)
    if _TEXT_INDEX.search(str(error)) is not None:
        return _relabel(error, "documents[{i}].text")
    return with_param(error, "documents")


def _as_input(error: Exception) -> InputError:
    return error if isinstance(error, InputError) else InputError(f"sparse not available: {error}")


def _option_param(error: Exception) -> str:
    """Which request field a library error about the call's options is about."""
    if not isinstance(error, InputError):
        return "sparse"  # the stemmer is missing
    names = ("stride", "window", "dimensions", "chunk_tokens", "chunking", "mode")
    return next((p for p in names if p in str(error)), "body")
