"""A single query's overhead over a bare onnxruntime loop on the same graph: CPU time per stage, wall time, and
instruction counts.

One `Embedder.embed([query])` call takes the one-window path (runtime/core/onewindow.py): tokenize, frame, one
weight row, one encoder run, normalize. Measured here, each against the same query:
- per-stage CPU time of the calling thread (`time.thread_time()`: a busy machine delays the thread but does not
  inflate its CPU time much, so these hold under load; wall times do not), with a free encoder;
- the general path the same text took before the short path existed (`pipeline`: layouts, packing, weight-row
  bookkeeping, running sums), also with a free encoder;
- wall time of `embed` against a bare `session.run` loop over the same padded ids and weight row, interleaved
  rounds: `overhead_wall = 1 - bare / embed` (the issue's figure; only meaningful on a quiet machine);
- with `--instructions`: the same loops under valgrind's callgrind, exact instruction counts per call between
  client requests (needs valgrind, its headers and a C compiler; onnxruntime runs 1 thread without spinning
  there, and valgrind's CPU has no AVX-512, so the encoder's count is that of its AVX2 kernels: read the ratio as
  indicative, the Python overhead per call in instructions as exact).

    .venv/bin/python bench/overhead.py [--bundle bundles/all-MiniLM-L6-v2] [--calls 500] [--spin] [--instructions]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import ctypes
import json
import os
import pstats
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from longvec.kernels import l2_normalize
from longvec.runtime import Embedder
from longvec.runtime.backends import Capabilities
from longvec.runtime.bundle.feeds import POOL_INPUT, encoder_feeds
from longvec.runtime.core.batching import pad_batch
from longvec.runtime.core.onewindow import one_window_pooled
from longvec.runtime.core.pipeline import TokenSequence
from longvec.runtime.core.text import validate_texts

QUERY = "How did keepers keep the lamp burning through the night?"
ROOT = Path(__file__).resolve().parents[1]


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


def wall_us(fn: Callable[[], object], calls: int) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls * 1e6


class Setup:
    """The embedder, the query and the loops every measurement runs."""

    def __init__(self, bundle: Path, threads: int, spin: bool, text: str) -> None:
        self.emb = emb = Embedder.load(bundle, threads=threads, spin=spin)
        self.texts = [text]
        self.ids = emb.tokenizer.encode(self.texts)[0].ids
        m = emb.manifest.framing
        seq = np.concatenate((np.asarray(m.prefix_ids), self.ids, np.asarray(m.suffix_ids))).astype(np.int64)
        batch_ids, batch_mask = pad_batch([seq], m.pad_id)
        self.session = session = emb.backend._session  # type: ignore[attr-defined]
        names = [i.name for i in session.get_inputs()]
        self.out_name = session.get_outputs()[0].name
        # the graph longvec runs (its pooled twin where the bundle has one, fed one mean row)
        rows = (batch_mask / batch_mask.sum(axis=1, keepdims=True))[:, None, :].astype(np.float32)
        self.feeds = encoder_feeds(names, batch_ids, batch_mask, rows if POOL_INPUT in names else None)
        self.plan = emb.plan()

    def embed(self) -> object:
        return self.emb.embed(self.texts)

    def bare(self) -> object:
        return self.session.run([self.out_name], self.feeds)

    def pipeline_path(self) -> object:
        """What `embed` ran for this text before the one-window path: the general pipeline."""
        emb = self.emb
        tokens = emb._tokens(self.texts, None)
        encoded = emb._pipeline.run([TokenSequence(t.ids) for t in tokens], self.plan)
        return emb._finish(np.stack([e.pooled for e in encoded]))


class FreeEncoder:
    """An encoder that costs nothing (a pooled graph answering zeros): what is left of a call is longvec's work."""

    capabilities = Capabilities(provider="free encoder", pools=True)

    def __init__(self, hidden: int) -> None:
        self.hidden_size = hidden
        self.sums = np.zeros((1, 1, hidden), np.float32)

    def run_pooled(self, input_ids: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return self.sums

    def run(self, input_ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return np.zeros((*input_ids.shape, self.hidden_size), np.float32)

    def close(self) -> None:
        pass


@contextlib.contextmanager
def free_encoder(emb: Embedder) -> Iterator[FreeEncoder]:
    real, free = emb.backend, FreeEncoder(emb.dim)
    emb.backend = emb._pipeline.backend = free
    try:
        yield free
    finally:
        emb.backend = emb._pipeline.backend = real


def stage_times(s: Setup, n: int) -> dict[str, object]:
    emb = s.emb
    with free_encoder(emb) as free:
        framing, pooling = emb.manifest.framing, emb.manifest.pooling
        stages = {
            "validate": cpu_us(lambda: validate_texts(s.texts), n * 10),
            "tokenize": cpu_us(lambda: emb._tokens(s.texts, None), n * 10),
            "frame + weight row (one_window_pooled, free encoder)": cpu_us(
                lambda: one_window_pooled(free, framing, pooling, s.ids), n * 10
            ),
            "normalize": cpu_us(lambda: emb._finish(free.sums[:, 0]), n * 10),
        }
        whole = {
            "embed, free encoder (the one-window path)": cpu_us(s.embed, n * 10),
            "general pipeline path, free encoder (before)": cpu_us(s.pipeline_path, n * 10),
        }
    return {
        "stage_cpu_us": {k: round(v, 1) for k, v in stages.items()},
        "whole_cpu_us": {k: round(v, 1) for k, v in whole.items()},
    }


def wall(s: Setup, n: int) -> dict[str, object]:
    """Interleaved rounds (drift of a loaded machine spreads over every loop). Besides `embed` and the bare loop,
    two loops show where a gap between encoder runs goes: the bare loop plus the tokenizer's own call on the raw
    text (the least a runtime that takes text must do between two runs), and plus writing 1 MiB (no Python, ~15 us
    of work): a run that follows other work pays to bring its working set back into the caches."""
    raw = s.emb.tokenizer._tok  # the `tokenizers.Tokenizer` itself
    junk = bytearray(1 << 20)
    ones = b"\x01" * (len(junk) // 64)

    def touch() -> int:
        junk[::64] = ones
        return len(junk)

    loops: dict[str, Callable[[], object]] = {
        "embed": s.embed,
        "bare": s.bare,
        "pipeline_path": s.pipeline_path,
        "bare + tokenizers.encode": lambda: (s.bare(), raw.encode(s.texts[0], add_special_tokens=False)),
        "bare + write 1 MiB": lambda: (s.bare(), touch()),
        "tokenizers.encode alone": lambda: raw.encode(s.texts[0], add_special_tokens=False),
        "write 1 MiB alone": touch,
    }
    rounds: dict[str, list[float]] = {k: [] for k in loops}
    for _ in range(9):
        for name, fn in loops.items():
            rounds[name].append(wall_us(fn, n // 5))
    med = {k: float(np.median(v)) for k, v in rounds.items()}
    b = med["bare"]
    return {
        "wall_us_median": {k: round(v, 1) for k, v in med.items()},
        "overhead_wall": round(1 - b / med["embed"], 4),
        "overhead_wall_pipeline_path": round(1 - b / med["pipeline_path"], 4),
        "overhead_wall_bare_plus_tokenizer (the floor for text input)": round(
            1 - b / med["bare + tokenizers.encode"], 4
        ),
        "extra_us_of_a_run_after_other_work": {
            "tokenizers.encode": round(med["bare + tokenizers.encode"] - b - med["tokenizers.encode alone"], 1),
            "write 1 MiB": round(med["bare + write 1 MiB"] - b - med["write 1 MiB alone"], 1),
        },
    }


# --- instruction counts: the loops under callgrind, counted between client requests -------------------------

MARKERS_C = """
#include <valgrind/callgrind.h>
void lv_zero(void) { CALLGRIND_ZERO_STATS; }
void lv_dump(const char *name) { CALLGRIND_DUMP_STATS_AT(name); }
"""


def build_markers(folder: Path) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None or shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind and a C compiler (cc) on PATH")
    (folder / "markers.c").write_text(MARKERS_C)
    lib = folder / "markers.so"
    done = subprocess.run([cc, "-O1", "-shared", "-fPIC", "-o", str(lib), str(folder / "markers.c")], text=True)
    if done.returncode != 0:
        raise SystemExit("could not build the callgrind markers (is valgrind's callgrind.h installed?)")
    return lib


def instructions_child(s: Setup, lib: Path, calls: int, encoder_calls: int) -> None:
    """Counted loops: longvec's own work per call (free encoder, many calls: exact and cheap under valgrind),
    and a few calls of the bare encoder and of `embed` with the real encoder (each ~1e9 instructions there)."""
    markers = ctypes.CDLL(str(lib))

    def count(name: str, fn: Callable[[], object], n: int) -> None:
        fn()
        markers.lv_zero()
        for _ in range(n):
            fn()
        markers.lv_dump(f"{name}/{n}".encode())

    with free_encoder(s.emb):
        count("embed_free", s.embed, calls)
        count("pipeline_path_free", s.pipeline_path, calls)
    count("bare", s.bare, encoder_calls)
    count("embed", s.embed, encoder_calls)


def instructions(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lib = build_markers(folder)
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={folder}/cg.%p",
            sys.executable,  # the venv's interpreter (a symlink: valgrind runs the binary, Python finds the venv)
            __file__,
            "--bundle",
            str(args.bundle),
            "--text",
            args.text,
            "--callgrind-child",
            str(lib),
            "--calls",
            str(args.instruction_calls),
            "--encoder-calls",
            str(args.instruction_encoder_calls),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"callgrind run failed: {done.stderr[-2000:]}")
        counts: dict[str, int] = {}
        for dump in folder.glob("cg.*"):
            text = dump.read_text(errors="replace")
            trigger = re.search(r"^desc: Trigger: Client Request: (\S+)/(\d+)", text, re.M)
            total = re.search(r"^totals: (\d+)", text, re.M)
            if trigger and total:
                counts[trigger.group(1)] = int(total.group(1)) // int(trigger.group(2))
    own, before, bare, embed = (counts[k] for k in ("embed_free", "pipeline_path_free", "bare", "embed"))
    return {
        "calls (free encoder / real encoder)": [args.instruction_calls, args.instruction_encoder_calls],
        "instructions_per_call": counts,
        "overhead_instructions (own work / (bare + own work), 1 thread, AVX2 encoder)": round(own / (bare + own), 4),
        "overhead_instructions_pipeline_path": round(before / (bare + before), 4),
        "check: embed - bare (real encoder) vs own work": [embed - bare, own],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=ROOT / "bundles/all-MiniLM-L6-v2")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--calls", type=int, default=500)
    p.add_argument("--text", default=QUERY)
    p.add_argument("--spin", action="store_true", help="onnxruntime threads spin (Embedder.load(spin=True))")
    p.add_argument("--instructions", action="store_true", help="also count instructions under callgrind")
    p.add_argument("--instructions-only", action="store_true", help="only count instructions (no timing)")
    p.add_argument("--instruction-calls", type=int, default=200, help="free-encoder calls per loop under callgrind")
    p.add_argument("--instruction-encoder-calls", type=int, default=3, help="real-encoder calls under callgrind")
    p.add_argument("--encoder-calls", type=int, default=3, help=argparse.SUPPRESS)
    p.add_argument("--callgrind-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.callgrind_child is not None:  # inside valgrind: one thread, no spinning threads counting instructions
        setup = Setup(args.bundle, 1, False, args.text)
        instructions_child(setup, args.callgrind_child, args.calls, args.encoder_calls)
        return 0
    load_before = os.getloadavg()
    if args.instructions_only:
        print(json.dumps({"instructions": instructions(args)}, indent=1))
        return 0
    s = Setup(args.bundle, args.threads, args.spin, args.text)
    out: dict[str, object] = {
        "text_tokens": len(s.ids),
        "spin": args.spin,
        "threads": args.threads,
        **stage_times(s, args.calls),
        **wall(s, args.calls),
    }
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(100):
        s.embed()
    prof.disable()
    out["python_function_calls_per_embed"] = pstats.Stats(prof).total_calls / 100  # type: ignore[attr-defined]
    vectors = [np.asarray(s.embed()), np.asarray(s.pipeline_path())]
    out["one_window_vs_pipeline_cosine"] = float((vectors[0] * vectors[1]).sum())
    out["l2_normalize_check"] = float(np.abs(l2_normalize(vectors[1]) - vectors[0]).max())
    if args.instructions:
        out["instructions"] = instructions(args)
    out["loadavg"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in os.getloadavg()]}
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
