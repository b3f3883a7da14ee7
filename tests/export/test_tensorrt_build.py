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
    assert shapes[-1]["pool_weights"] == ((1, 1, 129), (32, 4, 256), (32, 256, 256))
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


def test_build_engine_adds_a_gated_variant_and_reuses_it(tiny_bundle: Path, tmp_path: Path) -> None:
    """The whole `build-engine` flow with a fake TensorRT whose "plan" is run by CPU onnxruntime (so the gate
    compares the pooled graph with itself): the bundle gains a verified variant naming GPU, version and profiles."""
    import shutil

    from longvec.export.tensorrt import build_engine
    from longvec.runtime import Embedder
    from longvec.runtime.backends import BackendOptions, GraphFiles
    from longvec.runtime.backends.onnx import open_onnxruntime
    from longvec.runtime.bundle.reader import Bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    opened: list[Path] = []

    def open_plan(path: Path, hidden: int) -> Any:
        opened.append(path)
        assert path.read_bytes() == b"plan-bytes"
        files = GraphFiles(None, bundle / "model.pooled.onnx", ("input_ids", "attention_mask", "token_type_ids"))
        return open_onnxruntime(files, hidden, BackendOptions(threads=1, pooled=True))

    log: list[tuple[Any, ...]] = []
    gpu = ("NVIDIA H100 80GB HBM3", "9.0")
    m = build_engine(
        bundle, gpu, open_plan, [32, 64], max_batch=8, cache_dir=tmp_path / "cache", trt=fake_tensorrt("10.9.0", log)
    )
    variant = next(v for v in m.variants if v.engine == "tensorrt")
    assert variant.name.startswith("tensorrt-nvidia-h100-80gb-hbm3-sm90-trt10.9.0")
    assert variant.file.startswith("engines/") and variant.precision == "fp16"
    assert variant.parity.min_cosine > 0.9999 and variant.parity.reference == "cpu fp32 pooled graph"
    assert (
        variant.tensorrt is not None
        and variant.tensorrt.gpu == gpu[0]
        and variant.tensorrt.source_file == "model.pooled.onnx"
    )
    assert [p.max_seq for p in variant.tensorrt.profiles] == [32, 64]
    reread = Bundle.open(bundle)  # checksums of every file, the plan included
    assert reread.manifest.variant(variant.name) == variant
    assert (tmp_path / "cache" / f"{variant.tensorrt.cache_key}.timing").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work directory left
    with Embedder.load(bundle, threads=1) as emb:  # the onnxruntime variants are untouched
        assert emb.embed(["still loads"]).shape == (1, emb.dim)
    builds = sum(e[0] == "build_serialized_network" for e in log)
    build_engine(
        bundle, gpu, open_plan, [32, 64], max_batch=8, cache_dir=tmp_path / "cache", trt=fake_tensorrt("10.9.0", log)
    )
    assert sum(e[0] == "build_serialized_network" for e in log) == builds  # same GPU, version, graph: reused
