"""Reading a local Hugging Face / sentence-transformers model directory. Never touches a model hub."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longvec.runtime.bundle.manifest import Pooling, PoolingConfig
from longvec.runtime.bundle.reader import sha256_files
from longvec.runtime.errors import ExportError

_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class SourceDir:
    path: Path
    config: dict[str, Any]
    pooling: PoolingConfig
    max_seq_length: int
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None
    model_name: str = ""  # the model's own name (model card), else the directory's name

    @property
    def name(self) -> str:
        """What config.json calls the weights: for a fine-tuned sentence-transformers model, its base model."""
        return str(self.config.get("_name_or_path") or self.path.name)

    def revision(self) -> str:
        """sha256 over the weight files: a local directory has no hub revision to cite."""
        return sha256_files(sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("pytorch_model*.bin")))


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: cannot read ({e})") from e
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


# sentence-transformers' pooling modes -> longvec's; the others (max, mean_sqrt_len_tokens, weightedmean) are refused.
_POOLING_MODES: dict[str, Pooling] = {"mean": "mean", "cls": "cls", "lasttoken": "last"}
# Before sentence-transformers 5 a Pooling config.json held one boolean per mode instead of `pooling_mode`.
_LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}


def _pooling_modes(cfg: dict[str, Any]) -> list[str]:
    if "pooling_mode" in cfg:
        mode = cfg["pooling_mode"]
        return [mode] if isinstance(mode, str) else list(mode)
    # As sentence-transformers reads a legacy config: the modes set to true, mean when none is.
    return [name for key, name in _LEGACY_POOLING_KEYS.items() if cfg.get(key)] or ["mean"]


def _pooling(path: Path) -> PoolingConfig:
    """Pooling and normalization from modules.json; a plain HF directory defaults to normalized mean."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return PoolingConfig(mode="mean", normalize=True)
    try:
        modules = json.loads(modules_file.read_text(encoding="utf-8"))
        types = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as e:
        raise ExportError(f"{modules_file}: cannot read the module list ({e!r})") from e
    unsupported = set(types) - {"Transformer", "Pooling", "Normalize"}
    if unsupported:
        raise ExportError(f"{modules_file}: modules {sorted(unsupported)} are not supported (Dense, ...)")
    if "Pooling" not in types:
        return PoolingConfig(mode="mean", normalize="Normalize" in types)
    cfg_path = path / types["Pooling"]["path"] / "config.json"
    cfg = _json(cfg_path)
    modes = _pooling_modes(cfg)
    if len(modes) != 1 or modes[0] not in _POOLING_MODES:
        raise ExportError(f"{cfg_path}: pooling {modes} is not supported (one of {sorted(_POOLING_MODES)})")
    return PoolingConfig(
        mode=_POOLING_MODES[modes[0]],
        normalize="Normalize" in types,
        include_prompt=bool(cfg.get("include_prompt", True)),
    )


def _max_seq_length(path: Path, st_config: dict[str, Any], max_positions: int) -> int:
    """What sentence-transformers truncates to: sentence_bert_config.json's max_seq_length (before version 6),
    else the tokenizer's model_max_length (where version 6 keeps it), else the encoder's positions."""
    if st_config.get("max_seq_length"):
        return int(st_config["max_seq_length"])
    tokenizer_config = path / "tokenizer_config.json"
    if tokenizer_config.is_file():
        length = _json(tokenizer_config).get("model_max_length")
        if isinstance(length, int) and 0 < length < 1 << 30:  # HF writes ~1e30 for "no limit"
            return length
    return max_positions


# A sentence-transformers model card shows how to load the model by its own id; cards written by
# sentence-transformers 3+ for an unnamed model keep this placeholder instead.
_CARD_ID = re.compile(r"""SentenceTransformer\(\s*['"]([\w.-]+/[\w.-]+|[\w.-]+)['"]""")
_CARD_PLACEHOLDER = "sentence_transformers_model_id"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def model_name(path: Path) -> str:
    """The model's own name as its sentence-transformers model card loads it (all-MiniLM-L6-v2's config.json
    names its base model instead), else the directory's name."""
    card = path / "README.md"
    if card.is_file():
        try:
            found = _CARD_ID.search(card.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            found = None
        if found and found.group(1) != _CARD_PLACEHOLDER:
            return found.group(1)
    return path.resolve().name


def read_source(path: str | Path) -> SourceDir:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a missing file must fail here, not start a download
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    path = Path(path)
    if not path.exists() and _HUB_ID.match(str(path)):
        raise ExportError(
            f"{path}: no such directory; this looks like a model hub id, but longvec export reads a local model "
            f"directory and never downloads. Get one on a machine with network access (e.g. `hf download {path} "
            "--local-dir DIR`), then run `longvec export DIR BUNDLE_DIR`"
        )
    if not path.is_dir():
        raise ExportError(f"{path}: model directory does not exist")
    missing = [n for n in ("config.json", "tokenizer.json") if not (path / n).is_file()]
    if not any((path / w).is_file() for w in _WEIGHTS) and not list(path.glob("*.safetensors")):
        missing.append(" or ".join(_WEIGHTS))
    if missing:
        raise ExportError(f"{path}: incomplete model directory, missing {', '.join(missing)}")
    config = _json(path / "config.json")
    st_config = _json(path / "sentence_bert_config.json") if (path / "sentence_bert_config.json").is_file() else {}
    st_extra = (
        _json(path / "config_sentence_transformers.json")
        if (path / "config_sentence_transformers.json").is_file()
        else {}
    )
    max_positions = int(config.get("max_position_embeddings", 512))
    prompts = {str(k): str(v or "") for k, v in (st_extra.get("prompts") or {}).items()}
    default_prompt = st_extra.get("default_prompt_name") or None
    if default_prompt is not None and default_prompt not in prompts:  # sentence-transformers refuses it too
        raise ExportError(
            f"{path / 'config_sentence_transformers.json'}: default_prompt_name {default_prompt!r} is not one of "
            f"the prompts {sorted(prompts)}"
        )
    return SourceDir(
        path=path,
        config=config,
        pooling=_pooling(path),
        max_seq_length=_max_seq_length(path, st_config, max_positions),
        prompts=prompts,  # sentence-transformers reads a prompt of null as "" (no prompt)
        default_prompt=default_prompt,
        model_name=model_name(path),
    )
