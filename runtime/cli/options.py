"""The argument groups subcommands share, built from the library's own names and defaults, so a default changed
in the library is the CLI's default too and a new variant or device needs no CLI edit.

- loading (every command that loads a bundle): the bundle, --variant (any name the bundle holds, TensorRT plans
  included: checked against the bundle when it opens, whose error lists its variants), --device, --threads,
  --window (a load parameter: serve takes it without the document options);
- documents (search, embed): --chunking, --chunk-tokens, --mode, --stride where the command passes it, prompts.

`env=True` (serve) also reads each option from a LONGVEC_* environment variable; a flag on the command line wins.
"""

from __future__ import annotations

import argparse
import inspect
import os
from pathlib import Path
from typing import Any

from longvec.runtime.backends.options import DEVICES
from longvec.runtime.core.chunking import CHUNKINGS as LIBRARY_CHUNKINGS
from longvec.runtime.embedder import DEFAULT_CHUNK_TOKENS, DEFAULT_CHUNKING, DEFAULT_MODE, MODES, Embedder

# Caller spans are library-only: a command line has no way to give them.
CHUNKINGS: tuple[str, ...] = tuple(c for c in LIBRARY_CHUNKINGS if c != "spans")
# Embedder.load's own defaults (variant, device, threads, window): read from its signature, not restated.
LOAD_DEFAULTS: dict[str, Any] = {
    name: p.default for name, p in inspect.signature(Embedder.load).parameters.items() if name != "cls"
}
ENV_PREFIX = "LONGVEC_"


def env_name(flag: str) -> str:
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add(p: argparse.ArgumentParser, flag: str, help: str, env: bool | str = False, **kw: Any) -> None:
    """One option; with env (True: LONGVEC_<FLAG>, or the variable's name), its default comes from that variable
    when set (a bad value is a usage error, as a string default goes through `type` like a typed flag) and the
    help names the variable."""
    default = kw.pop("default", None)
    shown = kw.pop("shown", default)
    if env:
        variable = env if isinstance(env, str) else env_name(flag)
        value = os.environ.get(variable)
        help = f"{help} (env {variable}; default {shown})"
        default = value if value is not None else default
    else:
        help = f"{help} (default: {shown})"
    p.add_argument(flag, default=default, help=help, **kw)


def add_bundle_arg(p: argparse.ArgumentParser, env: bool = False) -> None:
    """The bundle, positional; with env, LONGVEC_BUNDLE may stand for it."""
    bundle = os.environ.get(env_name("bundle")) if env else None
    p.add_argument(
        "bundle_dir",
        type=Path,
        nargs="?" if bundle else None,
        default=bundle,
        help="a bundle written by `longvec export`" + (f" (env {env_name('bundle')})" if env else ""),
    )


def add_load_args(p: argparse.ArgumentParser, env: bool = False, window: bool = True) -> None:
    """What `Embedder.load` takes from a command line (after the bundle)."""
    add(
        p,
        "--variant",
        "graph variant: any the bundle holds, e.g. fp32, optimized, int8, fp16 or a TensorRT plan from "
        "`longvec build-engine` (`longvec inspect` lists them)",
        env,
        default=LOAD_DEFAULTS["variant"],
    )
    add(
        p,
        "--device",
        "cuda: onnxruntime-gpu (or a TensorRT plan), GPU batch sizes; auto: CUDA when it really runs, else CPU, "
        "and says so; cuda without a GPU is an error, never a CPU run",
        env,
        default=LOAD_DEFAULTS["device"],
        choices=DEVICES,
    )
    add(p, "--threads", "encoder threads", env, type=int, default=LOAD_DEFAULTS["threads"], shown="all cores")
    if window:
        add(
            p,
            "--window",
            "encoder window in positions",
            env,
            type=int,
            default=LOAD_DEFAULTS["window"],
            shown="the bundle's",
        )


def add_prompt_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--prompt-name",
        default=None,
        help="a prompt of the bundle by name, e.g. query (see `longvec inspect`); default: the bundle's default "
        "prompt, if it has one",
    )
    p.add_argument(
        "--prompt",
        default=None,
        help="literal text put before every text, e.g. 'query: '; --prompt '' turns the bundle's default prompt "
        "off (default: none)",
    )


def add_document_args(p: argparse.ArgumentParser, stride: bool = True) -> None:
    """How documents are cut and embedded (`Embedder.embed_documents`' options)."""
    add(p, "--chunking", "how to cut documents into chunks", choices=CHUNKINGS, default=DEFAULT_CHUNKING)
    add(p, "--chunk-tokens", "at most this many tokens per chunk", type=int, default=DEFAULT_CHUNK_TOKENS)
    add(
        p,
        "--mode",
        "how chunks are embedded; auto: the bundle's default mode (`longvec inspect`)",
        choices=MODES,
        default=DEFAULT_MODE,
    )
    if stride:
        add(
            p,
            "--stride",
            "tokens between window starts",
            type=int,
            default=None,
            shown="the bundle's rule for the mode",
        )
    add_prompt_args(p)


def load_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """`Embedder.load`'s keyword arguments from the loading group."""
    return {"variant": args.variant, "device": args.device, "threads": args.threads, "window": args.window}
