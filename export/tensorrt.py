"""`longvec build-engine BUNDLE`: TensorRT plans of the pooled graph, built on the GPU they will run on.

NOT YET RUN ON A GPU: the build is tested only against a recording fake of the `tensorrt` module
(tests/export/test_tensorrt_build.py), which checks the calls made; the parity gate and the profile plan are pure
functions tested on CPU.

- Source: the unfused fp32 graph's pooled twin (TensorRT's ONNX parser does not take onnxruntime's fused contrib
  ops), converted to an fp16 copy with LayerNormalization, Softmax and the pooling head kept in fp32, and built as a
  strongly typed network: one path for TensorRT 10 and 11. TensorRT 11 has no precision builder flags (the FP16
  flag is gone) and TensorRT 10's FP16 flag (deprecated since 10.12) would let the pooling MatMul run in fp16;
  with strong typing the graph's own types decide, so the pooled sums accumulate in float32 on both.
- Profiles (runtime.bundle.engines.window_profiles): one per window length used, batch 1..N, plus length buckets
  for short texts; the runtime picks the tightest per batch.
- A timing cache is kept under a key of GPU name, compute capability, TensorRT version and graph sha256, the plan
  under that key plus a digest of its profiles (windows, max batch, rows): rebuilding with the same options for
  the same GPU reuses the plan, other options build a new one (replacing the variant's plan), a plan for another
  GPU is never picked up.
- Parity gate: the plan's pooled sums against the CPU fp32 pooled graph (onnxruntime) on the export's parity texts,
  min cosine >= 0.999, recorded in the manifest with the GPU, the TensorRT version and the profiles.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from longvec.export.amend import commit, working_copy
from longvec.runtime.bundle.engines import GPU_MAX_BATCH, Profile, cache_key, window_profiles
from longvec.runtime.bundle.feeds import POOL_INPUT
from longvec.runtime.bundle.manifest import Manifest, Parity, TensorRTBuild, Variant
from longvec.runtime.bundle.reader import Bundle, sha256_file
from longvec.runtime.errors import BackendUnavailable, ExportError, InputError, ParityError

MIN_COSINE = 0.999
PooledFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def import_tensorrt() -> ModuleType:
    try:
        import tensorrt as trt
    except ImportError as e:
        raise BackendUnavailable(
            "build-engine needs TensorRT, from NVIDIA's package index (not PyPI): "
            f"pip install --extra-index-url https://pypi.nvidia.com tensorrt-cu13 cuda-python ({e})"
        ) from e
    return trt


def network_flags(trt: ModuleType) -> int:
    """`create_network` flags of a strongly typed network: 1 << STRONGLY_TYPED, whose value is 1 in TensorRT 10 and
    0 in 11 (deprecated there, strong typing being always on): read from the module, never written down."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    if flag is None:
        raise BackendUnavailable(f"TensorRT {trt.__version__} has no strongly typed networks: build-engine needs 10+")
    return 1 << int(flag)


def profiles_digest(profiles: Sequence[Profile]) -> str:
    """8 hex digits naming a profile set (windows, batch and rows ranges): part of the plan's cache key."""
    text = ";".join(
        f"{p.min_batch},{p.opt_batch},{p.max_batch},{p.min_seq},{p.opt_seq},{p.max_seq},{p.max_rows}" for p in profiles
    )
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def fp16_graph(src: Path, dst: Path) -> None:
    """An fp16 copy for strongly typed networks: LayerNormalization, Softmax and the pooling head stay fp32."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(src)))
    model.convert_float_to_float16(
        keep_io_types=True, op_block_list=["LayerNormalization", "Softmax"], node_block_list=["longvec_pool"]
    )
    model.save_model_to_file(str(dst))


def build_plan(
    trt: ModuleType, onnx_path: Path, profiles: Sequence[Profile], input_names: Sequence[str], timing_cache: Path
) -> bytes:
    """Parse `onnx_path` (an fp16 graph from `fp16_graph`: its types are the engine's) as a strongly typed network,
    configure profiles and the timing cache, and build; the timing cache is written back for next time."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser refused the graph: {errors}")
    config = builder.create_builder_config()
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.is_file() else b"")
    config.set_timing_cache(cache, False)
    for profile in profiles:
        p = builder.create_optimization_profile()
        lo, opt, hi = (profile.shapes(input_names, k) for k in ("min", "opt", "max"))
        for name in input_names:
            p.set_shape(name, lo[name], opt[name], hi[name])
        if config.add_optimization_profile(p) < 0:
            raise ExportError(f"{onnx_path}: TensorRT refused the optimization profile {profile}")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ExportError(f"{onnx_path}: TensorRT could not build an engine (see its log above)")
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def pooled_parity(
    reference: PooledFn, candidate: PooledFn, batches: Sequence[tuple[np.ndarray, np.ndarray]], reference_name: str
) -> Parity:
    """Pooled sums of mean rows (each text's mean) and random span rows: max |diff| and cosines per row."""
    rng = np.random.default_rng(0)
    max_abs, cosines = 0.0, []
    for ids, mask in batches:
        mean = mask / mask.sum(axis=1, keepdims=True)
        spans = rng.random((ids.shape[0], 3, ids.shape[1])) * mask[:, None, :]
        weights = np.concatenate((mean[:, None, :], spans), axis=1).astype(np.float32)
        ref, got = reference(ids, mask, weights), candidate(ids, mask, weights)
        max_abs = max(max_abs, float(np.abs(ref - got).max()))
        r, g = ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1])
        cosines.append(np.einsum("nd,nd->n", r, g) / (np.linalg.norm(r, axis=1) * np.linalg.norm(g, axis=1)))
    cos = np.concatenate(cosines)
    return Parity(reference_name, max_abs, float(cos.min()), float(cos.mean()), int(cos.shape[0]))


def build_engine(
    bundle_dir: str | Path,
    gpu: tuple[str, str],
    open_plan: Callable[[Path, int], Any],
    windows: Sequence[int] | None = None,
    max_batch: int = GPU_MAX_BATCH,
    cache_dir: Path | None = None,
    log: Callable[[str], None] = lambda _: None,
    trt: ModuleType | None = None,
) -> Manifest:
    """Build (or reuse) the plan for this GPU, gate it, and add it to the bundle as variant `tensorrt-<gpu>`.

    `gpu`: (name, compute capability) of the GPU building it; `open_plan(path, hidden_size)` runs a plan (the
    runtime's TensorRT backend, passed in by the CLI: the export side imports from the runtime only its contract)."""
    need = parity_batch_size()
    if max_batch < need:  # refused before a build of minutes, not after it in the parity gate
        raise InputError(f"max batch {max_batch}: the parity gate runs batches of {need} texts; use at least {need}")
    trt = trt or import_tensorrt()
    root = Path(bundle_dir)
    bundle = Bundle.open(root)
    m = bundle.manifest
    source = m.variant("fp32")
    if source is None or source.pooled_file is None:
        raise ExportError(f"{root}: no unfused pooled graph (variant 'fp32'); run `longvec export --add-pooled {root}`")
    gpu_name, capability = gpu
    graph = bundle.path(source.pooled_file)
    key = cache_key(gpu_name, capability, str(trt.__version__), "native", sha256_file(graph))
    name = f"tensorrt-{key.rsplit('-', 1)[0]}"[:80]
    window = m.default_window or min(m.max_positions, m.trained_max_tokens)
    profiles = window_profiles(windows or [window], max_batch)
    plan_key = f"{key}-p{profiles_digest(profiles)}"  # other windows / max batch: another plan
    plan_file = f"engines/{plan_key}.plan"
    done = m.variant(name)
    if done is not None and done.file == plan_file:
        log(f"{name}: plan {plan_file} already built for this GPU, TensorRT, graph and profiles")
        return m
    cache = (cache_dir or Path("~/.cache/longvec/tensorrt")).expanduser()
    cache.mkdir(parents=True, exist_ok=True)
    names = (*m.input_names, POOL_INPUT)
    with working_copy(root, m) as work:
        source_graph = work / "strongly_typed_fp16.onnx"
        fp16_graph(graph, source_graph)
        lengths = sorted(set(windows or [window]))
        log(f"building {name}: {len(profiles)} profiles, windows {lengths}, batch 1..{max_batch}")
        plan = build_plan(trt, source_graph, profiles, names, cache / f"{key}.timing")
        source_graph.unlink()  # not part of the bundle
        (cache / f"{plan_key}.plan").write_bytes(plan)
        limit = max(p.max_seq for p in profiles)
        parity = _gate(cache / f"{plan_key}.plan", graph, root / m.tokenizer_file, m, limit, open_plan)
        log(f"{name}: vs CPU fp32 pooled: min cosine {parity.min_cosine:.6f}, max|diff| {parity.max_abs_diff:.1e}")
        build = TensorRTBuild(gpu_name, capability, str(trt.__version__), source.pooled_file, key, tuple(profiles))
        notes = "TensorRT plan of the pooled graph, strongly typed fp16 (LayerNorm, Softmax, pooling in fp32)"
        variant = Variant(name, plan_file, "tensorrt", "fp16", parity, notes, tensorrt=build)
        (work / "engines").mkdir(exist_ok=True)
        shutil.copy2(cache / f"{plan_key}.plan", work / plan_file)
        files = dict(m.files)
        if done is not None:  # the plan it replaces (other profiles) leaves the bundle
            files.pop(done.file, None)
            (work / done.file).unlink(missing_ok=True)
        variants = (*(v for v in m.variants if v.name != name), variant)
        m = replace(m, variants=variants, files={**files, plan_file: sha256_file(work / plan_file)})
        commit(work, root, m)
    return m


def parity_batch_size() -> int:
    """Texts per batch of the parity gate (export.pooled.parity_batches: the parity texts in two batches)."""
    from longvec.export.parity import PARITY_TEXTS

    return -(-len(PARITY_TEXTS) // 2)


def _gate(
    plan: Path, graph: Path, tokenizer: Path, m: Manifest, limit: int, open_plan: Callable[[Path, int], Any]
) -> Parity:
    import onnxruntime as ort

    from longvec.export.pooled import parity_batches
    from longvec.runtime.bundle.feeds import encoder_feeds

    session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]

    def reference(ids: np.ndarray, mask: np.ndarray, weights: np.ndarray) -> np.ndarray:
        return session.run(None, encoder_feeds(wanted, ids, mask, weights))[0]

    engine = open_plan(plan, m.hidden_size)
    try:
        batches = parity_batches(tokenizer, m.framing, limit)
        parity = pooled_parity(reference, engine.run_pooled, batches, "cpu fp32 pooled graph")
    finally:
        engine.close()
    if parity.min_cosine < MIN_COSINE:
        raise ParityError(
            f"{plan.name}: min cosine {parity.min_cosine:.6f} vs the CPU fp32 pooled graph < {MIN_COSINE}"
        )
    return parity
