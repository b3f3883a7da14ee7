"""Compute floor of this machine: fp32 GEMM (NumPy/BLAS) and int8 GEMM (onnxruntime MatMulInteger, the op a
dynamically quantized encoder runs) at a given thread count. Prints one JSON line; `longvec bench` divides each
variant's encoder FLOP rate by these rates.

    OPENBLAS_NUM_THREADS=2 python bench/floor.py --threads 2 --model-config MODEL_DIR/config.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from timing import median_seconds, timing_args


def fp32_gflops(m: int, k: int, n: int, repeats: int) -> float:
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)
    return 2 * m * k * n / median_seconds(lambda: np.matmul(a, b, out=out), repeats) / 1e9


def int8_gops(m: int, k: int, n: int, threads: int, repeats: int, op: str) -> float:
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.integers(-127, 128, (k, n), dtype=np.int8)
    a = rng.integers(0, 256, (m, k), dtype=np.uint8)
    inits = [numpy_helper.from_array(w, "W")]
    if op == "MatMulInteger":
        inits.append(numpy_helper.from_array(np.array(128, np.uint8), "a_zero"))
        node = helper.make_node("MatMulInteger", ["A", "W", "a_zero"], ["Y"])
        out_type = TensorProto.INT32
    else:  # QLinearMatMul: scales and zero points for A, W and Y
        consts = {
            "a_s": np.float32(0.02),
            "a_z": np.uint8(128),
            "w_s": np.float32(0.01),
            "w_z": np.int8(0),
            "y_s": np.float32(0.5),
            "y_z": np.uint8(128),
        }
        inits += [numpy_helper.from_array(np.array(v), k_) for k_, v in consts.items()]
        node = helper.make_node("QLinearMatMul", ["A", "a_s", "a_z", "W", "w_s", "w_z", "y_s", "y_z"], ["Y"])
        out_type = TensorProto.UINT8
    graph = helper.make_graph(
        [node],
        "floor",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [m, k])],
        [helper.make_tensor_value_info("Y", out_type, [m, n])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    onnx.checker.check_model(model)
    return 2 * m * k * n / median_seconds(lambda: sess.run(None, {"A": a}), repeats) / 1e9


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model-config", type=Path, default=None, help="HF config.json: layers, hidden, intermediate")
    timing_args(p, repeats=7)
    args = p.parse_args()
    # the shapes of the encoder's biggest matmuls: 32 windows x 256 tokens against the feed-forward weights
    m, k, n = 8192, 384, 1536
    out = {
        "threads": args.threads,
        "shape": [m, k, n],
        "fp32_gflops": fp32_gflops(m, k, n, args.repeats),
        "int8_gops": int8_gops(m, k, n, args.threads, args.repeats, "MatMulInteger"),
        "int8_qlinear_gops": int8_gops(m, k, n, args.threads, args.repeats, "QLinearMatMul"),
        "int8_op": "MatMulInteger",
    }
    if args.model_config is not None:
        cfg = json.loads(args.model_config.read_text())
        out["model"] = {
            "layers": cfg["num_hidden_layers"],
            "hidden": cfg["hidden_size"],
            "intermediate": cfg["intermediate_size"],
        }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
