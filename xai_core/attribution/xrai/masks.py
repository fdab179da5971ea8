"""XRAI's masks on the host: PAIR's Felzenszwalb masks (:func:`xrai_segments`), the given segments
stacked into ``(n, pixels)`` booleans, and their atoms, the common refinement that the walk runs on.

An atom is a set of pixels with the same membership in every mask. The walk covers a mask's pixels
together, so it covers each atom whole: it can count pixels and sum the attribution per atom, over
``(n, atoms)`` masks (a 224x224 image's few hundred Felzenszwalb masks have a few thousand atoms
for its 50176 pixels). Concrete masks are split into atoms here, once per call, with numpy; traced
masks (per-example ones under ``jit`` / ``vmap``) keep their pixels as atoms.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import is_concrete

SCALES = (50, 100, 150, 250, 500, 1200)
"""PAIR's Felzenszwalb scales (sigma 0.8, min size 150, on the image resized to 224x224 in [-1, 1])."""


def xrai_segments(image: Any, channel_axis: int | None = -1, resize: bool = True,
                  dilation_radius: int = 5) -> np.ndarray:
    """PAIR's XRAI masks of one HxWxC (HxW: ``channel_axis=None``) image, on the host (scikit-image):
    ``(n, H, W)`` booleans, equal to ``saliency.core.xrai._get_segments_felzenszwalb``. The image is
    rescaled to [-1, 1] by its min and max and (``resize``) resized to 224x224 (cubic, anti-aliased);
    Felzenszwalb segments at :data:`SCALES` are resized back (nearest); each id from a scale's min to
    its max is a mask (empty if lost in the resizing, as PAIR's), dilated by a disk of ``dilation_radius``."""
    try:
        from skimage import morphology, segmentation, transform
    except ImportError as e:
        raise ImportError("xrai's default segments are scikit-image's Felzenszwalb: pip install 'xai-core[segments]' "
                          "(or scikit-image), or pass segments=.") from e
    im = np.asarray(image, np.float64)
    if im.ndim != (2 if channel_axis is None else 3):
        raise ValueError(f"xrai_segments: needs one HxWxC image (HxW with channel_axis=None), got {im.shape}.")
    channel = None if channel_axis is None else -1  # moved last
    im = im if channel is None else np.moveaxis(im, channel_axis, -1)
    low, high = im.min(), im.max()
    if not np.isfinite(high - low) or high == low:
        raise ValueError(f"xrai_segments: the image is constant or not finite (min {low}, max {high}); pass segments=.")
    space = im.shape[:2]
    im = (im - low) / (high - low) * 2.0 - 1.0
    if resize:
        im = transform.resize(im, (224, 224), order=3, mode="constant", preserve_range=True, anti_aliasing=True)
    masks = []
    for scale in SCALES:
        seg = segmentation.felzenszwalb(im, scale=scale, sigma=0.8, min_size=150, channel_axis=channel)
        if resize:
            seg = transform.resize(seg, space, order=0, preserve_range=True, mode="constant", anti_aliasing=False)
            seg = seg.astype(int)
        masks += [seg == i for i in range(seg.min(), seg.max() + 1)]
    if dilation_radius:
        masks = [morphology.dilation(m, footprint=morphology.disk(dilation_radius)) for m in masks]
    return np.stack(masks)


def _masks(segments: Any, space: tuple[int, ...], with_channel: tuple[int, ...]) -> Any:
    """``(n, pixels)`` booleans from a list of masks, stacked masks or an integer segment map: a numpy
    array where they are concrete, else a traced one."""
    what = (f"Give boolean masks of x's spatial shape {space} (x without channel_axis; None if it has none), a list "
            "or stacked (n, *space), or an int map of that shape.")
    if isinstance(segments, (list, tuple)):
        if not segments:
            raise ValueError(f"xrai: segments is an empty list. {what}")
        stack = np.stack if all(map(is_concrete, segments)) else jnp.stack
        segments = stack([np.asarray(s) if is_concrete(s) else s for s in segments])
        if segments.dtype != bool:
            raise TypeError(f"xrai: a list of segments holds boolean masks, got dtype {segments.dtype}. {what}")
    s = np.asarray(segments) if is_concrete(segments) else segments
    if s.dtype != bool:
        if not np.issubdtype(s.dtype, np.integer):
            raise TypeError(f"xrai: segments of dtype {s.dtype} are neither boolean masks nor integer ids. {what}")
        if not is_concrete(s):
            raise ValueError(f"xrai: a traced integer segment map cannot be unpacked into masks (their number depends "
                             f"on its values); pass stacked boolean masks (n, *space) instead. {what}")
        if s.shape not in (space, with_channel):
            raise ValueError(f"xrai: segment map of shape {s.shape} does not match x's spatial shape {space}. {what}")
        s = s.reshape(space)
        s = s[None] == np.arange(s.min(), s.max() + 1).reshape((-1,) + (1,) * len(space))
    if s.ndim != len(space) + 1 or tuple(s.shape[1:]) != space:
        raise ValueError(f"xrai: masks of shape {tuple(s.shape)} do not match x's spatial shape {space}. {what}")
    if s.shape[0] == 0 or (is_concrete(s) and not s.any()):
        raise ValueError(f"xrai: the segments cover no pixel ({s.shape[0]} masks). {what}")
    return s.reshape(s.shape[0], -1)


def _atoms(masks: Any) -> tuple[Any, np.ndarray | None, np.ndarray | None]:
    """The common refinement of ``(n, pixels)`` masks: ``(n, atoms)`` masks, the atom of each pixel
    ``(pixels,)`` and each atom's pixel count ``(atoms,)``; traced masks are their own atoms (None, None)."""
    if not is_concrete(masks):
        return masks, None, None
    n, pixels = masks.shape
    flat = np.ascontiguousarray(masks if pixels % 8 == 0 else np.pad(masks, ((0, 0), (0, -pixels % 8))))
    words = flat.view(np.uint64)  # 8 pixels a word, a byte (0 or 1) each
    packed = np.zeros((-(-n // 64) * 8, words.shape[1]), np.uint64)  # 8 masks a byte, 8 bytes a key
    for i in range(n):  # mask i is bit i % 8 of each pixel's byte i // 8
        packed[i >> 3] |= words[i] << np.uint64(i & 7)
    # each pixel's membership as 64-bit keys: (keys, pixels), bit j of key w is mask 64 w + j
    keys = np.ascontiguousarray(packed.view(np.uint8).reshape(-1, 8, flat.shape[1]).transpose(0, 2, 1))
    keys = keys.view(np.uint64)[..., 0][:, :pixels]
    # runs of equal keys along the rows (a few per boundary crossed), then the runs sorted by a hash of
    # their keys: equal keys come together, and each stretch of them is an atom (keys of equal hashes,
    # interleaved, would split an atom in two: the walk stays exact)
    run_starts = np.concatenate([[True], (keys[:, 1:] != keys[:, :-1]).any(0)])
    run_keys = keys[:, run_starts]
    mixed = np.zeros(run_keys.shape[1], np.uint64)
    for key in run_keys:
        mixed = (mixed ^ (mixed >> np.uint64(31)) ^ key) * np.uint64(0x9E3779B97F4A7C15)
    order = np.argsort(mixed)
    ordered = run_keys[:, order]
    starts = np.concatenate([[True], (ordered[:, 1:] != ordered[:, :-1]).any(0)])
    atom_of_run = np.empty(len(order), np.int32)
    atom_of_run[order] = np.cumsum(starts) - 1
    atom_of_pixel = atom_of_run[np.cumsum(run_starts) - 1]
    bits = np.ascontiguousarray(ordered[:, starts].T).view(np.uint8)  # (atoms, bytes)
    atom_masks = np.unpackbits(bits, axis=1, count=n, bitorder="little").T.astype(bool)
    counts = np.bincount(atom_of_pixel, minlength=atom_masks.shape[1]).astype(np.int32)
    return atom_masks, atom_of_pixel, counts

