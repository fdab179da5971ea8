"""Pictures of per-token attribution scores: tokens coloured by score, as HTML or PNG.

Colours are those of :func:`xai_core.viz.heatmap`: ``mode="signed"`` puts ``v =
clip(score / s, -1, 1)`` on the diverging map (blue < 0, white = 0, red > 0),
``mode="abs"`` puts ``|v|`` on the sequential map. ``s`` is ``scale``, or the max of
``|score|`` (so the strongest token saturates); all-zero scores are all white.

Tokens are shown as the tokenizer wrote them, with two conventions undone: WordPiece
continuations (``"##ing"``) join the previous token without a space, and where any
token starts with SentencePiece's ``"▁"``, those tokens (and only those) start a word.

Example:
    >>> from xai_core.viz import text_html, text_image
    >>> tokens, scores = ["A", "great", "film", "##s", "<3"], [0.0, 0.8, -0.4, -0.1, 0.2]
    >>> fragment = text_html(tokens, scores)
    >>> fragment.count("<span"), "&lt;3" in fragment
    (5, True)
    >>> text_image(tokens, scores, width=400).shape[1:]
    (400, 3)
"""

from __future__ import annotations

import html
import pathlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageDraw, ImageFont

from xai_core.viz.images import Mode, _colorize, _font, _text_size

_Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
_BAR_W = 120  # Legend colour bar width, pixels.
_HTML_OPTIONS = frozenset({"mode", "scale"})
_PNG_OPTIONS = frozenset({"mode", "scale", "width", "font_size", "legend"})


def text_html(
    tokens: Sequence[str], scores: npt.ArrayLike, *, mode: Mode = "signed", scale: float | None = None
) -> str:
    """An HTML fragment: a ``<div>`` of one ``<span>`` per token, its background the score's colour.

    Text is white on dark backgrounds; each span's ``title`` (its tooltip) is the score
    to 3 significant digits; tokens are HTML-escaped. The ``<div>`` carries the scale
    used as ``data-scale``.

    Args:
        tokens: one string per score.
        scores: ``(T,)`` real numbers, JAX or numpy.
        mode: ``"signed"`` or ``"abs"``.
        scale: the ``|score|`` that saturates; None for the max of ``|score|``.

    Example:
        >>> print(text_html(["good", "##ish"], [1.0, 0.0]).replace("<span", "\\n<span"))
        <div class="xai-text" data-scale="1" style="...">
        <span style="background-color:#67001f;color:#ffffff;padding:..." title="1">good</span>
        <span style="background-color:#ffffff;color:#000000;padding:..." title="0">ish</span></div>
    """
    return _html(tokens, scores, mode, scale, "text_html")[0]


def text_image(
    tokens: Sequence[str],
    scores: npt.ArrayLike,
    *,
    mode: Mode = "signed",
    scale: float | None = None,
    width: int = 800,
    font_size: int = 16,
    legend: bool = True,
) -> np.ndarray:
    """The picture of :func:`text_html` drawn with pillow: ``uint8 (H, W, 3)``.

    Tokens are coloured boxes, wrapped onto lines (whole words where they fit) within
    ``width`` pixels; a token wider than a line widens the picture. With ``legend``, a
    last line shows the colour bar between its end values (``-s`` and ``+s``, or ``0``
    and ``s`` for ``mode="abs"``).

    Args:
        tokens, scores, mode, scale: as for :func:`text_html`.
        width: picture width in pixels.
        font_size: text height in pixels (pillow >= 10.1; older pillow has one size).
        legend: whether to draw the colour-bar line.

    Example:
        >>> picture = text_image(["hi"], [1.0], width=100, legend=False)
        >>> picture.shape[1:], picture.dtype
        ((100, 3), dtype('uint8'))
    """
    for name, value, low in (("width", width, 16), ("font_size", font_size, 4)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"text_image: {name} must be an int >= {low}, got {value!r}.")
    words, _, values, s = _prepare(tokens, scores, mode, scale, "text_image")
    background = _colorize(values, mode)
    ink = _ink(background)
    font = _font(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    margin, pad, gap = 6, 3, max(2, font_size // 3)
    line_h = _text_size(measure, "Ag|", font)[1] + 2 * pad
    starts, ends = _edges(words)
    left = [pad if start else 1 for start in starts]  # Pieces of one word sit close together.
    boxes = [_text_size(measure, p, font)[0] + left[i] + (pad if ends[i] else 1) for i, (p, _) in enumerate(words)]
    labels = _legend_labels(mode, s)
    legend_w = sum(_text_size(measure, t, font)[0] for t in labels) + 4 * pad + (_BAR_W if s else 0)
    width = max(width, max(boxes) + 2 * margin, legend_w + 2 * margin if legend else 0)

    places, x, y = [], margin, margin  # (x, y) of each token's box.
    first = [i for i, start in enumerate(starts) if start]  # Each shown word's first token.
    for start, stop in zip(first, first[1:] + [len(words)]):
        word_w = sum(boxes[start:stop])
        if x > margin and x + gap + word_w > width - margin:
            x, y = margin, y + line_h + gap
        elif x > margin:
            x += gap
        for i in range(start, stop):
            if x > margin and x + boxes[i] > width - margin:  # A word longer than a line.
                x, y = margin, y + line_h + gap
            places.append((x, y))
            x += boxes[i]
    legend_y = y + line_h + 2 * gap
    height = (legend_y + line_h if legend else y + line_h) + margin

    canvas = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(canvas)
    for i, ((px, py), (piece, _)) in enumerate(zip(places, words)):
        draw.rectangle((px, py, px + boxes[i] - 1, py + line_h - 1), fill=tuple(int(c) for c in background[i]))
        draw.text((px + left[i], py + pad), piece, fill=tuple(int(c) for c in ink[i]), font=font)
    if legend:
        _draw_legend(draw, font, mode, labels, (margin, legend_y), line_h, pad)
    return np.array(canvas)


def save_text(
    tokens: Sequence[str], scores: npt.ArrayLike, path: str | pathlib.Path, **options: object
) -> pathlib.Path:
    """Write a full HTML page (``.html``, ``.htm``) or a PNG (``.png``), by suffix; returns the path.

    ``options`` go to :func:`text_html` (``mode``, ``scale``) or :func:`text_image` (also
    ``width``, ``font_size``, ``legend``). Parent folders are created.

    Example:
        >>> save_text(["a", "b"], [0.5, -0.5], "/tmp/xai_text.png", width=200).suffix
        '.png'
    """
    out = pathlib.Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".html", ".htm", ".png"):
        raise ValueError(f"save_text: cannot write {str(out)!r}; the suffix must be .html, .htm (a web page) or .png.")
    allowed = _PNG_OPTIONS if suffix == ".png" else _HTML_OPTIONS
    if unknown := sorted(set(options) - allowed):
        raise TypeError(f"save_text: unknown option(s) {unknown} for a {suffix} file; it takes {sorted(allowed)}.")
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".png":
        Image.fromarray(text_image(tokens, scores, **options)).save(out, format="PNG")  # type: ignore[arg-type]
        return out
    mode = options.get("mode", "signed")
    fragment, s = _html(tokens, scores, mode, options.get("scale"), "save_text")  # type: ignore[arg-type]
    if s == 0:
        key = "all scores are 0"
    elif mode == "signed":
        key = f"blue negative, white 0, red positive; full colour at &plusmn;{_fmt(s)}"
    else:
        key = f"|score| from white (0) to dark red ({_fmt(s)})"
    out.write_text(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Token attributions</title></head>\n<body>\n'
        f'{fragment}\n<p style="font-family:sans-serif;font-size:small;color:#555">Colour: {key}.</p>\n'
        "</body></html>\n",
        encoding="utf-8",
    )
    return out


def _html(
    tokens: Sequence[str], scores: npt.ArrayLike, mode: Mode, scale: float | None, what: str
) -> tuple[str, float]:
    """The fragment of :func:`text_html`, and the scale used."""
    words, raw, values, s = _prepare(tokens, scores, mode, scale, what)
    background = _colorize(values, mode)
    ink = _ink(background)
    starts, ends = _edges(words)
    spans = "".join(
        (" " if space else "")
        + f'<span style="background-color:{_hex(background[i])};color:{_hex(ink[i])};'
        f'padding:0.1em {"0.15em" if ends[i] else "0"} 0.1em {"0.15em" if starts[i] else "0"}" '
        f'title="{_fmt(raw[i])}">{html.escape(piece)}</span>'
        for i, (piece, space) in enumerate(words)
    )
    style = "line-height:1.8;font-family:sans-serif"
    return f'<div class="xai-text" data-scale="{_fmt(s)}" style="{style}">{spans}</div>', s


def _prepare(
    tokens: Sequence[str], scores: npt.ArrayLike, mode: Mode, scale: float | None, what: str
) -> tuple[list[tuple[str, bool]], np.ndarray, np.ndarray, float]:
    """Check the inputs; return (shown text, space before) per token, the scores, values in range, the scale."""
    if mode not in ("signed", "abs"):
        raise ValueError(f"{what}: mode must be 'signed' or 'abs', got {mode!r}.")
    if isinstance(tokens, str):
        raise TypeError(f"{what}: tokens must be a sequence of strings, one per score, not one str; split it first.")
    tokens = list(tokens)
    if not tokens:
        raise ValueError(f"{what}: tokens is empty; pass at least one token and one score per token.")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise TypeError(f"{what}: token {i} is a {type(token).__name__}, not a str; decode ids to strings first.")
    a = np.asarray(scores)
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_) or np.iscomplexobj(a):
        raise TypeError(f"{what}: scores must be real numbers, got dtype {a.dtype}.")
    a = a.astype(np.float64)
    if a.ndim != 1:
        raise ValueError(
            f"{what}: scores must be 1-D, one score per token, got shape {a.shape}. For per-token scores, "
            "reduce the embedding axis with xc.token_scores(a, how='sum') (signed) or how='l2' first; "
            "for a batch, pass one example, e.g. scores[0]."
        )
    if len(a) != len(tokens):
        raise ValueError(f"{what}: {len(tokens)} tokens but {len(a)} scores; pass one score per token.")
    if not np.all(np.isfinite(a)):
        bad = np.flatnonzero(~np.isfinite(a)).tolist()
        raise ValueError(f"{what}: scores contain NaN or infinity at positions {bad}; check the method's inputs.")
    values, s = _in_range(a, mode, scale, what)
    return _words(tokens), a, values, s


def _in_range(a: np.ndarray, mode: Mode, scale: float | None, what: str) -> tuple[np.ndarray, float]:
    """Finite scores ``a`` as colour-map values (``clip(a / s, -1, 1)``, ``|.|`` for ``"abs"``) and
    the scale ``s`` used: ``scale``, or the max ``|a|`` (all zero: all white)."""
    s = float(np.abs(a).max()) if scale is None else _positive(scale, what)
    values = np.zeros_like(a) if s == 0 else np.clip(a / s, -1.0, 1.0)
    return (np.abs(values) if mode == "abs" else values), s


def _positive(scale: object, what: str) -> float:
    """``scale`` as a positive finite float, or a ValueError."""
    a = np.asarray(np.nan if isinstance(scale, (bool, str)) else scale)
    s = float(a) if a.ndim == 0 and np.issubdtype(a.dtype, np.number) and not np.iscomplexobj(a) else np.nan
    if not 0.0 < s < np.inf:
        raise ValueError(f"{what}: scale must be a positive finite number (None: the max |score|), got {scale!r}.")
    return s


def _words(tokens: list[str]) -> list[tuple[str, bool]]:
    """Each token's shown text and whether a space precedes it (WordPiece ``##``, SentencePiece ``▁``)."""
    sentencepiece = any(t.startswith("▁") for t in tokens)
    out = []
    for i, token in enumerate(tokens):
        if sentencepiece:
            space, piece = token.startswith("▁"), token.lstrip("▁")
        else:
            space, piece = not (token.startswith("##") and len(token) > 2), token.removeprefix("##") or token
        out.append((piece or token, space and i > 0))
    return out


def _edges(words: list[tuple[str, bool]]) -> tuple[list[bool], list[bool]]:
    """Whether each token starts a shown word (tokens joined without a space), and whether it ends one."""
    starts = [space or i == 0 for i, (_, space) in enumerate(words)]
    return starts, starts[1:] + [True]


def _ink(background: np.ndarray) -> np.ndarray:
    """Black or white text, whichever contrasts more with each ``(N, 3)`` uint8 background (WCAG)."""
    c = background.astype(np.float64) / 255.0
    linear = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    luminance = linear @ np.array([0.2126, 0.7152, 0.0722])
    white = (luminance + 0.05) ** 2 < 1.05 * 0.05  # 1.05 / (L + 0.05) > (L + 0.05) / 0.05.
    return np.repeat(np.where(white, 255, 0).astype(np.uint8)[:, None], 3, axis=1)


def _legend_labels(mode: Mode, s: float) -> tuple[str, ...]:
    """The legend's text: the colour bar's end values, or one note when all scores are zero."""
    if s == 0:
        return ("all scores are 0",)
    return ("0", _fmt(s)) if mode == "abs" else (_fmt(-s), "+" + _fmt(s))


def _draw_legend(
    draw: ImageDraw.ImageDraw, font: _Font, mode: Mode, labels: tuple[str, ...], at: tuple[int, int], line_h: int,
    pad: int,
) -> None:
    """``low [colour bar] high`` (or the lone note) with its top left at ``at``."""
    x, y = at
    draw.text((x, y + pad), labels[0], fill="black", font=font)
    if len(labels) == 1:
        return
    x += _text_size(draw, labels[0], font)[0] + 2 * pad
    colours = _colorize(np.linspace(0.0 if mode == "abs" else -1.0, 1.0, _BAR_W), mode)
    for k in range(_BAR_W):
        draw.line((x + k, y + pad, x + k, y + line_h - pad), fill=tuple(int(c) for c in colours[k]))
    draw.rectangle((x - 1, y + pad - 1, x + _BAR_W, y + line_h - pad + 1), outline=(128, 128, 128))
    draw.text((x + _BAR_W + 2 * pad, y + pad), labels[1], fill="black", font=font)


def _hex(rgb: np.ndarray) -> str:
    """``#rrggbb``."""
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def _fmt(value: float) -> str:
    """3 significant digits."""
    return f"{value:.3g}"
