"""Tests for xai_core.viz: heatmaps, overlays and PNG grids."""

from __future__ import annotations

import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from xai_core.viz import heatmap, overlay, save_grid

WHITE = np.array([255, 255, 255], np.uint8)


def _reddish(rgb: np.ndarray) -> bool:
    r, g, b = (int(v) for v in rgb)
    return r > g + 40 and r > b + 40


def _bluish(rgb: np.ndarray) -> bool:
    r, g, b = (int(v) for v in rgb)
    return b > r + 40 and b > g + 20


@pytest.fixture
def signed_map() -> np.ndarray:
    a = np.zeros((6, 6, 3), np.float32)
    a[1, 1] = [1.0, 0.5, 0.5]  # Positive.
    a[4, 4] = [-1.0, -0.5, -0.5]  # Negative.
    return a


def test_signed_colours(signed_map: np.ndarray) -> None:
    out = heatmap(signed_map)
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    assert _reddish(out[1, 1])
    assert _bluish(out[4, 4])
    np.testing.assert_array_equal(out[0, 0], WHITE)


def test_channels_summed_with_sign() -> None:
    a = np.zeros((2, 2, 3), np.float32)
    a[0, 0] = [1.0, -1.0, 0.0]  # Cancels out.
    a[1, 1] = [2.0, 0.0, 0.0]
    out = heatmap(a)
    np.testing.assert_array_equal(out[0, 0], WHITE)
    assert _reddish(out[1, 1])


def test_abs_mode_is_sign_blind_and_sequential(signed_map: np.ndarray) -> None:
    out = heatmap(signed_map, mode="abs")
    np.testing.assert_array_equal(out[1, 1], out[4, 4])
    assert _reddish(out[1, 1])
    np.testing.assert_array_equal(out[0, 0], WHITE)
    weak = heatmap(signed_map * np.where(np.arange(6)[:, None, None] == 1, 0.3, 1.0), mode="abs")
    assert int(weak[1, 1].astype(int).sum()) > int(weak[4, 4].astype(int).sum())  # Weaker = lighter.


@pytest.mark.parametrize("mode", ["signed", "abs"])
def test_all_zero_is_white_never_nan(mode: str) -> None:
    out = heatmap(np.zeros((5, 5, 3)), mode=mode)  # type: ignore[arg-type]
    assert (out == 255).all()


def test_percentile_clips_outliers() -> None:
    a = np.linspace(0.0, 1.0, 100).reshape(10, 10)
    a[0, 0] = 1000.0  # One outlier.
    clipped = heatmap(a, channel_axis=None, percentile=90.0)
    unclipped = heatmap(a, channel_axis=None, percentile=100.0)
    np.testing.assert_array_equal(clipped[0, 0], clipped[-1, -1])  # Both saturate.
    assert int(unclipped[-1, -1].astype(int).sum()) > int(clipped[-1, -1].astype(int).sum())  # Washed out.


def test_accepts_jax_arrays_and_2d_maps() -> None:
    out = heatmap(jnp.ones((3, 4)), channel_axis=None)
    assert out.shape == (3, 4, 3)
    assert _reddish(out[0, 0])


def test_heatmap_errors() -> None:
    with pytest.raises(ValueError, match="channel_axis=None"):
        heatmap(np.ones((4, 4)))
    with pytest.raises(ValueError, match="mode"):
        heatmap(np.ones((4, 4, 3)), mode="log")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="percentile"):
        heatmap(np.ones((4, 4, 3)), percentile=0.0)
    with pytest.raises(ValueError, match="NaN"):
        heatmap(np.full((4, 4, 3), np.nan))


def test_overlay_keeps_image_where_no_attribution(signed_map: np.ndarray) -> None:
    image = np.full((6, 6, 3), 0.5, np.float32)
    out = overlay(image, signed_map, alpha=0.6)
    assert out.shape == (6, 6, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out[0, 0], [128, 128, 128])  # Grey image, untouched.
    assert _reddish(out[1, 1]) and _bluish(out[4, 4])


def test_overlay_accepts_uint8_and_greyscale(signed_map: np.ndarray) -> None:
    as_float = overlay(np.full((6, 6), 0.5), signed_map)
    as_uint8 = overlay(np.full((6, 6, 3), 128, np.uint8), signed_map)
    np.testing.assert_array_equal(as_float, as_uint8)


def test_overlay_alpha_zero_is_grey_image(signed_map: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(6, 6, 3))
    out = overlay(image, signed_map, alpha=0.0)
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_overlay_errors(signed_map: np.ndarray) -> None:
    with pytest.raises(ValueError, match="must match"):
        overlay(np.zeros((5, 5, 3)), signed_map)
    with pytest.raises(ValueError, match="alpha"):
        overlay(np.zeros((6, 6, 3)), signed_map, alpha=1.5)


def test_save_grid_writes_readable_png(tmp_path: pathlib.Path, signed_map: np.ndarray) -> None:
    image = np.random.default_rng(0).uniform(size=(6, 6, 3)).astype(np.float32)
    mask = np.zeros((6, 6), bool)
    mask[2:4, 2:4] = True
    path = save_grid([[image, heatmap(signed_map), mask], [image]], tmp_path / "sub" / "grid.png", scale=3)
    assert path == tmp_path / "sub" / "grid.png"
    with Image.open(path) as png:
        assert png.format == "PNG" and png.mode == "RGB"
        width, height = png.size
        pixels = np.asarray(png)
    pad = 4
    assert width == 3 * (18 + pad) + pad and height == 2 * (18 + pad) + pad
    np.testing.assert_array_equal(pixels[pad + 3, pad + 22 + 3], heatmap(signed_map)[1, 1])  # Scaled cell.
    np.testing.assert_array_equal(pixels[pad + 22 + 1, pad + 22 + 1], WHITE)  # Missing cell is blank.


def test_save_grid_titles_enlarge_canvas(tmp_path: pathlib.Path) -> None:
    cells = [[np.zeros((8, 8, 3))] * 2] * 2
    plain = save_grid(cells, tmp_path / "plain.png")
    titled = save_grid(cells, tmp_path / "titled.png", row_titles=["a", "b"], col_titles=["input", "map"])
    with Image.open(plain) as p, Image.open(titled) as t:
        assert t.size[0] > p.size[0] and t.size[1] > p.size[1]
        assert np.asarray(t).min() == 0  # Something (black cells, text) was drawn.


def test_save_grid_errors(tmp_path: pathlib.Path) -> None:
    cell = np.zeros((4, 4, 3))
    with pytest.raises(ValueError, match="same height and width"):
        save_grid([[cell, np.zeros((5, 4, 3))]], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        save_grid([[np.zeros((4, 4, 2))]], tmp_path / "x.png")
    with pytest.raises(ValueError, match="row_titles"):
        save_grid([[cell]], tmp_path / "x.png", row_titles=["a", "b"])
    with pytest.raises(ValueError, match="col_titles"):
        save_grid([[cell]], tmp_path / "x.png", col_titles=["a", "b"])
    with pytest.raises(ValueError, match="non-empty"):
        save_grid([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="scale"):
        save_grid([[cell]], tmp_path / "x.png", scale=0)
