"""xc.robust: FGSM and PGD (their step, ball, bounds, targeted and random start), the smallest
perturbation on models with a known answer, the comparison over draws, jit / vmap with traced
targets against a loop, keys, and bad input. Captum's values: tests/test_robust_refs.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import mlp_logits

W = jnp.array([1.0, -2.0, 0.5])
logits_fn = mlp_logits(seed=0, n_in=6, n_out=3)
XS = jax.random.uniform(jax.random.key(0), (4, 6))
TS = jnp.array([0, 1, 2, 1])


def linear(x: jax.Array) -> jax.Array:
    """Two classes, class 1 while ``w . x > 0``."""
    return jnp.stack([jnp.zeros((), x.dtype), x @ W.astype(x.dtype)])


def ce(x: jax.Array, t: int) -> jax.Array:
    return -jax.nn.log_softmax(logits_fn(x))[t]


@pytest.mark.parametrize("targeted", [False, True])
def test_fgsm_steps_epsilon_along_the_sign_of_the_loss_gradient(targeted: bool) -> None:
    x, t = XS[0], 1
    g = jax.grad(ce)(x, t)
    out = xc.robust.fgsm(logits_fn, 0.05, targeted=targeted)(x, t)
    np.testing.assert_allclose(out, x + (-1 if targeted else 1) * 0.05 * jnp.sign(g), rtol=1e-6)
    # untargeted raises the loss of the true class, targeted lowers the loss of the target
    assert (ce(out, t) < ce(x, t)) if targeted else (ce(out, t) > ce(x, t))


def test_fgsm_leaves_zero_gradients_bounds_and_masked_components() -> None:
    x = jnp.array([0.5, 0.95, 0.3])
    f = lambda v: jnp.stack([0.0, v[0] - v[1] + 0.0 * v[2]])  # noqa: E731 - no gradient along v[2]
    out = xc.robust.fgsm(f, 0.1, bounds=(0.0, 1.0))(x, 0)  # raise the loss of class 0: v0 up, v1 down
    np.testing.assert_allclose(out, [0.6, 0.85, 0.3], rtol=1e-6)
    out = xc.robust.fgsm(f, 0.1, bounds=(0.0, 1.0))(x, 1)  # v0 down, v1 up, clipped to 1
    np.testing.assert_allclose(out, [0.4, 1.0, 0.3], rtol=1e-6)
    out = xc.robust.fgsm(f, 0.1, mask=jnp.array([0.0, 1.0, 1.0]))(x, 0)
    np.testing.assert_allclose(out, [0.5, 0.85, 0.3], rtol=1e-6)
    tiny = lambda v: jnp.stack([0.0, 1e-7 * v[0]])  # noqa: E731 - below Captum's zero threshold
    np.testing.assert_array_equal(xc.robust.fgsm(tiny, 0.1)(x, 0), x)
    np.testing.assert_allclose(xc.robust.fgsm(tiny, 0.1, threshold=0.0)(x, 0)[0], 0.6, rtol=1e-6)


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("random_start", [False, True])
def test_pgd_stays_in_its_ball_and_its_bounds(norm: str, random_start: bool) -> None:
    r = 0.1 if norm == "linf" else 0.3
    attack = xc.robust.pgd(logits_fn, r, 0.04, 8, norm=norm, random_start=random_start, bounds=(0.0, 1.0))
    keys = jax.random.split(jax.random.key(1), len(XS))
    out = jax.jit(jax.vmap(attack))(XS, TS, keys)
    d = out - XS
    size = jnp.abs(d).max(1) if norm == "linf" else jnp.linalg.norm(d, axis=1)
    assert bool((size <= r * (1 + 1e-6)).all()) and bool((size > 0.5 * r).all())
    assert bool((out >= 0).all() and (out <= 1).all())
    assert bool((jax.vmap(ce)(out, TS) > jax.vmap(ce)(XS, TS)).all())


def test_pgd_is_fgsm_steps_projected() -> None:
    x, t = XS[1], 2
    one = xc.robust.pgd(logits_fn, 1.0, 0.05, 1)(x, t)
    np.testing.assert_allclose(one, xc.robust.fgsm(logits_fn, 0.05)(x, t), rtol=1e-6)
    steps, r = x, 0.07
    for _ in range(3):  # a loop of FGSM steps, each clipped into the ball
        steps = x + jnp.clip(xc.robust.fgsm(logits_fn, 0.03)(steps, t) - x, -r, r)
    np.testing.assert_allclose(xc.robust.pgd(logits_fn, r, 0.03, 3)(x, t), steps, rtol=1e-6)


def test_pgd_l2_projection_and_normalized_steps() -> None:
    x, t = XS[2], 0
    out = xc.robust.pgd(logits_fn, 0.2, 0.05, 1, norm="l2", direction="normalized")(x, t)
    g = jax.grad(ce)(x, t)
    np.testing.assert_allclose(out, x + 0.05 * g / jnp.linalg.norm(g), rtol=1e-5)
    far = xc.robust.pgd(logits_fn, 0.2, 1.0, 1, norm="l2")(x, t)  # a sign step of length sqrt(6), renormed
    np.testing.assert_allclose(jnp.linalg.norm(far - x), 0.2, rtol=1e-5)
    np.testing.assert_allclose((far - x) / 0.2, jnp.sign(g) / jnp.sqrt(6.0), rtol=1e-5)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_targeted_pgd_lowers_the_target_loss(norm: str) -> None:
    attack = xc.robust.pgd(logits_fn, 0.5, 0.1, 10, norm=norm, targeted=True)
    targets = (TS + 1) % 3
    out = jax.vmap(attack)(XS, targets)
    assert bool((jax.vmap(ce)(out, targets) < jax.vmap(ce)(XS, targets)).all())


def test_random_start_is_in_the_ball_and_replays_through_start() -> None:
    x, t, key = XS[0], 1, jax.random.key(3)
    for norm, r in (("linf", 0.2), ("l2", 0.5)):
        d = xc.robust.random_point(key, x, r, norm=norm)
        size = jnp.abs(d).max() if norm == "linf" else jnp.linalg.norm(d)
        assert 0 < float(size) <= r
        attack = xc.robust.pgd(logits_fn, r, 0.05, 3, norm=norm, random_start=True)
        np.testing.assert_array_equal(attack(x, t, key=key), attack(x, t, start=d))
        np.testing.assert_array_equal(attack(x, t, key=key), attack(x, t, key=key))
        assert not np.array_equal(attack(x, t, key=key), attack(x, t, key=jax.random.key(4)))
    radii = jax.vmap(lambda k: jnp.linalg.norm(xc.robust.random_point(k, jnp.zeros(2), 1.0, "l2")))(
        jax.random.split(key, 4000))
    np.testing.assert_allclose(jnp.mean(radii ** 2), 0.5, atol=0.02)  # uniform in the disc: P(r < s) = s^2


def test_pytree_inputs_keep_fixed_inputs_and_each_leaf_its_ball() -> None:
    f = lambda v: linear(jnp.concatenate([v["a"], v["b"] * v["m"]]))  # noqa: E731
    x = {"a": jnp.array([0.2, 0.1]), "b": jnp.array([0.3]), "m": xc.fixed(jnp.array([1.0]))}
    out = xc.robust.pgd(f, 0.1, 0.05, 4, random_start=True)(x, 1, key=jax.random.key(0))
    assert isinstance(out["m"], type(x["m"])) and float(out["m"].value[0]) == 1.0
    np.testing.assert_allclose(out["a"], [0.1, 0.2], rtol=1e-6)  # class 1 loses: w . x goes down
    np.testing.assert_allclose(out["b"], [0.2], rtol=1e-6)
    d = xc.robust.random_point(jax.random.key(0), x, 0.1)
    assert d["m"] is None and d["a"].shape == (2,)


def test_loss_and_score_functions() -> None:
    x = jnp.array([0.3, 0.2, 0.1])
    score = lambda v: v @ W  # noqa: E731 - class 1's logit
    lowered = xc.robust.fgsm(score, 0.1, loss="score")(x)
    np.testing.assert_allclose(lowered, x - 0.1 * jnp.sign(W), rtol=1e-6)
    np.testing.assert_allclose(xc.robust.fgsm(lambda v: -score(v), 0.1, loss="loss")(x), lowered, rtol=1e-6)
    probs = lambda v: jax.nn.softmax(linear(v))  # noqa: E731
    np.testing.assert_allclose(xc.robust.fgsm(probs, 0.1, loss="neg_log")(x, 1), xc.robust.fgsm(linear, 0.1)(x, 1),
                               rtol=1e-6)
    margin = lambda out, t: out[1 - t] - out[t]  # noqa: E731 - a custom loss(output, target)
    np.testing.assert_allclose(xc.robust.fgsm(linear, 0.1, loss=margin)(x, 1), lowered, rtol=1e-6)


@pytest.mark.parametrize("mode", ["linear", "binary"])
def test_min_perturbation_finds_the_first_strength_that_flips_a_linear_model(mode: str) -> None:
    xs = jnp.array([[0.4, 0.1, 0.2], [0.9, 0.2, 0.0], [0.1, 0.3, 0.4]])
    ts = jax.vmap(lambda x: jnp.argmax(linear(x)))(xs)
    margin = np.abs(np.asarray(xs @ W))
    grid = xc.robust.strength_grid(0.0, 2.0, 0.01)
    # FGSM moves w . x by eps |w|_1; a step along -w / |w|_2 (or +) by v moves it by v |w|_2
    along = lambda v: lambda x, t, key: x + (2 * t - 1) * (-v) * W / jnp.linalg.norm(W)  # noqa: E731
    for make, norm in ((lambda e: xc.robust.fgsm(linear, e), np.abs(W).sum()), (along, np.linalg.norm(W))):
        search = xc.robust.min_perturbation(linear, make, 0.0, 2.0, 0.01, mode=mode, batch_size=16)
        found = jax.jit(jax.vmap(search))(xs, ts)
        expected = [grid[grid * norm > m][0] for m in margin]
        np.testing.assert_allclose(found.value, expected, rtol=1e-6)
        assert bool(found.found.all())
        assert (jax.vmap(lambda x: jnp.argmax(linear(x)))(found.perturbed) != ts).all()


def test_min_perturbation_not_found_and_attempts() -> None:
    x = jnp.array([0.9, 0.2, 0.0])  # w . x = 0.5: FGSM flips it at eps > 0.5 / 3.5
    search = xc.robust.min_perturbation(linear, lambda e: xc.robust.fgsm(linear, e), 0.0, 0.1, 0.01)
    none = search(x, 1)
    assert not bool(none.found) and np.isnan(none.value)
    np.testing.assert_array_equal(none.perturbed, x)
    noise = lambda s: lambda x, t, key: x + s * jax.random.normal(key, x.shape)  # noqa: E731
    key = jax.random.key(5)
    a = xc.robust.min_perturbation(linear, noise, 0.0, 3.0, 0.05, attempts=4)(x, 1, key)
    b = xc.robust.min_perturbation(linear, noise, 0.0, 3.0, 0.05, attempts=4, mode="binary")(x, 1, key)
    assert bool(a.found) and float(a.value) == float(b.value)  # one draw per attempt at every strength
    grid = xc.robust.strength_grid(0.0, 3.0, 0.05)
    draws = [jax.random.normal(k, x.shape) for k in jax.random.split(key, 4)]  # attempt a's noise, every strength
    changed = [[int(jnp.argmax(linear(x + jnp.float32(s) * n))) != 1 for n in draws] for s in grid]
    first = grid[np.argmax(np.any(changed, axis=1))]
    np.testing.assert_allclose(a.value, first, rtol=1e-6)


def test_compare_attacks_is_mean_min_max_over_draws() -> None:
    noise = lambda x, t, key: x + 0.3 * jax.random.normal(key, x.shape)  # noqa: E731
    prob = lambda out, t: jax.nn.softmax(out)[t]  # noqa: E731
    attacks = {"FGSM": xc.robust.fgsm(logits_fn, 0.1), "noise": (noise, 5)}
    compare = xc.robust.compare_attacks(logits_fn, attacks, metric=lambda o, t: (prob(o, t), xc.robust.accuracy(o, t)))
    key = jax.random.key(2)
    r = compare(XS[0], 1, key)
    keys = jax.random.split(jax.random.fold_in(key, 1), 5)
    values = np.array([prob(logits_fn(noise(XS[0], 1, k)), 1) for k in keys])
    np.testing.assert_allclose([r["noise"][s][0] for s in ("mean", "min", "max")],
                               [values.mean(), values.min(), values.max()], rtol=1e-6)
    np.testing.assert_allclose(r["Original"][0], prob(logits_fn(XS[0]), 1), rtol=1e-6)
    np.testing.assert_allclose(r["FGSM"]["mean"][0], prob(logits_fn(attacks["FGSM"](XS[0], 1)), 1), rtol=1e-6)
    batch = jax.jit(jax.vmap(compare))(XS, TS, jax.random.split(key, 4))
    s = xc.robust.summary(batch)
    assert sorted(s) == ["FGSM", "Original", "noise Max Attempt", "noise Mean Attempt", "noise Min Attempt"]
    np.testing.assert_allclose(s["noise Min Attempt"][0], batch["noise"]["min"][0].mean(), rtol=1e-6)


def test_jit_vmap_with_traced_targets_equals_the_loop() -> None:
    keys = jax.random.split(jax.random.key(7), len(XS))
    attacks = [xc.robust.fgsm(logits_fn, 0.05, bounds=(0.0, 1.0)),
               xc.robust.pgd(logits_fn, 0.1, 0.03, 4, norm="l2", random_start=True, targeted=True)]
    for attack in attacks:
        loop = jnp.stack([attack(x, int(t), key=k) for x, t, k in zip(XS, TS, keys)])
        np.testing.assert_allclose(jax.jit(jax.vmap(attack))(XS, TS, keys), loop, rtol=1e-6, atol=1e-7)
    search = xc.robust.min_perturbation(logits_fn, lambda e: xc.robust.fgsm(logits_fn, e), 0.0, 1.0, 0.02,
                                        mode="binary")
    batch = jax.jit(jax.vmap(search))(XS, TS)
    for i, (x, t) in enumerate(zip(XS, TS)):
        one = search(x, int(t))
        np.testing.assert_allclose(batch.value[i], one.value, rtol=1e-6)
        np.testing.assert_allclose(batch.perturbed[i], one.perturbed, rtol=1e-6)


@pytest.mark.parametrize("dtype", ["bfloat16", "float32", "float64"])
def test_attacks_keep_shape_and_dtype(dtype: str, request: pytest.FixtureRequest) -> None:
    if dtype == "float64":
        request.getfixturevalue("x64")
    x = XS[0].astype(dtype)
    pgd = xc.robust.pgd(logits_fn, 0.1, 0.05, 2, norm="l2", random_start=True)
    for attack in (xc.robust.fgsm(logits_fn, 0.1), pgd):
        out = attack(x, 1, key=jax.random.key(0))
        assert out.shape == x.shape and out.dtype == x.dtype


def test_min_perturbation_searches_a_traced_pgd_radius() -> None:
    x, t = XS[0], int(jnp.argmax(logits_fn(XS[0])))
    found = xc.robust.min_perturbation(logits_fn, lambda r: xc.robust.pgd(logits_fn, r, r / 4, 5), 0.0, 2.0, 0.05,
                                       mode="binary")(x, t)
    assert bool(found.found) and int(jnp.argmax(logits_fn(found.perturbed))) != t
    r = float(found.value)
    assert int(jnp.argmax(logits_fn(xc.robust.pgd(logits_fn, r - 0.05, (r - 0.05) / 4, 5)(x, t)))) == t


@pytest.mark.parametrize("build, call, match", [
    (lambda: xc.robust.fgsm(logits_fn, -0.1), None, "epsilon must be a finite number >= 0"),
    (lambda: xc.robust.pgd(logits_fn, 0.1, 0.01, 0), None, "steps must be an integer >= 1"),
    (lambda: xc.robust.pgd(logits_fn, 0.1, 0.01, 3, norm="l1"), None, "unknown norm 'l1'"),
    (lambda: xc.robust.pgd(logits_fn, -1.0, 0.01, 3), None, "radius must be"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1, bounds=(1.0, 0.0)), None, "bounds are reversed"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1, bounds=1.0), None, "pair"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1, loss="mse"), None, "unknown loss 'mse'"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1, loss="loss"), None, "must be a scalar for ONE example, got shape \\(3,\\)"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1, loss=lambda o, t: o), None, "must be a scalar"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1), lambda a: a(XS[0]), "needs a target"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1), lambda a: a(XS[0], 5), "not a class"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1), lambda a: a(XS, TS), "jax.vmap"),
    (lambda: xc.robust.fgsm(logits_fn, 0.1), lambda a: a(XS[0].at[0].set(jnp.nan), 0), "NaN"),
    (lambda: xc.robust.pgd(logits_fn, 0.1, 0.01, 2, random_start=True), None, "needs a jax.random key"),
    (lambda: xc.robust.min_perturbation(logits_fn, lambda e: xc.robust.fgsm(logits_fn, e), 0.0, 0.1, 0.1), None,
     "stop > start \\+ step"),
    (lambda: xc.robust.min_perturbation(logits_fn, lambda e: xc.robust.fgsm(logits_fn, e), 0.0, 1.0, 0.1,
                                        mode="bisect"), None, "unknown mode"),
    (lambda: xc.robust.min_perturbation(logits_fn, lambda e: lambda x, t, k: x[:2], 0.0, 1.0, 0.1), None,
     "must return x perturbed"),
    (lambda: xc.robust.min_perturbation(logits_fn, lambda e: lambda x, t, k: x, 0.0, 1.0, 0.1, attempts=2), None,
     "give a jax.random key"),
    (lambda: xc.robust.compare_attacks(logits_fn, {"Original": lambda x, t, k: x}), None, "other than 'Original'"),
    (lambda: xc.robust.compare_attacks(logits_fn, {"noise": (lambda x, t, k: x, 3)}), None, "give a jax.random key"),
    (lambda: xc.robust.compare_attacks(logits_fn, {"id": lambda x, t, k: x}, metric=lambda o, t: o), None,
     "a number or a pytree of numbers"),
])
def test_bad_input_gets_a_clear_error(build, call, match) -> None:  # noqa: ANN001
    with pytest.raises((ValueError, TypeError), match=match):
        fn = build()
        (call or (lambda a: a(XS[0], 1)))(fn)
