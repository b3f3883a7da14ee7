"""Reduced-precision variants of the fused fp32 graph: dynamic int8 and fp16.

int8 is onnxruntime's dynamic quantization (weights int8 per output channel, activations uint8 per tensor, scaled
at run time) of every MatMul and the fused Attention; EmbedLayerNormalization stays fp32. Per-tensor activation
scales are what limit accuracy: the GELU outputs that feed each FFN-output MatMul carry a few channels whose
maxima are 5-20x the rest, so one scale for the whole tensor leaves the ordinary channels with a handful of levels
(measured on all-MiniLM-L6-v2: min cosine 0.986 vs fp32 on real text). Before quantizing, those outlier channels are
divided down to the 75th percentile of the channel maxima by a Mul on the GELU output, and the matching rows of the
MatMul weight are multiplied up by the same factor (SmoothQuant restricted to outliers: the product is unchanged in
exact arithmetic). The channel maxima come from calibration windows cut from calibration.txt, shipped with this
package. Full SmoothQuant (alpha 0.5 over every channel) was measured worse: it moves too much range into weights.
The one FFN-output MatMul whose simulated int8 error stays largest after smoothing is left in fp32.

Measured on all-MiniLM-L6-v2 against its fp32 graph on held-out SQuAD windows (bench/int8_accuracy.py, numbers in
bench/RESULTS.md): no smoothing min cosine 0.986; FFN-output MatMuls all fp32 0.994 at ~1.3x fp32 speed; this scheme
0.992 at ~1.4x. Smoothing the inputs of every MatMul and Attention the same way measured the same (0.992, ~1.4x).
Limit: per-tensor activation scales hurt very short texts most. On the parity text "?!" ([CLS] ? ! [SEP]) this int8
graph reaches only 0.95-0.975 cosine vs torch (0.986 with all FFN-output MatMuls fp32), so the export's gate refuses
it for that model; that is why int8 is not a default variant.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper
from tokenizers import Tokenizer

from longvec.runtime.bundle.feeds import encoder_feeds
from longvec.runtime.bundle.manifest import Framing
from longvec.runtime.core.batching import pad_batch
from longvec.runtime.errors import ExportError

# Channels whose calibration maximum exceeds this percentile of all channel maxima are scaled down to it.
SMOOTH_PERCENTILE = 75.0
# The FFN-output MatMul with the largest simulated int8 error after smoothing stays fp32 if that error exceeds
# KEEP_FP32_ABOVE: on all-MiniLM-L6-v2 this is layer 1 (error 0.04 where the others are <= 0.037), and keeping it
# lifts the held-out min cosine from 0.990 to 0.992 for about 1/18 of the quantized MatMul work.
KEEP_FP32 = 1
KEEP_FP32_ABOVE = 0.02
_GELU_OPS = ("BiasGelu", "Gelu", "FastGelu")
_WINDOW_LENGTHS = (510, 256, 384, 128, 64)  # content tokens; cycled so windows are of mixed length


def make_variant(name: str, src: Path, out: Path, tokenizer: Tokenizer, framing: Framing, limit: int = 512) -> str:
    """Write variant `name` of the fp32 graph `src` to `out`; return notes that say exactly what was done."""
    if name == "int8":
        return _int8(src, out, tokenizer, framing, limit)
    if name == "fp16":
        return _fp16(src, out)
    raise ExportError(f"no quantization scheme for variant {name!r}")


def text_windows(text: str, tokenizer: Tokenizer, framing: Framing, limit: int) -> list[list[int]]:
    """Framed windows of mixed length cut one after another from `text`, each at most `limit` tokens long."""
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    room = limit - len(framing.prefix_ids) - len(framing.suffix_ids)
    windows: list[list[int]] = []
    pos = 0
    while pos < len(ids):
        n = min(_WINDOW_LENGTHS[len(windows) % len(_WINDOW_LENGTHS)], room)
        windows.append([*framing.prefix_ids, *ids[pos : pos + n], *framing.suffix_ids])
        pos += n
    return windows


def padded_batches(windows: list[list[int]], pad_id: int, size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    return [
        pad_batch([np.asarray(w) for w in windows[start : start + size]], pad_id)
        for start in range(0, len(windows), size)
    ]


def packaged_text(name: str) -> str:
    """calibration.txt (smoothing scales) or validation.txt (the export's real-text gate), shipped with longvec."""
    return resources.files("longvec.export").joinpath(name).read_text(encoding="utf-8")


def _ffn_output_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    gelu_out = {o for n in model.graph.node if n.op_type in _GELU_OPS for o in n.output}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[0] in gelu_out]


def _activations(
    model: onnx.ModelProto, names: list[str], batches: list[tuple[np.ndarray, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The named intermediate tensors at the real (unpadded) tokens of `batches`, as (tokens, channels)."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for n in names:
        probe.graph.output.append(helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    inputs = [i.name for i in session.get_inputs()]
    found: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for ids, mask in batches:
        for n, o in zip(names, session.run(names, encoder_feeds(inputs, ids, mask))):
            found[n].append(o[mask.astype(bool)])
    return {n: np.concatenate(v) for n, v in found.items()}


def simulated_error(x: np.ndarray, w: np.ndarray) -> float:
    """Relative error of x @ w when x is quantized as DynamicQuantizeLinear does (uint8, one scale per tensor)
    and w per output column (int8, symmetric): what onnxruntime's dynamic int8 MatMul computes."""
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    scale = (hi - lo) / 255 or 1.0
    zero = np.round(-lo / scale)
    xq = (np.clip(np.round(x / scale) + zero, 0, 255) - zero) * scale
    wscale = np.abs(w).max(axis=0, keepdims=True) / 127
    wq = np.round(w / np.where(wscale > 0, wscale, 1.0)) * wscale
    exact = x @ w
    return float(np.linalg.norm(xq @ wq - exact) / max(float(np.linalg.norm(exact)), 1e-12))


@dataclass(frozen=True)
class Smoothing:
    matmuls: int  # FFN-output MatMuls smoothed
    channels: int  # GELU channels scaled down, over all of them
    largest: float  # largest factor
    kept_fp32: tuple[str, ...]  # FFN-output MatMuls still too inaccurate after smoothing, left in fp32
    errors: tuple[float, ...]  # simulated relative int8 error of each, after smoothing


def _smooth_outliers(model: onnx.ModelProto, batches: list[tuple[np.ndarray, np.ndarray]]) -> Smoothing:
    """Scale outlier GELU channels down (Mul) and the FFN-output weight rows up, in place; pick the MatMuls that
    stay fp32 by their simulated int8 error on the calibration windows."""
    weights = {i.name for i in model.graph.initializer}
    matmuls = [m for m in _ffn_output_matmuls(model) if m.input[1] in weights]
    if not matmuls:
        return Smoothing(0, 0, 1.0, (), ())
    acts = _activations(model, [m.input[0] for m in matmuls], batches)
    inits = {i.name: i for i in model.graph.initializer}
    scaled, largest, errors, new_nodes = 0, 1.0, [], []
    for mm in matmuls:
        x = acts[mm.input[0]]
        amax = np.maximum(np.abs(x).max(axis=0), 1e-6)
        factor = np.maximum(1.0, amax / np.percentile(amax, SMOOTH_PERCENTILE)).astype(np.float32)
        weight = numpy_helper.to_array(inits[mm.input[1]]) * factor[:, None]
        errors.append(simulated_error(x / factor, weight))
        inits[mm.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), mm.input[1]))
        inv = f"{mm.name}/smooth_inv"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / factor).astype(np.float32), inv))
        new_nodes.append(helper.make_node("Mul", [mm.input[0], inv], [f"{mm.name}/smoothed"], name=f"{mm.name}/smooth"))
        mm.input[0] = f"{mm.name}/smoothed"
        scaled += int((factor > 1.0).sum())
        largest = max(largest, float(factor.max()))
    # Keep the node list topologically sorted: each Mul goes right before the MatMul that reads it.
    nodes = list(model.graph.node)
    for mul in new_nodes:
        consumer = next(i for i, n in enumerate(nodes) if mul.output[0] in n.input)
        nodes.insert(consumer, mul)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    worst = sorted(range(len(matmuls)), key=lambda i: -errors[i])[:KEEP_FP32]
    kept = tuple(matmuls[i].name for i in sorted(worst) if errors[i] > KEEP_FP32_ABOVE)
    return Smoothing(len(matmuls), scaled, largest, kept, tuple(errors))


def _int8(src: Path, out: Path, tokenizer: Tokenizer, framing: Framing, limit: int) -> str:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(src))
    calibration = text_windows(packaged_text("calibration.txt"), tokenizer, framing, limit)
    smooth = _smooth_outliers(model, padded_batches(calibration, framing.pad_id))
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        smoothed = Path(tmp) / "smoothed.onnx"
        onnx.save(model, str(smoothed))
        try:
            quantize_dynamic(
                str(smoothed),
                str(out),
                weight_type=QuantType.QInt8,
                per_channel=True,
                reduce_range=False,
                op_types_to_quantize=["MatMul", "Attention"],
                nodes_to_exclude=list(smooth.kept_fp32),
                # the fused contrib ops defeat onnx shape inference; without a default type the quantizer
                # cannot tell which tensors are float and skips them
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
            )
        except Exception as e:
            raise ExportError(f"{src}: onnxruntime dynamic quantization failed ({e})") from e
    ops: dict[str, int] = {}
    for node in onnx.load(str(out), load_external_data=False).graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    quantized = ", ".join(f"{op} x{ops[op]}" for op in ("QAttention", "MatMulInteger") if op in ops)
    return (
        f"dynamic int8: weights int8 per output channel, activations uint8 per tensor at run time ({quantized}); "
        f"EmbedLayerNormalization and {ops.get('MatMul', 0)} MatMul fp32; outlier smoothing before "
        f"{smooth.matmuls} FFN-output MatMuls: {smooth.channels} GELU channels above the {SMOOTH_PERCENTILE:g}th "
        f"percentile of channel maxima scaled down (largest factor {smooth.largest:.2f}) from {len(calibration)} "
        f"calibration windows; simulated int8 error after smoothing "
        f"{', '.join(f'{e:.3f}' for e in smooth.errors)}; kept fp32 (worst): {', '.join(smooth.kept_fp32) or 'none'}"
    )


def _fp16(src: Path, out: Path) -> str:
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    try:
        # inputs stay int64 and the output float32, so the runtime feeds and reads this variant like the others
        model.convert_float_to_float16(keep_io_types=True)
    except Exception as e:
        raise ExportError(f"{src}: fp16 conversion failed ({e})") from e
    model.save_model_to_file(str(out))
    return (
        "fp16 weights and activations (onnxruntime.transformers float16 conversion, keep_io_types: int64 in, fp32 out)"
    )
