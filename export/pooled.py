"""Pooled graphs: the encoder with its pooling inside, made by graph surgery with `onnx` (no torch).

Every quantity the runtime pools (a document's mean, each chunk span, each window's own pooling) is a sum over
windows of `weights_w @ states_w` (runtime.core.stitch), so one MatMul after the encoder is all it takes: extra
input `pool_weights` [batch, rows, seq], one output `pooled_sums` [batch, rows, hidden]. The states are cast to
float32 first, so an fp16 graph also accumulates in float32. On a GPU only these sums cross to the host.

`add_pooled(bundle)` gives an existing bundle a pooled twin of every onnxruntime variant (`longvec export
--add-pooled BUNDLE`): the new bundle is assembled in a sibling directory (existing files hard-linked, not
copied, where the filesystem allows) and swapped in only after every twin passed its parity check.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from longvec.export.amend import commit, working_copy
from longvec.runtime.bundle.feeds import POOL_INPUT, POOL_OUTPUT, encoder_feeds
from longvec.runtime.bundle.manifest import Framing, Manifest, Variant
from longvec.runtime.bundle.reader import Bundle, sha256_file
from longvec.runtime.core.batching import pad_batch
from longvec.runtime.errors import ExportError, ParityError

MAX_ABS_DIFF = 1e-4  # pooled graph vs the same weights applied on the host to the state graph's output


def pooled_name(file: str) -> str:
    """model.optimized.onnx -> model.optimized.pooled.onnx"""
    stem = file[: -len(".onnx")] if file.endswith(".onnx") else file
    return f"{stem}.pooled.onnx"


def add_pool_head(src: Path, dst: Path, hidden_size: int) -> None:
    """Write `src` with a pooling head: pooled_sums = pool_weights @ float32(last output)."""
    model = onnx.load(str(src))
    graph = model.graph
    if any(i.name == POOL_INPUT for i in graph.input):
        raise ExportError(f"{src}: already has an input {POOL_INPUT!r}")
    states = graph.output[0]
    dims = states.type.tensor_type.shape.dim
    batch, seq = (d.dim_param or d.dim_value for d in dims[:2]) if len(dims) >= 2 else ("batch", "sequence")
    if len(dims) == 3 and dims[2].dim_value and dims[2].dim_value != hidden_size:
        raise ExportError(f"{src}: output hidden size {dims[2].dim_value} differs from the manifest's {hidden_size}")
    graph.input.append(helper.make_tensor_value_info(POOL_INPUT, TensorProto.FLOAT, [batch, "pool_rows", seq]))
    source = states.name
    if states.type.tensor_type.elem_type != TensorProto.FLOAT:  # fp16 states: accumulate in float32 anyway
        graph.node.append(helper.make_node("Cast", [source], ["longvec_states_fp32"], to=TensorProto.FLOAT))
        source = "longvec_states_fp32"
    graph.node.append(helper.make_node("MatMul", [POOL_INPUT, source], [POOL_OUTPUT], name="longvec_pool"))
    del graph.output[:]
    graph.output.append(
        helper.make_tensor_value_info(POOL_OUTPUT, TensorProto.FLOAT, [batch, "pool_rows", hidden_size])
    )
    onnx.save(model, str(dst))


def parity_batches(tokenizer_file: Path, framing: Framing, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The export's parity texts in two padded batches of mixed lengths, framed as the runtime frames them."""
    from tokenizers import Tokenizer

    from longvec.export.parity import PARITY_TEXTS

    tok = Tokenizer.from_file(str(tokenizer_file))
    tok.no_truncation()
    tok.no_padding()
    room = limit - len(framing.prefix_ids) - len(framing.suffix_ids)
    seqs = [
        np.asarray([*framing.prefix_ids, *e.ids[:room], *framing.suffix_ids], dtype=np.int64)
        for e in tok.encode_batch(list(PARITY_TEXTS), add_special_tokens=False)
    ]
    return [pad_batch(part, framing.pad_id) for part in (seqs[0::2], seqs[1::2])]


def check_pooled(states_graph: Path, pooled_graph: Path, batches: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Max |pooled graph - host pooling of the state graph| for random weight rows (ParityError above tolerance)."""
    import onnxruntime as ort

    plain = ort.InferenceSession(str(states_graph), providers=["CPUExecutionProvider"])
    pooled = ort.InferenceSession(str(pooled_graph), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    worst = 0.0
    plain_names = [i.name for i in plain.get_inputs()]
    pooled_names = [i.name for i in pooled.get_inputs()]
    for ids, mask in batches:
        weights = (rng.random((ids.shape[0], 5, ids.shape[1])) * mask[:, None, :]).astype(np.float32)
        states = plain.run(None, encoder_feeds(plain_names, ids, mask))[0].astype(np.float32)
        got = pooled.run(None, encoder_feeds(pooled_names, ids, mask, weights))[0]
        worst = max(worst, float(np.abs(got - np.matmul(weights, states)).max()))
    if worst > MAX_ABS_DIFF:
        raise ParityError(f"{pooled_graph.name}: pooled sums differ from host pooling by {worst:.2e} > {MAX_ABS_DIFF}")
    return worst


def add_twins(
    root: Path, manifest: Manifest, variants: tuple[Variant, ...], log: Callable[[str], None]
) -> tuple[Variant, ...]:
    """Write a pooled twin next to each onnxruntime variant in `root`; return the variants naming their twins."""
    batches = parity_batches(root / manifest.tokenizer_file, manifest.framing, min(manifest.max_positions, 512))
    out = []
    for v in variants:
        if v.engine != "onnxruntime" or v.pooled_file is not None:
            out.append(v)
            continue
        twin = pooled_name(v.file)
        add_pool_head(root / v.file, root / twin, manifest.hidden_size)
        diff = check_pooled(root / v.file, root / twin, batches)
        log(f"{v.name}: pooled graph {twin}, max|diff| vs host pooling {diff:.1e}")
        out.append(replace(v, pooled_file=twin))
    return tuple(out)


def add_pooled(bundle_dir: str | Path, log: Callable[[str], None] = lambda _: None) -> Manifest:
    """Give an existing bundle the pooled twin of every onnxruntime variant (build, check, then rename)."""
    root = Path(bundle_dir)
    bundle = Bundle.open(root)  # verified: a damaged bundle is refused before anything is written
    manifest = bundle.manifest
    if all(v.pooled_file is not None for v in manifest.variants if v.engine == "onnxruntime"):
        log(f"{root}: every variant already has a pooled graph")
        return manifest
    with working_copy(root, manifest) as work:
        variants = add_twins(work, manifest, manifest.variants, log)
        files = dict(manifest.files)
        files.update({v.pooled_file: sha256_file(work / v.pooled_file) for v in variants if v.pooled_file})
        manifest = replace(manifest, variants=variants, files=files)
        commit(work, root, manifest)
    return manifest
