"""Benchmark workloads, built at run time from a JSONL corpus (never copied anywhere).

Every case is described three ways so each system does the same work:
- `texts`: what longvec is given (one `embed`/`embed_documents` call per element of `calls`);
- `peer_calls`: the texts a truncating peer (sentence-transformers, fastembed) encodes per call: for a long
  document, the text of exactly the windows longvec plans, so peers encode the same token windows;
- `encoder_calls`: the padded `(input_ids, attention_mask)` batches longvec's pipeline sends to its backend,
  recorded with the fake backend, so the bare onnxruntime loop runs exactly longvec's encoder work.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from longvec.runtime.backends.fake import FakeBackend
from longvec.runtime.bundle.manifest import Manifest
from longvec.runtime.core.text import TextTokenizer
from longvec.runtime.embedder import Embedder
from longvec.runtime.errors import InputError

EncoderBatch = tuple[np.ndarray, np.ndarray]  # (input_ids, attention_mask) of one backend run
MIXED_WORDS = (19, 170)  # paragraph lengths of the mixed-length case (issue 24: a batch job's real input)


@dataclass
class Case:
    name: str
    kind: str  # "queries": one call per text; "batch": one embed() call; "document": one embed_documents() call
    calls: list[list[str]]  # longvec's inputs, per call
    window: int | None  # window longvec uses (batch cases: the passage length, so nothing is split)
    tokens: int  # tokens counted for throughput: framed positions for queries and batches, content for documents
    n_texts: int
    peer_calls: list[list[str]] = field(default_factory=list)
    encoder_calls: list[list[EncoderBatch]] = field(default_factory=list)
    options: dict = field(default_factory=dict)  # embed_documents keyword arguments (default: the bundle's)
    only: tuple[str, ...] | None = None  # the systems that run this case (None: every system)
    loaded: bool = False  # measured while busy processes hold every core (the runner starts them)
    # every system batches as it does by default (fastembed 256 texts, sentence-transformers 32 sorted by length,
    # longvec its token budget), instead of the fixed batches of 32 the other cases give the peers
    default_batching: bool = False

    def summary(self) -> dict:
        batches = [m for call in self.encoder_calls for _, m in call]
        encoded = sum(int(m.sum()) for m in batches)
        # attention cost grows with the padded length a token sits in: its token-weighted mean
        seq = sum(int(m.sum()) * m.shape[1] for m in batches) / max(encoded, 1)
        return {
            "kind": self.kind,
            "window": self.window,
            "tokens": self.tokens,
            "texts": self.n_texts,
            "encoder_tokens": encoded,
            "encoder_seq": seq,
            "encoder_calls": len(batches),
            "peer_texts": sum(len(call) for call in self.peer_calls),
        }


def read_corpus(path: Path) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: benchmark corpus not found (a JSONL file of {{'text': ...}} lines)")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


def read_queries(path: Path, n: int) -> list[str]:
    if not path.is_file():
        raise InputError(f"{path}: queries file not found")
    with path.open(encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()][:n]


class WorkloadBuilder:
    def __init__(self, tokenizer: TextTokenizer, manifest: Manifest, corpus: list[str]) -> None:
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.corpus = corpus
        self._framing = len(manifest.framing.prefix_ids) + len(manifest.framing.suffix_ids)
        self._recorder = FakeBackend(hidden_size=8, record=True)  # cheap: only the inputs it sees matter
        self._embedder = Embedder(self._recorder, tokenizer, manifest)

    def text_of_tokens(self, n: int, skip: int = 0) -> str:
        """A text of exactly `n` content tokens: articles concatenated (cycled if needed), cut at a token end."""
        parts: list[str] = []
        chars, want, i = 0, 8 * n, skip  # ~4-5 characters per token in English prose; grow if not enough
        while True:
            while chars < want:
                parts.append(self.corpus[i % len(self.corpus)])
                chars += len(parts[-1]) + 2
                i += 1
            text = "\n\n".join(parts)
            tok = self.tokenizer.encode([text])[0]
            if len(tok) >= n:
                return text[: int(tok.offsets[n - 1, 1])]
            want *= 2

    def passages(self, count: int, positions: int) -> list[str]:
        """`count` passages whose framed length is exactly `positions`, from consecutive corpus windows."""
        content = positions - self._framing
        doc = self.text_of_tokens(count * content)
        tok = self.tokenizer.encode([doc])[0]
        out = []
        for k in range(count):
            s, e = k * content, (k + 1) * content
            out.append(doc[int(tok.offsets[s, 0]) : int(tok.offsets[e - 1, 1])])
        return out

    def queries(self, texts: list[str]) -> Case:
        lengths = [len(t) + self._framing for t in self.tokenizer.encode(texts)]
        case = Case("query", "queries", [[t] for t in texts], None, sum(lengths), len(texts))
        case.peer_calls = [[t] for t in texts]
        case.encoder_calls = [self._record("queries", [t], None) for t in texts]
        return case

    def batch(self, count: int, positions: int) -> Case:
        texts = self.passages(count, positions)
        case = Case(f"{count}x{positions}", "batch", [texts], positions, count * positions, count)
        case.peer_calls = [texts]
        case.encoder_calls = [self._record("batch", texts, positions)]
        return case

    def mixed(self, count: int, min_words: int = MIXED_WORDS[0], max_words: int = MIXED_WORDS[1]) -> Case:
        """`count` paragraphs of the corpus (split at blank lines) of `min_words`..`max_words` words, in corpus order:
        a batch job's real input, mixed lengths unsorted. Only paragraphs that fit one window are kept, so no
        system truncates and every system encodes the same tokens; each batches them its own default way."""
        content = self._embedder.plan().content
        paragraphs = [p.strip() for doc in self.corpus for p in doc.split("\n\n")]
        wanted = [p for p in paragraphs if min_words <= len(p.split()) <= max_words]
        fitting = [p for p, t in zip(wanted, self.tokenizer.encode(wanted)) if len(t) <= content][:count]
        if len(fitting) < count:
            raise InputError(
                f"the corpus has {len(fitting)} paragraphs of {min_words}-{max_words} words, {count} asked"
            )
        lengths = [len(t) + self._framing for t in self.tokenizer.encode(fitting)]
        case = Case(f"mixed-{count}", "batch", [fitting], None, sum(lengths), count, default_batching=True)
        case.peer_calls = [fitting]
        case.encoder_calls = [self._record("batch", fitting, None)]
        return case

    def document(self, n_tokens: int, options: dict | None = None, suffix: str = "") -> Case:
        """`options` for embed_documents (default: the bundle's defaults). Peers encode the same windows, and for
        `naive` / `blend` also every chunk alone, as longvec does."""
        options = options or {}
        text = self.text_of_tokens(n_tokens)
        name = (f"doc-{n_tokens // 1024}k" if n_tokens % 1024 == 0 else f"doc-{n_tokens}") + suffix
        case = Case(name, "document", [[text]], None, n_tokens, 1, options=options)
        tok = self.tokenizer.encode([text])[0]
        mode, stride = options.get("mode", "auto"), options.get("stride")
        if mode == "auto":  # as embed_documents resolves it
            mode = self._embedder.defaults.mode
            stride = self._embedder.defaults.stride(self._embedder.plan().content) if stride is None else stride
        plan = self._embedder.plan(stride=stride)
        off = tok.offsets
        peer: list[str] = []
        if mode != "naive":
            starts = plan.starts(len(tok))
            ends = np.minimum(starts + plan.content, len(tok))
            peer += [text[int(off[s, 0]) : int(off[e - 1, 1])] for s, e in zip(starts, ends)]
        if mode in ("naive", "blend"):
            [result] = self._embedder.embed_documents([text], **options)
            peer += [text[s:e] for s, e in result.chunk_spans.tolist()]
        case.peer_calls = [peer]
        case.encoder_calls = [self._record("document", [text], None, options)]
        return case

    def old_default(self, n_tokens: int) -> Case:
        """The default before mode="auto": late chunking, half-overlapping windows; longvec and bare-ort only."""
        options = {"mode": "late", "stride": max(1, self._embedder.plan().content // 2)}
        case = self.document(n_tokens, options, suffix="-late-half")
        case.only = ("longvec", "bare-ort")
        return case

    def _record(
        self, kind: str, texts: list[str], window: int | None, options: dict | None = None
    ) -> list[EncoderBatch]:
        self._recorder.inputs.clear()
        if kind == "document":
            self._embedder.embed_documents(texts, **(options or {}))
        else:
            self._embedder.embed(texts, window=window)
        return list(self._recorder.inputs)


def build_cases(
    tokenizer: TextTokenizer,
    manifest: Manifest,
    corpus: list[str],
    queries: list[str],
    batches: list[tuple[int, int]],
    doc_tokens: list[int],
    loaded_queries: bool = True,
    old_default: bool = True,
    mixed: int = 0,
) -> list[Case]:
    """`loaded_queries`: the query case again while busy processes hold the cores; `old_default`: every document
    case again with the default before mode="auto" (late, stride content/2), for longvec and bare-ort; `mixed`:
    that many paragraphs of mixed lengths, each system batching its own way (0: no such case)."""
    builder = WorkloadBuilder(tokenizer, manifest, corpus)
    cases = [builder.queries(queries)] if queries else []
    if queries and loaded_queries:
        loaded = builder.queries(queries)
        loaded.name, loaded.loaded = "query-loaded", True
        cases.append(loaded)
    cases += [builder.batch(n, positions) for n, positions in batches]
    cases += [builder.mixed(mixed)] if mixed else []
    cases += [builder.document(n) for n in doc_tokens]
    if old_default:
        cases += [builder.old_default(n) for n in doc_tokens]
    return cases
