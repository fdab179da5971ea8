"""xc.concepts (TCAV): a planted concept scores ~1 and random CAVs ~0.5; the classifier separates
separable sets and minimizes sklearn's SGDClassifier objective (Captum's default classifier) at least
as well, equals a hand-written loop and ignores padding; the directional derivatives under
jit(vmap) with traced targets; the t-test against scipy; the table and the plot; the shapes
scenario; every bad input."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.adapters import Model
from xai_core.graph import mark
from xai_core.inside.concepts.cavs import fit, pairs

D, T = 6, 1  # input size, the target class


def planted_model() -> Model:
    """``h = x W1`` (the layer "h"); class 1's logit is ``3 tanh(h_0) + sum_k h_k h_k+1`` (k >= 1):
    moving h along unit 0 raises it for every input, while its gradient along the other units
    changes sign from input to input (an odd function of them)."""
    rng = np.random.default_rng(0)
    w1 = np.eye(D, dtype=np.float32) + 0.05 * rng.normal(size=(D, D)).astype(np.float32)
    w2 = 0.1 * rng.normal(size=(D, 3)).astype(np.float32)
    w2[:, T] = 3.0 * np.eye(D)[0]
    e = np.eye(3, dtype=np.float32)[T]

    def apply(p: dict, x: jax.Array) -> jax.Array:
        h = mark(x @ p["w1"], "h")
        return jnp.tanh(h) @ p["w2"] + p["e"] * jnp.sum(h[1:-1] * h[2:])

    return Model(apply, {"w1": jnp.asarray(w1), "w2": jnp.asarray(w2), "e": jnp.asarray(e)}, name="planted")


def sets(seed: int = 0, n: int = 16, randoms: int = 10) -> tuple[dict[str, np.ndarray], list[np.ndarray]]:
    """Random examples: 0 in unit 0, normal in the others; "up" / "down": the same shifted by
    +-2 along unit 0 (the planted concept and its opposite); "plain": drawn as the random sets."""
    rng = np.random.default_rng(seed)

    def draw() -> np.ndarray:
        return np.concatenate([np.zeros((n, 1)), rng.normal(size=(n, D - 1))], axis=1).astype(np.float32)

    shift = 2.0 * np.eye(D, dtype=np.float32)[0]
    concepts = {"up": draw() + shift, "down": draw() - shift, "plain": draw()}
    return concepts, [draw() for _ in range(randoms)]


def inputs_(n: int = 64) -> np.ndarray:
    return np.random.default_rng(10).normal(size=(n, D)).astype(np.float32)


@pytest.fixture(scope="module")
def planted() -> tuple[Model, xc.concepts.TCAV, xc.concepts.TCAVResult]:
    m = planted_model()
    concepts, randoms = sets()
    fn = xc.concepts.tcav(m, ["h"], concepts, randoms, key=jax.random.key(0))
    return m, fn, fn(inputs_(), T)


def test_a_planted_concept_scores_one_its_opposite_zero_and_random_cavs_a_half(planted) -> None:
    _, fn, r = planted
    sign, p = r.scores["sign_count"][0], r.p_values["sign_count"][0]  # (concepts, random sets), (concepts,)
    assert sign.shape == (3, 10) and r.random_scores["sign_count"].shape == (1, 9)
    assert sign[0].mean() >= 0.9 and sign[1].mean() <= 0.1
    assert 0.25 <= r.random_scores["sign_count"].mean() <= 0.75 and 0.25 <= sign[2].mean() <= 0.75
    assert p[0] < 0.01 and p[1] < 0.01 and p[2] > 0.05  # "plain" is drawn as the random sets are
    assert (r.p_values["magnitude"][0, :2] < 0.01).all()
    assert r.scores["magnitude"][0, 0].min() > 0 > r.scores["magnitude"][0, 1].max()
    assert (fn.cavs.accuracy["h"][:2] == 1.0).all()  # separable: unit 0 tells them apart
    assert 0.2 <= np.nanmean(fn.cavs.random_accuracy["h"]) <= 0.8  # random sets cannot be told apart
    rows = r.to_rows()
    assert [(row["concept"], row["significant"]) for row in rows] == [("up", True), ("down", True), ("plain", False)]
    assert rows[0]["sign_count"] == pytest.approx(sign[0].mean()) and rows[0]["layer"] == "h"


def test_scores_are_captums_formulas_of_the_directional_derivatives(planted) -> None:
    m, fn, r = planted
    inputs = inputs_()
    W = np.asarray(fn.cavs.stacked("h"))
    p = m.params
    logit = lambda h: jnp.tanh(h) @ p["w2"][:, T] + jnp.sum(h[1:-1] * h[2:])  # noqa: E731
    grads = np.stack([np.asarray(jax.grad(logit)(x @ p["w1"])) for x in inputs])
    dd = grads @ W.T
    np.testing.assert_allclose(r.derivatives[0], dd, rtol=1e-5, atol=1e-6)
    c_r = 3 * 10
    np.testing.assert_allclose(r.scores["magnitude"][0].ravel(), dd.mean(0)[:c_r], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(r.scores["sign_count"][0].ravel(), (dd > 0).mean(0)[:c_r])
    np.testing.assert_allclose(r.random_scores["magnitude"][0], dd.mean(0)[c_r:], rtol=1e-5, atol=1e-6)


def test_given_cavs_reproduce_the_result_and_a_key_reproduces_the_cavs(planted) -> None:
    m, fn, r = planted
    concepts, randoms = sets()
    inputs = inputs_()
    again = xc.concepts.tcav(m, "h", concepts, randoms, classifier=fn.cavs)(inputs, T)
    np.testing.assert_array_equal(again.p_values["sign_count"], r.p_values["sign_count"])
    same = xc.concepts.train_cavs(m, ["h"], concepts, randoms, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(same.weights["h"]), np.asarray(fn.cavs.weights["h"]))
    other = xc.concepts.train_cavs(m, ["h"], concepts, randoms, key=jax.random.key(1))
    assert not np.array_equal(other.accuracy["h"], fn.cavs.accuracy["h"])  # another held-out split


def test_directional_derivatives_jit_vmap_with_traced_targets_equal_a_loop(planted) -> None:
    m, fn, _ = planted
    W = fn.cavs.stacked("h")
    f = xc.concepts.directional_derivatives(m, "h", W)
    xs = jnp.asarray(np.random.default_rng(2).normal(size=(5, D)).astype(np.float32))
    ts = jnp.array([0, 1, 2, 1, 0])
    batched = jax.jit(jax.vmap(f))(xs, ts)
    np.testing.assert_allclose(batched, np.stack([f(x, int(t)) for x, t in zip(xs, ts)]), rtol=1e-6, atol=1e-6)
    per_target = fn(np.asarray(xs), np.asarray(ts))  # one target per input
    np.testing.assert_allclose(per_target.derivatives[0], batched, rtol=1e-6, atol=1e-6)


def _sgd_objective(w: np.ndarray, b: float, x: np.ndarray, y: np.ndarray, alpha: float) -> float:
    return float(np.mean(np.maximum(0.0, 1.0 - y * (x @ w + b))) + alpha / 2 * w @ w)


def test_the_classifier_separates_separable_sets_and_minimizes_sklearns_objective() -> None:
    sklearn = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    f, n = 20, 30
    direction = rng.normal(size=f)
    direction /= np.linalg.norm(direction)
    a = np.stack([rng.normal(size=(n, f)) + 8 * direction] + [rng.normal(size=(n, f)) for _ in range(3)]).astype(np.float32)
    index = pairs(1, 3)
    W, acc = fit(jnp.asarray(a), jnp.ones((4, n), bool), jnp.asarray(index), jax.random.key(0))
    assert acc[:3].tolist() == [1.0, 1.0, 1.0]  # held out: 19 of 60 examples each
    cos = np.asarray(W[:3]) @ direction / np.linalg.norm(W[:3], axis=1)
    assert cos.min() > 0.85
    W_all, _ = fit(jnp.asarray(a), jnp.ones((4, n), bool), jnp.asarray(index), jax.random.key(0), test_split=0.0,
                   normalize=False)  # sklearn's problem: the raw activations
    x, y = np.concatenate([a[0], a[1]]).astype(np.float64), np.r_[np.ones(n), -np.ones(n)]
    w = np.asarray(W_all[0], np.float64)
    b = float(np.median(y - x @ w))  # ours keeps no intercept: take the best one for w (the hinge's median)
    ref = sklearn.SGDClassifier(alpha=0.01, max_iter=1000, tol=1e-3, random_state=0).fit(x, y)
    b_best = min((_sgd_objective(w, c, x, y, 0.01), c) for c in np.linspace(b - 2, b + 2, 401))[1]
    assert _sgd_objective(w, b_best, x, y, 0.01) <= _sgd_objective(ref.coef_[0], ref.intercept_[0], x, y, 0.01)


def reference_fit(x: np.ndarray, y: np.ndarray, alpha: float, steps: int) -> np.ndarray:
    """The classifier written as a plain primal loop in float64: full-batch subgradient steps
    on the hinge loss plus ``alpha / 2 |w|^2`` with sklearn's "optimal" learning rate."""
    w, b = np.zeros(x.shape[1]), 0.0
    t0 = 1.0 / (alpha ** -0.25 * alpha)
    for k in range(steps):
        eta = 1.0 / (alpha * (t0 + k))
        g = np.where(y * (x @ w + b) <= 1.0, -y, 0.0) / len(y)
        w, b = (1 - eta * alpha) * w - eta * (g @ x), b - eta * g.sum()
    return w


def test_the_classifier_equals_a_loop_and_ignores_padding() -> None:
    rng = np.random.default_rng(3)
    sizes, n, f = (5, 8, 7), 8, 4
    real = [rng.normal(size=(s, f)) + (1.5 if k == 0 else 0.0) for k, s in enumerate(sizes)]
    mask = np.arange(n)[None] < np.array(sizes)[:, None]

    def padded(value: float) -> jnp.ndarray:
        return jnp.asarray(np.stack([np.concatenate([r, np.full((n - len(r), f), value)]) for r in real]), jnp.float32)

    index = jnp.asarray(pairs(1, 2))
    W0, _ = fit(padded(0.0), jnp.asarray(mask), index, jax.random.key(0), steps=200, test_split=0.0, normalize=False)
    W1, _ = fit(padded(1e3), jnp.asarray(mask), index, jax.random.key(0), steps=200, test_split=0.0, normalize=False)
    np.testing.assert_allclose(W0, W1, rtol=1e-5, atol=1e-5)
    for p, (i, j) in enumerate(np.asarray(index)):
        x = np.concatenate([real[i], real[j]])
        y = np.r_[np.ones(len(real[i])), -np.ones(len(real[j]))]
        np.testing.assert_allclose(W0[p], reference_fit(x, y, 0.01, 200), rtol=2e-4, atol=2e-4)


def test_normalized_training_does_not_depend_on_the_layers_scale() -> None:
    """With ``normalize`` (the default) activations 1000 times larger give the same classifier,
    its CAV 1000 times smaller (in the layer's units); raw training at a layer of tiny
    activations lets the penalty win (the CAV separates nothing), normalized training does not."""
    rng = np.random.default_rng(4)
    a = np.stack([rng.normal(size=(20, 8)) + 2.0, rng.normal(size=(20, 8)), rng.normal(size=(20, 8))]).astype(np.float32)
    args = (jnp.ones((3, 20), bool), jnp.asarray(pairs(1, 2)), jax.random.key(0))
    W, acc = fit(jnp.asarray(a), *args)
    W_big, acc_big = fit(jnp.asarray(a * 1000), *args)
    np.testing.assert_allclose(W_big[:2] * 1000, W[:2], rtol=1e-4, atol=1e-6)  # separable: exact
    cos = np.sum(W_big[2] * W[2]) / np.linalg.norm(W_big[2]) / np.linalg.norm(W[2])  # random vs random: the
    assert cos > 0.999  # hinge's kinks make float32 rounding visible
    np.testing.assert_array_equal(acc, acc_big)
    _, acc_raw = fit(jnp.asarray(a * 1e-3), *args, normalize=False)
    assert acc[:2].tolist() == [1.0, 1.0] and acc_raw[:2].max() <= 0.75


def test_ttest_ind_equals_scipy() -> None:
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    for n1, n2 in [(10, 9), (2, 1), (3, 3), (25, 40), (5, 2)]:
        for _ in range(20):
            a, b = rng.uniform(size=n1), rng.uniform(size=n2) * rng.uniform(0.1, 1)
            t, p = xc.concepts.ttest_ind(a, b)
            ref = stats.ttest_ind(a, b)
            assert t == pytest.approx(ref.statistic, rel=1e-10) and p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-15)
    assert xc.concepts.ttest_ind([1.0, 1.0], [0.5, 0.5]) == (np.inf, 0.0)  # scipy: t = inf, p = 0
    t, p = xc.concepts.ttest_ind([0.5, 0.5], [0.5, 0.5])
    assert np.isnan(t) and np.isnan(p)
    with pytest.raises(ValueError, match="three in all"):
        xc.concepts.ttest_ind([1.0], [2.0])


def test_the_table_and_the_plot(planted, tmp_path: Path) -> None:
    _, _, r = planted
    text = str(r)
    assert text.splitlines()[0].split()[:3] == ["layer", "concept", "sign_count"] and "up" in text and "down" in text
    assert r.to_markdown().count("\n") == 4
    assert r.save(tmp_path / "t.json").read_text().startswith("{")
    assert "| h | up |" in r.save(tmp_path / "t.md").read_text()
    pytest.importorskip("matplotlib")
    assert r.save(tmp_path / "t.png").stat().st_size > 1000
    fig = r.plot("magnitude")
    assert len(fig.axes) == 1
    with pytest.raises(ValueError, match="must end in"):
        r.save(tmp_path / "t.txt")


def test_shapes_scenario_runs_on_the_demo_model() -> None:
    """The docs page's scenario, smaller: stripes and discs against random shapes images on the
    demo's Flax CNN, two layers; finite scores (no fixed value: the model is barely trained)."""
    from xai_core.adapters import from_flax
    from xai_core.demo import train_shapes_model

    trained = train_shapes_model(jax.random.key(0), n_train=256, epochs=1, n_test=8, size=32, progress=False)
    m = from_flax(trained.module, trained.variables)
    concepts, randoms = xc.concepts.shapes_concepts(jax.random.key(1), n=8, size=32, randoms=3)
    assert concepts["striped"].shape == (8, 32, 32, 3) and float(concepts["round"].max()) <= 1.0
    fn = xc.concepts.tcav(m, ["Conv_2", "Conv_3"], concepts, randoms, key=jax.random.key(2), steps=200)
    r = fn(trained.test.images, 0)
    assert r.scores["sign_count"].shape == (2, 2, 3)
    for score in ("sign_count", "magnitude"):
        assert np.isfinite(r.scores[score]).all() and np.isfinite(r.random_scores[score]).all()
    assert "striped" in str(r) and "Conv_3" in str(r)


@pytest.mark.parametrize("change, message", [
    (lambda a: a | {"layers": ["nope"]}, "unknown layer 'nope'; choose one of 'h'"),
    (lambda a: a | {"layers": []}, "layers is empty"),
    (lambda a: a | {"randoms": a["randoms"][:1]}, "at least 2 random sets"),
    (lambda a: a | {"randoms": a["randoms"][0]}, "at least 2 random sets"),
    (lambda a: a | {"concepts": {"up": np.ones((4, D + 1), np.float32)}}, r"random set 0 holds examples of shape \(6,\), "),
    (lambda a: a | {"concepts": {"up": np.ones((1, D), np.float32)}}, "at least 2 examples"),
    (lambda a: a | {"concepts": {"up": np.ones((4, D), np.int32)}}, "floating-point"),
    (lambda a: a | {"concepts": [np.ones((4, D))]}, "dict"),
    (lambda a: a | {"concepts": {"up": np.full((4, D), np.nan, np.float32)}}, "NaN"),
    (lambda a: a | {"steps": 0}, "steps must be an integer >= 1"),
    (lambda a: a | {"alpha": 0.0}, "alpha"),
    (lambda a: a | {"test_split": 1.0}, r"test_split must be in \[0, 1\)"),
    (lambda a: a | {"batch_size": 0}, "batch_size"),
    (lambda a: a | {"key": None}, "needs a PRNG key"),
    (lambda a: a | {"classifier": "svm"}, "classifier must be 'sgd' or a CAVs"),
])
def test_bad_input_says_what_to_do(change, message) -> None:
    concepts, randoms = sets(n=4, randoms=3)
    args = {"layers": ["h"], "concepts": concepts, "randoms": randoms, "key": jax.random.key(0)}
    args = change(args)
    with pytest.raises((ValueError, TypeError), match=message):
        xc.concepts.tcav(planted_model(), args.pop("layers"), args.pop("concepts"), args.pop("randoms"), **args)


def test_bad_calls_and_bad_cavs_say_what_to_do() -> None:
    m = planted_model()
    concepts, randoms = sets(n=4, randoms=3)
    fn = xc.concepts.tcav(m, ["h"], concepts, randoms, key=jax.random.key(0), steps=10)
    with pytest.raises(ValueError, match=r"inputs must be a floating-point batch of shape \(n, 6\)"):
        fn(np.ones((3, D + 1), np.float32), T)
    with pytest.raises(ValueError, match=r"target must be a class index in \[0, 3\)"):
        fn(np.ones((3, D), np.float32), 3)
    with pytest.raises(ValueError, match="one per input"):
        fn(np.ones((3, D), np.float32), np.array([0, 1]))
    cavs = fn.cavs
    wrong = xc.concepts.CAVs(cavs.concepts, {"h": np.zeros((3, 3, D + 1))}, {"h": np.zeros((2, D + 1))})
    with pytest.raises(ValueError, match=r"expected \(3, 3, 6\)"):
        xc.concepts.tcav(m, ["h"], concepts, randoms, classifier=wrong)
    with pytest.raises(ValueError, match="cannot serve"):
        xc.concepts.tcav(m, ["h"], {"up": concepts["up"]}, randoms, classifier=cavs)
