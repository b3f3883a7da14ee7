"""mode="auto" and stride=None: the bundle's recorded defaults, else the rule from the trained length; the spin
option reaching onnxruntime."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from longvec.runtime import Embedder, ManifestError
from longvec.runtime.backends.onnx import session_options
from longvec.runtime.bundle import defaults
from longvec.runtime.bundle.manifest import Manifest

TEXT = " ".join(f"Sentence {i} tells of lighthouse keeper number {i} and the lamp." for i in range(60))


def test_rule_by_trained_length() -> None:
    short = defaults.rule(max_positions=512, trained_max_tokens=256)
    assert (short.mode, short.window, short.stride_fraction) == (
        defaults.SHORT_CONTEXT_MODE,
        256,
        defaults.SHORT_CONTEXT_STRIDE,
    )
    long = defaults.rule(max_positions=8192, trained_max_tokens=8192)
    assert (long.mode, long.window, long.stride_fraction) == ("late", 8192, 0.5)
    assert defaults.rule(512, 1023).mode == defaults.SHORT_CONTEXT_MODE  # the threshold is LONG_CONTEXT
    assert defaults.rule(4096, 2048).window == 2048


@pytest.mark.parametrize(("fraction", "content", "stride"), [(0.5, 254, 127), (0.75, 254, 190), (1.0, 254, 254)])
def test_stride_of_fraction(fraction: float, content: int, stride: int) -> None:
    assert defaults.Defaults("late", 256, fraction, "rule").stride(content) == stride


def test_recorded_defaults_override_the_rule(make_fake: Callable[..., Embedder]) -> None:
    fake = make_fake(window=64)
    assert fake.defaults.source == "rule"
    m = dataclasses.replace(fake.manifest, default_mode="naive", default_window=48, default_stride_fraction=1.0)
    emb = Embedder(fake.backend, fake.tokenizer, m)
    d = defaults.resolve(m)
    assert (d.mode, d.window, d.stride_fraction, d.source) == ("naive", 48, 1.0, "bundle")
    assert emb.window == 48 and emb.plan().stride == emb.plan().content // 2  # plan(): half-overlapping
    [res] = emb.embed_documents([TEXT], chunk_tokens=16, mode="window_mean")  # window_mean: to count windows
    assert res.n_windows == emb.plan().n_windows(res.n_tokens)  # an explicit mode: half-overlapping windows
    [auto] = emb.embed_documents([TEXT], chunk_tokens=16)
    assert auto.mode == "naive"
    [late] = emb.embed_documents([TEXT], chunk_tokens=16, mode="late", stride=5)  # the caller overrides
    assert late.mode == "late" and late.n_windows == emb.plan(stride=5).n_windows(late.n_tokens)
    m2 = dataclasses.replace(m, default_mode="late")
    [late_auto] = Embedder(fake.backend, fake.tokenizer, m2).embed_documents([TEXT], chunk_tokens=16)
    assert late_auto.n_windows == emb.plan(stride=emb.plan().content).n_windows(late_auto.n_tokens)  # no overlap


def test_auto_is_the_rule_for_an_old_bundle(make_fake: Callable[..., Embedder]) -> None:
    fake = make_fake(window=64)  # a manifest without the new fields, trained on 64 tokens
    [auto] = fake.embed_documents([TEXT], chunk_tokens=16)
    stride = int(fake.plan().content * defaults.SHORT_CONTEXT_STRIDE)
    [explicit] = fake.embed_documents([TEXT], chunk_tokens=16, mode=defaults.SHORT_CONTEXT_MODE, stride=stride)
    assert auto.mode == defaults.SHORT_CONTEXT_MODE and auto.n_windows == explicit.n_windows
    np.testing.assert_array_equal(auto.chunk_vectors, explicit.chunk_vectors)
    np.testing.assert_array_equal(auto.vector, explicit.vector)


def test_manifest_fields_validate_and_old_manifests_load(tmp_path: Path, make_fake: Callable[..., Embedder]) -> None:
    m = make_fake().manifest
    raw = json.loads(m.to_json())
    for key in ("default_mode", "default_stride_fraction"):
        raw.pop(key)
    assert Manifest.from_json(json.dumps(raw), tmp_path).default_mode is None  # a bundle from before the fields
    for bad in ({"default_mode": ""}, {"default_mode": 5}, {"default_stride_fraction": 0.0}):
        with pytest.raises(ManifestError):
            Manifest.from_json(json.dumps(raw | bad), tmp_path)
    # which names are modes is the mode table's (runtime/core/modes.py): checked when an Embedder is made
    fake = make_fake()
    for name in ("auto", "mean"):
        named = Manifest.from_json(json.dumps(raw | {"default_mode": name}), tmp_path)
        with pytest.raises(ManifestError, match="default_mode"):
            Embedder(fake.backend, fake.tokenizer, named)
    for key, value in (("default_mode", "blend"), ("default_stride_fraction", 0.75)):
        assert getattr(Manifest.from_json(json.dumps(raw | {key: value}), tmp_path), key) == value


def test_embed_long_and_short_texts_together(make_fake: Callable[..., Embedder]) -> None:
    emb = make_fake(window=64)
    both = emb.embed(["short one", TEXT])
    np.testing.assert_array_equal(both[0], emb.embed(["short one"])[0])
    np.testing.assert_allclose(both[1], emb.embed([TEXT])[0], atol=1e-6)


@pytest.mark.parametrize("spin", [True, False])
def test_spin_reaches_the_session_options(spin: bool) -> None:
    opts = session_options(2, spin)
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert opts.get_session_config_entry(key) == ("1" if spin else "0")


def test_inspect_shows_the_defaults(bundle_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from longvec.runtime.cli.main import main

    assert main(["inspect", str(bundle_dir)]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("defaults"))
    d = defaults.resolve(Manifest.from_json((bundle_dir / "manifest.json").read_text(), bundle_dir))
    assert f"mode {d.mode}, window {d.window}, stride {d.stride_fraction:g} x content" in line
