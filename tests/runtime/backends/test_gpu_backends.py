"""GPU paths on a CPU machine: pure functions (cache keys, profiles, provider options), the errors a user without
onnxruntime-gpu / a GPU gets, the decisions made at load (preloading CUDA, "auto", pinned staging, the TensorRT
provider's graph), and the IO-binding backend run against the REAL onnxruntime on its CPU device (the same code
that binds to "cuda" on a GPU), besides a recording fake for the call order.
None of this ran on a GPU; tests/runtime/backends/test_gpu_hardware.py (marker `gpu`, `make test-gpu`) does, on one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from longvec.runtime import BackendUnavailable, Embedder, InputError, VariantNotFound
from longvec.runtime.backends import BackendOptions, ort_gpu
from longvec.runtime.bundle.engines import Profile, cache_key, select_profile, shape_option, window_profiles
from longvec.runtime.bundle.reader import Bundle
from longvec.runtime.cli.main import main

SHA = "ab" * 32


def test_cache_key_names_gpu_capability_versions_and_graph() -> None:
    key = cache_key("NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", "1.22.0", SHA)
    assert key == "nvidia-h100-80gb-hbm3-sm90-trt10.9.0.34-ort1.22.0-abababababababab"
    others = [
        cache_key("NVIDIA H200", "9.0", "10.9.0.34", "1.22.0", SHA),
        cache_key("NVIDIA H100 80GB HBM3", "8.9", "10.9.0.34", "1.22.0", SHA),
        cache_key("NVIDIA H100 80GB HBM3", "9.0", "11.0", "1.22.0", SHA),
        cache_key("NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", "1.23.0", SHA),
        cache_key("NVIDIA H100 80GB HBM3", "9.0", "10.9.0.34", "1.22.0", "cd" * 32),
    ]
    assert len({key, *others}) == 6
    assert all("/" not in k and " " not in k for k in others)
    with pytest.raises(ValueError, match="64 hex"):
        cache_key("gpu", "9.0", "10", "1", "not-a-digest")


def test_window_profiles_cover_every_length_once_and_pick_the_tightest() -> None:
    profiles = window_profiles([256, 512], max_batch=64)
    assert [(p.min_seq, p.opt_seq, p.max_seq) for p in profiles] == [
        (1, 32, 32),
        (33, 64, 64),
        (65, 128, 128),
        (129, 256, 256),
        (257, 512, 512),
    ]
    assert all((p.min_batch, p.max_batch) == (1, 64) for p in profiles)
    for seq in range(1, 513):  # every length falls in exactly one profile
        assert sum(p.fits(8, seq) for p in profiles) == 1
    assert select_profile(profiles, 1, 17) == 0
    assert select_profile(profiles, 64, 256) == 3
    assert select_profile(profiles, 2, 300) == 4
    with pytest.raises(ValueError, match="no optimization profile"):
        select_profile(profiles, 65, 256)
    with pytest.raises(ValueError, match="no optimization profile"):
        select_profile(profiles, 1, 513)
    with pytest.raises(ValueError, match="pool rows"):
        select_profile(profiles, 1, 16, rows=1000)
    small = window_profiles([24], max_batch=4)  # a window below every bucket: one profile
    assert [(p.min_seq, p.max_seq) for p in small] == [(1, 24)]


def test_profile_shapes_and_tensorrt_provider_options(tmp_path: Path) -> None:
    profile = Profile(1, 16, 32, 1, 256, 256, max_rows=8)
    names = ("input_ids", "attention_mask", "pool_weights")
    assert profile.shapes(names, "max") == {
        "input_ids": (32, 256),
        "attention_mask": (32, 256),
        "pool_weights": (32, 8, 256),
    }
    assert shape_option(profile.shapes(names, "min")) == "input_ids:1x1,attention_mask:1x1,pool_weights:1x1x1"
    opts = ort_gpu.tensorrt_provider_options(tmp_path, profile, names)
    assert opts["trt_fp16_enable"] == "0"  # a no-op on TensorRT 11, fp16 pooling on 10: fp16 comes from build-engine
    assert opts["trt_engine_cache_enable"] == opts["trt_timing_cache_enable"] == "1"
    assert opts["trt_engine_cache_path"] == opts["trt_timing_cache_path"] == str(tmp_path)
    assert opts["trt_profile_opt_shapes"] == "input_ids:16x256,attention_mask:16x256,pool_weights:16x4x256"
    assert opts["trt_profile_max_shapes"] == "input_ids:32x256,attention_mask:32x256,pool_weights:32x8x256"
    with pytest.raises(ValueError, match="min <= opt <= max"):
        Profile(1, 8, 4, 1, 16, 16)


def test_provider_list_orders_tensorrt_before_cuda_and_caches_by_key(tmp_path: Path) -> None:
    names = ("input_ids", "attention_mask")
    cuda_only = ort_gpu.provider_list(BackendOptions(device="cuda"), names, SHA, None)
    assert [p if isinstance(p, str) else p[0] for p in cuda_only] == [ort_gpu.CUDA, "CPUExecutionProvider"]
    identity = ort_gpu.GpuIdentity("NVIDIA H100 80GB HBM3", "9.0", "10.9.0")
    options = BackendOptions(device="cuda", tensorrt_provider=True, cache_dir=tmp_path)
    with_trt = ort_gpu.provider_list(options, names, SHA, identity)
    assert [p if isinstance(p, str) else p[0] for p in with_trt] == [
        ort_gpu.TENSORRT,
        ort_gpu.CUDA,
        "CPUExecutionProvider",
    ]
    folder = Path(with_trt[0][1]["trt_engine_cache_path"])
    assert (
        folder.parent == tmp_path and folder.is_dir() and folder.name.startswith("nvidia-h100-80gb-hbm3-sm90-trt10.9.0")
    )
    with pytest.raises(BackendUnavailable, match="cuda-python"):
        ort_gpu.provider_list(options, names, SHA, None)


def test_cuda_without_onnxruntime_gpu_says_what_to_install(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    install = r"pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'onnxruntime-gpu\[cuda,cudnn\]'.*shadows"
    with pytest.raises(BackendUnavailable, match=install):
        Embedder.load(tiny_bundle, device="cuda", threads=1)
    with Embedder.load(tiny_bundle, device="auto", threads=1) as emb:  # auto falls back, and says so
        assert emb.provider == "onnxruntime CPUExecutionProvider (pooled graph)"
    with pytest.raises(InputError, match="device must be one of"):
        Embedder.load(tiny_bundle, device="tpu", threads=1)  # type: ignore[arg-type]


def test_cuda_provider_present_but_no_gpu_is_backend_unavailable(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """onnxruntime-gpu on a machine without a GPU: the session comes up on the CPU provider; that is refused for
    device='cuda' (no silent switch) and is the CPU fallback for 'auto'."""
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [ort_gpu.CUDA, "CPUExecutionProvider"])
    real = ort_gpu.make_session

    def cpu_only(path: Path, opts: Any, providers: list[object]) -> Any:
        assert providers[0][0] == ort_gpu.CUDA  # type: ignore[index]
        return real(path, opts, ["CPUExecutionProvider"])

    monkeypatch.setattr(ort_gpu, "make_session", cpu_only)
    with pytest.raises(BackendUnavailable, match="could not start the CUDA provider"):
        Embedder.load(tiny_bundle, device="cuda", threads=1)
    with Embedder.load(tiny_bundle, device="auto", threads=1) as emb:
        assert emb.provider.startswith("onnxruntime CPUExecutionProvider")


class _RecordingBinding:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.inputs: dict[str, np.ndarray] = {}

    def bind_cpu_input(self, name: str, array: np.ndarray) -> None:
        self.log.append(("bind_cpu_input", name, array.shape, array.dtype.name))
        self.inputs[name] = array.copy()

    def bind_output(self, name: str, device: str, device_id: int) -> None:
        self.log.append(("bind_output", name, device, device_id))

    def copy_outputs_to_cpu(self) -> list[np.ndarray]:
        self.log.append(("copy_outputs_to_cpu",))
        w = self.inputs["pool_weights"]
        return [np.einsum("brs,bs->br", w, self.inputs["input_ids"].astype(np.float32))[..., None].repeat(4, axis=2)]


class _RecordingSession:
    """Stands in for an InferenceSession on CUDA: records the IO-binding calls; its "graph" pools the ids."""

    def __init__(self, hidden: int = 4) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.hidden = hidden

    def get_inputs(self) -> list[Any]:
        return [type("I", (), {"name": n}) for n in ("input_ids", "attention_mask", "pool_weights")]

    def get_outputs(self) -> list[Any]:
        return [type("O", (), {"name": "pooled_sums", "shape": ["batch", "rows", self.hidden]})]

    def io_binding(self) -> _RecordingBinding:
        self.binding = _RecordingBinding(self.log)
        return self.binding

    def run_with_iobinding(self, binding: _RecordingBinding) -> None:
        self.log.append(("run_with_iobinding",))


def test_cuda_backend_binds_inputs_and_copies_back_only_pooled_sums(tmp_path: Path) -> None:
    """Recording fake, not a GPU: checks the IO-binding call sequence and the staging buffers."""
    session = _RecordingSession()
    backend = ort_gpu.BoundOrtBackend(session, tmp_path / "model.pooled.onnx", 4, "onnxruntime CUDAExecutionProvider")  # type: ignore[arg-type]
    caps = backend.capabilities
    assert caps.pools and caps.on_gpu and caps.provider.startswith("onnxruntime CUDAExecutionProvider, IO binding")
    assert caps.provider.endswith("(pooled graph)")
    session.log.clear()
    ids = np.array([[1, 2, 3], [4, 5, 0]], dtype=np.int64)
    mask = (ids > 0).astype(np.int64)
    weights = np.array([[[1, 0, 0], [0.5, 0.5, 0]], [[0, 1, 0], [0, 0, 1]]], dtype=np.float32)
    out = backend.run_pooled(ids, mask, weights)
    assert session.log == [
        ("bind_cpu_input", "input_ids", (2, 3), "int64"),
        ("bind_cpu_input", "attention_mask", (2, 3), "int64"),
        ("bind_cpu_input", "pool_weights", (2, 2, 3), "float32"),
        ("bind_output", "pooled_sums", "cuda", 0),
        ("run_with_iobinding",),
        ("copy_outputs_to_cpu",),
    ]
    np.testing.assert_allclose(out[..., 0], [[1, 1.5], [5, 0]])
    bigger = np.ones((4, 5), dtype=np.int64)  # staging buffers grow; a smaller batch reuses them
    backend.run_pooled(bigger, bigger, np.ones((4, 1, 5), np.float32))
    np.testing.assert_allclose(backend.run_pooled(ids, mask, weights), out)
    backend.close()


def test_inspect_runtime_prints_build_version_and_providers(capsys: pytest.CaptureFixture[str]) -> None:
    import onnxruntime as ort

    assert main(["inspect", "--runtime"]) == 0
    out = capsys.readouterr().out
    assert f"onnxruntime  onnxruntime (CPU build) {ort.__version__}" in out
    assert "CPUExecutionProvider" in out and "pip uninstall -y onnxruntime" in out


def test_build_engine_without_tensorrt_exits_5_naming_nvidias_index(
    tiny_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("onnx")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    assert main(["build-engine", str(tiny_bundle)]) == 5
    assert "pypi.nvidia.com tensorrt-cu13" in capsys.readouterr().err


def test_embed_device_cuda_without_onnxruntime_gpu_exits_5(
    tiny_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("pyarrow")
    import onnxruntime as ort

    if ort_gpu.CUDA in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu is installed here")
    corpus = tmp_path / "in.jsonl"
    corpus.write_text('{"id": 1, "text": "a document"}\n')
    assert main(["embed", str(tiny_bundle), str(corpus), str(tmp_path / "out"), "--device", "cuda"]) == 5
    assert "onnxruntime-gpu" in capsys.readouterr().err


def test_a_tensorrt_plan_is_never_run_for_device_cpu(tmp_path: Path) -> None:
    from longvec.runtime.backends import GraphFiles, open_backend

    with pytest.raises(BackendUnavailable, match=r"model\.plan is a TensorRT plan: load it with device='cuda'"):
        open_backend("tensorrt", GraphFiles(tmp_path / "model.plan"), 8, BackendOptions(device="cpu"))


# ---------------------------------------------------------------------------------------------------------------
# The IO-binding path against the real onnxruntime, on its CPU device


def test_io_binding_on_the_real_onnxruntime_equals_session_run(tiny_bundle: Path) -> None:
    """The code that binds to "cuda" on a GPU, run here with device="cpu": the same results as session.run."""
    from longvec.runtime.backends.ort_session import OrtBackend, make_session, session_options

    path = tiny_bundle / "model.pooled.onnx"
    hidden = Bundle.open(tiny_bundle).manifest.hidden_size
    plain_session = make_session(path, session_options(1), ["CPUExecutionProvider"])
    plain = OrtBackend(plain_session, path, hidden, "onnxruntime CPUExecutionProvider")
    bound = ort_gpu.BoundOrtBackend(
        make_session(path, session_options(1), ["CPUExecutionProvider"]),
        path,
        hidden,
        "onnxruntime CPUExecutionProvider",
        device="cpu",
    )
    assert bound.capabilities.pools and not bound.capabilities.on_gpu
    assert bound.capabilities.provider == "onnxruntime CPUExecutionProvider, IO binding, pageable inputs (pooled graph)"
    rng = np.random.default_rng(0)
    for batch, seq, rows in ((3, 17, 2), (1, 40, 5), (2, 9, 1)):  # staging buffers grow and are reused
        ids = rng.integers(1, 90, (batch, seq)).astype(np.int64)
        mask = np.ones_like(ids)
        mask[0, seq // 2 :] = 0
        weights = rng.random((batch, rows, seq)).astype(np.float32)
        want = plain_session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids,
                                        "pool_weights": weights})[0]  # fmt: skip
        np.testing.assert_allclose(bound.run_pooled(ids, mask, weights), want, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(bound.run(ids, mask), plain.run(ids, mask), rtol=1e-6, atol=1e-6)
    bound.close()
    plain.close()


def test_an_embedder_on_the_io_binding_backend_gives_the_same_vectors(tiny_bundle: Path) -> None:
    from longvec.runtime.backends.ort_session import make_session, session_options

    with Embedder.load(tiny_bundle, threads=1) as emb:
        path = tiny_bundle / "model.optimized.pooled.onnx"
        bound = ort_gpu.BoundOrtBackend(
            make_session(path, session_options(1), ["CPUExecutionProvider"]), path, emb.dim, "cpu", device="cpu"
        )
        via = emb.with_backend(bound)
        assert via.batching == emb.batching  # the same policy for the same capabilities
        text = ["The keeper trimmed the wick. " * 40, "a query"]
        for got, want in zip(via.embed_documents(text, chunk_tokens=16), emb.embed_documents(text, chunk_tokens=16)):
            np.testing.assert_allclose(got.vector, want.vector, atol=1e-6)
            np.testing.assert_allclose(got.chunk_vectors, want.chunk_vectors, atol=1e-6)
        bound.close()


# ---------------------------------------------------------------------------------------------------------------
# Decided at load: preloading CUDA, "auto", pinned staging, the TensorRT provider's graph and options


def _gpu_build_without_gpu(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """onnxruntime-gpu on a machine without a GPU: the CUDA provider is listed, sessions come up on the CPU.
    Returns the log of preload_dlls() and session-opening calls."""
    calls: list[str] = []
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [ort_gpu.CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(ort_gpu.ort, "preload_dlls", lambda: calls.append("preload_dlls"), raising=False)
    monkeypatch.setattr(ort_gpu, "_preloaded", [])
    real = ort_gpu.make_session

    def cpu_only(path: Path, opts: Any, providers: list[object]) -> Any:
        calls.append("session " + (providers[0] if isinstance(providers[0], str) else providers[0][0]))
        return real(path, opts, ["CPUExecutionProvider"])

    monkeypatch.setattr(ort_gpu, "make_session", cpu_only)
    return calls


def test_cuda_libraries_are_preloaded_before_the_first_cuda_session(
    tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = _gpu_build_without_gpu(monkeypatch)
    with pytest.raises(BackendUnavailable, match=r"CUDA libraries missing: preload_dlls\(\) ran"):
        Embedder.load(tiny_bundle, device="cuda", threads=1)
    assert calls == ["preload_dlls", f"session {ort_gpu.CUDA}"]
    with Embedder.load(tiny_bundle, device="auto", threads=1) as emb:  # decided at load: the CPU, and it says so
        assert emb.provider.startswith("onnxruntime CPUExecutionProvider") and not emb.backend.capabilities.on_gpu
    assert calls.count("preload_dlls") == 1  # once per process


def _fake_cuda_python(monkeypatch: pytest.MonkeyPatch, cudart: Any) -> None:
    import sys
    import types

    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = cudart  # type: ignore[attr-defined]
    cuda.bindings = bindings  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
    monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", cudart)


def test_pinned_staging_is_tried_at_load_and_falls_back_to_pageable_saying_so(
    fake_gpu: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cuda-python that cannot pin memory (e.g. too old a driver) shows when the backend is made, not at the first
    embed after "auto" already chose CUDA."""
    broken = fake_gpu.FakeCudart(pinned=False)
    _fake_cuda_python(monkeypatch, broken)
    staging = ort_gpu.PinnedStaging()
    assert not staging.pinned and staging.note.startswith("pageable inputs (cudaMallocHost failed")
    np.testing.assert_array_equal(staging.stage("x", np.arange(5)), np.arange(5))
    working = fake_gpu.FakeCudart()
    _fake_cuda_python(monkeypatch, working)
    pinned = ort_gpu.PinnedStaging()
    assert pinned.pinned and pinned.note == "pinned inputs"
    pinned.stage("x", np.arange(4))
    pinned.stage("x", np.arange(40))  # grows: the smaller buffer is freed at once, not kept until close
    assert working.bytes_live("host") == 40 * 8
    pinned.close()
    assert working.bytes_live("host") == 0


def test_tensorrt_provider_is_refused_on_cpu_and_on_fused_graphs(tiny_bundle: Path) -> None:
    with pytest.raises(InputError, match="tensorrt_provider=True runs on a GPU"):
        Embedder.load(tiny_bundle, variant="fp32", device="cpu", tensorrt_provider=True)
    with pytest.raises(InputError, match="runs the unfused graph only: load variant='fp32', not 'optimized'"):
        Embedder.load(tiny_bundle, device="cuda", tensorrt_provider=True)


def test_tensorrt_provider_that_does_not_start_is_refused(tiny_bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Asked for TensorRT, the session came up on CUDA: an error, not a CUDA session that says "TensorRT"."""
    monkeypatch.setattr(ort_gpu.ort, "get_available_providers", lambda: [ort_gpu.TENSORRT, ort_gpu.CUDA, "CPU"])
    monkeypatch.setattr(ort_gpu, "gpu_identity", lambda: ort_gpu.GpuIdentity("NVIDIA H200", "9.0", "10.16.0"))

    class OnCuda:
        def __init__(self, *args: Any) -> None:
            pass

        def get_providers(self) -> list[str]:
            return [ort_gpu.CUDA, "CPUExecutionProvider"]

    monkeypatch.setattr(ort_gpu, "make_session", OnCuda)
    monkeypatch.setattr(ort_gpu, "DEFAULT_CACHE", tiny_bundle.parent / "trt-cache")
    with pytest.raises(BackendUnavailable, match="TensorRT provider did not start"):
        Embedder.load(tiny_bundle, variant="fp32", device="cuda", tensorrt_provider=True)


def test_tensorrt_provider_profile_follows_the_window_and_its_options_key_the_cache(tmp_path: Path) -> None:
    names = ("input_ids", "attention_mask", "pool_weights")
    identity = ort_gpu.GpuIdentity("NVIDIA H200", "9.0", "10.16.0")

    def trt_options(window: int | None) -> dict[str, str]:
        options = BackendOptions(device="cuda", tensorrt_provider=True, cache_dir=tmp_path, window=window)
        return ort_gpu.provider_list(options, names, SHA, identity)[0][1]  # type: ignore[no-any-return]

    long = trt_options(2048)  # a long-context model: no 512 ceiling
    assert long["trt_profile_max_shapes"] == "input_ids:256x2048,attention_mask:256x2048,pool_weights:256x256x2048"
    short = trt_options(256)
    assert short["trt_profile_opt_shapes"].startswith("input_ids:256x256,")
    assert long["trt_engine_cache_path"] != short["trt_engine_cache_path"]  # other options, other engines
    assert trt_options(256)["trt_engine_cache_path"] == short["trt_engine_cache_path"]


def test_variant_names_list_every_variant(tiny_bundle: Path) -> None:
    names = Bundle.open(tiny_bundle).variant_names()
    assert names[:2] == ("fp32", "optimized")
    with pytest.raises(VariantNotFound, match="this bundle has: fp32, optimized"):
        Embedder.load(tiny_bundle, variant="tensorrt-nvidia-h200")
