"""Where a short text's `embed` call spends its time beyond the encoder: per-stage CPU time of the calling thread.

Stages of one `Embedder.embed([text])` call, each timed alone over many repeats with `time.thread_time()` (CPU
time of this thread: a busy machine delays the thread but does not inflate its CPU time, so the per-stage shares
hold under load; wall times do not): validation, tokenization, window planning, the pipeline without the encoder
(framing, batching, padding, stitch state, pooling), the backend wrapper without `session.run`, the encoder
(`session.run` itself, wall time, two threads), normalization; and the whole call against a bare onnxruntime loop
over the same padded ids. Also a cProfile of the whole call: function calls per `embed`.

    .venv/bin/python bench/overhead.py [--bundle bundles/all-MiniLM-L6-v2] [--calls 2000]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime import Embedder
from longvec.runtime.backends import Capabilities
from longvec.runtime.bundle.feeds import POOL_INPUT, encoder_feeds
from longvec.runtime.core.batching import pad_batch
from longvec.runtime.core.pipeline import TokenSequence
from longvec.runtime.core.text import validate_texts

QUERY = "How did keepers keep the lamp burning through the night?"


def cpu_us(fn: Callable[[], object], calls: int) -> float:
    """Median over 5 rounds of CPU microseconds per call of this thread."""
    fn()
    rounds = []
    for _ in range(5):
        t0 = time.thread_time()
        for _ in range(calls):
            fn()
        rounds.append((time.thread_time() - t0) / calls * 1e6)
    return float(np.median(rounds))


def cpu_us_process(fn: Callable[[], object], calls: int) -> float:
    """As cpu_us, with the CPU time of every thread of the process (tokenizers' Rayon workers included)."""
    fn()
    rounds = []
    for _ in range(5):
        t0 = time.process_time()
        for _ in range(calls):
            fn()
        rounds.append((time.process_time() - t0) / calls * 1e6)
    return float(np.median(rounds))


def wall_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    rounds = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - t0) / calls * 1e6)
    return float(np.median(rounds))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parents[1] / "bundles/all-MiniLM-L6-v2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--text", default=QUERY)
    p.add_argument("--batch", type=int, default=1, help="texts per call (copies of --text)")
    p.add_argument("--spin", action="store_true", help="onnxruntime threads spin (Embedder.load(spin=True))")
    args = p.parse_args()
    emb = Embedder.load(args.bundle, threads=args.threads, spin=args.spin)
    texts, n = [args.text] * args.batch, args.calls
    plan = emb.plan()
    ids = emb.tokenizer.encode(texts)[0].ids
    m = emb.manifest.framing
    seq = np.concatenate((np.asarray(m.prefix_ids), ids, np.asarray(m.suffix_ids))).astype(np.int64)
    batch_ids, batch_mask = pad_batch([seq] * args.batch, m.pad_id)
    session = emb.backend._session  # type: ignore[attr-defined]
    names = [i.name for i in session.get_inputs()]
    out_name = session.get_outputs()[0].name

    # the same graph longvec runs (its pooled twin where the bundle has one, fed one mean row per text)
    rows = (batch_mask / batch_mask.sum(axis=1, keepdims=True))[:, None, :].astype(np.float32)
    feeds = encoder_feeds(names, batch_ids, batch_mask, rows if POOL_INPUT in names else None)

    def bare() -> object:
        return session.run([out_name], feeds)

    pipeline = emb._pipeline
    states = emb.backend.run(batch_ids, batch_mask)

    class Cached:  # the pipeline with a free encoder: what the pipeline itself costs
        hidden_size = emb.dim
        capabilities = Capabilities(provider="cached token states")

        def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
            return states

    real_backend, pipeline.backend = pipeline.backend, Cached()
    emb.backend = pipeline.backend
    pooled = np.stack([e.pooled for e in pipeline.run([TokenSequence(ids)] * args.batch, plan)])
    stages = {
        "validate": cpu_us(lambda: validate_texts(texts), n * 10),
        "tokenize (embed's path)": cpu_us(lambda: emb.tokenizer.encode(texts), n * 10),
        "plan": cpu_us(lambda: emb.plan(), n * 10),
        "normalize": cpu_us(lambda: emb._finish(pooled), n * 10),
    }
    general = {
        "pipeline (no encoder: frame, pad, weight rows, pool)": cpu_us(
            lambda: pipeline.run([TokenSequence(ids)] * args.batch, plan), n * 10
        ),
    }
    process_tokenize = {
        "encode (one text on the calling thread)": cpu_us_process(lambda: emb.tokenizer.encode(texts), n * 2),
        "encode_batch (before)": cpu_us_process(
            lambda: emb.tokenizer._tok.encode_batch(texts, add_special_tokens=False),
            n * 2,  # type: ignore[attr-defined]
        ),
    }
    pipeline.backend = emb.backend = real_backend
    whole_cpu, bare_cpu = cpu_us(lambda: emb.embed(texts), n), cpu_us(bare, n)
    whole, floor = [], []
    for _ in range(5):  # interleaved wall-time rounds
        whole.append(wall_us(lambda: emb.embed(texts), n // 5))
        floor.append(wall_us(bare, n // 5))
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(100):
        emb.embed(texts)
    prof.disable()
    calls_per_embed = pstats.Stats(prof).total_calls / 100  # type: ignore[attr-defined]
    overhead = sum(stages.values())
    out = {
        "text_tokens": len(ids),
        "texts_per_call": args.batch,
        "spin": args.spin,
        "threads": args.threads,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "stage_cpu_us": {k: round(v, 1) for k, v in stages.items()},
        "stage_share_of_overhead": {k: round(v / overhead, 3) for k, v in stages.items()},
        "general_path_cpu_us": {k: round(v, 1) for k, v in general.items()},
        "tokenize_process_cpu_us (all threads)": {k: round(v, 1) for k, v in process_tokenize.items()},
        "overhead_cpu_us": round(overhead, 1),
        "embed_cpu_us_calling_thread": round(whole_cpu, 1),
        "bare_cpu_us_calling_thread": round(bare_cpu, 1),
        "embed_wall_us_median": round(float(np.median(whole)), 1),
        "bare_wall_us_median": round(float(np.median(floor)), 1),
        "python_function_calls_per_embed": calls_per_embed,
        "l2_normalize_check": float(np.abs(l2_normalize(pooled) - emb.embed(texts)).max()),
    }
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
