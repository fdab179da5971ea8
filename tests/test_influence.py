"""xc.influence: the TracIn score against the sum over checkpoints of learning rate x gradient dot
product written by hand, the last layer's closed form against the full gradient, the random
projection against its exact formula and in expectation, self-influence on planted mislabeled
examples, every data form and chunk size alike, and bad input. Captum's values:
tests/test_influence_refs.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.influence import Checkpoint

LRS = [0.5, 0.2, 0.1]


def init(key: jax.Array, n_in: int = 5, hidden: int = 7, n_out: int = 3) -> dict:
    a, b, c = jax.random.split(key, 3)
    return {"hidden": {"w": jax.random.normal(a, (n_in, hidden)) / np.sqrt(n_in),
                       "b": 0.1 * jax.random.normal(c, (hidden,))},
            "out": {"w": jax.random.normal(b, (hidden, n_out)) / np.sqrt(hidden), "b": jnp.zeros(n_out)}}


def features(p: dict, x: jax.Array) -> jax.Array:
    return jnp.tanh(x @ p["hidden"]["w"] + p["hidden"]["b"])


def loss(p: dict, ex: tuple) -> jax.Array:
    x, y = ex
    return -jax.nn.log_softmax(features(p, x) @ p["out"]["w"] + p["out"]["b"])[y]


def data(key: jax.Array, n: int, n_in: int = 5, classes: int = 3) -> tuple[jax.Array, jax.Array]:
    a, b = jax.random.split(key)
    return jax.random.normal(a, (n, n_in)), jax.random.randint(b, (n,), 0, classes)


def setup(dtype: object = jnp.float64) -> tuple[list, tuple, tuple]:
    keys = jax.random.split(jax.random.key(0), 5)
    cks = [jax.tree.map(lambda a: a.astype(dtype), init(k)) for k in keys[:3]]
    (xs, ys), (tx, ty) = data(keys[3], 11), data(keys[4], 4)
    return cks, (xs.astype(dtype), ys), (tx.astype(dtype), ty)


def by_hand(cks: list, train: tuple, test: tuple, grad_of) -> np.ndarray:  # noqa: ANN001
    """``sum_t lr_t * <grad(test_i), grad(train_j)>`` with one gradient at a time, in loops."""
    out = np.zeros((len(test[1]), len(train[1])))
    for c, lr in zip(cks, LRS):
        for i in range(len(test[1])):
            gi = grad_of(c, (test[0][i], test[1][i]))
            for j in range(len(train[1])):
                out[i, j] += lr * float(jnp.vdot(gi, grad_of(c, (train[0][j], train[1][j]))))
    return out


def flat_grad(c: dict, ex: tuple) -> jax.Array:
    return jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.grad(loss)(c, ex))])


def last_grad(c: dict, ex: tuple) -> jax.Array:
    return jax.grad(loss)(c, ex)["out"]["w"].ravel()


def test_score_is_the_sum_over_checkpoints_of_lr_times_gradient_dots(x64: None) -> None:
    cks, train, test = setup()
    want = by_hand(cks, train, test, flat_grad)
    got = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, batch_size=4)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    pairs = [Checkpoint(c, lr) for c, lr in zip(cks, LRS)]
    np.testing.assert_allclose(xc.influence.tracin(loss, pairs, train, test), want, rtol=1e-10, atol=1e-12)
    # self-influence: each example against itself
    np.testing.assert_allclose(xc.influence.self_influence(loss, pairs, test),
                               np.diag(by_hand(cks, test, test, flat_grad)), rtol=1e-10)


def mixed_init(key: jax.Array) -> dict:
    k = jax.random.split(key, 5)
    return {"conv": jax.random.normal(k[0], (3, 1, 2)) / 2, "seq": jax.random.normal(k[1], (2, 4)) / 2,
            "tied": jax.random.normal(k[2], (4, 4)) / 2, "dense": jax.random.normal(k[3], (16, 4)) / 4,
            "head": {"w": jax.random.normal(k[4], (4, 3)) / 2, "b": jnp.zeros(3)}}


def mixed_loss(p: dict, ex: tuple) -> jax.Array:
    """A convolution, a dense layer over a sequence, a weight used twice and plain dense layers."""
    x, y = ex  # x: (8,)
    h = jax.lax.conv_general_dilated(x[None, :, None], p["conv"], (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
    h = jnp.tanh(h[0] @ p["seq"]).reshape(-1)[:16]  # (8, 2) @ (2, 4): one row per position
    h = jnp.tanh(h @ p["dense"])
    h = jnp.tanh(jnp.tanh(h @ p["tied"]) @ p["tied"].T)
    return -jax.nn.log_softmax(h @ p["head"]["w"] + p["head"]["b"])[y]


def test_full_mode_takes_dense_layers_in_closed_form_and_every_other_gradient_whole(x64: None) -> None:
    from xai_core.influence.features import plan

    keys = jax.random.split(jax.random.key(3), 5)
    cks = [mixed_init(k) for k in keys[:3]]
    (xs, ys), (tx, ty) = data(keys[3], 9, n_in=8), data(keys[4], 3, n_in=8)
    p = plan(mixed_loss, None, cks[0], (xs[0], ys[0]), "full", layers=None, last_layer=None, method="t")
    terms = p.train(cks[0], (xs[0], ys[0]), None)
    # dense and head/w in closed form (a, g); the convolution, the sequence's weight, the tied weight
    # and the bias are gradients, whole: 3 * 2 + 2 * 4 + 4 * 4 + 3 values
    assert [[f.shape for f in t] for t in terms] == [[(16,), (4,)], [(4,), (3,)], [(33,)]]
    assert p.size == 16 + 4 + 4 + 3 + 33

    def grad_of(c: dict, ex: tuple) -> jax.Array:
        return jnp.concatenate([g.ravel() for g in jax.tree.leaves(jax.grad(mixed_loss)(c, ex))])

    want = by_hand(cks, (xs, ys), (tx, ty), grad_of)
    got = xc.influence.tracin(mixed_loss, cks, (xs, ys), (tx, ty), learning_rates=LRS, batch_size=4)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xc.influence.self_influence(mixed_loss, cks, (tx, ty), learning_rates=LRS),
                               np.diag(by_hand(cks, (tx, ty), (tx, ty), grad_of)), rtol=1e-10)
    # a test loss whose program lacks a closed form for "dense" (used twice there): whole for both
    twice = lambda p, ex: mixed_loss(p, ex) + 0.1 * jnp.sum(p["dense"] ** 2)  # noqa: E731
    got = xc.influence.tracin(mixed_loss, cks, (xs, ys), (tx, ty), learning_rates=LRS, test_loss_fn=twice)
    want = sum(lr * jnp.stack([grad_of(c, (tx[i], ty[i])) + jnp.concatenate(
        [g.ravel() for g in jax.tree.leaves(jax.grad(lambda q: 0.1 * jnp.sum(q["dense"] ** 2))(c))])
        for i in range(3)]) @ jnp.stack([grad_of(c, (x, y)) for x, y in zip(xs, ys)]).T for c, lr in zip(cks, LRS))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_a_second_call_with_the_same_loss_reuses_its_programs() -> None:
    traced = []

    def counting(p: dict, ex: tuple) -> jax.Array:
        traced.append(1)
        return loss(p, ex)

    cks, train, test = setup(jnp.float32)
    first = xc.influence.tracin(counting, cks, train, test, batch_size=4)
    n = len(traced)
    again = xc.influence.tracin(counting, cks, train, test, batch_size=4)
    assert len(traced) == n  # neither traced nor compiled again
    np.testing.assert_array_equal(first, again)
    other = [jax.tree.map(lambda a: a + 1.0, c) for c in cks]  # new weights: the same program, new scores
    assert not np.allclose(xc.influence.tracin(counting, other, train, test, batch_size=4), first)
    assert len(traced) == n


def test_last_layer_is_the_closed_form_of_the_last_weights_gradient(x64: None) -> None:
    cks, train, test = setup()
    want = by_hand(cks, train, test, last_grad)
    fast = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="last_layer")
    np.testing.assert_allclose(fast, want, rtol=1e-10, atol=1e-12)
    # the same weight's full gradient, chosen by name; and the layer chosen by name
    np.testing.assert_allclose(xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, layers=["out/w"]),
                               want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="last_layer",
                                                   last_layer="out"), want, rtol=1e-10, atol=1e-12)
    # by hand in closed form: (a . a')(g . g'), g the gradient at the layer's output
    c, (x0, y0), (x1, y1) = cks[0], (test[0][0], test[1][0]), (train[0][2], train[1][2])
    a0, a1 = features(c, x0), features(c, x1)
    g0, g1 = (jax.grad(lambda z, y: -jax.nn.log_softmax(z)[y])(a @ c["out"]["w"] + c["out"]["b"], y)
              for a, y in ((a0, y0), (a1, y1)))
    one = xc.influence.tracin(loss, cks[:1], train, test, mode="last_layer")
    np.testing.assert_allclose(one[0, 2], jnp.dot(a0, a1) * jnp.dot(g0, g1), rtol=1e-10)
    np.testing.assert_allclose(xc.influence.self_influence(loss, cks, train, learning_rates=LRS, mode="last_layer"),
                               np.diag(by_hand(cks, train, train, last_grad)), rtol=1e-10)


def test_full_equals_last_layer_when_only_the_last_layer_has_parameters(x64: None) -> None:
    def only_last(w: jax.Array, ex: tuple) -> jax.Array:
        x, y = ex
        return -jax.nn.log_softmax(jnp.sin(x) @ w)[y]

    cks = [jax.random.normal(jax.random.key(i), (5, 3), jnp.float64) for i in range(3)]
    _, train, test = setup()
    full = xc.influence.tracin(only_last, cks, train, test, learning_rates=LRS)
    fast = xc.influence.tracin(only_last, cks, train, test, learning_rates=LRS, mode="last_layer")
    np.testing.assert_allclose(fast, full, rtol=1e-10, atol=1e-12)


def test_random_projection_is_the_exact_projected_formula(x64: None) -> None:
    cks, train, test = setup()
    p_g = jax.random.normal(jax.random.key(7), (3, 2), jnp.float64) / np.sqrt(2)
    p_a = jax.random.normal(jax.random.key(8), (7, 3), jnp.float64) / np.sqrt(3)

    def projected(c: dict, ex: tuple) -> jax.Array:  # Captum's vector: vec((P_g^T g)(P_a^T a)^T)
        g_w = jax.grad(loss)(c, ex)["out"]["w"]          # (7, 3) = a g^T
        return (p_a.T @ g_w @ p_g).T.ravel()             # = outer(P_g^T g, P_a^T a), flattened

    want = by_hand(cks, train, test, projected)
    got = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="random_projection",
                              projection=(p_g, p_a))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_random_projection_approximates_the_last_layer(x64: None) -> None:
    cks, train, test = setup()
    # unbiased: E[(P^T u) . (P^T v)] = u . v, so the mean over many projections is the exact score
    a, b = jax.random.normal(jax.random.key(1), (2, 40), jnp.float64)
    draws = jax.vmap(lambda k: xc.influence.draw_projection(k, 100, 40, 40, jnp.float64)[1])(
        jax.random.split(jax.random.key(2), 4000))
    mean = jnp.mean(jnp.einsum("i,nij,k,nkj->n", a, draws, b, draws))
    assert abs(float(mean - a @ b)) < 0.05 * float(jnp.linalg.norm(a) * jnp.linalg.norm(b))
    # one wide projection is close
    exact = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="last_layer")
    approx = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="random_projection",
                                 projection_dim=6 ** 2, key=jax.random.key(3))
    assert float(jnp.corrcoef(exact.ravel(), approx.ravel())[0, 1]) > 0.8
    # a projection as large as the gradient is no projection (Captum's rule)
    assert xc.influence.draw_projection(jax.random.key(0), 21, 7, 3) is None
    np.testing.assert_allclose(xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode="random_projection",
                                                   projection_dim=21, key=jax.random.key(0)), exact, rtol=1e-10)


def test_self_influence_ranks_planted_mislabeled_examples_high() -> None:
    """Three blobs, 60 examples, 6 labels flipped; a small MLP trained by gradient descent, three
    checkpoints: the flipped examples lead the self-influence ranking."""
    key = jax.random.key(0)
    centers = jnp.array([[3.0, 0.0], [-1.5, 2.6], [-1.5, -2.6]])
    ys = jnp.arange(60) % 3
    xs = centers[ys] + 0.7 * jax.random.normal(key, (60, 2))
    flipped = np.arange(0, 60, 10)
    noisy = ys.at[flipped].set((ys[flipped] + 1) % 3)

    def mean_loss(p: dict) -> jax.Array:
        return jnp.mean(jax.vmap(lambda x, y: loss(p, (x, y)))(xs, noisy))

    p, cks, lr = init(jax.random.key(1), n_in=2, hidden=16), [], 0.5
    step = jax.jit(lambda p: jax.tree.map(lambda a, g: a - lr * g, p, jax.grad(mean_loss)(p)))
    for i in range(1, 61):
        p = step(p)
        if i % 20 == 0:
            cks.append(Checkpoint(p, lr))
    for mode in ("full", "last_layer"):
        scores = xc.influence.self_influence(loss, cks, (xs, noisy), mode=mode)
        top = np.argsort(-np.asarray(scores))[:len(flipped)]
        precision = len(set(top.tolist()) & set(flipped.tolist())) / len(flipped)
        assert precision >= 5 / 6, (mode, precision, top)


def test_every_data_form_and_chunk_size_gives_the_same_result(tmp_path) -> None:  # noqa: ANN001
    from xai_core.batch.sources import load_data

    cks, (xs, ys), test = setup(jnp.float32)
    want = xc.influence.tracin(loss, cks, (xs, ys), test, learning_rates=LRS)
    examples = [(np.asarray(x), np.asarray(y)) for x, y in zip(xs, ys)]

    def batches(sizes: list[int]):  # noqa: ANN202
        start = 0
        for s in sizes:
            yield {"x": np.asarray(xs[start:start + s]), "y": np.asarray(ys[start:start + s])}
            start += s

    def loss_d(p: dict, ex: dict) -> jax.Array:
        return loss(p, (ex["x"], ex["y"]))

    forms = {"array, chunks of 1": (loss, (xs, ys), 1), "array, chunks of 4": (loss, (xs, ys), 4),
             "array, one chunk": (loss, (xs, ys), 64), "list of examples": (loss, examples, 3),
             "iterable of batches": (loss_d, batches([2, 5, 1, 3]), 4)}
    np.save(tmp_path / "xs.npy", np.asarray(xs))
    np.save(tmp_path / "ys.npy", np.asarray(ys))
    reader = load_data(str(tmp_path / "xs.npy"), None, labels=str(tmp_path / "ys.npy"))  # the batch job's reader
    forms["batch job's reader"] = (loss, reader, 4)
    grain = pytest.importorskip("grain")
    forms["grain MapDataset"] = (loss, grain.MapDataset.source(examples), 5)
    as_dict = {"x": test[0], "y": test[1]}
    for what, (fn, train, size) in forms.items():
        tests = as_dict if fn is loss_d else test
        np.testing.assert_allclose(xc.influence.tracin(fn, cks, train, tests, learning_rates=LRS, batch_size=size),
                                   want, rtol=1e-5, atol=1e-6, err_msg=what)
    self_want = xc.influence.self_influence(loss, cks, (xs, ys), learning_rates=LRS)
    for fn, train, size in ((loss, (xs, ys), 1), (loss_d, batches([6, 5]), 4), (loss, examples, 100)):
        np.testing.assert_allclose(xc.influence.self_influence(fn, cks, train, learning_rates=LRS, batch_size=size),
                                   self_want, rtol=1e-5)
    # top-k streams: the same as sorting the whole matrix, for any chunk size; k capped at n
    order = np.argsort(-np.asarray(want), axis=1)
    for size in (2, 5, 64):
        best = xc.influence.top_k(loss, cks, (xs, ys), test, k=3, learning_rates=LRS, batch_size=size)
        np.testing.assert_array_equal(best.proponents, order[:, :3])
        np.testing.assert_array_equal(best.opponents, order[:, ::-1][:, :3])
        np.testing.assert_allclose(best.proponent_scores, np.take_along_axis(np.asarray(want), order[:, :3], 1),
                                   rtol=1e-5, atol=1e-6)
    assert xc.influence.top_k(loss, cks, (xs, ys), test, k=50).proponents.shape == (4, 11)


@pytest.mark.parametrize("mode", ["full", "last_layer"])
def test_bfloat16_weights_give_float32_scores(mode: str) -> None:
    cks, train, test = setup(jnp.float32)
    want = xc.influence.tracin(loss, cks, train, test, learning_rates=LRS, mode=mode)
    low = [jax.tree.map(lambda a: a.astype(jnp.bfloat16), c) for c in cks]
    got = xc.influence.tracin(loss, low, (train[0].astype(jnp.bfloat16), train[1]),
                              (test[0].astype(jnp.bfloat16), test[1]), learning_rates=LRS, mode=mode)
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(got, want, atol=0.05 * float(jnp.abs(want).max()))


def test_last_layer_of_a_flax_model_is_found_in_its_program(x64: None) -> None:
    nn = pytest.importorskip("flax.linen")

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return nn.Dense(3, name="head")(nn.relu(nn.Dense(6, name="body")(x)))

    model = MLP()
    cks = [jax.tree.map(lambda a: a.astype(jnp.float64), model.init(jax.random.key(i), jnp.ones(5)))
           for i in range(2)]

    def flax_loss(v: dict, ex: tuple) -> jax.Array:
        return -jax.nn.log_softmax(model.apply(v, ex[0]))[ex[1]]

    _, train, test = setup()
    fast = xc.influence.tracin(flax_loss, cks, train, test, mode="last_layer")
    full = xc.influence.tracin(flax_loss, cks, train, test, layers=["head/kernel"])
    np.testing.assert_allclose(fast, full, rtol=1e-10, atol=1e-12)
    assert fast.dtype == jnp.float64


def test_from_state_dict_reads_the_learning_rate_and_follows_like() -> None:
    sd = {"fc.bias": np.zeros(2, np.float64), "fc.weight": np.ones((2, 3)), "bn.num_batches_tracked": np.int64(3),
          "learning_rate": 0.25}
    like = {"fc.weight": jnp.zeros((2, 3), jnp.float32), "fc.bias": jnp.zeros(2, jnp.float32)}
    ck = xc.influence.from_state_dict(sd, like=like)
    assert list(ck.params) == ["fc.weight", "fc.bias"] and ck.learning_rate == 0.25
    assert ck.params["fc.weight"].dtype == jnp.float32
    with pytest.raises(ValueError, match=r"lacks \['fc.weight'\]"):
        xc.influence.from_state_dict({"fc.bias": np.zeros(2)}, like=like)


def test_bad_input_says_what_to_do() -> None:
    cks, train, test = setup(jnp.float32)
    tracin = xc.influence.tracin
    with pytest.raises(ValueError, match="checkpoint 1 has another structure"):
        tracin(loss, [cks[0], {"out": cks[1]["out"]}], train, test)
    with pytest.raises(ValueError, match=r"checkpoint 2 has \['hidden'\]\['b'\] of shape \(4,\) and dtype "
                                         r"float32, checkpoint 0 of shape \(7,\)"):
        tracin(loss, [cks[0], cks[1], init(jax.random.key(9), hidden=4) | {"out": cks[0]["out"]}], train, test)
    with pytest.raises(ValueError, match=r"the loss of ONE example, a floating-point scalar; got \(\(3,\)"):
        tracin(lambda p, ex: features(p, ex[0]) @ p["out"]["w"], cks, train, test)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        tracin(loss, cks, train, test, batch_size=0)
    with pytest.raises(ValueError, match="unknown mode 'last'"):
        tracin(loss, cks, train, test, mode="last")
    with pytest.raises(ValueError, match="non-empty list of parameter pytrees"):
        tracin(loss, [], train, test)
    with pytest.raises(ValueError, match=r"one per checkpoint \(3\)"):
        tracin(loss, cks, train, test, learning_rates=[0.1, 0.2])
    with pytest.raises(ValueError, match="needs projection_dim= and a key="):
        tracin(loss, cks, train, test, mode="random_projection", projection_dim=4)
    with pytest.raises(ValueError, match=r"shapes \(3, k_g\) and \(7, k_a\)"):
        tracin(loss, cks, train, test, mode="random_projection", projection=(jnp.ones((7, 2)), jnp.ones((3, 2))))
    with pytest.raises(ValueError, match="the data set is empty"):
        tracin(loss, cks, (train[0][:0], train[1][:0]), test)
    with pytest.raises(ValueError, match="'nothing' names no parameter; the parameters are: hidden/b"):
        tracin(loss, cks, train, test, layers=["nothing"])
    with pytest.raises(ValueError, match="found no dense layer"):
        tracin(lambda p, ex: jnp.sum(p["out"]["b"] * ex[0][:3]), cks, train, test, mode="last_layer")
    with pytest.raises(ValueError, match="out/w is used 2 times"):
        tracin(lambda p, ex: loss(p, ex) + jnp.sum(p["out"]["w"] ** 2), cks, train, test, mode="last_layer")
    with pytest.raises(TypeError, match="iterable of batches"):
        tracin(loss, cks, 3.0, test)
    with pytest.raises(ValueError, match="k must be an integer >= 1"):
        xc.influence.top_k(loss, cks, train, test, k=0)
