"""Prompts ("query: ", "Represent this sentence: ", ...) resolved and tokenized as sentence-transformers does.

sentence-transformers picks the prompt text in this order: a literal `prompt`, else the bundle's prompt named
`prompt_name` (an unknown name is an error), else the model's `default_prompt_name`, else none; an empty prompt
means none, so `prompt=""` turns a default prompt off. The text is put in front of every text before
tokenizing; longvec then repeats its tokens in every window of a long text.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from longvec.runtime.core.text import TextTokenizer, Tokens
from longvec.runtime.errors import InputError


def resolve_prompt(
    prompts: Mapping[str, str], default_name: str | None, prompt: str | None, prompt_name: str | None
) -> str | None:
    """The prompt text that applies to a call, or None.

    Before `prompt_name` existed, `prompt` took a name or literal text; a `prompt` equal to one of the bundle's
    prompt names still means that prompt (with a DeprecationWarning), any other string is literal text."""
    if prompt is not None and prompt_name is not None:
        raise InputError("give prompt (literal text) or prompt_name (a prompt of the bundle), not both")
    if prompt_name is not None:
        if prompt_name not in prompts:
            known = ", ".join(repr(k) for k in sorted(prompts)) or "none"
            raise InputError(f"unknown prompt_name {prompt_name!r}; this bundle's prompts: {known}")
        return prompts[prompt_name] or None
    if prompt is not None:
        if prompt in prompts:
            warnings.warn(
                f"prompt={prompt!r} names one of the bundle's prompts; pass prompt_name={prompt!r} instead "
                "(prompt= is literal text)",
                DeprecationWarning,
                stacklevel=3,
            )
            return prompts[prompt] or None
        return prompt or None
    if default_name is not None:
        return prompts.get(default_name) or None
    return None


def prompt_ids(tokenizer: TextTokenizer, text: str | None) -> tuple[int, ...]:
    """The prompt's tokens as they come out in front of a text. sentence-transformers tokenizes prompt + text as
    one string, and in byte-level BPE a prompt's trailing space belongs to the next word ("query: " + "hi" ->
    "query", ":", "Ġhi"), so that space is not a token of the prompt."""
    return () if not text else tokenizer.ids(text.rstrip())


def prompted_tokens(
    tokenizer: TextTokenizer, texts: Sequence[str], text: str | None, ids_of_prompt: tuple[int, ...] | None = None
) -> list[Tokens]:
    """Content tokens of each text as tokenized right after the prompt (offsets still index the text).
    `ids_of_prompt`: the prompt's `prompt_ids` where the caller has them (one tokenizer call fewer per call)."""
    if not text:
        return tokenizer.encode(texts)
    ids = np.asarray(prompt_ids(tokenizer, text) if ids_of_prompt is None else ids_of_prompt, dtype=np.int64)
    k = len(ids)
    out = []
    for original, joint in zip(texts, tokenizer.encode([text + t for t in texts])):
        if len(joint) > k and np.array_equal(joint.ids[:k], ids):
            out.append(Tokens(joint.ids[k:], np.maximum(joint.offsets[k:] - len(text), 0)))
        else:  # the text's first characters merged into the prompt's last token: tokenize the text alone
            out.extend(tokenizer.encode([original]))
    return out
