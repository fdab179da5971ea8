"""Pictures of image attribution maps (``heatmap``, ``overlay``, ``save_grid``), pillow and numpy only.

Signed maps keep positive and negative evidence apart (DESIGN lesson 5): a diverging
colour map, blue for negative, white at zero, red for positive. ``mode="abs"`` shows
``|a|`` on a sequential map (white at zero to dark red). Both scale by a high
percentile of ``|a|`` and clip, so a few extreme pixels do not wash out the rest.

Example:
    >>> import numpy as np
    >>> from xai_core.viz import heatmap, overlay, save_grid
    >>> a = np.zeros((8, 8, 3), np.float32); a[2, 2] = 1.0; a[5, 5] = -1.0
    >>> rgb = heatmap(a)  # Red where a > 0, blue where a < 0, white at 0.
    >>> rgb[2, 2].tolist(), rgb[5, 5].tolist(), rgb[0, 0].tolist()
    ([103, 0, 31], [5, 48, 97], [255, 255, 255])
    >>> img = np.full((8, 8, 3), 0.5, np.float32)
    >>> path = save_grid([[img, heatmap(a), overlay(img, a)]], "/tmp/xai_grid.png")
"""

from __future__ import annotations

import pathlib
from collections.abc import Sequence
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw, ImageFont

Mode = Literal["signed", "abs"]

# Piecewise-linear colour maps: (position, (R, G, B)), positions ascending.
_DIVERGING = (  # Blue (negative) - white (zero) - red (positive), after ColorBrewer RdBu.
    (-1.0, (5, 48, 97)),
    (-0.5, (67, 147, 195)),
    (0.0, (255, 255, 255)),
    (0.5, (214, 96, 77)),
    (1.0, (103, 0, 31)),
)
_SEQUENTIAL = (  # White (zero) - yellow - orange - red - dark red, after ColorBrewer YlOrRd.
    (0.0, (255, 255, 255)),
    (0.25, (255, 237, 160)),
    (0.5, (254, 178, 76)),
    (0.75, (240, 59, 32)),
    (1.0, (128, 0, 38)),
)


def heatmap(
    attribution: np.ndarray,
    *,
    mode: Mode = "signed",
    channel_axis: int | None = -1,
    percentile: float = 99.0,
) -> np.ndarray:
    """Colour an attribution map: ``uint8 (H, W, 3)``.

    Channels are summed (keeping the sign), then ``v = clip(a / s, -1, 1)`` with
    ``s = percentile(|a|, percentile)`` (the max of ``|a|`` if that is zero).
    ``mode="signed"``: diverging map on ``v`` (blue < 0, white = 0, red > 0).
    ``mode="abs"``: sequential map on ``|v|`` (white = 0, dark red = 1).
    An all-zero map is all white.

    Args:
        attribution: ``(H, W, C)`` (or ``(H, W)`` with ``channel_axis=None``),
            any real dtype, JAX or numpy.
        mode: ``"signed"`` or ``"abs"``.
        channel_axis: axis summed over; None when there is none.
        percentile: in ``(0, 100]``; values of ``|a|`` above it saturate.

    Example:
        >>> import numpy as np
        >>> int(heatmap(np.zeros((4, 4, 3)), mode="abs").min())  # All white.
        255
    """
    value = _normalize(attribution, mode, channel_axis, percentile)
    return _colorize(value, mode)


def overlay(
    image: np.ndarray,
    attribution: np.ndarray,
    *,
    mode: Mode = "signed",
    alpha: float = 0.6,
    channel_axis: int | None = -1,
    percentile: float = 99.0,
) -> np.ndarray:
    """Blend :func:`heatmap` colours over a greyscale copy of ``image``: ``uint8 (H, W, 3)``.

    Per pixel, ``out = (1 - w) * grey + w * colour`` with ``w = alpha * |v|`` (``v`` as
    in :func:`heatmap`), so pixels without attribution show the image unchanged and
    the strongest evidence is drawn at opacity ``alpha``.

    Args:
        image: ``(H, W, 3)``, ``(H, W, 1)`` or ``(H, W)``; floats in ``[0, 1]`` or uint8.
        attribution: as for :func:`heatmap`, with the same ``(H, W)``.
        mode, channel_axis, percentile: as for :func:`heatmap`.
        alpha: opacity of the strongest evidence, in ``[0, 1]``.

    Example:
        >>> import numpy as np
        >>> overlay(np.zeros((4, 4, 3)), np.ones((4, 4, 3))).shape
        (4, 4, 3)
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"overlay: alpha must be in [0, 1], got {alpha}.")
    grey = _cell(image, "overlay: image").astype(np.float64)
    if grey.ndim == 3:
        grey = grey @ np.array([0.299, 0.587, 0.114])  # ITU-R 601 luma.
    value = _normalize(attribution, mode, channel_axis, percentile)
    if value.shape != grey.shape:
        raise ValueError(
            f"overlay: image is {grey.shape[0]}x{grey.shape[1]} but the attribution map is "
            f"{value.shape[0]}x{value.shape[1]}; they must match."
        )
    weight = alpha * np.abs(value)[..., None]
    blended = (1.0 - weight) * grey[..., None] + weight * _colorize(value, mode)
    return np.round(blended).astype(np.uint8)


def save_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | pathlib.Path,
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    scale: int = 2,
) -> pathlib.Path:
    """Write a PNG grid of images, one list of cells per row; returns the path.

    Cells are ``(H, W, 3)`` colour images, ``(H, W)`` or ``(H, W, 1)`` greyscale
    images or masks (bool, floats in ``[0, 1]``, or uint8), all of the same ``H, W``;
    each is enlarged ``scale`` times (nearest neighbour). Rows may be of different
    lengths. Titles use PIL's default font; parent folders are created.

    Example:
        >>> import numpy as np
        >>> p = save_grid([[np.zeros((4, 4, 3)), np.ones((4, 4), bool)]], "/tmp/g.png",
        ...               col_titles=["image", "mask"])
        >>> p.name
        'g.png'
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"save_grid: scale must be an int >= 1, got {scale!r}.")
    if len(rows) == 0 or any(len(row) == 0 for row in rows):
        raise ValueError("save_grid: rows must be a non-empty sequence of non-empty rows.")
    cells = [[_cell(c, f"save_grid: cell [{i}][{j}]") for j, c in enumerate(row)] for i, row in enumerate(rows)]
    sizes = {c.shape[:2] for row in cells for c in row}
    if len(sizes) != 1:
        raise ValueError(f"save_grid: all cells must have the same height and width, got {sorted(sizes)}.")
    n_cols = max(len(row) for row in cells)
    _check_titles(row_titles, len(cells), "row_titles", "rows")
    _check_titles(col_titles, n_cols, "col_titles", "columns (the longest row)")

    (h, w), pad = sizes.pop(), 4
    h, w = h * scale, w * scale
    font = _font()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max((_text_size(measure, t, font)[0] for t in row_titles or ()), default=-pad) + pad
    top = max((_text_size(measure, t, font)[1] for t in col_titles or ()), default=-pad) + pad

    canvas = Image.new("RGB", (left + n_cols * (w + pad) + pad, top + len(cells) * (h + pad) + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for j, title in enumerate(col_titles or ()):
        draw.text((left + pad + j * (w + pad), pad // 2), title, fill="black", font=font)
    for i, row in enumerate(cells):
        y = top + pad + i * (h + pad)
        if row_titles is not None:
            text_height = _text_size(draw, row_titles[i], font)[1]
            draw.text((pad // 2, y + (h - text_height) // 2), row_titles[i], fill="black", font=font)
        for j, cell in enumerate(row):
            picture = Image.fromarray(cell).resize((w, h), Image.Resampling.NEAREST)
            canvas.paste(picture, (left + pad + j * (w + pad), y))
    out = pathlib.Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out, format="PNG")
    return out


def _normalize(attribution: np.ndarray, mode: Mode, channel_axis: int | None, percentile: float) -> np.ndarray:
    """Channel-summed map scaled into ``[-1, 1]`` (signed) or ``[0, 1]`` (abs), ``(H, W)``."""
    if mode not in ("signed", "abs"):
        raise ValueError(f"mode must be 'signed' or 'abs', got {mode!r}.")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}.")
    a = np.asarray(attribution, dtype=np.float64)
    if channel_axis is not None:
        if a.ndim != 3:
            raise ValueError(
                f"attribution must be (H, W, C) when channel_axis={channel_axis}, got shape "
                f"{a.shape}; pass channel_axis=None for an (H, W) map."
            )
        a = a.sum(axis=channel_axis)
    if a.ndim != 2:
        raise ValueError(f"attribution must reduce to an (H, W) map, got shape {a.shape}.")
    if not np.all(np.isfinite(a)):
        raise ValueError("attribution contains NaN or infinity; check the method's inputs.")
    magnitude = np.abs(a)
    scale = np.percentile(magnitude, percentile)
    scale = scale if scale > 0 else magnitude.max()
    if scale == 0:
        return np.zeros_like(a)
    value = np.clip(a / scale, -1.0, 1.0)
    return np.abs(value) if mode == "abs" else value


def _colorize(value: np.ndarray, mode: Mode) -> np.ndarray:
    """Map ``value`` (``(H, W)``, already in range) through the mode's colour map."""
    stops = _DIVERGING if mode == "signed" else _SEQUENTIAL
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], dtype=np.float64)
    rgb = [np.interp(value, positions, colours[:, k]) for k in range(3)]
    return np.round(np.stack(rgb, axis=-1)).astype(np.uint8)


def _to_uint8(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` as uint8: bool -> 0/255, floats in ``[0, 1]`` -> 0..255, uint8 kept."""
    a = np.asarray(image)
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"{what} has unsupported dtype {a.dtype}; use bool, uint8 or floats in [0, 1].")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what} contains NaN or infinity.")
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def _cell(image: np.ndarray, what: str) -> np.ndarray:
    """A grid cell as uint8 ``(H, W)`` or ``(H, W, 3)``."""
    a = _to_uint8(image, what)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] == 3)):
        raise ValueError(f"{what} must be (H, W, 3), (H, W, 1) or (H, W), got shape {a.shape}.")
    return a


def _check_titles(titles: Sequence[str] | None, expected: int, name: str, what: str) -> None:
    """Raise unless ``titles`` is None or has one entry per row/column."""
    if titles is not None and len(titles) != expected:
        raise ValueError(f"save_grid: {name} has {len(titles)} entries but there are {expected} {what}.")


def _text_size(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont) -> tuple[int, int]:
    """Width and height in pixels of ``text`` drawn with ``font``."""
    x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
    return int(x1 - x0), int(y1)


def _font(size: int | None = None) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """PIL's default font; ``size`` pixels tall where pillow can scale it (pillow >= 10.1)."""
    if size is None:
        return ImageFont.load_default()
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Older pillow: one bitmap size only.
        return ImageFont.load_default()
