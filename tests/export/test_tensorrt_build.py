"""`longvec build-engine`'s TensorRT calls against a recording fake of the `tensorrt` module (NOT a GPU test: it
checks which builder calls are made for TensorRT 10 and 11, not what TensorRT builds), and its parity gate on CPU."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from longvec.export.tensorrt import build_plan, network_flags, pooled_parity
from longvec.runtime.bundle.engines import window_profiles

NAMES = ("input_ids", "attention_mask", "pool_weights")


@pytest.mark.parametrize(("version", "flags"), [("10.16.0.72", 1 << 1), ("11.4.0.106", 1 << 0)])
def test_build_plan_is_strongly_typed_on_both_majors(
    version: str, flags: int, tmp_path: Path, fake_gpu: ModuleType
) -> None:
    """STRONGLY_TYPED is 1 in TensorRT 10 and 0 in 11 (read from the module); no precision builder flag on either
    (BuilderFlag.FP16 does not exist in 11: touching it would raise)."""
    log: list[tuple[Any, ...]] = []
    trt = fake_gpu.fake_builder(version, log)
    assert network_flags(trt) == flags
    profiles = window_profiles([256], max_batch=32)
    timing = tmp_path / "key.timing"
    assert build_plan(trt, tmp_path / "model.pooled.onnx", profiles, NAMES, timing) == b"plan-bytes"
    assert log[0] == ("create_network", flags)
    assert log[1][:2] == ("parse_from_file", "model.pooled.onnx")
    assert not [e for e in log if e[0] == "set_flag"]
    assert ("create_timing_cache", b"") in log and timing.read_bytes() == b"timing-after"
    shapes = [e[1] for e in log if e[0] == "add_optimization_profile"]
    assert len(shapes) == len(profiles) == 4
    assert shapes[-1]["pool_weights"] == ((1, 1, 129), (32, 4, 256), (32, 256, 256))
    assert shapes[0]["input_ids"] == ((1, 1), (32, 32), (32, 32))
    log.clear()
    build_plan(trt, tmp_path / "model.pooled.onnx", profiles, NAMES, timing)  # the next build starts from the cache
    assert ("create_timing_cache", b"timing-after") in log


def test_the_fakes_know_which_flags_each_major_has(fake_gpu: ModuleType) -> None:
    ten, eleven = fake_gpu.fake_builder("10.16.0", []), fake_gpu.fake_builder("11.4.0", [])
    assert int(ten.BuilderFlag.FP16) == 0 and not hasattr(eleven.BuilderFlag, "FP16")
    assert int(ten.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 1
    assert int(eleven.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0
    with pytest.raises(RuntimeError, match="min <= opt <= max"):
        eleven.Builder(None).create_optimization_profile().set_shape("input_ids", (1, 8), (4, 8), (2, 8))


def test_parser_errors_are_export_errors(tmp_path: Path, fake_gpu: ModuleType) -> None:
    from longvec.runtime.errors import ExportError

    trt = fake_gpu.fake_builder("10.16.0", [], parses=False)
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


@pytest.mark.parametrize("version", ["10.16.0.72", "11.4.0.106"])
def test_build_engine_adds_a_gated_fp16_variant_and_rebuilds_only_for_other_options(
    tiny_bundle: Path, tmp_path: Path, fake_gpu: ModuleType, version: str
) -> None:
    """The whole `build-engine` flow with a fake TensorRT whose "plan" is run by CPU onnxruntime (so the gate
    compares the pooled graph with itself): on TensorRT 10 and 11 alike the parser gets the fp16 graph (the only
    fp16 path), the bundle gains a verified variant naming GPU, version and profiles, the same options reuse the
    plan and other windows or another max batch build a new one."""
    import shutil

    from longvec.export.tensorrt import build_engine
    from longvec.runtime import Embedder
    from longvec.runtime.backends import BackendOptions, GraphFiles
    from longvec.runtime.backends.onnx import open
    from longvec.runtime.bundle.reader import Bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)

    def open_plan(path: Path, hidden: int) -> Any:
        assert path.read_bytes() == b"plan-bytes"
        files = GraphFiles(None, bundle / "model.pooled.onnx", ("input_ids", "attention_mask", "token_type_ids"))
        return open(files, hidden, BackendOptions(threads=1, pooled=True))

    log: list[tuple[Any, ...]] = []
    gpu = ("NVIDIA H100 80GB HBM3", "9.0")

    def build(windows: list[int], max_batch: int) -> Any:
        trt = fake_gpu.fake_builder(version, log)
        return build_engine(bundle, gpu, open_plan, windows, max_batch, cache_dir=tmp_path / "cache", trt=trt)

    m = build([32, 64], 8)
    [parsed] = [e for e in log if e[0] == "parse_from_file"]
    assert "fp16" in parsed[2]  # a strongly typed fp16 graph on both majors
    assert not [e for e in log if e[0] == "set_flag"]
    variant = next(v for v in m.variants if v.engine == "tensorrt")
    assert variant.name.startswith(f"tensorrt-nvidia-h100-80gb-hbm3-sm90-trt{version}")
    assert variant.file.startswith("engines/") and variant.precision == "fp16"
    assert variant.parity.min_cosine > 0.9999 and variant.parity.reference == "cpu fp32 pooled graph"
    assert variant.tensorrt is not None and variant.tensorrt.gpu == gpu[0]
    assert variant.tensorrt.source_file == "model.pooled.onnx"
    assert [p.max_seq for p in variant.tensorrt.profiles] == [32, 64]
    reread = Bundle.open(bundle)  # checksums of every file, the plan included
    assert reread.manifest.variant(variant.name) == variant and variant.name in reread.variant_names()
    assert (tmp_path / "cache" / f"{variant.tensorrt.cache_key}.timing").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no work directory left
    with Embedder.load(bundle, threads=1) as emb:  # the onnxruntime variants are untouched
        assert emb.embed(["still loads"]).shape == (1, emb.dim)

    def builds() -> int:
        return sum(e[0] == "build_serialized_network" for e in log)

    assert builds() == 1
    build([32, 64], 8)
    assert builds() == 1  # same GPU, version, graph and profiles: reused
    other = build([32], 8)
    assert builds() == 2  # other windows: a new plan replaces the old one
    replaced = next(v for v in other.variants if v.engine == "tensorrt")
    assert replaced.name == variant.name and replaced.file != variant.file
    assert [p.max_seq for p in replaced.tensorrt.profiles] == [32]  # type: ignore[union-attr]
    assert not (bundle / variant.file).exists() and variant.file not in other.files
    build([32], 16)
    assert builds() == 3  # another max batch: another plan
    Bundle.open(bundle)  # still verifies


def test_build_engine_refuses_a_max_batch_below_the_parity_batches_before_building(
    tiny_bundle: Path, tmp_path: Path, fake_gpu: ModuleType
) -> None:
    from longvec.export.tensorrt import build_engine
    from longvec.runtime.errors import InputError

    log: list[tuple[Any, ...]] = []
    with pytest.raises(InputError, match="max batch 5: the parity gate runs batches of 6"):
        build_engine(
            tiny_bundle, ("gpu", "9.0"), lambda p, h: None, None, 5, tmp_path, trt=fake_gpu.fake_builder("11.4", log)
        )
    assert log == []  # nothing was parsed or built


def test_build_engine_install_hint_names_tensorrt_cu13(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    from longvec.export.tensorrt import import_tensorrt
    from longvec.runtime.errors import BackendUnavailable

    real = builtins.__import__

    def no_tensorrt(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "tensorrt":
            raise ImportError("No module named 'tensorrt'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorrt)
    with pytest.raises(BackendUnavailable, match=r"pypi\.nvidia\.com tensorrt-cu13 cuda-python"):
        import_tensorrt()
