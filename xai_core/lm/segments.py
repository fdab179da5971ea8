"""The features of a prompt: tokens, words, sentences or spans, with skipped tokens left out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from xai_core.attribution import segments as image_segments

ENDS = (".", "!", "?", "\n")


@dataclass(frozen=True)
class Features:
    """``ids``: the feature of each prompt position, ``0..k-1`` in reading order, ``-1`` where
    not attributed; ``labels``: one per feature (its text, or without a tokenizer its token id,
    or its tokens' ids as text)."""

    ids: np.ndarray
    k: int
    labels: list[Any]

    def gather(self, a: np.ndarray, reduce: str) -> np.ndarray:
        """Per-position scores ``(..., P)`` to per-feature scores ``(..., k)``: sums (``"sum"``)
        or roots of sums of squares (``"l2"``)."""
        out = np.zeros((*a.shape[:-1], self.k), np.float64)
        on = self.ids >= 0
        values = a[..., on] if reduce == "sum" else np.square(a[..., on])
        np.add.at(out, (..., self.ids[on]), values.astype(np.float64))
        return out if reduce == "sum" else np.sqrt(out)


def token_strings(ids: Sequence[int], tokenizer: Any) -> list[str]:
    """The tokenizer's strings for ``ids`` (``convert_ids_to_tokens``), else the ids as text."""
    if tokenizer is None:
        return [str(i) for i in ids]
    if not hasattr(tokenizer, "convert_ids_to_tokens"):
        raise TypeError(f"xc.lm: tokenizer= needs convert_ids_to_tokens (a HuggingFace tokenizer); got "
                        f"{type(tokenizer).__name__}.")
    return [str(t) for t in tokenizer.convert_ids_to_tokens(list(ids))]


def features(prompt: list[int], segments: Any, skip: Sequence[int], tokenizer: Any) -> Features:
    """The features of one prompt (see :func:`xai_core.lm.attribute`'s ``segments`` and ``skip``)."""
    n = len(prompt)
    strings = token_strings(prompt, tokenizer)
    if segments is None or (isinstance(segments, str) and segments == "tokens"):
        ids = np.arange(n)
    elif isinstance(segments, str):
        if segments not in ("words", "sentences"):
            raise ValueError(f"xc.lm: segments={segments!r} is not one of 'tokens', 'words', 'sentences', a list of "
                             "(start, stop) spans or one int per prompt token.")
        if tokenizer is None:
            raise ValueError(f"xc.lm: segments={segments!r} needs tokenizer= (to read the token strings).")
        ids = image_segments.words(strings)[:, 0] if segments == "words" else _sentences(strings)
    else:
        spans = isinstance(segments, (list, tuple)) and len(segments) > 0 and all(
            isinstance(s, (list, tuple)) and len(s) == 2 for s in segments)
        given = np.asarray(segments)
        if spans:
            ids = image_segments.spans(n, [(int(a), int(b)) for a, b in segments])[:, 0]
        else:
            if given.ndim != 1 or len(given) != n or not np.issubdtype(given.dtype, np.integer):
                raise ValueError(f"xc.lm: segments must give one int per prompt token ({n}), got shape "
                                 f"{given.shape}; or pass (start, stop) spans, 'words' or 'sentences'.")
            used = np.unique(given[given >= 0])
            if given.min() < -1 or not np.array_equal(used, np.arange(used.size)):
                raise ValueError(f"xc.lm: segment ids must be 0..K-1 (and -1 for tokens left out); got {used.tolist()}.")
            ids = given
    ids = np.where(np.isin(np.asarray(prompt), np.asarray(list(skip), np.int64)), -1, ids).astype(np.int32)
    used = np.unique(ids[ids >= 0])
    if used.size == 0:
        raise ValueError("xc.lm: no prompt token is attributed (every one is skipped); skip fewer tokens.")
    ids = np.where(ids >= 0, np.searchsorted(used, ids), -1).astype(np.int32)  # renumber after skips
    labels: list[Any] = []
    for f in range(used.size):
        where = np.flatnonzero(ids == f)
        if tokenizer is None:  # an id, or the ids of a segment's tokens
            labels.append(prompt[where[0]] if len(where) == 1 else " ".join(strings[p] for p in where))
        else:
            labels.append("".join(strings[p] for p in where))
    return Features(ids, int(used.size), labels)


def _sentences(tokens: list[str]) -> np.ndarray:
    """One feature per sentence: a sentence ends after a token that ends with ``. ! ?`` or a newline."""
    ids, current = [], 0
    for t in tokens:
        ids.append(current)
        current += t.rstrip(" Ġ▁").endswith(ENDS) or t.endswith("\n") or t in ("Ċ", "<0x0A>")
    return np.asarray(ids, np.int32)
