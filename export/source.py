"""Reading a local Hugging Face / sentence-transformers model directory. Never touches a model hub."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longvec.runtime.errors import ExportError
from longvec.runtime.manifest import PoolingConfig

_WEIGHTS = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class SourceDir:
    path: Path
    config: dict[str, Any]
    pooling: PoolingConfig
    max_seq_length: int
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt: str | None = None

    @property
    def name(self) -> str:
        return str(self.config.get("_name_or_path") or self.path.name)

    def revision(self) -> str:
        """sha256 over the weight files: a local directory has no hub revision to cite."""
        digest = hashlib.sha256()
        for weights in sorted(self.path.glob("*.safetensors")) or sorted(self.path.glob("pytorch_model*.bin")):
            with weights.open("rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
        return digest.hexdigest()


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ExportError(f"{path}: cannot read ({e})") from e
    if not isinstance(data, dict):
        raise ExportError(f"{path}: expected a JSON object")
    return data


def _pooling(path: Path) -> PoolingConfig:
    """Pooling and normalization from modules.json; a plain HF directory defaults to normalized mean."""
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        return PoolingConfig(mode="mean", normalize=True)
    modules = json.loads(modules_file.read_text(encoding="utf-8"))
    types = {m["type"].rsplit(".", 1)[-1]: m for m in modules}
    unsupported = set(types) - {"Transformer", "Pooling", "Normalize"}
    if unsupported:
        raise ExportError(f"{modules_file}: modules {sorted(unsupported)} are not supported (Dense, ...)")
    mode, include_prompt = "mean", True
    if "Pooling" in types:
        cfg = _json(path / types["Pooling"]["path"] / "config.json")
        chosen = [
            name
            for key, name in (
                ("pooling_mode_mean_tokens", "mean"),
                ("pooling_mode_cls_token", "cls"),
                ("pooling_mode_lasttoken", "last"),
            )
            if cfg.get(key)
        ]
        others = [k for k in ("pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens") if cfg.get(k)]
        if len(chosen) != 1 or others:
            raise ExportError(f"{path / types['Pooling']['path']}/config.json: pooling {cfg} is not supported")
        mode, include_prompt = chosen[0], bool(cfg.get("include_prompt", True))
    return PoolingConfig(mode=mode, normalize="Normalize" in types, include_prompt=include_prompt)  # type: ignore[arg-type]


def read_source(path: str | Path) -> SourceDir:
    os.environ["HF_HUB_OFFLINE"] = "1"  # a missing file must fail here, not start a download
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    path = Path(path)
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
    return SourceDir(
        path=path,
        config=config,
        pooling=_pooling(path),
        max_seq_length=int(st_config.get("max_seq_length") or max_positions),
        prompts=dict(st_extra.get("prompts") or {}),
        default_prompt=st_extra.get("default_prompt_name"),
    )
