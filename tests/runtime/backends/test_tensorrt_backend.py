"""The native TensorRT backend against fakes of `tensorrt` 10.x / 11.x and `cuda.bindings.runtime` (tests/fake_gpu.py).

NOT a GPU test: the fakes move real bytes between real host buffers (standing in for device memory), queue copies
and the "kernel" on their stream until it is synchronized, validate shapes against the selected profile and answer
dtype and mode queries, so these tests check the calls the backend makes and that data flows through them; they
say nothing about TensorRT itself."""

from __future__ import annotations

import dataclasses
import shutil
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from longvec.runtime import BackendUnavailable, BundleError, Embedder, InputError
from longvec.runtime.backends import tensorrt as trt_backend
from longvec.runtime.backends.cancel import CancellableBackend
from longvec.runtime.backends.tensorrt import TensorRTBackend
from longvec.runtime.bundle.engines import window_profiles
from longvec.runtime.bundle.manifest import MANIFEST_NAME, Manifest, Parity, Variant
from longvec.runtime.bundle.reader import Bundle, sha256_file

HIDDEN = 3
VERSIONS = ["10.16.0.72", "11.4.0.106"]


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    (tmp_path / "model.plan").write_bytes(b"plan")
    return tmp_path / "model.plan"


def make(fake_gpu: ModuleType, version: str, plan: Path, **kwargs: Any) -> tuple[TensorRTBackend, Any, Any]:
    cudart = fake_gpu.FakeCudart()
    trt = fake_gpu.fake_runtime(version, cudart, **kwargs)
    return TensorRTBackend(plan, kwargs.get("hidden", HIDDEN), modules=(trt, cudart)), trt, cudart


def expected(ids: np.ndarray, weights: np.ndarray, hidden: int = HIDDEN) -> np.ndarray:
    return weights @ (ids[..., None] + np.arange(hidden)).astype(np.float32)


@pytest.mark.parametrize("version", VERSIONS)
def test_runs_pooled_sums_through_the_profile_that_fits(fake_gpu: ModuleType, plan: Path, version: str) -> None:
    backend, trt, cudart = make(fake_gpu, version, plan)
    caps = backend.capabilities
    assert caps.pools and caps.on_gpu and (caps.max_batch, caps.max_seq) == (8, 64)  # Embedder.load reads these
    assert caps.provider == f"tensorrt {version} (pooled plan, 2 profiles)"
    rng = np.random.default_rng(0)
    for seq in (20, 50, 32):
        ids = rng.integers(1, 99, (3, seq)).astype(np.int64)
        weights = rng.random((3, 2, seq)).astype(np.float32)
        got = backend.run_pooled(ids, np.ones_like(ids), weights)
        np.testing.assert_allclose(got, expected(ids, weights), rtol=1e-5)  # read after the stream was synced
    [ctx] = trt.engines[0].contexts  # one context for this thread, switching profiles as batches need
    assert [e[1] for e in ctx.log if e[0] == "profile"] == [0, 1, 0]
    kinds = [e[1] for e in cudart.log if e[0] == "memcpy"]
    assert kinds[:4] == ["h2d", "h2d", "h2d", "d2h"]  # inputs up, only the pooled sums down
    states = backend.run(ids, np.ones_like(ids))  # token states through identity rows
    np.testing.assert_allclose(states, ids[..., None] + np.arange(HIDDEN))
    with pytest.raises(InputError, match="cannot run the batch"):
        backend.run_pooled(np.ones((9, 8), np.int64), np.ones((9, 8), np.int64), np.ones((9, 1, 8), np.float32))
    backend.close()
    assert cudart.bytes_live("device") == cudart.bytes_live("host") == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_input_dtypes_are_read_from_the_engine(fake_gpu: ModuleType, plan: Path, version: str) -> None:
    """A plan with int32 ids gets int32 ids: the fake engine reads its buffers as the types it declares."""
    backend, _, _ = make(fake_gpu, version, plan, ids_dtype="INT32")
    ids = np.arange(1, 25, dtype=np.int64).reshape(2, 12)
    weights = np.full((2, 1, 12), 0.5, np.float32)
    np.testing.assert_allclose(backend.run_pooled(ids, np.ones_like(ids), weights), expected(ids, weights))


def test_a_plan_tensor_numpy_lacks_is_a_bundle_error(fake_gpu: ModuleType, plan: Path) -> None:
    cudart = fake_gpu.FakeCudart()
    trt = fake_gpu.fake_runtime("11.4.0", cudart)
    real = trt.nptype

    def no_bf16(t: Any) -> Any:
        if t == trt.DataType.INT64:
            raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")
        return real(t)

    trt.nptype = no_bf16
    with pytest.raises(BundleError, match="no NumPy dtype"):
        TensorRTBackend(plan, HIDDEN, modules=(trt, cudart))


def test_the_fake_returns_garbage_unless_the_stream_is_synchronized(fake_gpu: ModuleType) -> None:
    """The fake is as asynchronous as a GPU: a result read before cudaStreamSynchronize is not the result."""
    cudart = fake_gpu.FakeCudart()
    _, host = cudart.cudaMallocHost(8)
    _, dev = cudart.cudaMalloc(8)
    _, stream = cudart.cudaStreamCreate()
    fake_gpu._view(host, (2,), np.float32)[...] = [1.0, 2.0]
    kinds = cudart.cudaMemcpyKind
    assert cudart.cudaMemcpyAsync(dev, host, 8, kinds.cudaMemcpyHostToDevice, stream) == (0,)
    assert np.isnan(fake_gpu._view(dev, (2,), np.float32)).all()  # not there yet
    cudart.cudaStreamSynchronize(stream)
    assert fake_gpu._view(dev, (2,), np.float32).tolist() == [1.0, 2.0]
    assert cudart.cudaMemcpyAsync(dev, host, 16, kinds.cudaMemcpyHostToDevice, stream) != (0,)  # out of bounds


def test_a_shape_the_engine_refuses_is_an_input_error_naming_it(fake_gpu: ModuleType, plan: Path) -> None:
    """set_input_shape's False is checked (it used to surface as "execute_async_v3 failed")."""
    backend, _, _ = make(fake_gpu, "10.16.0", plan)
    backend.profiles[1] = dataclasses.replace(backend.profiles[1], max_seq=80)  # wider than the engine's own
    ids = np.ones((1, 70), np.int64)
    with pytest.raises(InputError, match=r"TensorRT refused input_ids of shape \(1, 70\)"):
        backend.run_pooled(ids, ids, np.ones((1, 1, 70), np.float32))


def test_a_profile_the_context_cannot_select_is_backend_unavailable(fake_gpu: ModuleType, plan: Path) -> None:
    """set_optimization_profile_async raises (it never returns False): wrapped in the typed error."""
    backend, _, _ = make(fake_gpu, "11.4.0", plan)
    backend.profiles.append(dataclasses.replace(backend.profiles[1], min_seq=65, opt_seq=96, max_seq=96))
    ids = np.ones((1, 90), np.int64)
    with pytest.raises(BackendUnavailable, match="optimization profile 2"):
        backend.run_pooled(ids, ids, np.ones((1, 1, 90), np.float32))


def test_memory_is_one_context_per_thread_and_buffers_sized_to_the_batches(fake_gpu: ModuleType, plan: Path) -> None:
    """MiniLM-like plan, 5 profiles up to 512 positions, batch 16: a thread holds one context whose buffers fit the
    batches it ran (1-10 pool rows), not 256 rows x every profile's maximum (the old layout: ~730 MiB a thread at
    batch 256)."""
    profiles = [((1, 1, p.min_seq), (16, 4, p.opt_seq), (16, 256, p.max_seq)) for p in window_profiles([256, 512], 16)]
    backend, trt, cudart = make(fake_gpu, "10.16.0", plan, hidden=384, profiles=profiles)
    rng = np.random.default_rng(1)
    biggest = 0
    for batch, seq, rows in ((16, 256, 5), (4, 512, 6), (32 // 4, 20, 1), (2, 100, 10)):
        ids = rng.integers(1, 999, (batch, seq)).astype(np.int64)
        w = rng.random((batch, rows, seq)).astype(np.float32)
        np.testing.assert_allclose(backend.run_pooled(ids, ids, w), expected(ids, w, 384), rtol=1e-4)
        biggest = max(biggest, 2 * ids.nbytes + w.nbytes + batch * rows * 384 * 4)
    assert len(trt.engines[0].contexts) == 1
    assert cudart.bytes_live("device") <= 2 * biggest  # grown to the batches seen (x2 growth at most)
    assert cudart.bytes_live("device") < 8 * 2**20
    backend.close()


def test_each_thread_gets_its_own_context(fake_gpu: ModuleType, plan: Path) -> None:
    backend, trt, _ = make(fake_gpu, "11.4.0", plan)
    ids = np.ones((1, 8), np.int64)

    def work() -> None:
        np.testing.assert_allclose(backend.run_pooled(ids, ids, np.ones((1, 1, 8), np.float32)), [[[8, 16, 24]]])

    threads = [threading.Thread(target=work, name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work()
    assert len(trt.engines[0].contexts) == 3
    backend.close()


def test_bad_plans_and_machines_without_a_gpu(fake_gpu: ModuleType, plan: Path, tmp_path: Path) -> None:
    cudart = fake_gpu.FakeCudart()
    with pytest.raises(BundleError, match=r"model\.plan.*hidden size is 5"):
        TensorRTBackend(plan, HIDDEN, modules=(fake_gpu.fake_runtime("10.16.0", cudart, hidden=5), cudart))
    (tmp_path / "bad.plan").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="cannot deserialize"):
        TensorRTBackend(tmp_path / "bad.plan", HIDDEN, modules=(fake_gpu.fake_runtime("10.16.0", cudart), cudart))
    none = fake_gpu.FakeCudart(devices=0)  # no GPU: the engine is unavailable, the plan is not to blame
    with pytest.raises(BackendUnavailable, match="no CUDA device answers"):
        TensorRTBackend(plan, HIDDEN, modules=(fake_gpu.fake_runtime("10.16.0", none), none))


def test_install_hint_names_tensorrt_cu13() -> None:
    assert "tensorrt-cu13" in trt_backend.INSTALL_TENSORRT and "cu12" not in trt_backend.INSTALL_TENSORRT


# ---------------------------------------------------------------------------------------------------------------
# A bundle with a TensorRT variant, loaded through Embedder.load with the fakes in place of the real modules


@pytest.fixture
def trt_bundle(tiny_bundle: Path, tmp_path: Path, fake_gpu: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Path:
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    m = Bundle.open(bundle).manifest
    (bundle / "engines").mkdir()
    (bundle / "engines" / "test.plan").write_bytes(b"plan")
    parity = Parity("cpu fp32 pooled graph", 0.0, 1.0, 1.0, 12)
    variant = Variant("tensorrt-test", "engines/test.plan", "tensorrt", "fp16", parity)
    files = {**m.files, "engines/test.plan": sha256_file(bundle / "engines" / "test.plan")}
    m = dataclasses.replace(m, variants=(*m.variants, variant), files=files)
    (bundle / MANIFEST_NAME).write_text(m.to_json(), encoding="utf-8")

    def modules() -> tuple[Any, Any]:
        cudart = fake_gpu.FakeCudart()
        return fake_gpu.fake_runtime("11.4.0", cudart, hidden=m.hidden_size), cudart

    monkeypatch.setattr(trt_backend, "_import_modules", modules)
    return bundle


def test_a_plan_variant_is_listed_and_loads_with_its_batch_cap(trt_bundle: Path) -> None:
    assert "tensorrt-test" in Bundle.open(trt_bundle).variant_names()
    with Embedder.load(trt_bundle, variant="tensorrt-test", device="cuda", window=64) as emb:
        assert emb.batching.max_batch == 8  # the plan's largest profile, not GPU_BATCHING's 256
        assert emb.provider.startswith("tensorrt 11.4.0")
        # the server's path (a cancellable wrapper, its own token budget) keeps the same cap
        served = emb.with_backend(CancellableBackend(emb.backend), max_batch_tokens=1024)
        assert (served.batching.max_batch, served.batching.max_tokens) == (8, 1024)
        assert served.provider == emb.provider and served.name == emb.name


def test_a_window_longer_than_the_plan_is_refused_at_load(trt_bundle: Path) -> None:
    with pytest.raises(InputError, match=r"window 128 is longer than tensorrt .* admits \(64 positions\)"):
        Embedder.load(trt_bundle, variant="tensorrt-test", device="cuda", window=128)


def test_a_plan_never_runs_for_device_cpu_or_with_the_tensorrt_provider(trt_bundle: Path) -> None:
    with pytest.raises(BackendUnavailable, match=r"test\.plan is a TensorRT plan: load it with device='cuda'"):
        Embedder.load(trt_bundle, variant="tensorrt-test")
    with pytest.raises(InputError, match="run natively"):
        Embedder.load(trt_bundle, variant="tensorrt-test", device="cuda", window=64, tensorrt_provider=True)


def test_manifest_round_trip_keeps_the_plan_variant(trt_bundle: Path) -> None:
    text = (trt_bundle / MANIFEST_NAME).read_text(encoding="utf-8")
    assert Manifest.from_json(text, trt_bundle / MANIFEST_NAME).variant("tensorrt-test") is not None
