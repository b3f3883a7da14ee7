"""A benchmark worker process: loads one system once, then runs named cases on request.

Protocol (JSON lines): the worker prints {"ready": ..., "load_seconds": ..., "versions": {...}} once loaded and
warmed up, then answers each request line {"case": name} with {"seconds": [one wall time per call]}; {"quit": 1}
ends it. Library chatter on stdout would corrupt the protocol, so the real stdout is kept for replies and fd 1
is pointed at stderr before any system is imported.

Systems here need only longvec's own dependencies: "longvec" (the Embedder end to end) and "bare-ort" (an
onnxruntime session looping over exactly the batches longvec's pipeline sends to its backend). Peer systems
(sentence-transformers, fastembed) live in bench/peers.py and reuse `serve`.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import pickle
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Protocol

# Cold start: each snippet runs in a fresh interpreter (`python -c`), times import + load + first embedding
# from its first line, and prints one JSON line with wall seconds and peak RSS. Only stdlib runs before `t0`.
# "bare-ort" is the floor, so it imports nothing of longvec and spells out its feeds (runtime/bundle/feeds.py).
COLD_START: dict[str, str] = {
    "longvec": """
import json, resource, sys, time
t0 = time.perf_counter()
from longvec.runtime import Embedder
e = Embedder.load(sys.argv[1], variant=sys.argv[2], threads=int(sys.argv[3]))
e.embed(["what is the capital of france?"])
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(0).ru_maxrss / 1024}))
""",
    "bare-ort": """
import json, resource, sys, time
t0 = time.perf_counter()
import numpy as np, onnxruntime as ort
from tokenizers import Tokenizer
from pathlib import Path
m = json.loads((Path(sys.argv[1]) / "manifest.json").read_text())
f = next(v["file"] for v in m["variants"] if v["name"] == sys.argv[2])
o = ort.SessionOptions(); o.intra_op_num_threads = int(sys.argv[3])
s = ort.InferenceSession(str(Path(sys.argv[1]) / f), o, providers=["CPUExecutionProvider"])
t = Tokenizer.from_file(str(Path(sys.argv[1]) / m["tokenizer_file"]))
ids = np.array([t.encode("what is the capital of france?").ids], dtype=np.int64)
feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
s.run(None, {i.name: feeds[i.name] for i in s.get_inputs()})
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(0).ru_maxrss / 1024}))
""",
}


class System(Protocol):
    def run_call(self, case: Any, index: int) -> None: ...

    def warm_up(self, case: Any) -> None: ...


class LongvecSystem:
    spin: bool | None = None  # Embedder.load's default

    def __init__(self, bundle: Path, variant: str, threads: int) -> None:
        from harness.wrappers import TimedBackend, with_backend
        from longvec.runtime import Embedder

        device = os.environ.get("LONGVEC_BENCH_DEVICE", "cpu")
        loaded = Embedder.load(bundle, variant=variant, threads=threads, device=device, spin=self.spin)
        self.provider = loaded.provider
        self.timed = TimedBackend(loaded.backend)
        self.embedder = with_backend(loaded, self.timed)

    def run_call(self, case: Any, index: int) -> None:
        texts = case.calls[index]
        if case.kind == "document":
            self.embedder.embed_documents(texts, **case.options)
        else:
            self.embedder.embed(texts, window=case.window)

    def warm_up(self, case: Any) -> None:
        self.embedder.embed([w for w in case.peer_calls[0][:2]], window=case.window)


class LongvecNoSpinSystem(LongvecSystem):
    """longvec with onnxruntime's thread spinning off (what `longvec serve` loads)."""

    spin = False


class BareOrtSystem:
    """The floor for runtime overhead: longvec's own session options, no tokenizer, windows, stitching or pooling.
    It runs the graph longvec runs by default (the pooled twin where the variant has one, fed one mean row per
    sequence: longvec's few extra span rows are a negligible share of the encoder's work)."""

    def __init__(self, bundle: Path, variant: str, threads: int) -> None:
        import onnxruntime as ort

        from longvec.runtime.backends.onnx import session_options
        from longvec.runtime.bundle.feeds import encoder_feeds
        from longvec.runtime.bundle.reader import Bundle
        from longvec.runtime.embedder import DEFAULT_SPIN

        b = Bundle.open(bundle, verify=False)
        chosen = b.variant(variant)
        path = b.path(chosen.pooled_file or chosen.file)
        self.pooled = chosen.pooled_file is not None
        options = session_options(threads, DEFAULT_SPIN)  # the same options as longvec's default load
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.feeds = functools.partial(encoder_feeds, [i.name for i in self.session.get_inputs()])
        self.output = self.session.get_outputs()[0].name

    def run_encoder_batch(self, ids: Any, mask: Any) -> None:
        rows = (mask / mask.sum(axis=1, keepdims=True))[:, None, :] if self.pooled else None
        self.session.run([self.output], self.feeds(ids, mask, rows))

    def run_call(self, case: Any, index: int) -> None:
        for ids, mask in case.encoder_calls[index]:
            self.run_encoder_batch(ids, mask)

    def warm_up(self, case: Any) -> None:
        ids, mask = case.encoder_calls[0][0]
        self.run_encoder_batch(ids, mask)


SYSTEMS: dict[str, Callable[[Path, str, int], System]] = {
    "longvec": LongvecSystem,
    "longvec-nospin": LongvecNoSpinSystem,
    "bare-ort": BareOrtSystem,
}


def versions() -> dict[str, str]:
    """Versions of the libraries this process has imported (not of everything installed)."""
    from importlib import metadata

    names = ("numpy", "onnxruntime", "tokenizers", "torch", "sentence-transformers", "transformers", "fastembed")
    out = {"python": sys.version.split()[0]}
    for name in names:
        if name.replace("-", "_") in sys.modules:
            with contextlib.suppress(metadata.PackageNotFoundError):
                out[name] = metadata.version(name)
    return out


def serve(systems: dict[str, Callable[[Path, str, int], System]], argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="benchmark worker (JSON lines on stdin/stdout)")
    parser.add_argument("system", choices=sorted(systems))
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--variant", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--workload", type=Path, required=True, help="pickled cases written by the harness")
    args = parser.parse_args(argv)
    reply = _protocol_stdout()
    t0 = time.perf_counter()
    system = systems[args.system](args.bundle, args.variant, args.threads)
    load_seconds = time.perf_counter() - t0
    with args.workload.open("rb") as f:
        cases = {c.name: c for c in pickle.load(f)}
    for case in cases.values():
        system.warm_up(case)
    provider = getattr(system, "provider", "")
    _send(reply, {"ready": args.system, "load_seconds": load_seconds, "versions": versions(), "provider": provider})
    for line in sys.stdin:
        request = json.loads(line)
        if "quit" in request:
            break
        case = cases[request["case"]]
        seconds, inside = [], []
        timed = getattr(system, "timed", None)
        for i in range(len(case.calls)):
            if timed is not None:
                timed.seconds = 0.0
            start = time.perf_counter()
            system.run_call(case, i)
            seconds.append(time.perf_counter() - start)
            if timed is not None:
                inside.append(timed.seconds)
        _send(reply, {"seconds": seconds, "encoder_seconds": inside})
    return 0


def _protocol_stdout() -> IO[str]:
    reply = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return reply


def _send(out: IO[str], message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


if __name__ == "__main__":
    sys.exit(serve(SYSTEMS))
