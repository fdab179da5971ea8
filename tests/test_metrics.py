"""Tests for xai_core.metrics: localization against ground-truth masks."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_core.metrics import localization, uniform_share


@pytest.fixture
def mask() -> jax.Array:
    return jnp.zeros((8, 8), bool).at[2:5, 3:7].set(True)


def test_map_equal_to_mask_scores_one(mask: jax.Array) -> None:
    attribution = jnp.repeat(mask[..., None].astype(jnp.float32), 3, axis=-1)
    assert float(localization(attribution, mask)) == pytest.approx(1.0)


def test_map_outside_mask_scores_zero(mask: jax.Array) -> None:
    attribution = jnp.repeat((~mask)[..., None].astype(jnp.float32), 3, axis=-1)
    assert float(localization(attribution, mask)) == 0.0


def test_uniform_map_scores_uniform_share(mask: jax.Array) -> None:
    assert float(uniform_share(mask)) == pytest.approx(12 / 64)
    assert float(localization(jnp.full((8, 8, 3), 0.7), mask)) == pytest.approx(float(uniform_share(mask)))


def test_negative_evidence_ignored(mask: jax.Array) -> None:
    attribution = jnp.where(mask, 1.0, -5.0)  # Strong negative evidence everywhere else.
    assert float(localization(attribution, mask, channel_axis=None)) == pytest.approx(1.0)


def test_channels_summed_before_positive_part(mask: jax.Array) -> None:
    # Inside: channels cancel to 0; outside: net positive. So all positive mass is outside.
    attribution = jnp.where(mask[..., None], jnp.array([1.0, -1.0, 0.0]), jnp.array([0.5, 0.0, 0.0]))
    assert float(localization(attribution, mask)) == 0.0


def test_no_positive_mass_scores_zero(mask: jax.Array) -> None:
    assert float(localization(jnp.zeros((8, 8, 3)), mask)) == 0.0
    assert float(localization(-jnp.ones((8, 8, 3)), mask)) == 0.0
    assert not jnp.isnan(localization(jnp.zeros((8, 8, 3)), mask))


def test_partial_overlap_value(mask: jax.Array) -> None:
    attribution = jnp.zeros((8, 8)).at[2, 3].set(3.0).at[0, 0].set(1.0)
    assert float(localization(attribution, mask, channel_axis=None)) == pytest.approx(0.75)


def test_integer_and_float_masks_agree(mask: jax.Array) -> None:
    attribution = jax.random.normal(jax.random.key(0), (8, 8, 3))
    expected = localization(attribution, mask)
    np.testing.assert_allclose(localization(attribution, mask.astype(jnp.int32)), expected)
    np.testing.assert_allclose(localization(attribution, mask.astype(jnp.float32)), expected)


def test_vmap_and_jit_equal_loop() -> None:
    keys = jax.random.split(jax.random.key(1), 2)
    attributions = jax.random.normal(keys[0], (5, 8, 8, 3))
    masks = jax.random.bernoulli(keys[1], 0.3, (5, 8, 8))
    batched = jax.jit(jax.vmap(localization))(attributions, masks)
    looped = jnp.stack([localization(a, m) for a, m in zip(attributions, masks)])
    np.testing.assert_allclose(batched, looped, rtol=1e-6)
    np.testing.assert_allclose(jax.vmap(uniform_share)(masks), masks.mean(axis=(1, 2)))
    assert ((batched >= 0) & (batched <= 1)).all()


def test_shape_mismatch_raises(mask: jax.Array) -> None:
    with pytest.raises(ValueError, match="channel_axis=None"):
        localization(jnp.ones((8, 8)), mask)  # (H, W) map without channel_axis=None.
    with pytest.raises(ValueError, match="mask shape"):
        localization(jnp.ones((4, 8, 8, 3)), mask)  # A batch: use vmap.
    with pytest.raises(ValueError, match="mask shape"):
        localization(jnp.ones((8, 7, 3)), mask)


# ---------------------------------------------------------------------------------------
# faithfulness: curves, correlations, infidelity

import xai_core as xc  # noqa: E402
from xai_core import metrics as xm  # noqa: E402


@pytest.fixture
def linear() -> tuple:
    """A linear score on 6x6x2 images, an image, and its gradient x input."""
    keys = jax.random.split(jax.random.key(3), 2)
    w = jax.random.normal(keys[0], (6, 6, 2))
    x = jax.random.uniform(keys[1], (6, 6, 2), minval=0.5, maxval=1.5)
    return (lambda x: jnp.sum(w * x)), x, w * x


def _random_maps(n: int, shape: tuple) -> jax.Array:
    return jax.random.normal(jax.random.key(11), (n, *shape))


def test_deletion_gradient_x_input_is_best_on_a_linear_model(linear) -> None:
    # Contributions add up, so deleting the largest w_i x_i first is the steepest possible fall.
    f, x, gxi = linear
    best = xm.deletion(f, x, gxi, steps=72, channel_axis=None)
    others = jax.vmap(lambda a: xm.deletion(f, x, a, steps=72, channel_axis=None))(_random_maps(32, x.shape))
    assert float(best) <= float(others.min())
    assert float(xm.deletion(f, x, -gxi, steps=72, channel_axis=None)) >= float(others.max())  # the worst order
    # a random order is chance: on average the straight line from f(x) to f(0)
    assert float(others.mean()) == pytest.approx(float(f(x) + f(jnp.zeros_like(x))) / 2, abs=0.2 * float(others.std()) + 0.3)
    insert_best = xm.insertion(f, x, gxi, steps=72, channel_axis=None)
    inserted = jax.vmap(lambda a: xm.insertion(f, x, a, steps=72, channel_axis=None))(_random_maps(32, x.shape))
    assert float(insert_best) >= float(inserted.max())


def test_curve_endpoints_and_lengths(linear) -> None:
    f, x, gxi = linear
    c = xm.deletion_curve(f, x, gxi, steps=4, baseline=0.25)
    assert c.shape == (5,)
    np.testing.assert_allclose([c[0], c[-1]], [f(x), f(jnp.full_like(x, 0.25))], rtol=1e-5)
    c = xm.insertion_curve(f, x, gxi, steps=4)
    np.testing.assert_allclose([c[0], c[-1]], [f(jnp.zeros_like(x)), f(x)], rtol=1e-5)
    # pixels: both channels of a pixel go together (36 pixels); elements: 72 features
    assert xm.pixel_flipping(f, x, gxi, features_in_step=5).shape == (math.ceil(36 / 5) + 1,)
    assert xm.pixel_flipping(f, x, gxi, features_in_step=5, channel_axis=None).shape == (math.ceil(72 / 5) + 1,)
    # an (H, W) map (a CAM) ranks pixels directly
    np.testing.assert_allclose(xm.pixel_flipping(f, x, gxi.sum(-1)), xm.pixel_flipping(f, x, gxi), rtol=1e-6)


def test_pixel_flipping_removes_in_the_maps_order(linear) -> None:
    f, x, gxi = linear
    curve = xm.pixel_flipping(f, x, gxi, channel_axis=None)
    contributions = np.sort(np.asarray(gxi).ravel())[::-1]
    expected = float(f(x)) - np.concatenate([[0.0], np.cumsum(contributions)])
    np.testing.assert_allclose(curve, expected, rtol=1e-4, atol=1e-4)
    lerf = xm.pixel_flipping(f, x, gxi, channel_axis=None, order="least_relevant_first")
    np.testing.assert_allclose(lerf, float(f(x)) - np.concatenate([[0.0], np.cumsum(contributions[::-1])]),
                               rtol=1e-4, atol=1e-4)


def test_region_perturbation_and_aopc(linear) -> None:
    f, x, gxi = linear
    curve = xm.region_perturbation(f, x, gxi, patch=2)
    assert curve.shape == (10,)  # 9 cells of 2x2 and the start
    cells = np.asarray(gxi).sum(-1).reshape(3, 2, 3, 2).sum(axis=(1, 3)).ravel()
    expected = float(f(x)) - np.concatenate([[0.0], np.cumsum(np.sort(cells)[::-1])])
    np.testing.assert_allclose(curve, expected, rtol=1e-4, atol=1e-4)
    assert float(xm.aopc(curve)) >= float(xm.aopc(xm.region_perturbation(f, x, -gxi, patch=2)))
    assert xm.region_perturbation(f, x, gxi, patch=2, regions=3).shape == (4,)


def test_segments_grid_and_traced_segments(linear) -> None:
    f, x, gxi = linear
    grid = xm.grid_segments((6, 6), cell=3)
    assert int(grid.max()) == 3
    np.testing.assert_array_equal(xm.grid_segments((4, 4), cells=2), xm.grid_segments((4, 4), cell=2))
    by_grid = xm.deletion_curve(f, x, gxi, steps=4, segments=grid)
    relabelled = xm.deletion_curve(f, x, gxi, steps=4, segments=grid * 10 + 7)  # any labels
    np.testing.assert_allclose(by_grid, relabelled, rtol=1e-6)
    traced = jax.jit(lambda s: xm.deletion_curve(f, x, gxi, steps=4, segments=s, n_segments=4))(grid)
    np.testing.assert_allclose(traced, by_grid, rtol=1e-6)
    with pytest.raises(ValueError, match="n_segments"):
        jax.jit(lambda s: xm.deletion_curve(f, x, gxi, steps=4, segments=s))(grid)


def test_irof_on_a_positive_score(linear) -> None:
    _, x, _ = linear
    w = jax.random.normal(jax.random.key(5), x.shape)
    w = w * jnp.sign(jnp.sum(w * (x - x.mean(axis=(0, 1)))))  # x holds net evidence for the class
    f = lambda x: jax.nn.sigmoid(jnp.sum(w * x) / 4)  # noqa: E731 - a probability, as the paper uses
    segments = xm.grid_segments((6, 6), cell=2)
    contributions = w * (x - x.mean(axis=(0, 1)))  # against IROF's baseline, the mean colour
    good = xm.irof(f, x, contributions, segments)
    bad = xm.irof(f, x, -contributions, segments)  # the evidence against first: the score rises first
    assert float(bad) < float(good)
    assert 0 < float(good) <= 1


def test_faithfulness_correlation_is_one_for_exact_contributions(linear) -> None:
    f, x, gxi = linear
    key = jax.random.key(0)
    assert float(xm.faithfulness_correlation(f, x, gxi, key=key, runs=20, subset_size=8, channel_axis=None)) == \
        pytest.approx(1.0, abs=1e-5)
    assert float(xm.mufidelity(f, x, gxi, key=key, grid=3, runs=20)) == pytest.approx(1.0, abs=1e-5)
    noise = jax.vmap(lambda a: xm.faithfulness_correlation(f, x, a, key=key, runs=50, subset_size=8))(
        _random_maps(16, x.shape))
    assert abs(float(noise.mean())) < 0.15
    subsets = jax.random.randint(key, (5, 3), 0, 36)
    given = xm.faithfulness_correlation(f, x, gxi, subsets=subsets)
    assert given.shape == ()
    with pytest.raises(ValueError, match="key="):
        xm.faithfulness_correlation(f, x, gxi)
    with pytest.raises(ValueError, match="subset_size"):
        xm.faithfulness_correlation(f, x, gxi, key=key, subset_size=37)


def test_infidelity_zero_for_the_gradient_of_a_linear_model(linear) -> None:
    f, x, gxi = linear
    w = xc.gradient(f)(x)
    key = jax.random.key(1)
    assert float(xm.infidelity(f, x, w, key=key)) < 1e-8
    assert float(xm.infidelity(f, x, 2 * w, key=key)) > 1e-3
    assert float(xm.infidelity(f, x, 2 * w, key=key, normalize=True)) < 1e-8  # only the direction counts
    noise = 0.1 * jax.random.normal(key, (4, *x.shape))
    by_hand = jnp.mean((jnp.einsum("s...,...->s", noise, gxi) - (f(x) - jax.vmap(f)(x - noise))) ** 2)
    np.testing.assert_allclose(xm.infidelity(f, x, gxi, noise=noise), by_hand, rtol=1e-5)


# ---------------------------------------------------------------------------------------
# robustness

def test_sensitivity_of_known_explanations() -> None:
    x = jnp.linspace(-1, 1, 12)
    explain = xc.gradient(lambda x: jnp.sum(x ** 2))  # a = 2x
    noise = jax.random.uniform(jax.random.key(2), (6, 12), minval=-0.05, maxval=0.05)
    norms = 2 * jnp.linalg.norm(noise, axis=1)
    np.testing.assert_allclose(xm.sensitivity_max(explain, x, noise=noise), norms.max(), rtol=1e-5)
    np.testing.assert_allclose(xm.avg_sensitivity(explain, x, noise=noise), norms.mean(), rtol=1e-5)
    relative = xm.sensitivity_max(explain, x, noise=noise, relative=True)
    np.testing.assert_allclose(relative, norms.max() / jnp.linalg.norm(2 * x), rtol=1e-5)
    inf = xm.sensitivity_max(explain, x, noise=noise, norm="inf")
    np.testing.assert_allclose(inf, 2 * jnp.abs(noise).max(), rtol=1e-5)
    assert float(xm.local_lipschitz(explain, x, key=jax.random.key(0))) == pytest.approx(2.0, rel=1e-5)
    linear = xc.gradient(lambda x: jnp.sum(3 * x))
    assert float(xm.sensitivity_max(linear, x, key=jax.random.key(0))) == 0.0
    drawn = xm.sensitivity_max(explain, x, key=jax.random.key(0), radius=0.05, samples=20)
    assert 0 < float(drawn) <= 2 * 0.05 * np.sqrt(12)
    with pytest.raises(ValueError, match="key="):
        xm.sensitivity_max(explain, x)
    with pytest.raises(TypeError, match="attribution function"):
        xm.sensitivity_max(jnp.ones(3), x, key=jax.random.key(0))


# ---------------------------------------------------------------------------------------
# localization

def test_pointing_game_hits_misses_and_tolerance(mask: jax.Array) -> None:
    on = jnp.zeros((8, 8)).at[3, 4].set(1.0)
    off = jnp.zeros((8, 8)).at[6, 4].set(1.0)  # two rows below the object
    assert float(xm.pointing_game(on, mask, channel_axis=None)) == 1.0
    assert float(xm.pointing_game(off, mask, channel_axis=None)) == 0.0
    assert float(xm.pointing_game(off, mask, tolerance=2, channel_axis=None)) == 1.0
    assert float(xm.pointing_game(off, mask, tolerance=1, channel_axis=None)) == 0.0
    assert np.isnan(xm.pointing_game(on, jnp.zeros((8, 8), bool), channel_axis=None))


def test_relevance_mass_rank_top_k_and_auc(mask: jax.Array) -> None:
    from sklearn.metrics import roc_auc_score

    inside = mask.astype(jnp.float32)
    assert float(xm.relevance_rank(inside + 0.01 * jnp.arange(64.0).reshape(8, 8) / 64, mask, channel_axis=None)) == 1.0
    assert float(xm.top_k_intersection(inside, mask, k=12, channel_axis=None)) == 1.0
    assert float(xm.top_k_intersection(1 - inside, mask, k=12, channel_axis=None)) == 0.0
    signed = jnp.where(mask, 1.0, -0.5)
    assert float(xm.relevance_mass(signed, mask, channel_axis=None)) == 1.0
    # the signed map's ratio leaves [0, 1]: 12 / (12 - 26)
    assert float(xm.relevance_mass(signed, mask, part="all", channel_axis=None)) == pytest.approx(12 / (12 - 26))
    rng = np.random.default_rng(0)
    for a in (rng.normal(size=(8, 8)), rng.integers(0, 3, size=(8, 8)).astype(float)):  # with and without ties
        assert float(xm.mask_auc(jnp.asarray(a), mask, channel_axis=None)) == pytest.approx(
            roc_auc_score(np.asarray(mask).ravel(), a.ravel()), rel=1e-6)
    assert np.isnan(xm.mask_auc(inside, jnp.ones((8, 8), bool), channel_axis=None))


# ---------------------------------------------------------------------------------------
# complexity and similarity

def test_sparseness_and_complexity_extremes() -> None:
    from scipy.stats import entropy

    assert float(xm.sparseness(jnp.full((5, 5, 3), 0.3))) == pytest.approx(0.0, abs=1e-7)
    assert float(xm.sparseness(jnp.zeros((5, 5)), channel_axis=None)) == 0.0
    one_hot = jnp.zeros((5, 5)).at[2, 2].set(-4.0)
    assert float(xm.sparseness(one_hot, channel_axis=None)) == pytest.approx(1 - 1 / 25)
    assert float(xm.complexity(jnp.ones((5, 5)), channel_axis=None)) == pytest.approx(np.log(25))
    assert float(xm.complexity(one_hot, channel_axis=None)) == 0.0
    a = np.random.default_rng(1).normal(size=(5, 5))
    assert float(xm.complexity(jnp.asarray(a), channel_axis=None)) == pytest.approx(entropy(np.abs(a).ravel()), rel=1e-5)
    assert int(xm.effective_complexity(one_hot, channel_axis=None)) == 1


def test_similarities_against_scipy_and_skimage() -> None:
    from scipy.stats import spearmanr
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(16, 16)), rng.normal(size=(16, 16))
    b = 0.5 * a + b
    tied = np.round(a)
    sim = xm.similarity
    assert float(sim.spearman(jnp.asarray(tied), jnp.asarray(b))) == pytest.approx(spearmanr(tied.ravel(), b.ravel())[0], rel=1e-5)
    assert float(sim.spearman_abs(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
        spearmanr(np.abs(a).ravel(), np.abs(b).ravel())[0], rel=1e-5)
    span = max(a.max(), b.max()) - min(a.min(), b.min())
    assert float(sim.ssim(jnp.asarray(a), jnp.asarray(b))) == pytest.approx(
        structural_similarity(a, b, data_range=span), rel=1e-4)
    assert float(sim.hog_similarity(jnp.asarray(a), jnp.asarray(a))) == pytest.approx(1.0)
    assert float(sim.hog_distance(jnp.asarray(a), jnp.asarray(a))) == 0.0
    assert float(sim.hog_similarity(jnp.asarray(a), jnp.asarray(b))) < 0.9


# ---------------------------------------------------------------------------------------
# randomization

def _two_layer() -> tuple:
    # "z_first" is used first though it sorts last: the layer order must follow the program
    params = {"z_first": {"w": jnp.linspace(-1, 1, 12).reshape(3, 4), "b": jnp.zeros(4)},
              "a_last": {"w": jnp.linspace(1, -1, 8).reshape(4, 2)}}
    f = lambda p, x: jnp.tanh(x @ p["z_first"]["w"] + p["z_first"]["b"]) @ p["a_last"]["w"]  # noqa: E731
    explain = lambda p, x: xc.gradient(lambda x: f(p, x)[0])(x)  # noqa: E731
    return params, explain


def test_param_layers_follow_the_program_not_the_keys() -> None:
    params, explain = _two_layer()
    assert xm.param_layers(explain, params, jnp.ones(3)) == ["a_last", "z_first"]
    torch_style = {"fc1.weight": jnp.ones((4, 3)), "fc1.bias": jnp.ones(4), "bn.running_mean": jnp.ones(4)}
    layers = xm.param_layers(lambda p, x: p["fc1.weight"] @ x + p["fc1.bias"] + p["bn.running_mean"], torch_style,
                             jnp.ones(3))
    assert layers == ["fc1"]  # the 1-d normalization statistics are not a weight layer


def test_model_randomization_cascading_and_independent() -> None:
    params, explain = _two_layer()
    x = jnp.array([0.3, -0.2, 0.5])
    key = jax.random.key(0)
    randomized = xm.randomize(params, ["a_last", "z_first"], key)
    assert not np.allclose(randomized["a_last"]["w"], params["a_last"]["w"])
    np.testing.assert_array_equal(randomized["z_first"]["b"], params["z_first"]["b"])  # a constant leaf stays
    cascading = xm.model_randomization(explain, params, x, randomized=randomized, similarity="pearson",
                                       channel_axis=None)
    independent = xm.model_randomization(explain, params, x, randomized=randomized, order="independent",
                                         similarity="pearson", channel_axis=None)
    top_only = {"a_last": randomized["a_last"], "z_first": params["z_first"]}
    bottom_only = {"a_last": params["a_last"], "z_first": randomized["z_first"]}
    ref = explain(params, x)
    np.testing.assert_allclose(cascading["a_last"], xm.pearson(ref, explain(top_only, x)), rtol=1e-5)
    np.testing.assert_allclose(independent["a_last"], cascading["a_last"], rtol=1e-6)
    np.testing.assert_allclose(cascading["z_first"], xm.pearson(ref, explain(randomized, x)), rtol=1e-5)
    np.testing.assert_allclose(independent["z_first"], xm.pearson(ref, explain(bottom_only, x)), rtol=1e-5)
    chunked = xm.model_randomization(explain, params, x, key=key, batch_size=None, similarity="pearson",
                                     channel_axis=None)
    np.testing.assert_allclose(list(chunked.values()), list(cascading.values()), rtol=1e-6)
    with pytest.raises(ValueError, match="key="):
        xm.model_randomization(explain, params, x)


def test_random_logit_draws_another_class() -> None:
    w = jax.random.normal(jax.random.key(0), (4, 8, 8))
    explain = lambda x, c: xc.gradient(lambda x: jnp.sum(w[c] * x))(x)  # noqa: E731
    x = jnp.ones((8, 8))
    others = {int((0 + 1 + jax.random.randint(k, (), 0, 3)) % 4) for k in jax.random.split(jax.random.key(1), 20)}
    assert others == {1, 2, 3}
    value = xm.random_logit(explain, x, 0, num_classes=4, other=2, similarity="pearson", channel_axis=None)
    np.testing.assert_allclose(value, xm.pearson(w[0], w[2]), rtol=1e-5)
    assert float(xm.random_logit(explain, x, 0, num_classes=4, other=0, channel_axis=None)) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------
# jit == eager, vmap == loop, chunked == unchunked

def test_metrics_jit_vmap_and_chunking(linear) -> None:
    f, x, gxi = linear
    xs = jnp.stack([x, x * 0.5, x + 0.1])
    maps = jnp.stack([gxi, -gxi, gxi ** 2])
    key = jax.random.key(4)
    cases = {
        "deletion": lambda x, a, b: xm.deletion(f, x, a, steps=9, batch_size=b),
        "pixel_flipping": lambda x, a, b: xm.pixel_flipping(f, x, a, features_in_step=4, batch_size=b),
        "faithfulness_correlation": lambda x, a, b: xm.faithfulness_correlation(f, x, a, key=key, runs=7,
                                                                                subset_size=5, batch_size=b),
        "infidelity": lambda x, a, b: xm.infidelity(f, x, a, key=key, samples=5, batch_size=b),
        "sensitivity_max": lambda x, a, b: xm.sensitivity_max(xc.gradient_x_input(f), x, key=key, samples=5,
                                                              batch_size=b),
        "road": lambda x, a, b: xm.road(f, x, a, key=key, percentages=(0.2, 0.5, 0.8), batch_size=b),
        "region_perturbation": lambda x, a, b: xm.region_perturbation(f, x, a, patch=2, batch_size=b),
        "irof": lambda x, a, b: xm.irof(lambda x: jax.nn.sigmoid(f(x)), x, a, np.arange(36).reshape(6, 6) // 4, batch_size=b),
        "mufidelity": lambda x, a, b: xm.mufidelity(f, x, a, key=key, grid=3, runs=6, batch_size=b),
    }
    for name, metric in cases.items():
        eager = jnp.stack([metric(xi, ai, None) for xi, ai in zip(xs, maps)])
        batched = jax.jit(jax.vmap(lambda x, a: metric(x, a, 2)))(xs, maps)
        np.testing.assert_allclose(batched, eager, rtol=2e-5, atol=1e-5, err_msg=name)


def test_road_imputes_instead_of_a_constant(linear) -> None:
    f, x, gxi = linear
    key = jax.random.key(0)
    morf = xm.road(f, x, gxi, key=key, noise=0.0)
    lerf = xm.road(f, x, gxi, key=key, noise=0.0, order="least_relevant_first")
    assert morf.shape == lerf.shape == (9,)
    assert float(morf.mean()) < float(lerf.mean())
    hole = jnp.zeros((6, 6), bool).at[2:4, 2:4].set(True)
    filled = xm.impute(x, hole, key=key, noise=0.0)
    np.testing.assert_array_equal(filled[~hole], x[~hole])
    assert float(jnp.abs(filled[hole]).min()) > 0  # not a constant fill
    # each filled pixel is the weighted mean of its neighbours (the linear system's equation)
    from xai_core.metrics.road import _spread

    mean = _spread(filled) / _spread(jnp.ones_like(filled))
    np.testing.assert_allclose(filled[hole], mean[hole], rtol=1e-3)
    with pytest.raises(ValueError, match="percentages"):
        xm.road(f, x, gxi, key=key, percentages=(0.0, 1.0))


def test_cascading_randomization_gradient_passes_guided_backprop_fails() -> None:
    """Adebayo et al. 2018, Fig. 2: on a trained CNN, the gradient's map decorrelates as the top
    layers are randomized; guided backprop's stays similar (it fails the sanity check)."""
    from xai_core.adapters import from_flax
    from xai_core.demo import train_shapes_model

    trained = train_shapes_model(jax.random.key(0), n_train=1000, epochs=2, n_test=6, size=32, progress=False)
    m = from_flax(trained.module, trained.variables)
    xs, ts = trained.test.images, trained.test.labels

    def curve(method: str) -> np.ndarray:
        def one(x: jax.Array, t: jax.Array) -> jax.Array:
            explain = lambda p, x: xc.attribute(m.with_params(p).score(t), x, method=method)  # noqa: E731
            values = xm.model_randomization(explain, m.params, x, key=jax.random.key(1))
            return jnp.stack(list(values.values()))

        return np.asarray(jax.jit(jax.vmap(one))(xs, ts).mean(axis=0))

    gradient, guided = curve("gradient"), curve("guided_backprop")
    print("spearman |map| per randomized layer, top first: gradient", gradient.round(3), "guided", guided.round(3))
    assert gradient.shape == guided.shape == (5,)  # Dense_0, Conv_3 .. Conv_0
    assert (guided[:2] > 0.65).all() and (gradient[:2] < 0.55).all()
    assert (guided[:2] - gradient[:2] > 0.25).all()
    assert gradient[-1] < 0.3 and guided[-1] < guided[0]
