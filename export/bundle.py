"""`longvec export`: a local model directory in, a verified bundle directory out.

The bundle is assembled in a temporary sibling directory and renamed into place only once it is complete, so a
failed export leaves nothing behind. The fp32 graph must pass its parity gate or nothing is written; another
variant that fails its gate is left out of the bundle, which is written with the variants that passed, and the
export then raises `VariantsRefused` (the CLI's exit 7) naming each refused variant, its measured figure and what
to try.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tokenizers import Tokenizer

from longvec.export import graph, optimize, parity, pooled
from longvec.export.source import SourceDir, read_source
from longvec.runtime.bundle.defaults import rule as document_defaults
from longvec.runtime.bundle.feeds import encoder_feeds
from longvec.runtime.bundle.manifest import (
    MANIFEST_NAME,
    Framing,
    Manifest,
    PoolingConfig,
    Precision,
    SourceModel,
    Variant,
)
from longvec.runtime.bundle.reader import sha256_file
from longvec.runtime.core.batching import pad_batch
from longvec.runtime.errors import ExportError, ParityError, VariantsRefused

# int8 is opt-in: on all-MiniLM-L6-v2 it passes on real prose but not on the parity text "?!" (see quantize.py)
DEFAULT_VARIANTS: tuple[str, ...] = ("optimized",)
KNOWN_VARIANTS: tuple[str, ...] = ("optimized", "int8", "fp16")
_FILES = {
    "fp32": "model.onnx",
    "optimized": "model.optimized.onnx",
    "int8": "model.int8.onnx",
    "fp16": "model.fp16.onnx",
}
_PRECISION: dict[str, Precision] = {"fp32": "fp32", "optimized": "fp32", "int8": "int8", "fp16": "fp16"}
_TRY_INSTEAD = {
    "optimized": "use the fp32 variant (--variant fp32), and report the model: the fused graph should not differ",
    "int8": "use 'optimized' (fp32) or try fp16 (--variants optimized,fp16); short texts suffer most from int8",
    "fp16": "use 'optimized' (fp32)",
}

StatesFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _framing(tok: Tokenizer, pad_id: int) -> Framing:
    """Prefix and suffix special tokens around one sequence, as the tokenizer's post-processor adds them."""
    enc = tok.encode("hello", add_special_tokens=True)
    special = enc.special_tokens_mask
    lead = next((i for i, s in enumerate(special) if not s), len(special))
    trail = next((i for i, s in enumerate(reversed(special)) if not s), 0)
    return Framing(tuple(enc.ids[:lead]), tuple(enc.ids[len(enc.ids) - trail :]), pad_id)


def _batches(tok: Tokenizer, framing: Framing, limit: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The parity texts as two padded batches of mixed lengths, framed as the runtime frames them."""
    seqs = [
        list(framing.prefix_ids)
        + e.ids[: limit - len(framing.prefix_ids) - len(framing.suffix_ids)]
        + list(framing.suffix_ids)
        for e in tok.encode_batch(list(parity.PARITY_TEXTS), add_special_tokens=False)
    ]
    return [pad_batch([np.asarray(s) for s in part], framing.pad_id) for part in (seqs[0::2], seqs[1::2])]


def _ort_states(path: Path) -> StatesFn:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        return session.run(None, encoder_feeds(names, ids, mask))[0]

    return run


def _torch_states(model: torch.nn.Module, input_names: Sequence[str]) -> StatesFn:
    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        kwargs = {name: torch.from_numpy(x) for name, x in encoder_feeds(input_names, ids, mask).items()}
        with torch.no_grad():
            return model(**kwargs).last_hidden_state.numpy()

    return run


def _text_gate(
    fp32: Path, candidate: Path, tok: Tokenizer, framing: Framing, limit: int, pooling: PoolingConfig
) -> str:
    """Real prose in full-length windows against the fp32 graph: the parity texts are short and would not show a
    quantization that only breaks on long inputs. Raises ParityError below the int8 tolerance."""
    from longvec.export import quantize

    windows = quantize.text_windows(quantize.packaged_text("validation.txt"), tok, framing, limit)
    result = parity.compare(
        _ort_states(fp32),
        _ort_states(candidate),
        quantize.padded_batches(windows, framing.pad_id),
        pooling,
        "optimized",
    )
    parity.check(result, "int8", "variant 'int8' on validation.txt windows")
    return (
        f"validation.txt windows x{result.n_texts} vs optimized: "
        f"min cosine {result.min_cosine:.4f}, mean {result.mean_cosine:.4f}"
    )


@contextlib.contextmanager
def quiet_libraries() -> Iterator[None]:
    """Silence what other libraries print during an export (transformers' progress bars and warnings,
    onnxruntime's quantization advice on the root logger, torch's tracer warnings); our own log lines stay."""
    import transformers

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY")}
    os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", TRANSFORMERS_VERBOSITY="error")
    verbosity = transformers.logging.get_verbosity()
    bars = transformers.utils.logging.is_progress_bar_enabled()
    root_level = logging.root.level
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        ort.set_default_logger_severity(2)
        logging.root.setLevel(root_level)
        transformers.logging.set_verbosity(verbosity)
        if bars:
            transformers.utils.logging.enable_progress_bar()
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def export_bundle(
    model_dir: str | Path,
    bundle_dir: str | Path,
    variants: Sequence[str] = DEFAULT_VARIANTS,
    overwrite: bool = False,
    log: Callable[[str], None] = lambda _: None,
    name: str | None = None,
    quiet: bool = False,
) -> Manifest:
    """Export `model_dir` to `bundle_dir`. `name` is the model's own name recorded in the manifest (default: the
    id its sentence-transformers model card loads it by, else the directory's name). Raises VariantsRefused,
    after writing the bundle, when a variant other than fp32 failed its parity gate and was left out. `quiet`
    silences other libraries' progress bars and warnings (the CLI's default; `--verbose` keeps them)."""
    if name is not None and not name.strip():
        raise ExportError("--name must not be empty")
    unknown = sorted(set(variants) - set(KNOWN_VARIANTS))
    if unknown:
        raise ExportError(f"unknown variant(s) {unknown}; known: {', '.join(KNOWN_VARIANTS)}")
    out = Path(bundle_dir)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out}: exists and is not empty (pass --overwrite to replace it)")
    source = read_source(model_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        with quiet_libraries() if quiet else contextlib.nullcontext():
            manifest, refused = _build(source, work, variants, log, name or source.model_name)
        (work / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
        if out.exists():
            shutil.rmtree(out)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if refused:
        kept = ", ".join(v.name for v in manifest.variants)
        raise VariantsRefused(
            f"wrote {out} with {kept}; refused " + "; ".join(f"{k}: {why}" for k, why in refused.items()),
            manifest,
            refused,
        )
    return manifest


def _build(
    source: SourceDir, work: Path, variants: Sequence[str], log: Callable[[str], None], name: str
) -> tuple[Manifest, dict[str, str]]:
    tok = Tokenizer.from_file(str(source.path / "tokenizer.json"))
    pad_id = int(tok.padding["pad_id"] if tok.padding else source.config.get("pad_token_id") or 0)
    tok.no_truncation()
    tok.no_padding()
    tok.save(str(work / "tokenizer.json"))
    framing = _framing(tok, pad_id)
    model = graph.load_encoder(source.path)
    input_names = graph.input_names_for(model)
    positions = graph.usable_positions(source.config)
    batches = _batches(tok, framing, min(positions, 512))
    log(f"exporting {name} ({type(model).__name__}, weights from {source.name}) to ONNX")
    graph.export_onnx(model, work / _FILES["fp32"], input_names)
    reference = _torch_states(model, input_names)
    results = {"fp32": parity.compare(reference, _ort_states(work / _FILES["fp32"]), batches, source.pooling, "torch")}
    notes = {"fp32": "unoptimized graph as exported"}
    base = work / _FILES["optimized"]  # the reduced-precision variants start from the fused graph
    if variants:
        fused = optimize.optimize(work / _FILES["fp32"], base, source.config)
        notes["optimized"] = "fused: " + ", ".join(f"{k} x{v}" for k, v in sorted(fused.items()))
    parity.check(results["fp32"], "fp32", "variant 'fp32'")  # nothing is worth writing without it
    refused: dict[str, str] = {}
    for variant in sorted(set(variants), key=KNOWN_VARIANTS.index):
        path = work / _FILES[variant]
        try:
            if variant != "optimized":
                from longvec.export import quantize

                notes[variant] = quantize.make_variant(variant, base, path, tok, framing, min(positions, 512))
                if variant == "int8":
                    gate = _text_gate(base, path, tok, framing, min(positions, 512), source.pooling)
                    notes[variant] += "; " + gate
            result = parity.compare(reference, _ort_states(path), batches, source.pooling, "torch")
            parity.check(result, _PRECISION[variant], f"variant {variant!r}")
        except ParityError as e:
            refused[variant] = f"{e}; {_TRY_INSTEAD[variant]}"
            log(f"refused {variant}: {refused[variant]}")
            continue
        results[variant] = result
        log(f"{variant}: {notes[variant]}")
    if "optimized" not in results:
        base.unlink(missing_ok=True)
    for variant in refused:
        (work / _FILES[variant]).unlink(missing_ok=True)
    for variant, result in results.items():
        log(f"parity {variant}: max|diff| {result.max_abs_diff:.2e}, min cosine {result.min_cosine:.6f}")
    files = ["tokenizer.json", *(_FILES[n] for n in results)]
    defaults = document_defaults(positions, min(source.max_seq_length, positions))
    log(f"defaults: mode {defaults.mode}, window {defaults.window}, stride {defaults.stride_fraction} of content")
    manifest = Manifest(
        name=name,
        source=SourceModel(name=source.name, revision=source.revision()),
        architecture=str(source.config.get("model_type", type(model).__name__)),
        hidden_size=int(source.config["hidden_size"]),
        max_positions=positions,
        trained_max_tokens=min(source.max_seq_length, positions),
        input_names=input_names,
        framing=framing,
        pooling=source.pooling,
        variants=tuple(
            Variant(
                name=n,
                file=_FILES[n],
                engine="onnxruntime",
                precision=_PRECISION[n],
                parity=p,
                notes=notes[n],
            )
            for n, p in results.items()
        ),
        files={f: sha256_file(work / f) for f in files},
        prompts=source.prompts,
        default_prompt=source.default_prompt,
        default_window=defaults.window,
        default_mode=defaults.mode,
        default_stride_fraction=defaults.stride_fraction,
    )
    # every variant gets its pooled twin (export/pooled.py): the GPU paths run it, old bundles gain it later
    with_twins = pooled.add_twins(work, manifest, manifest.variants, log)
    twins = {t.pooled_file: sha256_file(work / t.pooled_file) for t in with_twins if t.pooled_file}
    return replace(manifest, variants=with_twins, files={**manifest.files, **twins}), refused
