"""manifest.json: the one contract between the export stage and the runtime.

Frozen dataclasses that validate themselves; `Manifest.from_json` names the file and the field in every error,
and `to_json` is what the exporter writes, so both sides share one definition.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path, PurePosixPath
from typing import Any, Literal, get_args

from longvec.runtime.bundle.engines import Profile
from longvec.runtime.errors import ManifestError, SchemaVersionError, UnsafePath

SCHEMA_VERSION = 1
MANIFEST_NAME = "manifest.json"

Pooling = Literal["mean", "cls", "last"]
Precision = Literal["fp32", "fp16", "int8"]
Engine = Literal["onnxruntime", "tensorrt"]


@dataclass(frozen=True)
class SourceModel:
    name: str
    revision: str  # sha256 of the weights file(s) when the directory carries no git revision


@dataclass(frozen=True)
class Framing:
    """How the tokenizer's post-processor frames one sequence: prefix + content + suffix."""

    prefix_ids: tuple[int, ...]
    suffix_ids: tuple[int, ...]
    pad_id: int

    def __post_init__(self) -> None:
        for name in ("prefix_ids", "suffix_ids"):
            ids = getattr(self, name)
            if not isinstance(ids, (list, tuple)):
                raise ValueError(f"framing.{name} must be a list of token ids, got {ids!r}")
            for value in ids:
                check_token_id(f"framing.{name}", value)
            object.__setattr__(self, name, tuple(ids))
        check_token_id("framing.pad_id", self.pad_id)

    @property
    def overhead(self) -> int:
        """Positions of every encoder sequence that are not content: the prefix and the suffix."""
        return len(self.prefix_ids) + len(self.suffix_ids)


@dataclass(frozen=True)
class PoolingConfig:
    mode: Pooling
    normalize: bool
    include_prompt: bool = True

    def __post_init__(self) -> None:
        if self.mode not in get_args(Pooling):
            raise ValueError(f"pooling.mode must be one of {get_args(Pooling)}, got {self.mode!r}")
        for name in ("normalize", "include_prompt"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"pooling.{name} must be true or false, got {getattr(self, name)!r}")


@dataclass(frozen=True)
class Parity:
    """Agreement of a variant with its reference on real text, measured at export."""

    reference: str  # "torch" or the name of the variant compared against
    max_abs_diff: float  # over token states
    min_cosine: float  # over pooled sentence vectors
    mean_cosine: float
    n_texts: int


@dataclass(frozen=True)
class TensorRTBuild:
    """Where and how a TensorRT plan was built: a plan runs only on that GPU model with that TensorRT version."""

    gpu: str
    compute_capability: str
    tensorrt_version: str
    source_file: str  # the pooled ONNX graph the plan was built from
    cache_key: str
    profiles: tuple[Profile, ...]

    def __post_init__(self) -> None:
        profiles = tuple(Profile(**p) if isinstance(p, Mapping) else p for p in self.profiles)
        object.__setattr__(self, "profiles", profiles)
        check_relative(self.source_file)


@dataclass(frozen=True)
class Variant:
    name: str
    file: str
    engine: Engine
    precision: Precision
    parity: Parity
    notes: str = ""
    # the same graph with pooling inside: input `pool_weights` [batch, rows, seq], output `pooled_sums`
    # [batch, rows, hidden] (float32 accumulation); absent in bundles written before it existed
    pooled_file: str | None = None
    tensorrt: TensorRTBuild | None = None  # engine "tensorrt" only

    def __post_init__(self) -> None:
        if isinstance(self.parity, Mapping):
            object.__setattr__(self, "parity", Parity(**self.parity))
        if isinstance(self.tensorrt, Mapping):
            object.__setattr__(self, "tensorrt", TensorRTBuild(**self.tensorrt))
        check_relative(self.file)
        if self.pooled_file is not None:
            check_relative(self.pooled_file)

    @property
    def graph_files(self) -> tuple[str, ...]:
        return (self.file,) if self.pooled_file is None else (self.file, self.pooled_file)


@dataclass(frozen=True)
class Manifest:
    source: SourceModel
    architecture: str
    hidden_size: int
    max_positions: int  # the encoder's window limit, framing and prompt included
    trained_max_tokens: int  # sentence-transformers' max_seq_length: what it would truncate to
    input_names: tuple[str, ...]
    framing: Framing
    pooling: PoolingConfig
    variants: tuple[Variant, ...]
    files: Mapping[str, str]  # relative path -> sha256
    tokenizer_file: str = "tokenizer.json"
    prompts: Mapping[str, str] = field(default_factory=dict)
    default_prompt: str | None = None
    default_window: int | None = None  # None: the runtime's own default, capped at max_positions
    # What `embed_documents(mode="auto", stride=None)` uses for this model, chosen at export by the rule in
    # runtime/bundle/defaults.py; None (a bundle exported before these fields): the same rule at load time.
    default_mode: str | None = None
    default_stride_fraction: float | None = None  # stride = floor(window content x fraction); 1.0: no overlap
    schema_version: int = SCHEMA_VERSION
    # The model's own name (e.g. "sentence-transformers/all-MiniLM-L6-v2"), shown in `inspect`, logs, job outputs
    # and served as the model id. None in bundles written before it existed: readers fall back to the folder name.
    # `source.name` stays what config.json calls the weights (often the base model the encoder was tuned from).
    name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_names", tuple(self.input_names))
        object.__setattr__(self, "variants", tuple(self.variants))
        if not isinstance(self.files, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.files.items()
        ):
            raise ValueError("'files' must map relative paths to sha256 hex digests")
        for path in (self.tokenizer_file, *self.files):
            check_relative(path)
        for name in ("hidden_size", "max_positions", "trained_max_tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if not isinstance(self.prompts, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.prompts.items()
        ):
            raise ValueError(f"'prompts' must map prompt names to prompt texts (strings), got {self.prompts!r}")
        if self.default_prompt is not None and not isinstance(self.default_prompt, str):
            raise ValueError(f"default_prompt must be a prompt name or null, got {self.default_prompt!r}")
        if self.hidden_size <= 0 or self.max_positions <= len(self.framing.prefix_ids) + len(self.framing.suffix_ids):
            raise ValueError("hidden_size and max_positions must leave room for content")
        if self.default_window is not None and not 0 < self.default_window <= self.max_positions:
            raise ValueError(f"default_window {self.default_window} is not in 1..max_positions ({self.max_positions})")
        # only its shape here: which names are modes is the runtime's mode table (runtime/core/modes.py, a layer
        # above the bundle contract), checked when an Embedder is made from this manifest
        if self.default_mode is not None and (not isinstance(self.default_mode, str) or not self.default_mode.strip()):
            raise ValueError(f"default_mode must be a mode's name, got {self.default_mode!r}")
        if self.default_stride_fraction is not None and not 0 < self.default_stride_fraction <= 1:
            raise ValueError(f"default_stride_fraction {self.default_stride_fraction} is not in (0, 1]")
        if not self.variants:
            raise ValueError("'variants' is empty: the bundle has no graph to run")
        if self.default_prompt is not None and self.default_prompt not in self.prompts:
            raise ValueError(f"default_prompt {self.default_prompt!r} is not one of the prompts {sorted(self.prompts)}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name.strip()):
            raise ValueError(f"name must be a non-empty string, got {self.name!r}")

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, path: Path) -> Manifest:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(path, f"not valid JSON ({e})") from e
        except RecursionError as e:  # e.g. 100k nested arrays: no manifest nests more than a few levels
            raise ManifestError(path, "not a manifest: JSON nested too deeply") from e
        if not isinstance(raw, dict):
            raise ManifestError(path, "top level must be an object")
        version = raw.get("schema_version")
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise ManifestError(path, f"field 'schema_version' must be a positive integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise SchemaVersionError(
                path, f"schema_version {version} is newer than this longvec reads ({SCHEMA_VERSION}); upgrade"
            )
        try:
            return cls(
                source=SourceModel(**_field(raw, "source", path)),
                framing=Framing(**_field(raw, "framing", path)),
                pooling=PoolingConfig(**_field(raw, "pooling", path)),
                variants=tuple(Variant(**v) for v in _field(raw, "variants", path)),
                **{
                    f.name: raw[f.name]
                    for f in fields(cls)
                    if f.name not in ("source", "framing", "pooling", "variants") and f.name in raw
                },
            )
        except UnsafePath as e:
            raise UnsafePath(path, str(e)) from e
        except (TypeError, ValueError, AttributeError) as e:  # AttributeError: a list or str where an object goes
            raise ManifestError(path, f"invalid field: {e}") from e


def _field(raw: dict[str, Any], name: str, path: Path) -> Any:
    if name not in raw:
        raise ManifestError(path, f"missing field {name!r}")
    return raw[name]


MAX_TOKEN_ID = 2**31 - 1  # int32: what every encoder's input ids are cast to on some engine


def check_token_id(field: str, value: object) -> None:
    """A token id of the manifest: an integer in 0..MAX_TOKEN_ID (its bound by the tokenizer's vocabulary is
    checked at load, where the tokenizer is read)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKEN_ID:
        raise ValueError(f"{field} must hold token ids (integers in 0..{MAX_TOKEN_ID}), got {value!r}")


def check_relative(path: str) -> None:
    """Reject absolute paths and any '..': a manifest may only name files inside its bundle."""
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or "\\" in path or not p.parts:
        raise UnsafePath(path, "path leaves the bundle directory")
