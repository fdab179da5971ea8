"""A matrix of scores with labelled rows and columns (output tokens x prompt tokens), as an
HTML table or a PNG, in the colours of :func:`xai_core.viz.heatmap` (signed: blue < 0 < red).

Example:
    >>> from xai_core.viz import matrix_html, matrix_image
    >>> page = matrix_html(["Paris"], ["The", "capital"], [[0.1, -0.5]])
    >>> page.count("<td"), matrix_image(["Paris"], ["The", "capital"], [[0.1, -0.5]]).shape[2]
    (2, 3)
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw

from xai_core.viz.images import Mode, _colorize, _font, _text_size
from xai_core.viz.text import _fmt, _hex, _in_range, _ink


def _values(rows: Sequence[str], columns: Sequence[str], scores: npt.ArrayLike, mode: Mode,
            scale: float | None, what: str) -> tuple[np.ndarray, np.ndarray, float]:
    a = np.asarray(scores, np.float64)
    if a.shape != (len(rows), len(columns)):
        raise ValueError(f"{what}: scores of shape {a.shape} for {len(rows)} rows and {len(columns)} columns; "
                         "give one score per (row, column).")
    if mode not in ("signed", "abs"):
        raise ValueError(f"{what}: mode must be 'signed' or 'abs', got {mode!r}.")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{what}: scores contain NaN or infinity; check the method's inputs.")
    return (a, *_in_range(a, mode, scale, what))


def matrix_html(rows: Sequence[str], columns: Sequence[str], scores: npt.ArrayLike, *, mode: Mode = "signed",
                scale: float | None = None) -> str:
    """An HTML ``<table>``: a header of ``columns``, then one row per ``rows`` entry, each cell
    coloured by its score (the tooltip shows the value); ``scale`` saturates (default: the largest ``|score|``)."""
    a, v, s = _values(rows, columns, scores, mode, scale, "matrix_html")
    colours = _colorize(v, mode)
    ink = _ink(colours.reshape(-1, 3)).reshape(colours.shape)
    cell = "padding:0.15em 0.3em;text-align:center;font-family:sans-serif"
    head = "".join(f'<th style="{cell}">{html.escape(c)}</th>' for c in columns)
    body = "".join(
        f'<tr><th style="{cell};text-align:right">{html.escape(r)}</th>' + "".join(
            f'<td style="{cell};background-color:{_hex(colours[i, j])};color:{_hex(ink[i, j])}" '
            f'title="{_fmt(a[i, j])}">{_fmt(a[i, j])}</td>' for j in range(len(columns))) + "</tr>"
        for i, r in enumerate(rows))
    return (f'<table class="xai-matrix" data-scale="{_fmt(s)}" style="border-collapse:collapse">'
            f"<tr><th></th>{head}</tr>{body}</table>")


def matrix_image(rows: Sequence[str], columns: Sequence[str], scores: npt.ArrayLike, *, mode: Mode = "signed",
                 scale: float | None = None, cell: int = 28, font_size: int = 12) -> np.ndarray:
    """The matrix as an RGB ``uint8`` image: column labels written upwards on top, row labels on
    the left, ``cell`` pixels per score."""
    _, v, _ = _values(rows, columns, scores, mode, scale, "matrix_image")
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    left = max(_text_size(probe, r, font)[0] for r in rows) + 8
    top = max(_text_size(probe, c, font)[0] for c in columns) + 8
    image = Image.new("RGB", (left + cell * len(columns) + 4, top + cell * len(rows) + 4), "white")
    draw = ImageDraw.Draw(image)
    colours = _colorize(v, mode)
    for i, r in enumerate(rows):
        draw.text((4, top + i * cell + cell // 4), r, fill="black", font=font)
        for j in range(len(columns)):
            x, y = left + j * cell, top + i * cell
            draw.rectangle((x, y, x + cell - 1, y + cell - 1), fill=tuple(int(c) for c in colours[i, j]))
    for j, c in enumerate(columns):
        w, h = _text_size(probe, c, font)
        label = Image.new("RGB", (w + 2, h + 4), "white")
        ImageDraw.Draw(label).text((1, 0), c, fill="black", font=font)
        image.paste(label.rotate(90, expand=True), (left + j * cell + (cell - h) // 2, top - w - 6))
    return np.asarray(image)
