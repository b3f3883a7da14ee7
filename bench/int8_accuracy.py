"""Quantized variants vs the fp32 optimized graph: cosine on held-out SQuAD windows, speed, and where time goes.

    HF_HUB_OFFLINE=1 python bench/int8_accuracy.py bundles/all-MiniLM-L6-v2 [--variants int8,fp16] [--windows 400]

Windows of 128-512 tokens are cut from $LONGVEC_DATA/squad-longdoc-dev/documents.jsonl (read at run time; none of
it is calibration text). Speed is tokens / (CPU seconds / threads) at batch 8 x 512, the median of interleaved runs,
because wall time on a shared machine measures the neighbours. A variant missing from the bundle is built from its
optimized graph with longvec.export.quantize (the same code `longvec export` runs, without the export's gates).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import data as evaldata
import numpy as np
import onnxruntime as ort
from harness.markdown import table
from timing import timing_args
from tokenizers import Tokenizer

from longvec.runtime.bundle.feeds import encoder_feeds
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.core.batching import pad_batch

DOCS = evaldata.DEFAULT_ROOT / "squad-longdoc-dev" / "documents.jsonl"


def squad_windows(tok: Tokenizer, prefix: list[int], suffix: list[int], limit: int) -> list[list[int]]:
    rng = random.Random(0)
    out = []
    for line in DOCS.read_text(encoding="utf-8").splitlines():
        ids = tok.encode(json.loads(line)["text"], add_special_tokens=False).ids
        pos = 0
        while pos + 128 < len(ids):
            n = rng.randint(126, 510)
            out.append([*prefix, *ids[pos : pos + n], *suffix])
            pos += n
    return out


def session(path: Path, threads: int, profile: str | None = None) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
    # several sessions share this process: idle thread pools must not spin and steal the measured one's CPU
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if profile:
        so.enable_profiling, so.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def feeds(sess: ort.InferenceSession, ids: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    return encoder_feeds([i.name for i in sess.get_inputs()], ids, mask)


def embed(sess: ort.InferenceSession, windows: list[list[int]], pad: int) -> np.ndarray:
    out = []
    for start in range(0, len(windows), 8):
        ids, mask = pad_batch([np.asarray(w) for w in windows[start : start + 8]], pad)
        h = sess.run(None, feeds(sess, ids, mask))[0]
        m = mask[..., None].astype(np.float32)
        e = (h * m).sum(1) / m.sum(1)
        out.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    return np.concatenate(out)


def speed(paths: dict[str, Path], threads: int, reps: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(8, 512)).astype(np.int64)
    mask = np.ones_like(ids)
    sessions = {n: session(p, threads) for n, p in paths.items()}
    for s in sessions.values():
        s.run(None, feeds(s, ids, mask))
    cpu: dict[str, list[float]] = defaultdict(list)
    for r in range(reps):
        for n in list(sessions)[:: 1 if r % 2 == 0 else -1]:
            c = time.process_time()
            sessions[n].run(None, feeds(sessions[n], ids, mask))
            cpu[n].append(time.process_time() - c)
    return {n: ids.size / (statistics.median(v) / threads) for n, v in cpu.items()}


def op_profile(path: Path, threads: int, tmp: Path) -> dict[str, float]:
    """Milliseconds per run by operator type at 8 x 512 (onnxruntime's profiler, 3 runs after a warm-up)."""
    s = session(path, threads, str(tmp / f"prof_{path.stem}"))
    ids = np.random.default_rng(0).integers(1000, 20000, size=(8, 512)).astype(np.int64)
    for _ in range(4):
        s.run(None, feeds(s, ids, np.ones_like(ids)))
    events = json.loads(Path(s.end_profiling()).read_text())
    total: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            total[e["args"]["op_name"]] += e["dur"] / 4e3
    return dict(sorted(total.items(), key=lambda kv: -kv[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--variants", default="int8,fp16")
    ap.add_argument("--windows", type=int, default=400)
    timing_args(ap, repeats=9)
    args = ap.parse_args()
    bundle = Bundle.open(args.bundle, verify=False)
    m = bundle.manifest
    tok = Tokenizer.from_file(str(bundle.path(m.tokenizer_file)))
    windows = squad_windows(tok, list(m.framing.prefix_ids), list(m.framing.suffix_ids), m.max_positions)
    windows = windows[: args.windows]
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        paths = {"optimized": bundle.path(bundle.variant("optimized").file)}
        for name in args.variants.split(","):
            if m.variant(name) is not None:
                paths[name] = bundle.path(bundle.variant(name).file)
            else:
                from longvec.export import quantize

                paths[name] = tmp / f"{name}.onnx"
                print(
                    f"{name}: not in the bundle, building:",
                    quantize.make_variant(name, paths["optimized"], paths[name], tok, m.framing),
                )
        ref = embed(session(paths["optimized"], args.threads), windows, m.framing.pad_id)
        toks = speed(paths, args.threads, args.repeats)
        print(
            f"{len(windows)} SQuAD windows ({sum(map(len, windows))} tokens); speed at 8 x 512, {args.threads} threads"
        )
        rows = []
        for name, path in paths.items():
            cos = (embed(session(path, args.threads), windows, m.framing.pad_id) * ref).sum(1)
            ratio = toks[name] / toks["optimized"]
            rows.append([name, f"{cos.min():.4f}", f"{cos.mean():.4f}", f"{toks[name]:.0f}", f"{ratio:.2f}"])
        header = ["variant", "min cosine", "mean cosine", "tokens/s (CPU time)", "x optimized"]
        print("\n".join(table(header, rows)))
        for name in ("optimized", "int8"):
            if name in paths:
                prof = op_profile(paths[name], args.threads, tmp)
                total = sum(prof.values())
                ops = ", ".join(f"{k} {v:.0f} ms ({100 * v / total:.0f}%)" for k, v in prof.items() if v >= 0.5)
                print(f"profile {name}: {total:.0f} ms/run: {ops}")


if __name__ == "__main__":
    main()
