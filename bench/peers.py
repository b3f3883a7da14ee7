"""Peer systems for `longvec bench`: sentence-transformers (torch) and fastembed, each in its own worker process.

Run by the harness as `python bench/peers.py SYSTEM --bundle ... --variant ... --threads ... --workload ...
--model-dir ...`; speaks the JSON-lines protocol of bench/harness/worker.py. Peers truncate at their maximum
sequence length, so they are given the text of exactly the windows longvec plans (`case.peer_calls`), and both
use batches of 32, longvec's windows per encoder call at a 256-token window and an 8192-token budget; the
mixed-length case (`case.default_batching`) gives each its own default (fastembed 256, sentence-transformers 32).

fastembed is not installed into the shared .venv: 0.9.1 pins huggingface-hub < 2, which would downgrade the hub
that transformers uses there. It is installed privately (`pip install --no-deps --target .bench/fastembed-site
fastembed==0.9.1 'huggingface_hub<2' loguru mmh3 py_rust_stemmers`) and put on this worker's PYTHONPATH only, so it
runs on the same onnxruntime as longvec. It loads the bundle's ONNX file offline through
`TextEmbedding.add_custom_model` + `specific_model_path` (a temporary directory of symlinks: the variant's graph,
tokenizer.json, and the source model's config.json / tokenizer_config.json / special_tokens_map.json).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

BATCH = 32


def batching(case: Any) -> dict[str, int]:
    """Batches of 32, or the system's own default where the case asks for it (the mixed-length case)."""
    return {} if getattr(case, "default_batching", False) else {"batch_size": BATCH}


COLD_START: dict[str, str] = {
    "sentence-transformers": """
import json, resource, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(int(sys.argv[3]))
from sentence_transformers import SentenceTransformer
m = SentenceTransformer(sys.argv[1], device="cpu")
m.encode(["what is the capital of france?"])
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(0).ru_maxrss / 1024}))
""",
    "fastembed": """
import json, resource, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[5])
from peers import load_fastembed
m, tmp = load_fastembed(sys.argv[4], sys.argv[2], sys.argv[1], int(sys.argv[3]))
list(m.embed(["what is the capital of france?"]))
print(json.dumps({"seconds": time.perf_counter() - t0, "peak_rss_mb": resource.getrusage(0).ru_maxrss / 1024}))
""",
}


def load_fastembed(bundle: str, variant: str, model_dir: str, threads: int) -> tuple[Any, tempfile.TemporaryDirectory]:
    """fastembed's TextEmbedding on the bundle's ONNX file for `variant`, fully offline."""
    from fastembed import TextEmbedding
    from fastembed.common.model_description import ModelSource, PoolingType

    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    graph = next(v["file"] for v in manifest["variants"] if v["name"] == variant)
    tmp = tempfile.TemporaryDirectory(prefix="longvec-fastembed-")
    links = {graph: Path(bundle) / graph, "tokenizer.json": Path(bundle) / manifest["tokenizer_file"]}
    for name in ("config.json", "tokenizer_config.json", "special_tokens_map.json"):
        links[name] = Path(model_dir) / name
    for name, target in links.items():
        (Path(tmp.name) / name).symlink_to(target.resolve())
    pooling = {"mean": PoolingType.MEAN, "cls": PoolingType.CLS}[manifest["pooling"]["mode"]]
    name = f"longvec-bench/{Path(bundle).name}-{variant}"
    TextEmbedding.add_custom_model(
        model=name,
        pooling=pooling,
        normalization=manifest["pooling"]["normalize"],
        sources=ModelSource(hf=name),  # never fetched: specific_model_path points at the local directory
        dim=manifest["hidden_size"],
        model_file=graph,
    )
    model = TextEmbedding(model_name=name, specific_model_path=tmp.name, threads=threads)
    return model, tmp


class SentenceTransformersSystem:
    def __init__(self, model_dir: Path, threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(threads)
        device = os.environ.get("LONGVEC_BENCH_DEVICE", "cpu")  # set by `longvec bench --device`
        self.model = SentenceTransformer(str(model_dir), device=device)
        if device == "cuda":  # the GPU peer: torch fp16, as sentence-transformers users run it on a GPU
            self.model.half()
        self.provider = f"torch {torch.__version__} {device}" + (" fp16" if device == "cuda" else "")
        self.model.max_seq_length = 512  # the 8x512 case; longer windows are never sent

    def run_call(self, case: Any, index: int) -> None:
        self.model.encode(case.peer_calls[index], convert_to_numpy=True, **batching(case))

    def warm_up(self, case: Any) -> None:
        self.model.encode(case.peer_calls[0][:2], batch_size=BATCH)


class FastembedSystem:
    def __init__(self, bundle: Path, variant: str, model_dir: Path, threads: int) -> None:
        self.model, self._tmp = load_fastembed(str(bundle), variant, str(model_dir), threads)

    def run_call(self, case: Any, index: int) -> None:
        list(self.model.embed(case.peer_calls[index], **batching(case)))

    def warm_up(self, case: Any) -> None:
        list(self.model.embed(case.peer_calls[0][:2], batch_size=BATCH))


def main(argv: list[str]) -> int:
    from harness.worker import serve

    model_dir = Path(argv[argv.index("--model-dir") + 1])
    rest = argv[: argv.index("--model-dir")] + argv[argv.index("--model-dir") + 2 :]
    systems = {
        "sentence-transformers": lambda bundle, variant, threads: SentenceTransformersSystem(model_dir, threads),
        "fastembed": lambda bundle, variant, threads: FastembedSystem(bundle, variant, model_dir, threads),
    }
    return serve(systems, rest)  # type: ignore[arg-type]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
