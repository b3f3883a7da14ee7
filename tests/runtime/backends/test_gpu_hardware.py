"""On a real GPU (marker `gpu`, `make test-gpu`): onnxruntime-gpu's CUDA provider and, where installed, TensorRT,
against the CPU. Skipped where no CUDA provider answers; NOT YET RUN (no session so far had a GPU with
onnxruntime-gpu installed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from longvec.runtime import BackendUnavailable, Embedder

pytestmark = pytest.mark.gpu

TEXTS = ["a query", "The lighthouse keeper trimmed the wick every night. " * 80, "?!"]


@pytest.fixture(scope="module")
def cuda_embedder(bundle_dir: Path) -> Embedder:
    try:
        return Embedder.load(bundle_dir, device="cuda")
    except BackendUnavailable as e:
        pytest.skip(f"no CUDA here: {e}")


def test_cuda_pooled_matches_cpu(cuda_embedder: Embedder, bundle_dir: Path) -> None:
    assert "CUDAExecutionProvider" in cuda_embedder.provider and "pooled graph" in cuda_embedder.provider
    with Embedder.load(bundle_dir, device="cpu", threads=2) as cpu:
        want = cpu.embed_documents(TEXTS, chunk_tokens=64)
    got = cuda_embedder.embed_documents(TEXTS, chunk_tokens=64)
    for g, w in zip(got, want):
        assert float(g.vector @ w.vector) > 0.9999
        assert np.einsum("nd,nd->n", g.chunk_vectors, w.chunk_vectors).min() > 0.9999


def test_cuda_states_and_pooled_agree(cuda_embedder: Embedder, bundle_dir: Path) -> None:
    with Embedder.load(bundle_dir, device="cuda", pooled=False) as states:
        np.testing.assert_allclose(states.embed(TEXTS), cuda_embedder.embed(TEXTS), atol=1e-4)


def test_tensorrt_provider_runs_the_unfused_graph(bundle_dir: Path) -> None:
    """The provider runs only variant "fp32" (the fused "optimized" graph is refused on every machine, see
    test_gpu_backends.py); a provider that does not start is a BackendUnavailable, never a quiet CUDA session."""
    pytest.importorskip("tensorrt")
    try:
        emb = Embedder.load(bundle_dir, variant="fp32", device="cuda", tensorrt_provider=True)
    except BackendUnavailable as e:
        pytest.skip(f"no TensorRT provider here: {e}")
    with emb, Embedder.load(bundle_dir, variant="fp32") as cpu:
        assert "TensorrtExecutionProvider (unfused fp32 graph, fp32 engine)" in emb.provider
        cos = np.einsum("nd,nd->n", emb.embed(TEXTS), cpu.embed(TEXTS))
        assert cos.min() > 0.999


def test_build_engine_and_run_it(bundle_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from longvec.export.tensorrt import build_engine
    from longvec.runtime.backends.ort_gpu import gpu_identity
    from longvec.runtime.backends.tensorrt import TensorRTBackend

    identity = gpu_identity()
    if identity is None:
        pytest.skip("cuda-python is not installed")
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    gpu = (identity.name, identity.compute_capability)
    manifest = build_engine(copy, gpu, TensorRTBackend, [256], max_batch=16, cache_dir=tmp_path / "cache")
    variant = next(v for v in manifest.variants if v.engine == "tensorrt")
    assert variant.parity.min_cosine >= 0.999 and variant.tensorrt is not None
    with Embedder.load(copy, variant=variant.name, device="cuda") as trt, Embedder.load(bundle_dir) as cpu:
        assert trt.batching.max_batch == 16  # the plan's cap
        cos = np.einsum("nd,nd->n", trt.embed(TEXTS), cpu.embed(TEXTS))
        assert cos.min() > 0.999
