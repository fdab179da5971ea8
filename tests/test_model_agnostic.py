"""The model-agnostic family (issue 26): values from Captum's own tests, Shapley's axioms
(efficiency, symmetry, dummy, linearity), exact recovery of a linear model, replayed draws,
feature groups over pytrees, incremental ablation, segments and clear errors. Cross-checks against
Captum, shap and lime on the same weights are in test_model_agnostic_refs.py; jit, vmap, traced
targets, chunking and dtypes in test_registry.py."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc

key = jax.random.key(0)
EXACT = ("shapley", "shapley_sampling", "kernel_shap", "owen")  # efficiency holds exactly for these


@pytest.fixture
def x64():
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)


def captum_multilayer(x: jax.Array) -> jax.Array:
    """Captum's ``BasicModel_MultiLayer`` (testing/helpers/basic_models.py), target 0."""
    hidden = jax.nn.relu(jnp.ones((4, 3), x.dtype) @ x + jnp.array([-10.0, 1.0, 1.0, 1.0], x.dtype))
    return (jnp.ones((2, 4), x.dtype) @ hidden + jnp.array([-1.0, 1.0], x.dtype))[0]


def run(method: str, f, x, **options):
    """Each method at a budget that makes it exact where it can be (K <= 6 here)."""
    budget = {"shapley_sampling": {"permutations": np.array(list(itertools.permutations(range(k_of(x, options)))))},
              "kernel_shap": {"samples": 2 ** k_of(x, options)}, "owen": {"samples": 10_000},
              "lime": {"samples": 512, "alpha": 1e-9}}.get(method, {})
    return xc.attribute(f, x, method=method, key=key, **budget, **options)


def k_of(x, options) -> int:
    mask = options.get("feature_mask")
    return x.size if mask is None else int(np.max(mask)) + 1


def test_captum_multilayer_values(x64) -> None:
    x = jnp.array([20.0, 50.0, 30.0])
    for method in EXACT:  # Owen values equal Shapley values with two features (one split)
        np.testing.assert_allclose(run(method, captum_multilayer, x, feature_mask=np.array([0, 0, 1])), [275, 275, 115],
                                   atol=1e-9)
        if method != "owen":
            np.testing.assert_allclose(run(method, captum_multilayer, x), [76.667, 196.667, 116.667], atol=1e-3)
            np.testing.assert_allclose(run(method, captum_multilayer, x, baseline=jnp.array([10.0, 20.0, 10.0])),
                                       [40, 120, 80], atol=1e-9)


def test_owen_differs_from_shapley_only_across_the_hierarchy(x64) -> None:
    """With three features the halves are {0} and {1, 2}: feature 0 meets the union {1, 2} as a
    whole (two-player game), features 1 and 2 share the union's value by Shapley within it."""
    x = jnp.array([20.0, 50.0, 30.0])
    v = lambda *on: float(captum_multilayer(jnp.where(jnp.array(on, bool), x, 0.0)))  # noqa: E731
    a0 = 0.5 * (v(1, 0, 0) - v(0, 0, 0)) + 0.5 * (v(1, 1, 1) - v(0, 1, 1))
    np.testing.assert_allclose(xc.owen(captum_multilayer)(x)[0], a0, atol=1e-9)
    np.testing.assert_allclose(xc.owen(captum_multilayer)(x).sum(), v(1, 1, 1) - v(0, 0, 0), atol=1e-9)


def nonlinear(x: jax.Array) -> jax.Array:
    return jnp.tanh(x[0] * x[1]) + x[2] ** 2 * x[3] + jnp.sin(x[4]) + 0.0 * x[5]


@pytest.mark.parametrize("method", EXACT)
def test_efficiency_symmetry_dummy(method: str, x64) -> None:
    x = jnp.array([0.7, -1.3, 0.4, 2.0, 1.1, 3.0])
    a = run(method, nonlinear, x, baseline=0.2)
    np.testing.assert_allclose(a.sum(), nonlinear(x) - nonlinear(jnp.full(6, 0.2)), rtol=1e-12, atol=1e-12)
    assert abs(float(a[5])) < 1e-12  # dummy: feature 5 is never read
    sym = lambda x: jnp.tanh(x[0] * x[1]) + x[2]  # noqa: E731 - 0 and 1 symmetric at equal inputs
    b = run(method, sym, jnp.array([0.5, 0.5, 1.0]))
    np.testing.assert_allclose(b[0], b[1], atol=1e-12)


def test_shapley_is_linear_in_the_game_and_averages_a_background_set(x64) -> None:
    x = jnp.array([0.7, -1.3, 0.4, 2.0, 1.1, 3.0])
    g = lambda x: jnp.cos(x).prod()  # noqa: E731
    both = xc.shapley(lambda x: nonlinear(x) + 3 * g(x))(x)
    np.testing.assert_allclose(both, xc.shapley(nonlinear)(x) + 3 * xc.shapley(g)(x), atol=1e-12)
    background = jax.random.normal(key, (4, 6), jnp.float64)
    mean = np.mean([xc.shapley(nonlinear, baseline=b)(x) for b in background], axis=0)
    for method in EXACT:  # each is linear in the game: a background set is the mean over its baselines
        expected = mean if method != "owen" else np.mean([run(method, nonlinear, x, baseline=b) for b in background], 0)
        np.testing.assert_allclose(run(method, nonlinear, x, baselines=background), expected, atol=1e-10)
    np.testing.assert_allclose(run("owen", nonlinear, x, baselines=background).sum(),
                               nonlinear(x) - jax.vmap(nonlinear)(background).mean(), atol=1e-12)


@pytest.mark.parametrize("method", ["feature_ablation", *EXACT, "lime"])
def test_a_linear_model_gets_its_exact_contributions(method: str, x64) -> None:
    w = jnp.array([1.0, -2.0, 0.5, 3.0, 0.0, 1.5])
    x, b = jnp.arange(6.0), jnp.full(6, 0.5)
    mask = np.array([0, 0, 1, 2, 3, 3])
    a = run(method, lambda x: w @ x + 1.0, x, baseline=b, feature_mask=mask)
    contributions = w * (x - b)
    per_group = np.array([contributions[mask == k].sum() for k in range(4)])[mask]
    np.testing.assert_allclose(a, per_group, rtol=1e-6, atol=1e-6)


def test_pytree_inputs_fixed_inputs_and_groups_across_inputs(x64) -> None:
    f = lambda x: x["a"] @ jnp.array([1.0, 2.0]) * x["scale"] + x["b"].sum() ** 2  # noqa: E731
    x = {"a": jnp.array([1.0, 2.0]), "b": jnp.array([[1.0, 3.0]]), "scale": xc.fixed(jnp.array(2.0))}
    mask = {"a": np.array([0, 1]), "b": np.array([[1, 2]]), "scale": None}  # id 1 spans both inputs
    a = xc.shapley(f, feature_mask=mask)(x)
    assert a["scale"] is None and a["a"].shape == (2,) and a["b"].shape == (1, 2)
    assert float(a["a"][1]) == float(a["b"][0, 0])  # one group, one value
    whole = xc.shapley(f)(x)  # None: every element its own feature, numbered across inputs
    np.testing.assert_allclose(sum(float(v.sum()) for v in jax.tree.leaves(whole)), f(
        {"a": x["a"], "b": x["b"], "scale": 2.0}) - 0.0, atol=1e-12)


def cnn(x: jax.Array) -> jax.Array:
    w = jnp.cos(jnp.arange(3 * 3 * 3 * 4, dtype=x.dtype)).reshape(3, 3, 3, 4)
    h = jax.nn.relu(jax.lax.conv_general_dilated(x[None], w, (1, 1), "SAME",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC")))
    h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    return jnp.tanh(h).mean() * 10


@pytest.mark.parametrize("mask", ["grid", "superpixels"])
def test_incremental_ablation_equals_the_dense_program(mask: str, x64) -> None:
    x = jax.random.uniform(key, (16, 16, 3), jnp.float64)
    ids = xc.segments.grid(x.shape, 4) if mask == "grid" else xc.segments.slic(np.asarray(x), n_segments=20)
    fast = xc.feature_ablation(cnn, feature_mask=ids, baseline=0.3)(x)
    dense = xc.feature_ablation(cnn, feature_mask=ids, baseline=0.3, incremental=False)(x)
    np.testing.assert_allclose(fast, dense, rtol=1e-10, atol=1e-12)
    k = int(ids.max()) + 1
    drop = [cnn(x) - cnn(jnp.where(jnp.asarray(ids) == j, 0.3, x)) for j in range(k)]
    np.testing.assert_allclose(fast, np.broadcast_to(np.array(drop)[ids], x.shape), atol=1e-12)


def test_shapley_sampling_keys_errors_and_replay(x64) -> None:
    x = jnp.array([0.7, -1.3, 0.4, 2.0, 1.1, 3.0])
    # antithetic pairs are exact for games of pairwise interactions: add a three-way one
    f = lambda x: nonlinear(x) + x[0] * x[2] * x[4]  # noqa: E731
    fn = xc.shapley_sampling(f, samples=8, with_error=True)
    (a, se), (b, _) = fn(x, key=key), fn(x, key=key)
    np.testing.assert_array_equal(a, b)
    assert se.shape == x.shape and bool(jnp.all(se >= 0)) and float(se[5]) == 0.0
    _, se_more = xc.shapley_sampling(f, samples=512, with_error=True)(x, key=key)
    assert 0 < float(se_more.max()) < float(se.max())
    exact = xc.shapley(f)(x)
    many = xc.shapley_sampling(f, samples=512)(x, key=key)
    assert float(jnp.abs(many - exact).max()) < 4 * float(se_more.max()) + 1e-9
    order = np.array([[2, 0, 1, 5, 4, 3]])  # one order, replayed as given
    one = xc.shapley_sampling(nonlinear, permutations=order)(x)
    on = lambda s: nonlinear(jnp.where(jnp.isin(jnp.arange(6), jnp.array(s, int)), x, 0.0))  # noqa: E731
    np.testing.assert_allclose(one[0], on([2, 0]) - on([2]), atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        xc.shapley_sampling(nonlinear, samples=5)
    with pytest.raises(ValueError, match="explicit key"):
        xc.shapley_sampling(nonlinear)(x)
    with pytest.raises(ValueError, match="permutation of 0..5"):
        xc.shapley_sampling(nonlinear, permutations=np.zeros((1, 6), int))(x)
    with pytest.raises(ValueError, match=r"shape \(n, K\) = \(n, 6\)"):
        xc.shapley_sampling(nonlinear, permutations=np.zeros((1, 5), int))(x)


def test_kernel_shap_budget_replay_and_key(x64) -> None:
    x = jnp.array([0.7, -1.3, 0.4, 2.0, 1.1, 3.0])
    with pytest.raises(ValueError, match=r"samples=7 is too few for 6 features.*K \+ 2 = 8"):
        xc.kernel_shap(nonlinear, samples=7)(x, key=key)
    with pytest.raises(ValueError, match="explicit key"):
        xc.kernel_shap(nonlinear, samples=20)(x)
    xc.kernel_shap(nonlinear, samples=62)(x)  # enumerates everything: no key needed
    every = np.array(list(itertools.product([False, True], repeat=6)))
    np.testing.assert_allclose(xc.kernel_shap(nonlinear, coalitions=every)(x), xc.shapley(nonlinear)(x), atol=1e-10)
    a = xc.kernel_shap(nonlinear, samples=30)(x, key=key)
    np.testing.assert_allclose(a.sum(), nonlinear(x) - nonlinear(0 * x), atol=1e-12)
    np.testing.assert_array_equal(a, xc.kernel_shap(nonlinear, samples=30)(x, key=key))
    with pytest.raises(ValueError, match=r"weights must have shape \(n,\) = \(64,\)"):
        xc.kernel_shap(nonlinear, coalitions=every, weights=np.ones(3))(x)


def test_lime_matches_its_closed_form_and_options(x64) -> None:
    x = jnp.array([0.7, -1.3, 0.4, 2.0, 1.1, 3.0])
    z = np.array(jax.random.bernoulli(key, 0.5, (40, 6)).at[0].set(True))
    values = np.array([float(nonlinear(jnp.where(r, x, 0.0))) for r in z])
    d = 1 - np.sqrt(z.sum(1) / 6)
    w = np.sqrt(np.exp(-d ** 2 / 0.25 ** 2))  # lime_image's kernel
    design = np.c_[np.ones(40), z] * np.sqrt(w)[:, None]
    penalty = np.diag([0.0] + [1.0] * 6)
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ (values * np.sqrt(w)))[1:]
    np.testing.assert_allclose(xc.lime(nonlinear, coalitions=z)(x), coef, atol=1e-10)
    with pytest.raises(ValueError, match="unknown distance 'cosine'"):
        xc.lime(nonlinear, distance="cosine")
    with pytest.raises(ValueError, match="one baseline"):
        xc.lime(nonlinear, distance="input", baselines=np.zeros((2, 6)))(x, key=key)


def test_rise_finds_the_region_that_counts() -> None:
    f = lambda x: x[8:, 8:].sum()  # noqa: E731
    a = xc.rise(f, samples=400, grid=4)(jnp.ones((16, 16, 3)), key=key)
    assert a.shape == (16, 16, 3) and float(a[8:, 8:].mean()) > 1.1 * float(a[:8, :8].mean())
    np.testing.assert_array_equal(a[..., 0], a[..., 2])
    flat = xc.rise(lambda x: x[:4].sum(), samples=64, grid=4, channel_axis=None)(jnp.ones(16), key=key)
    assert flat.shape == (16,)
    with pytest.raises(ValueError, match="explicit key"):
        xc.rise(f)(jnp.ones((16, 16, 3)))
    with pytest.raises(ValueError, match=r"p is the probability"):
        xc.rise(f, p=0.0)


def test_bad_feature_masks_and_budgets_are_clear_errors() -> None:
    x = jnp.ones((4, 4, 3))
    f = lambda x: x.sum()  # noqa: E731
    with pytest.raises(ValueError, match=r"feature_mask of shape \(3, 3\) does not broadcast to x of shape \(4, 4, 3\)"):
        xc.feature_ablation(f, feature_mask=np.zeros((3, 3), int))(x)
    with pytest.raises(ValueError, match=r"ids must be 0..K-1.*missing e.g. \[1\]"):
        xc.feature_ablation(f, feature_mask=np.array([[0, 2, 2, 0]] * 4)[..., None])(x)
    with pytest.raises(TypeError, match="integer feature ids"):
        xc.shapley(f, feature_mask=np.zeros((4, 4, 1)))(x)
    with pytest.raises(ValueError, match=r"48 features need 2\^48.*max_features=20.*shapley_sampling, kernel_shap or owen"):
        xc.shapley(f)(x)
    with pytest.raises(ValueError, match=r"12288 features make a 12288 x 12288 regression; group them"):
        xc.kernel_shap(f)(jnp.ones((64, 64, 3)), key=key)
    with pytest.raises(ValueError, match="not both"):
        xc.shapley(f, baseline=1.0, baselines=np.zeros((2, 4, 4, 3)))(x)
    with pytest.raises(ValueError, match="concrete integer array"):
        jax.vmap(lambda x, m: xc.feature_ablation(f, feature_mask=m)(x))(x[None], jnp.zeros((1, 4, 4, 1), int))


def test_segments() -> None:
    assert xc.segments.grid((5, 5, 1), 2)[..., 0].max() == 8  # 3 x 3 cells, the edge ones smaller
    assert xc.segments.grid((3, 8, 8), 4, channel_axis=0).shape == (1, 8, 8)
    image = np.random.default_rng(0).random((24, 24, 3))
    for name in ("slic", "quickshift", "felzenszwalb"):
        ids = getattr(xc.segments, name)(image)
        assert ids.shape == (24, 24, 1) and ids.min() == 0 and len(np.unique(ids)) == ids.max() + 1
    assert xc.segments.words(["<s>", "Ġgood", "ness", "Ġme", "</s>"]).ravel().tolist() == [0, 1, 1, 2, 3]
    assert xc.segments.spans(5, [(1, 3)]).ravel().tolist() == [0, 1, 1, 2, 3]
    with pytest.raises(ValueError, match="overlaps"):
        xc.segments.spans(5, [(1, 3), (2, 4)])
    with pytest.raises(ValueError, match="cell must be"):
        xc.segments.grid((4, 4, 3), (2, 2, 2))


def test_word_groups_on_a_text_model(x64) -> None:
    from xai_core import graph
    from xai_core.adapters import TextModel

    table = jax.random.normal(key, (10, 4), jnp.float64)

    def apply(p, x):
        e = x.get("embeddings", graph.mark(p["table"][x["ids"]], "emb"))
        return jnp.tanh(e @ p["w"]).prod(0)

    def apply_text(p, x):
        return apply(p, {"ids": x["inputs"]["ids"], "embeddings": x["embeddings"]})

    m = TextModel(apply_text, apply, {"table": table, "w": jnp.ones((4, 3)) / 4}, embedding="emb",
                  example={"ids": jnp.zeros(5, jnp.int32)})
    x = m.inputs({"ids": jnp.array([3, 1, 4, 1, 0])})
    groups = xc.segments.words(["[CLS]", "good", "##ness", "me", "[SEP]"])
    a = xc.kernel_shap(m.score(1), feature_mask=groups, baseline=m.baseline(x), samples=14)(x, key=key)
    scores = xc.token_scores(a)
    assert a["inputs"] is None and scores.shape == (5,)
    np.testing.assert_allclose(a["embeddings"][1], a["embeddings"][2])
    total = m.score(1)(x) - m.score(1)({"embeddings": m.baseline(x)["embeddings"], "inputs": x["inputs"]})
    np.testing.assert_allclose(a["embeddings"][[0, 1, 3, 4], 0].sum(), total, atol=1e-12)  # efficiency over words
