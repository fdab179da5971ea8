"""XRAI: PAIR's properties (the heatmap sums to the attribution, is constant on each region, and the
ranked regions' gains do not increase), a cross-check against PAIR's ``saliency.core.XRAI`` (0.2.1)
on the same JAX function, segments and IG (heatmap to 1e-4, ranked masks equal, float64), our
Felzenszwalb masks against PAIR's, the walk over atoms against the walk over pixels, jit / vmap with
traced targets, and the bad inputs.

PAIR runs as it is (no patch needed with numpy 2.4 / scikit-image 0.26); its ``call_model_function``
is framework-free, so it gets a jitted JAX gradient as numpy. Its IG sums the gradients in float32,
which is why the heatmaps agree to ~1e-7, not to float64's last digit.
"""

from __future__ import annotations

import importlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits
from reference_imports import require
from xai_core.attribution.xrai import XRAIRegions, xrai, xrai_regions, xrai_segments

logits_fn = cnn_logits(seed=3)
score = lambda x: logits_fn(x)[1]  # noqa: E731


def image(seed: int, size: int = 24, dtype=np.float64) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0.0, 1.0, (size, size, 3)).astype(dtype)


def boxes(seed: int, size: int = 24, n: int = 30) -> list[np.ndarray]:
    """Overlapping random rectangles, plus a 4x4 grid of cells so most pixels are covered."""
    rng = np.random.default_rng(seed)
    masks = []
    for _ in range(n):
        (r0, r1), (c0, c1) = np.sort(rng.integers(0, size + 1, (2, 2)), axis=1)
        m = np.zeros((size, size), bool)
        m[r0:r1 + 1, c0:c1 + 1] = True
        masks.append(m)
    cells = np.arange(size) * 4 // size
    return masks + [(cells[:, None] * 4 + cells[None]) == k for k in range(16)]


def check_pair_properties(r: XRAIRegions) -> None:
    """PAIR's ``_assert_xrai_correctness``, on our result."""
    heat, a, ranks, count = (np.asarray(v) for v in (r.heatmap, r.attribution, r.ranks, r.count))
    np.testing.assert_allclose(heat.sum(), a.sum(), rtol=1e-12, atol=1e-12)
    assert ranks.min() == 1 and ranks.max() == count
    gains = np.asarray(r.gains)
    assert np.isnan(gains[count:]).all() and not np.isnan(gains[:count]).any()
    masks = np.asarray(r.ranked_masks)
    assert masks.shape == (len(gains),) + heat.shape and not masks[count:].any()
    np.testing.assert_array_equal(masks[:count].sum(0), 1)  # a partition of the image
    for i in range(count):
        region = masks[i]
        assert region.any() and heat[region].min() == heat[region].max() == gains[i]
        np.testing.assert_allclose(heat[region].sum(), a[region].sum(), rtol=1e-10, atol=1e-12)
    assert (np.diff(gains[:count - 1]) <= 0).all()  # the last region (the uncovered rest) may be higher


@pytest.mark.parametrize("mode, threshold", [("full", 1.0), ("full", 0.4), ("fast", 1.0)])
def test_pair_properties(mode: str, threshold: float, x64: None) -> None:
    a = np.random.default_rng(1).normal(size=(24, 24, 3))
    r = xrai_regions(score, attribution=a, segments=boxes(2), mode=mode, area_threshold=threshold,
                     min_pixel_diff=5)(image(0))
    check_pair_properties(r)
    np.testing.assert_array_equal(r.attribution, a.max(-1))
    assert int(r.count) > 5
    if threshold < 1:  # stopped early: the uncovered rest is one region, holding its mean
        rest = np.asarray(r.ranked_masks[int(r.count) - 1])
        assert 0.2 < rest.mean() < 0.6
        np.testing.assert_allclose(r.gains[int(r.count) - 1], a.max(-1)[rest].mean(), rtol=1e-12)


def test_channel_sum_gives_ig_completeness_and_heatmap_has_x_shape(x64: None) -> None:
    x, masks = image(0, 16), boxes(3, 16)
    r = xrai_regions(score, 0.0, steps=16, rule="gauss_legendre", segments=masks, channel_reduce="sum",
                     min_pixel_diff=4)(x)
    gap = float(r.heatmap.sum()) - float(score(jnp.asarray(x)) - score(jnp.zeros_like(x)))
    assert abs(gap) < 1e-6
    h = xrai(score, 0.0, steps=16, rule="gauss_legendre", segments=masks, channel_reduce="sum", min_pixel_diff=4)(x)
    assert h.shape == x.shape and h.dtype == jnp.float64
    np.testing.assert_array_equal(h, np.broadcast_to(np.asarray(r.heatmap)[..., None], x.shape))
    # channels first, and an image without channels
    first = lambda x: score(jnp.moveaxis(x, 0, -1))  # noqa: E731
    h0 = xrai(first, 0.0, steps=16, rule="gauss_legendre", segments=masks, channel_reduce="sum", channel_axis=0,
              min_pixel_diff=4)(jnp.moveaxis(x, -1, 0))
    np.testing.assert_allclose(h0, jnp.moveaxis(h, -1, 0), rtol=1e-12)
    flat = xrai_regions(lambda x: jnp.sum(x ** 3), 0.0, steps=4, segments=masks, channel_axis=None,
                        min_pixel_diff=4)(x[..., 0])
    check_pair_properties(flat)


def test_attribution_function_and_integer_segment_map(x64: None) -> None:
    x = image(4, 16)
    grid = xc.segments.grid(x.shape, 4)  # (16, 16, 1) ids 0..15
    by_map = xrai_regions(score, attribution=xc.gradient(score), segments=grid, min_pixel_diff=1)(x)
    cells = [grid[..., 0] == k for k in range(16)]
    by_list = xrai_regions(score, attribution=xc.gradient(score)(x), segments=cells, min_pixel_diff=1)(x)
    for got, want in zip(by_map, by_list):
        np.testing.assert_array_equal(got, want)
    assert int(by_map.count) == 16  # disjoint cells: each is a region, ranked by its mean
    means = [np.asarray(by_map.attribution)[c].mean() for c in cells]
    np.testing.assert_allclose(by_map.gains[:16], np.sort(means)[::-1], rtol=1e-12)


# --- against PAIR's saliency.core.XRAI -----------------------------------------------------------

@pytest.fixture(scope="module")
def pair():
    return require(lambda: importlib.import_module("saliency.core"))  # skipped where missing, an error in CI


def pair_model(score_fn):
    """PAIR's framework-free call_model_function over a jitted JAX gradient."""
    from saliency.core.base import INPUT_OUTPUT_GRADIENTS

    grads = jax.jit(jax.vmap(jax.grad(score_fn)))

    def call(batch, call_model_args=None, expected_keys=None):
        return {INPUT_OUTPUT_GRADIENTS: np.asarray(grads(jnp.asarray(batch)))}

    return call


@pytest.mark.parametrize("mode, threshold", [("full", 1.0), ("full", 0.5), ("fast", 1.0)])
def test_same_as_pair_on_the_same_function_segments_and_ig(pair, mode: str, threshold: float, x64: None) -> None:
    x = image(5)
    masks = list(xrai_segments(x))
    params = pair.XRAIParameters(steps=12, area_threshold=threshold, return_xrai_segments=True,
                                 flatten_xrai_segments=False, return_ig_attributions=True, algorithm=mode)
    theirs = pair.XRAI().GetMaskWithDetails(x, pair_model(score), segments=masks, batch_size=12,
                                            extra_parameters=params)
    ours = xrai_regions(score, steps=12, segments=masks, mode=mode, area_threshold=threshold)(x)
    ig = np.mean(theirs.ig_attribution, axis=0).max(-1)
    np.testing.assert_allclose(ours.attribution, ig, atol=1e-6 * np.abs(ig).max())
    heat = theirs.attribution_mask
    np.testing.assert_allclose(ours.heatmap, heat, atol=1e-4 * np.abs(heat).max())
    assert int(ours.count) == len(theirs.segments) > 3
    np.testing.assert_array_equal(ours.ranked_masks[:int(ours.count)], np.stack(theirs.segments))
    if threshold == 1.0:  # the registry's form: PAIR's GetMask on every channel
        h = xrai(score, steps=12, segments=masks, mode=mode)(x)
        np.testing.assert_allclose(h[..., 1], heat, atol=1e-4 * np.abs(heat).max())


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_greedy_walk_is_pairs_exactly_on_a_given_attribution(pair, mode: str, x64: None) -> None:
    """PAIR's own test setup (a random attribution, no IG): exact in float64, flat ranks too."""
    from saliency.core.xrai import XRAI

    a, masks = np.random.default_rng(6).random((24, 24, 3)) - 0.4, boxes(7)
    walk = XRAI._xrai if mode == "full" else XRAI._xrai_fast
    extra = {"area_perc_th": 0.7} if mode == "full" else {}
    heat, flat = walk(a.max(-1), masks, min_pixel_diff=10, integer_segments=True, **extra)
    ours = xrai_regions(score, attribution=a, segments=masks, mode=mode, min_pixel_diff=10,
                        area_threshold=extra.get("area_perc_th", 1.0))(image(0))
    np.testing.assert_allclose(ours.heatmap, heat, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(ours.ranks, flat)


@pytest.mark.parametrize("mode, threshold", [("full", 1.0), ("full", 0.6), ("fast", 1.0)])
def test_walk_over_atoms_is_the_walk_over_pixels(mode: str, threshold: float, x64: None) -> None:
    """Concrete masks are walked over atoms (the pixels of the same membership in every mask), traced
    ones over pixels: the same regions and ranks, gains equal up to the reordered float64 sums."""
    from xai_core.attribution.xrai.masks import _atoms

    rng = np.random.default_rng(11)
    blocks = [np.kron(rng.random((3, 3)) < 0.4, np.ones((7, 7), bool)) for _ in range(20)]
    masks = np.stack(boxes(12, 21, 15) + blocks + [np.zeros((21, 21), bool)])  # 441 pixels: not whole words
    a = rng.normal(size=(21, 21))
    atom_masks, atom_of_pixel, counts = _atoms(masks.reshape(len(masks), -1))
    np.testing.assert_array_equal(atom_masks[:, atom_of_pixel].reshape(masks.shape), masks)
    np.testing.assert_array_equal(counts, np.bincount(atom_of_pixel))
    assert atom_masks.shape[1] < 441 // 3
    run = lambda s: xrai_regions(score, attribution=a, segments=s, mode=mode, channel_axis=None,  # noqa: E731
                                 area_threshold=threshold, min_pixel_diff=3)(a)
    atoms, pixels = run(masks), jax.jit(run)(jnp.asarray(masks))  # traced masks: pixels are the atoms
    assert int(atoms.count) == int(pixels.count) > 10
    np.testing.assert_array_equal(atoms.ranks, pixels.ranks)
    np.testing.assert_allclose(atoms.heatmap, pixels.heatmap, rtol=1e-13, atol=1e-13 * np.abs(a).max())
    np.testing.assert_allclose(atoms.gains, pixels.gains, rtol=1e-13, atol=1e-13 * np.abs(a).max())
    check_pair_properties(atoms)


def test_felzenszwalb_masks_are_pairs(pair) -> None:
    from saliency.core.xrai import _get_segments_felzenszwalb

    x = image(8, 20)
    ours = xrai_segments(x)
    theirs = _get_segments_felzenszwalb(x)
    assert ours.shape == (len(theirs), 20, 20) and ours.dtype == bool
    np.testing.assert_array_equal(ours, np.stack(theirs))
    np.testing.assert_array_equal(xrai_segments(np.moveaxis(x, -1, 0), channel_axis=0), ours)
    plain = xrai_segments(x, resize=False, dilation_radius=0)  # each scale a partition of the image
    np.testing.assert_array_equal(plain.sum(0), len(xc.attribution.xrai.SCALES))
    assert xrai_segments(x[..., 0], channel_axis=None).shape[1:] == (20, 20)  # a grey image


# --- jit, vmap, traced targets -------------------------------------------------------------------

def test_jit_and_vmap_with_traced_targets() -> None:
    xs = jnp.asarray(np.stack([image(s, 16, np.float32) for s in range(3)]))
    ts = jnp.array([0, 3, 1])
    masks = boxes(9, 16)
    for mode in ("full", "fast"):
        def fn(x, t, mode=mode):
            return xrai(lambda x: logits_fn(x)[t], steps=6, segments=masks, mode=mode, min_pixel_diff=4)(x)

        batched = jax.jit(jax.vmap(fn))(xs, ts)
        loop = np.stack([fn(x, int(t)) for x, t in zip(xs, ts)])
        np.testing.assert_allclose(batched, loop, rtol=1e-5, atol=1e-6)
    # per-example masks, traced, stacked (padded with an all-False mask: it is never chosen)
    stacks = jnp.asarray(np.stack([np.stack(boxes(s, 16) + [np.zeros((16, 16), bool)]) for s in range(3)]))
    regions = jax.jit(jax.vmap(lambda x, s: xrai_regions(score, steps=4, segments=s, min_pixel_diff=4)(x)))(xs, stacks)
    assert regions.ranked_masks.shape == (3, stacks.shape[1] + 1, 16, 16)
    for x, s, heat in zip(xs, stacks, regions.heatmap):
        np.testing.assert_allclose(heat, xrai_regions(score, steps=4, segments=list(s), min_pixel_diff=4)(x).heatmap,
                                   rtol=1e-5, atol=1e-6)


def test_registered() -> None:
    x, masks = image(0, 16, np.float32), boxes(1, 16)
    np.testing.assert_array_equal(xc.attribute(score, x, method="xrai", segments=masks, steps=4, min_pixel_diff=4),
                                  xrai(score, segments=masks, steps=4, min_pixel_diff=4)(x))


# --- bad input -------------------------------------------------------------------------------------

def test_bad_inputs_are_clear_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    x, masks = jnp.asarray(image(0, 16, np.float32)), boxes(1, 16)
    with pytest.raises(ValueError, match=r"unknown mode 'fulll'.*Did you mean 'full'"):
        xrai(score, mode="fulll")
    with pytest.raises(ValueError, match=r"steps must be an integer >= 2, got 0"):
        xrai(score, steps=0)
    with pytest.raises(ValueError, match=r"min_pixel_diff must be an integer >= 1"):
        xrai(score, min_pixel_diff=0)
    with pytest.raises(ValueError, match=r"area_threshold=0.5 needs mode='full'"):
        xrai(score, mode="fast", area_threshold=0.5)
    with pytest.raises(ValueError, match=r"baseline is IG's"):
        xrai(score, baseline=0.0, attribution=x)
    with pytest.raises(ValueError, match=r"masks of shape \(46, 12, 12\) do not match x's spatial shape \(16, 16\)"):
        xrai(score, segments=[m[:12, :12] for m in masks])(x)
    with pytest.raises(ValueError, match=r"segment map of shape \(8, 8\) does not match"):
        xrai(score, segments=np.zeros((8, 8), int))(x)
    with pytest.raises(ValueError, match=r"segments is an empty list"):
        xrai(score, segments=[])(x)
    with pytest.raises(ValueError, match=r"cover no pixel"):
        xrai(score, segments=np.zeros((3, 16, 16), bool))(x)
    with pytest.raises(TypeError, match=r"a list of segments holds boolean masks, got dtype int"):
        xrai(score, segments=[np.zeros((16, 16), int)])(x)
    with pytest.raises(TypeError, match=r"neither boolean masks nor integer ids"):
        xrai(score, segments=np.zeros((3, 16, 16)))(x)
    with pytest.raises(ValueError, match=r"attribution of shape \(16, 16\) does not match"):
        xrai(score, attribution=np.zeros((16, 16)), segments=masks)(x)
    with pytest.raises(ValueError, match=r"segments=None computes Felzenszwalb segments on the host"):
        jax.jit(xrai(score, steps=2))(x)
    with pytest.raises(ValueError, match=r"traced integer segment map"):
        jax.jit(lambda x, s: xrai(score, steps=2, segments=s)(x))(x, jnp.zeros((16, 16), jnp.int32))
    with pytest.raises(ValueError, match=r"the image is constant"):
        xrai_segments(np.ones((16, 16, 3)))
    monkeypatch.setitem(sys.modules, "skimage", None)  # what `import skimage` sees without scikit-image
    with pytest.raises(ImportError, match=r"pip install 'xai-core\[segments\]'"):
        xrai(score, steps=2)(x)
