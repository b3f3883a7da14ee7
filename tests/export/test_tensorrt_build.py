"""`longvec build-engine`'s TensorRT calls against a recording fake of the `tensorrt` module (NOT a GPU test: it
checks which builder calls are made for TensorRT 10 and 11, not what TensorRT builds), and its parity gate on CPU."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from longvec.export.tensorrt import build_plan, pooled_parity, strongly_typed
from longvec.runtime.bundle.engines import window_profiles


def fake_tensorrt(version: str, log: list[tuple[Any, ...]], parses: bool = True) -> Any:
    class Cache:
        def serialize(self) -> bytes:
            return b"timing-after"

    class Config:
        def set_flag(self, flag: str) -> None:
            log.append(("set_flag", flag))

        def create_timing_cache(self, data: bytes) -> Cache:
            log.append(("create_timing_cache", data))
            return Cache()

        def set_timing_cache(self, cache: Cache, ignore_mismatch: bool) -> None:
            log.append(("set_timing_cache", ignore_mismatch))

        def add_optimization_profile(self, profile: Any) -> None:
            log.append(("add_optimization_profile", profile.shapes))

        def get_timing_cache(self) -> Cache:
            return Cache()

    class Profile:
        def __init__(self) -> None:
            self.shapes: dict[str, tuple[Any, ...]] = {}

        def set_shape(self, name: str, lo: Any, opt: Any, hi: Any) -> None:
            self.shapes[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, logger: Any) -> None:
            pass

        def create_network(self, flags: int) -> str:
            log.append(("create_network", flags))
            return "network"

        def create_builder_config(self) -> Config:
            return Config()

        def create_optimization_profile(self) -> Profile:
            return Profile()

        def build_serialized_network(self, network: str, config: Config) -> bytes:
            log.append(("build_serialized_network", network))
            return b"plan-bytes"

    class OnnxParser:
        num_errors = 0 if parses else 1

        def __init__(self, network: str, logger: Any) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            log.append(("parse_from_file", Path(path).name))
            return parses

        def get_error(self, i: int) -> str:
            return "unsupported operator EmbedLayerNormalization"

    return SimpleNamespace(
        __version__=version,
        Logger=type("Logger", (), {"WARNING": 2, "__init__": lambda self, level: None}),
        Builder=Builder,
        OnnxParser=OnnxParser,
        NetworkDefinitionCreationFlag=SimpleNamespace(STRONGLY_TYPED=2),
        BuilderFlag=SimpleNamespace(FP16="FP16"),
    )


NAMES = ("input_ids", "attention_mask", "pool_weights")


@pytest.mark.parametrize(("version", "flags", "fp16_flag"), [("10.9.0.34", 0, True), ("11.0.1", 1 << 2, False)])
def test_build_plan_calls(version: str, flags: int, fp16_flag: bool, tmp_path: Path) -> None:
    log: list[tuple[Any, ...]] = []
    trt = fake_tensorrt(version, log)
    assert strongly_typed(trt) is not fp16_flag
    profiles = window_profiles([256], max_batch=32)
    timing = tmp_path / "key.timing"
    assert build_plan(trt, tmp_path / "model.pooled.onnx", profiles, NAMES, timing) == b"plan-bytes"
    assert log[0] == ("create_network", flags)
    assert log[1] == ("parse_from_file", "model.pooled.onnx")
    assert (("set_flag", "FP16") in log) is fp16_flag  # TensorRT 11 has no precision flags
    assert ("create_timing_cache", b"") in log and timing.read_bytes() == b"timing-after"
    shapes = [e[1] for e in log if e[0] == "add_optimization_profile"]
    assert len(shapes) == len(profiles) == 4
    assert shapes[-1]["pool_weights"] == ((1, 1, 129), (32, 4, 256), (32, 64, 256))
    assert shapes[0]["input_ids"] == ((1, 1), (32, 32), (32, 32))
    log.clear()
    build_plan(trt, tmp_path / "model.pooled.onnx", profiles, NAMES, timing)  # the next build starts from the cache
    assert ("create_timing_cache", b"timing-after") in log


def test_parser_errors_are_export_errors(tmp_path: Path) -> None:
    from longvec.runtime.errors import ExportError

    trt = fake_tensorrt("10.9.0", [], parses=False)
    with pytest.raises(ExportError, match=r"parser refused.*EmbedLayerNormalization"):
        build_plan(trt, tmp_path / "model.optimized.pooled.onnx", window_profiles([64], 4), NAMES, tmp_path / "t")


def test_pooled_parity_gate_measures_cosine_per_row() -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((100, 8)).astype(np.float32)

    def reference(ids: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
        return w @ table[ids]

    def noisy(ids: np.ndarray, mask: np.ndarray, w: np.ndarray) -> np.ndarray:
        return reference(ids, mask, w) + 0.3 * rng.standard_normal((*w.shape[:2], 8)).astype(np.float32)

    ids = rng.integers(0, 100, (3, 10))
    mask = np.ones_like(ids)
    same = pooled_parity(reference, reference, [(ids, mask)], "cpu")
    assert same.min_cosine > 0.99999 and same.max_abs_diff == 0 and same.n_texts == 12  # 3 texts x 4 rows
    assert pooled_parity(reference, noisy, [(ids, mask)], "cpu").min_cosine < 0.999
