"""Selective dynamic int8: which MatMuls of the unfused fp32 graph can be int8 and keep the vectors (issue 24).

FINDINGS: plain dynamic int8 of every MatMul is 1.57x the optimized fp32 graph on an AVX-512 + AMX Xeon but
reaches min cosine 0.917. This script quantizes subsets of the weight MatMuls (onnxruntime `quantize_dynamic`,
weights int8 per output channel, activations uint8 per tensor at run time) and reports, against the fp32 graph:
min / mean cosine of mean-pooled vectors on held-out SQuAD windows and on short texts (the export's parity texts
are where per-tensor activation scales hurt most), and speed at 8 x 512 as tokens / (CPU seconds / threads)
(CPU time, as bench/int8_accuracy.py: wall time on a shared machine measures the neighbours). Nothing here changes
a default: the export's gates decide what ships.

    .venv/bin/python bench/int8_selective.py bundles/all-MiniLM-L6-v2 [--windows 200] [--subsets ffn-up,all]
"""

from __future__ import annotations

import argparse
import re
import tempfile
from pathlib import Path

import onnx
from harness.machine import machine
from harness.markdown import table
from int8_accuracy import embed, session, speed, squad_windows
from onnxruntime.quantization import QuantType, quantize_dynamic
from timing import timing_args
from tokenizers import Tokenizer

from longvec.runtime.bundle.reader import Bundle

# node-name patterns of BERT-style graphs exported by longvec (`/model/encoder/layer.N/...`)
SUBSETS = {
    "ffn-up": (r"/intermediate/dense/MatMul$",),
    "ffn+attn-out": (r"/intermediate/dense/MatMul$", r"/output/dense/MatMul$"),  # both `output/dense`s
    "qkv+ffn-up": (r"/self/(query|key|value)/MatMul$", r"/intermediate/dense/MatMul$"),
    "all": (r"/(query|key|value|dense)/MatMul$",),  # every weight MatMul (not the two attention products)
}
SHORT = ["?!", "hi", "What is the capital of France?", "keeper", "How did keepers keep the lamp burning?"]


def weight_matmuls(path: Path, patterns: tuple[str, ...]) -> list[str]:
    graph = onnx.load(str(path), load_external_data=False).graph
    return [n.name for n in graph.node if n.op_type == "MatMul" and any(re.search(p, n.name) for p in patterns)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("bundle", type=Path)
    ap.add_argument("--windows", type=int, default=200)
    ap.add_argument("--subsets", default=",".join(SUBSETS))
    timing_args(ap, repeats=7)
    args = ap.parse_args()
    bundle = Bundle.open(args.bundle, verify=False)
    m = bundle.manifest
    tok = Tokenizer.from_file(str(bundle.path(m.tokenizer_file)))
    prefix, suffix = list(m.framing.prefix_ids), list(m.framing.suffix_ids)
    windows = squad_windows(tok, prefix, suffix, m.max_positions)[: args.windows]
    short = [[*prefix, *tok.encode(t, add_special_tokens=False).ids, *suffix] for t in SHORT]
    fp32 = bundle.path(bundle.variant("fp32").file)  # the unfused graph: MatMuls by name
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": fp32, "optimized": bundle.path(bundle.variant("optimized").file)}
        for name in args.subsets.split(","):
            nodes = weight_matmuls(fp32, SUBSETS[name])
            paths[f"int8 {name} ({len(nodes)} MatMuls)"] = out = Path(tmp) / f"{name}.onnx"
            quantize_dynamic(
                fp32,
                out,
                nodes_to_quantize=nodes,
                per_channel=True,
                weight_type=QuantType.QInt8,
                op_types_to_quantize=["MatMul"],
            )
        ref = embed(session(fp32, args.threads), windows, m.framing.pad_id)
        ref_short = embed(session(fp32, args.threads), short, m.framing.pad_id)
        toks = speed(paths, args.threads, args.repeats)
        rows = []
        for name, path in paths.items():
            s = session(path, args.threads)
            cos = (embed(s, windows, m.framing.pad_id) * ref).sum(1)
            cos_short = (embed(s, short, m.framing.pad_id) * ref_short).sum(1)
            ratio = toks[name] / toks["optimized"]
            rows.append([name, f"{cos.min():.4f}", f"{cos.mean():.4f}", f"{cos_short.min():.4f}", f"{ratio:.2f}"])
        print(f"{len(windows)} SQuAD windows ({sum(map(len, windows))} tokens), {len(short)} short texts")
        header = ["graph", "min cos (windows)", "mean cos", "min cos (short texts)", "speed x optimized (CPU time)"]
        print("\n".join(table(header, rows)))


if __name__ == "__main__":
    main()
