"""Feature masks for the model-agnostic methods: grids, superpixels and word groups.

Every function returns an ``int32`` array of feature ids ``0..K-1`` that broadcasts to the
input (Captum's ``feature_mask`` convention): images get a size-1 channel axis, so a feature
holds all channels of its pixels; token sequences get a size-1 width axis, so a feature holds a
token's whole embedding. Superpixels come from scikit-image (``pip install 'xai-core[segments]'``).

>>> import xai_core as xc
>>> xc.segments.grid((4, 4, 3), cell=2)[..., 0]
array([[0, 0, 1, 1],
       [0, 0, 1, 1],
       [2, 2, 3, 3],
       [2, 2, 3, 3]], dtype=int32)
>>> xc.segments.words(["[CLS]", "un", "##believ", "##able", "film", "[SEP]"])[:, 0]
array([0, 1, 1, 1, 2, 3], dtype=int32)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["felzenszwalb", "grid", "quickshift", "slic", "spans", "words"]


def grid(shape: Sequence[int], cell: int | Sequence[int], channel_axis: int | None = -1) -> np.ndarray:
    """A grid of ``cell``-sized boxes over every axis of ``shape`` but ``channel_axis`` (``None``:
    all axes); edge cells are smaller where ``cell`` does not divide the size. Ids run row-major."""
    shape = tuple(int(s) for s in shape)
    channel = None if channel_axis is None else channel_axis % len(shape)
    space = [axis for axis in range(len(shape)) if axis != channel]
    cells = (cell,) * len(space) if isinstance(cell, (int, np.integer)) else tuple(cell)
    if len(cells) != len(space) or not all(isinstance(c, (int, np.integer)) and c >= 1 for c in cells):
        raise ValueError(f"grid: cell must be a positive int or one per spatial axis ({len(space)} for shape "
                         f"{shape} with channel_axis={channel_axis}), got {cell!r}.")
    index = [np.arange(shape[axis]) // c for axis, c in zip(space, cells)]
    counts = [int(i[-1]) + 1 for i in index]
    ids = np.ravel_multi_index(np.meshgrid(*index, indexing="ij"), counts).astype(np.int32)
    return ids if channel is None else np.expand_dims(ids, channel)


def _skimage(name: str) -> Any:
    try:
        from skimage import segmentation
    except ImportError as e:
        raise ImportError(f"segments.{name} uses scikit-image: pip install 'xai-core[segments]' (or scikit-image) "
                          "(or use segments.grid, which needs nothing).") from e
    return getattr(segmentation, name)


def _image(image: Any, channel_axis: int | None) -> tuple[np.ndarray, int | None]:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim not in (2, 3):
        raise ValueError(f"superpixels need one HxW or HxWxC image (channel_axis), got shape {image.shape}.")
    channel = None if channel_axis is None or image.ndim == 2 else channel_axis % image.ndim
    return (image if channel is None else np.moveaxis(image, channel, -1)), channel


def _ids(labels: np.ndarray, channel: int | None) -> np.ndarray:
    ids = np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)
    return ids if channel is None else np.expand_dims(ids, channel)


def slic(image: Any, n_segments: int = 100, compactness: float = 10.0, channel_axis: int | None = -1,
         **options: Any) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012) of one image, by ``skimage.segmentation.slic``."""
    image, channel = _image(image, channel_axis)
    labels = _skimage("slic")(image, n_segments=n_segments, compactness=compactness,
                              channel_axis=None if channel is None else -1, **options)
    return _ids(labels, channel)


def quickshift(image: Any, kernel_size: float = 4, max_dist: float = 200, ratio: float = 0.2,
               channel_axis: int | None = -1, **options: Any) -> np.ndarray:
    """Quickshift superpixels with lime_image's defaults, by ``skimage.segmentation.quickshift``
    (an RGB image: three channels)."""
    image, channel = _image(image, channel_axis)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"quickshift needs an RGB image (3 channels), got shape {image.shape}; try slic or felzenszwalb.")
    labels = _skimage("quickshift")(image, kernel_size=kernel_size, max_dist=max_dist, ratio=ratio, **options)
    return _ids(labels, channel)


def felzenszwalb(image: Any, scale: float = 100, sigma: float = 0.5, min_size: int = 50,
                 channel_axis: int | None = -1, **options: Any) -> np.ndarray:
    """Felzenszwalb-Huttenlocher graph segments, by ``skimage.segmentation.felzenszwalb``."""
    image, channel = _image(image, channel_axis)
    labels = _skimage("felzenszwalb")(image, scale=scale, sigma=sigma, min_size=min_size,
                                      channel_axis=None if channel is None else -1, **options)
    return _ids(labels, channel)


SPECIAL = ("[CLS]", "[SEP]", "[PAD]", "[MASK]", "[UNK]", "<s>", "</s>", "<pad>", "<unk>", "<mask>", "<|endoftext|>")


def words(tokens: Sequence[str]) -> np.ndarray:
    """One feature per word of a tokenized text (``tokenizer.convert_ids_to_tokens(ids)``), shape
    ``(tokens, 1)``: WordPiece ``##`` pieces join the word before them; with BPE (``Ġ``) or
    SentencePiece (``▁``) markers a piece without the marker does; special tokens stand alone."""
    tokens = [str(t) for t in tokens]
    if not tokens:
        raise ValueError("words: no tokens given.")
    marker = next((m for m in ("Ġ", "▁") if any(t.startswith(m) for t in tokens)), None)
    ids, current, previous_special = [], -1, True
    for t in tokens:
        special = t in SPECIAL
        joins = not special and not previous_special and (
            t.startswith("##") if marker is None else not t.startswith(marker))
        current += 0 if joins else 1
        ids.append(current)
        previous_special = special
    return np.asarray(ids, np.int32)[:, None]


def spans(length: int, groups: Sequence[tuple[int, int]]) -> np.ndarray:
    """Features from token spans ``(start, stop)`` (half-open, not overlapping) over ``length``
    tokens, shape ``(length, 1)``; every token outside the spans is a feature of its own."""
    owner = np.full(length, -1)
    for g, (start, stop) in enumerate(groups):
        if not 0 <= start < stop <= length or (owner[start:stop] >= 0).any():
            raise ValueError(f"spans: span {(start, stop)} is empty, outside 0..{length} or overlaps another.")
        owner[start:stop] = g
    keys = np.where(owner >= 0, owner, len(groups) + np.arange(length))
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse].reshape(length, 1).astype(np.int32)  # ids in reading order
