"""Tests for xai_core.viz.text: per-token scores as coloured HTML spans and PNG pictures."""

from __future__ import annotations

import html
import pathlib
import re
from html.parser import HTMLParser

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import xai_core.viz
from xai_core.viz import heatmap, save_text, text_html, text_image

WHITE, BLACK = "#ffffff", "#000000"


class _Spans(HTMLParser):
    """The spans of a text_html fragment: background, ink, title, text; and the div's attributes."""

    def __init__(self, fragment: str) -> None:
        super().__init__(convert_charrefs=True)
        self.spans: list[dict[str, str]] = []
        self.div: dict[str, str] = {}
        self.inside = False
        self.feed(fragment)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if tag == "div":
            self.div = attributes
        elif tag == "span":
            style = dict(part.split(":", 1) for part in attributes["style"].split(";"))
            self.spans.append({"bg": style["background-color"], "ink": style["color"], "title": attributes["title"]})
            self.spans[-1]["text"], self.inside = "", True

    def handle_endtag(self, tag: str) -> None:
        self.inside = self.inside and tag != "span"

    def handle_data(self, data: str) -> None:
        if self.inside:
            self.spans[-1]["text"] += data


def spans(fragment: str) -> list[dict[str, str]]:
    return _Spans(fragment).spans


def shown_text(fragment: str) -> str:
    """What a browser shows: the fragment without tags, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", fragment))


def hexes(rgb: np.ndarray) -> list[str]:
    return ["#" + "".join(f"{int(c):02x}" for c in pixel) for pixel in rgb.reshape(-1, 3)]


def reddish(pixels: np.ndarray) -> np.ndarray:
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    return (r > g + 40) & (r > b + 40)


def bluish(pixels: np.ndarray) -> np.ndarray:
    r, g, b = (pixels[..., k].astype(int) for k in range(3))
    return (b > r + 40) & (b > g + 20)


def contiguous(indices: np.ndarray) -> bool:
    """Whether the pixel rows (or columns) ``indices`` form one unbroken run."""
    values = np.unique(indices)
    return len(values) > 0 and values[-1] - values[0] + 1 == len(values)


def contrast(a: str, b: str) -> float:
    def luminance(colour: str) -> float:
        c = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0
        return float(np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4) @ [0.2126, 0.7152, 0.0722])

    high, low = sorted((luminance(a), luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


SCORES = np.array([0.5, -1.0, 0.0, 0.25, 2.0, -0.3])
TOKENS = ["a", "b", "c", "d", "e", "f"]


def test_package_reexports_both_modules() -> None:
    assert xai_core.viz.heatmap is xai_core.viz.images.heatmap
    assert xai_core.viz.text_html is xai_core.viz.text.text_html
    assert {"heatmap", "overlay", "save_grid", "text_html", "text_image", "save_text"} <= set(xai_core.viz.__all__)


@pytest.mark.parametrize("mode", ["signed", "abs"])
def test_colours_are_heatmaps_colours_scaled_by_max_abs(mode: str) -> None:
    got = [s["bg"] for s in spans(text_html(TOKENS, SCORES, mode=mode))]  # type: ignore[arg-type]
    expected = heatmap(SCORES[None, :], mode=mode, channel_axis=None, percentile=100.0)  # type: ignore[arg-type]
    assert got == hexes(expected)
    assert got[2] == WHITE  # Zero.
    assert got[4] == ("#67001f" if mode == "signed" else "#800026")  # The max |score| saturates.


def test_signed_is_red_positive_blue_negative_abs_is_sign_blind() -> None:
    signed = [s["bg"] for s in spans(text_html(["+", "-", "0"], [1.0, -1.0, 0.0]))]
    assert signed == ["#67001f", "#053061", WHITE]
    absolute = [s["bg"] for s in spans(text_html(["+", "-", "0"], [1.0, -1.0, 0.0], mode="abs"))]
    assert absolute[0] == absolute[1] == "#800026" and absolute[2] == WHITE
    weak, strong = (s["bg"] for s in spans(text_html(["w", "s"], [-0.3, 1.0], mode="abs")))
    assert sum(int(weak[i : i + 2], 16) for i in (1, 3, 5)) > sum(int(strong[i : i + 2], 16) for i in (1, 3, 5))


def test_ink_is_white_on_dark_and_always_readable() -> None:
    dark, light = spans(text_html(["dark", "light"], [1.0, 0.05]))
    assert dark["ink"] == WHITE and light["ink"] == BLACK
    for mode in ("signed", "abs"):
        for span in spans(text_html(["t"] * 101, np.linspace(-1.0, 1.0, 101), mode=mode)):  # type: ignore[arg-type]
            assert span["ink"] in (WHITE, BLACK)
            assert contrast(span["bg"], span["ink"]) >= 4.5  # WCAG AA for normal text.


def test_title_is_the_score_to_three_significant_digits() -> None:
    titles = [s["title"] for s in spans(text_html(["a", "b", "c", "d"], [0.123456, -2.5e-5, 1234.5, 0.0]))]
    assert titles == ["0.123", "-2.5e-05", "1.23e+03", "0"]


def test_tokens_are_html_escaped() -> None:
    tokens = ["<b>", "&", '"q"', "</span>"]
    fragment = text_html(tokens, [1.0, 0.5, -0.5, 0.0])
    assert "&lt;b&gt;" in fragment and "<b>" not in fragment and "&amp;" in fragment
    assert fragment.count("</span>") == 4  # The token "</span>" did not close anything.
    assert [s["text"] for s in spans(fragment)] == tokens


def test_wordpiece_continuations_join_without_space() -> None:
    fragment = text_html(["[CLS]", "un", "##believ", "##ably", "good", "##", "!"], [0.0, 1, 2, 3, 4, 5, 6])
    assert shown_text(fragment) == "[CLS] unbelievably good ## !"  # A lone "##" is a token, not a prefix.
    assert [s["text"] for s in spans(fragment)][1:4] == ["un", "believ", "ably"]
    assert shown_text(text_html(["plain", "words"], [0.0, 0.0])) == "plain words"


def test_sentencepiece_prefix_is_a_space() -> None:
    fragment = text_html(["▁Hello", "▁wor", "ld", "!", "▁again"], [0.0, 0.1, 0.2, 0.3, 0.4])
    assert shown_text(fragment) == "Hello world! again"
    assert "▁" not in fragment


def test_scale_option() -> None:
    scores = np.array([0.5, 1.0])
    fragment = text_html(["a", "b"], scores, scale=2.0)
    expected = heatmap(np.array([[0.25, 0.5, 1.0]]), channel_axis=None, percentile=100.0)[0]
    assert [s["bg"] for s in spans(fragment)] == hexes(expected[:2])  # 0.5 / 2 and 1.0 / 2.
    assert _Spans(fragment).div["data-scale"] == "2"
    saturated = [s["bg"] for s in spans(text_html(["a", "b"], scores, scale=0.5))]
    assert saturated == ["#67001f", "#67001f"]  # Clipped at the scale.
    assert _Spans(text_html(["a", "b"], scores)).div["data-scale"] == "1"
    for bad in (0.0, -1.0, float("inf"), float("nan"), "big", True):
        with pytest.raises(ValueError, match="scale must be a positive finite number"):
            text_html(["a", "b"], scores, scale=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["signed", "abs"])
def test_all_zero_scores_are_white_never_nan(mode: str) -> None:
    fragment = text_html(["a", "b"], np.zeros(2), mode=mode)  # type: ignore[arg-type]
    assert [s["bg"] for s in spans(fragment)] == [WHITE, WHITE]
    assert "nan" not in fragment.lower()
    picture = text_image(["a", "b"], np.zeros(2), mode=mode)  # type: ignore[arg-type]
    assert not reddish(picture).any() and not bluish(picture).any()


def test_accepts_jax_and_integer_scores() -> None:
    assert text_html(["a", "b"], jnp.array([1.0, -1.0])) == text_html(["a", "b"], np.array([1, -1]))


def test_image_shape_dtype_and_width() -> None:
    picture = text_image(TOKENS, SCORES, width=300)
    assert picture.ndim == 3 and picture.shape[1:] == (300, 3) and picture.dtype == np.uint8
    assert (picture[0] == 255).all() and (picture[:, 0] == 255).all()  # White margin.
    assert text_image(TOKENS, SCORES).shape[1] == 800  # The default width.


def test_image_colours_are_where_the_scores_are() -> None:
    positive = text_image(["good", "great"], [0.5, 1.0], legend=False)
    assert reddish(positive).any() and not bluish(positive).any()
    assert (positive == [103, 0, 31]).all(axis=-1).any()  # The saturated token's box is heatmap's red.
    negative = text_image(["bad"], [-1.0], legend=False)
    assert bluish(negative).any() and not reddish(negative).any()
    both = text_image(["good", "bad"], [1.0, -1.0], legend=False)
    red_x, blue_x = np.nonzero(reddish(both))[1], np.nonzero(bluish(both))[1]
    assert red_x.max() < blue_x.min()  # The positive token is left of the negative one.


def test_image_legend_is_a_colour_bar_line() -> None:
    plain = text_image(["good"], [1.0], legend=False)
    signed = text_image(["good"], [1.0])
    assert signed.shape[0] > plain.shape[0]
    assert bluish(signed[plain.shape[0] :]).any() and reddish(signed[plain.shape[0] :]).any()  # -s .. +s.
    absolute = text_image(["good"], [1.0], mode="abs")
    assert not bluish(absolute).any()  # White to dark red only.


def test_image_wraps_lines_and_keeps_words_together() -> None:
    tokens, scores = ["word"] * 30, np.linspace(-1.0, 1.0, 30)
    wide, narrow = text_image(tokens, scores, width=2000), text_image(tokens, scores, width=200)
    assert narrow.shape[1] == 200 and narrow.shape[0] > 2 * wide.shape[0]
    joined = text_image(["un", "##fair"], [1.0, 1.0], legend=False)
    apart = text_image(["un", "fair"], [1.0, 1.0], legend=False)
    assert contiguous(np.nonzero(reddish(joined))[1]) and not contiguous(np.nonzero(reddish(apart))[1])
    word = np.nonzero(reddish(joined))[1]
    fits = int(word.max() - word.min()) + 16  # A line with room for "unfair" (and the margins).
    for width in range(fits, fits + 150, 3):  # Somewhere the line ends inside "unfair": it moves whole.
        picture = text_image(["so", "very", "un", "##fair"], [0.0, 0.0, 1.0, 1.0], width=width, legend=False)
        assert contiguous(np.nonzero(reddish(picture))[0]), width
    long = text_image(["x" * 200], [1.0], width=100, legend=False)
    assert long.shape[1] > 100 and reddish(long[:, -12]).any() and not reddish(long[:, -4:]).any()  # Widened.


def test_image_font_size() -> None:
    assert text_image(["a"], [1.0], font_size=32).shape[0] > text_image(["a"], [1.0], font_size=12).shape[0]


def test_save_text_writes_html_pages(tmp_path: pathlib.Path) -> None:
    for name in ("sub/page.html", "page.htm", "PAGE.HTML"):
        path = save_text(["▁naïve", "<b>"], [0.5, -0.5], tmp_path / name, mode="abs", scale=1.0)
        assert path == tmp_path / name
        page = path.read_text(encoding="utf-8")
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
        assert '<meta charset="utf-8">' in page
        assert text_html(["▁naïve", "<b>"], [0.5, -0.5], mode="abs", scale=1.0) in page
        assert "Colour:" in page and "naïve" in page


def test_save_text_writes_png(tmp_path: pathlib.Path) -> None:
    path = save_text(TOKENS, SCORES, tmp_path / "deep" / "text.png", width=250, font_size=12)
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        pixels = np.asarray(png)
    np.testing.assert_array_equal(pixels, text_image(TOKENS, SCORES, width=250, font_size=12))


def test_save_text_rejects_other_suffixes_and_options(tmp_path: pathlib.Path) -> None:
    for name in ("text.jpg", "text", "text.svg"):
        with pytest.raises(ValueError, match=r"\.html, \.htm .*or \.png"):
            save_text(["a"], [1.0], tmp_path / name)
        assert not (tmp_path / name).exists()
    with pytest.raises(TypeError, match="width"):
        save_text(["a"], [1.0], tmp_path / "t.html", width=100)
    with pytest.raises(TypeError, match="colour"):
        save_text(["a"], [1.0], tmp_path / "t.png", colour="red")


@pytest.mark.parametrize("draw", [text_html, text_image])
def test_input_errors_say_what_to_do(draw) -> None:  # type: ignore[no-untyped-def]
    name = draw.__name__
    with pytest.raises(ValueError, match=rf"{name}: 2 tokens but 3 scores; pass one score per token"):
        draw(["a", "b"], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"1-D.*shape \(2, 16\).*xc\.token_scores\(a, how='sum'\)"):
        draw(["a", "b"], np.ones((2, 16)))  # Embedding-level attribution.
    with pytest.raises(ValueError, match=r"1-D.*scores\[0\]"):
        draw(["a", "b"], np.ones((1, 2)))  # A batch of one.
    with pytest.raises(ValueError, match="1-D"):
        draw(["a"], 1.0)
    with pytest.raises(ValueError, match=r"NaN or infinity at positions \[1, 2\]"):
        draw(["a", "b", "c"], [1.0, np.nan, np.inf])
    with pytest.raises(ValueError, match="tokens is empty"):
        draw([], [])
    with pytest.raises(TypeError, match="sequence of strings.*split it first"):
        draw("a b", [1.0, 2.0])
    with pytest.raises(TypeError, match="token 1 is a int"):
        draw(["a", 7], [1.0, 2.0])
    with pytest.raises(TypeError, match="real numbers"):
        draw(["a"], ["high"])
    with pytest.raises(TypeError, match="real numbers"):
        draw(["a"], [1 + 1j])
    with pytest.raises(ValueError, match="mode must be 'signed' or 'abs'"):
        draw(["a"], [1.0], mode="log")


def test_image_size_errors() -> None:
    with pytest.raises(ValueError, match="width must be an int"):
        text_image(["a"], [1.0], width=0)
    with pytest.raises(ValueError, match="font_size must be an int"):
        text_image(["a"], [1.0], font_size=2.5)  # type: ignore[arg-type]
