"""The native TensorRT backend against a recording fake of `tensorrt` and `cuda.bindings.runtime`.

NOT a GPU test: the fakes move real bytes between real host buffers (standing in for device memory) and "execute"
by pooling in NumPy, so the test checks the calls the backend makes (profile by shape, one context per thread and
profile, input shapes, tensor addresses, copies, execute_async_v3) and that data flows through them correctly;
it says nothing about TensorRT itself."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from longvec.runtime import BundleError, InputError
from longvec.runtime.backends.tensorrt import TensorRTBackend

HIDDEN = 3
NAMES = ("input_ids", "attention_mask", "pool_weights", "pooled_sums")


class FakeCudart:
    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self._keep: dict[int, Any] = {}
        self.cudaMemcpyKind = SimpleNamespace(cudaMemcpyHostToDevice="h2d", cudaMemcpyDeviceToHost="d2h")

    def _alloc(self, n: int) -> tuple[int, int]:
        buf = ctypes.create_string_buffer(n)
        self._keep[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def cudaMalloc(self, n: int) -> tuple[int, int]:
        return self._alloc(n)

    def cudaMallocHost(self, n: int) -> tuple[int, int]:
        return self._alloc(n)

    def cudaMemcpyAsync(self, dst: int, src: int, n: int, kind: str, stream: int) -> tuple[int]:
        self.log.append(("memcpy", kind, n))
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamCreate(self) -> tuple[int, int]:
        return 0, 7

    def cudaStreamSynchronize(self, stream: int) -> tuple[int]:
        self.log.append(("sync", stream))
        return (0,)

    def cudaFree(self, ptr: int) -> tuple[int]:
        self.log.append(("free",))
        return (0,)

    cudaFreeHost = cudaFree
    cudaStreamDestroy = cudaFree


def _array(addr: int, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    return np.frombuffer((ctypes.c_byte * n).from_address(addr), dtype=dtype).reshape(shape)


class FakeContext:
    def __init__(self, log: list[tuple[Any, ...]]) -> None:
        self.log = log
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_optimization_profile_async(self, index: int, stream: int) -> None:
        self.log.append(("profile", index, threading.current_thread().name))

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        self.shapes[name] = tuple(shape)

    def set_tensor_address(self, name: str, addr: int) -> None:
        self.addresses[name] = addr

    def execute_async_v3(self, stream: int) -> bool:
        """The "engine": states[b, s, h] = input_id + h, pooled = weights @ states."""
        b, s = self.shapes["input_ids"]
        rows = self.shapes["pool_weights"][1]
        ids = _array(self.addresses["input_ids"], (b, s), np.int64)
        w = _array(self.addresses["pool_weights"], (b, rows, s), np.float32)
        states = ids[..., None].astype(np.float32) + np.arange(HIDDEN, dtype=np.float32)
        _array(self.addresses["pooled_sums"], (b, rows, HIDDEN), np.float32)[...] = w @ states
        self.log.append(("execute_async_v3", set(self.addresses) == set(NAMES)))
        return True


class FakeEngine:
    num_io_tensors = len(NAMES)
    num_optimization_profiles = 2

    def __init__(self, log: list[tuple[Any, ...]], hidden: int) -> None:
        self.log, self.hidden = log, hidden

    def get_tensor_name(self, i: int) -> str:
        return NAMES[i]

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (-1, -1, self.hidden)

    def get_tensor_profile_shape(self, name: str, index: int) -> tuple[tuple[int, ...], ...]:
        assert name == "pool_weights"
        return [((1, 1, 1), (4, 4, 32), (8, 8, 32)), ((1, 1, 33), (8, 4, 64), (8, 8, 64))][index]

    def create_execution_context(self) -> FakeContext:
        return FakeContext(self.log)


def fake_tensorrt(log: list[tuple[Any, ...]], hidden: int = HIDDEN) -> Any:
    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, data: bytes) -> FakeEngine | None:
            return FakeEngine(log, hidden) if data == b"plan" else None

    logger = type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None})
    return SimpleNamespace(__version__="10.9.0", Logger=logger, Runtime=Runtime)


@pytest.fixture
def plan(tmp_path: Path) -> Path:
    (tmp_path / "model.plan").write_bytes(b"plan")
    return tmp_path / "model.plan"


def test_runs_pooled_sums_through_the_profile_that_fits(plan: Path) -> None:
    log: list[tuple[Any, ...]] = []
    cudart = FakeCudart()
    backend = TensorRTBackend(plan, HIDDEN, modules=(fake_tensorrt(log), cudart))
    assert backend.pools and [p.max_seq for p in backend.profiles] == [32, 64]
    assert backend.max_batch == 8  # Embedder.load caps its batches at this
    rng = np.random.default_rng(0)
    for seq, profile in ((20, 0), (50, 1), (32, 0)):
        ids = rng.integers(1, 99, (3, seq)).astype(np.int64)
        weights = rng.random((3, 2, seq)).astype(np.float32)
        got = backend.run_pooled(ids, np.ones_like(ids), weights)
        states = ids[..., None] + np.arange(HIDDEN)
        np.testing.assert_allclose(got, weights @ states, rtol=1e-5)
        assert log[-1] == ("execute_async_v3", True)
        assert profile in [e[1] for e in log if e[0] == "profile"]
    assert [e[1] for e in log if e[0] == "profile"] == [0, 1]  # one context per profile, reused
    kinds = [e[1] for e in cudart.log if e[0] == "memcpy"]
    assert kinds[:4] == ["h2d", "h2d", "h2d", "d2h"]  # inputs up, only the pooled sums down
    states = backend.run(ids, np.ones_like(ids))  # token states through identity rows
    np.testing.assert_allclose(states, ids[..., None] + np.arange(HIDDEN))
    with pytest.raises(InputError, match="cannot run the batch"):
        backend.run_pooled(np.ones((9, 8), np.int64), np.ones((9, 8), np.int64), np.ones((9, 1, 8), np.float32))
    backend.close()
    assert sum(e[0] == "free" for e in cudart.log) > 0


def test_each_thread_gets_its_own_context(plan: Path) -> None:
    log: list[tuple[Any, ...]] = []
    backend = TensorRTBackend(plan, HIDDEN, modules=(fake_tensorrt(log), FakeCudart()))
    ids = np.ones((1, 8), np.int64)

    def work() -> None:
        backend.run_pooled(ids, ids, np.ones((1, 1, 8), np.float32))

    threads = [threading.Thread(target=work, name=f"worker-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    work()
    assert sorted(e[2] for e in log if e[0] == "profile") == ["MainThread", "worker-0", "worker-1"]


def test_a_plan_of_another_hidden_size_or_not_a_plan_is_a_bundle_error(plan: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"model\.plan.*hidden size is 5"):
        TensorRTBackend(plan, HIDDEN, modules=(fake_tensorrt([], hidden=5), FakeCudart()))
    (tmp_path / "bad.plan").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="cannot deserialize"):
        TensorRTBackend(tmp_path / "bad.plan", HIDDEN, modules=(fake_tensorrt([]), FakeCudart()))
