"""DeepLift, DeepLiftShap and GradientShap: summation to delta on random networks in float64,
the same map for three ways of writing one torch model (where Captum's DeepLift differs), Captum
on the same weights, and the errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.rules import NoRuleError


def random_net(kind: str):
    """A random float64 network of ``kind`` for one example of shape (4, 4, 2) (HWC)."""
    k = jax.random.split(jax.random.key(7), 8)
    conv = jax.random.normal(k[0], (3, 3, 2, 4), jnp.float64)
    w1 = jax.random.normal(k[1], (64, 6), jnp.float64) / 8
    b1 = jax.random.normal(k[2], (6,), jnp.float64)
    w2 = jax.random.normal(k[3], (6, 3), jnp.float64)

    def features(x):
        y = jax.lax.conv_general_dilated(x[None], conv, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        h = jax.nn.relu(y)
        if kind in ("maxpool", "all"):
            h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (2, 2, 1), (2, 2, 1), "VALID")
            h = jnp.tile(h, (2, 2, 1))
        if kind in ("residual", "all"):
            h = jax.nn.relu(h + y)  # the same ReLU function applied twice, and a residual add
        return h.reshape(-1)

    def logits(x):
        h = jax.nn.relu(features(x) @ w1 + b1)
        if kind == "all":
            h = h * jax.nn.sigmoid(h[::-1]) + jnp.max(h) / (1.0 + jnp.abs(h))
        return h @ w2

    return logits


KINDS = ["dense", "maxpool", "residual", "all"]


@pytest.mark.parametrize("kind", KINDS)
def test_deeplift_sums_to_the_score_difference(kind: str, x64: None) -> None:
    f = random_net(kind)
    x = jax.random.normal(jax.random.key(1), (4, 4, 2), jnp.float64)
    x0 = jax.random.normal(jax.random.key(2), (4, 4, 2), jnp.float64) * 0.5
    for t in range(3):
        score = lambda x, t=t: f(x)[t]  # noqa: E731
        a = xc.deeplift(score, baseline=x0)(x)
        assert a.shape == x.shape and a.dtype == x.dtype
        assert abs(float(xc.completeness_gap(score, x, a, baseline=x0))) < 1e-8
    # jit == eager; vmap with a traced target == a loop
    xs = jax.random.normal(jax.random.key(3), (3, 4, 4, 2), jnp.float64)
    ts = jnp.array([0, 2, 1])
    batched = jax.jit(jax.vmap(lambda x, t: xc.attribute(lambda x: f(x)[t], x, method="deeplift")))(xs, ts)
    for i in range(3):
        one = xc.deeplift(lambda x, t=int(ts[i]): f(x)[t])(xs[i])
        np.testing.assert_allclose(batched[i], one, rtol=1e-10, atol=1e-12)


def test_deeplift_on_a_linear_model_is_gradient_times_delta_and_keeps_dtype() -> None:
    w = jnp.array([1.0, -2.0, 3.0])
    a = xc.deeplift(lambda x: jnp.dot(w, x), baseline=1.0)(jnp.array([2.0, 2.0, 2.0]))
    np.testing.assert_allclose(a, w * 1.0)
    a16 = xc.deeplift(lambda x: jnp.sum(jax.nn.relu(x)))(jnp.ones(3, jnp.bfloat16))
    assert a16.dtype == jnp.bfloat16


def test_deeplift_shap_is_the_mean_of_deeplift_and_chunking_does_not_change_it(x64: None) -> None:
    f = random_net("all")
    score = lambda x: f(x)[1]  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (4, 4, 2), jnp.float64)
    bs = jax.random.normal(jax.random.key(4), (5, 4, 4, 2), jnp.float64)
    mean = sum(xc.deeplift(score, baseline=b)(x) for b in bs) / 5
    for batch_size in (None, 2, "auto"):
        np.testing.assert_allclose(xc.deeplift_shap(score, bs, batch_size=batch_size)(x), mean, rtol=1e-10, atol=1e-12)
    gap = xc.deeplift_shap(score, bs)(x).sum() - (score(x) - jnp.mean(jax.vmap(score)(bs)))
    assert abs(float(gap)) < 1e-8


def test_gradient_shap_draws_chunking_and_expectation(x64: None) -> None:
    f = random_net("dense")
    score = lambda x: f(x)[0]  # noqa: E731
    x = jax.random.normal(jax.random.key(1), (4, 4, 2), jnp.float64)
    bs = jax.random.normal(jax.random.key(4), (3, 4, 4, 2), jnp.float64)
    fn = xc.gradient_shap(score, bs, samples=6, stdev=0.1, batch_size=None)
    key = jax.random.key(0)
    a = fn(x, key=key)
    np.testing.assert_array_equal(a, fn(x, key=key))
    np.testing.assert_allclose(xc.gradient_shap(score, bs, samples=6, stdev=0.1, batch_size=4)(x, key=key), a,
                               rtol=1e-10, atol=1e-12)
    # given draws, written out
    idx, alpha = jnp.array([0, 2, 1, 1]), jnp.array([0.1, 0.5, 0.9, 0.3])
    got = xc.gradient_shap(score, bs, samples=4)(x, draws={"baseline": idx, "alpha": alpha})
    want = sum(jax.grad(score)(bs[i] + a * (x - bs[i])) * (x - bs[i]) for i, a in zip(idx, alpha)) / 4
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # many samples: completeness in expectation
    many = xc.attribute(score, x, method="gradient_shap", key=key, baselines=bs, samples=4000)
    target = score(x) - jnp.mean(jax.vmap(score)(bs))
    assert abs(float(many.sum() - target)) < 0.05 * abs(float(target)) + 0.05


def test_errors_name_the_primitive_and_the_layer() -> None:
    from xai_core.graph import mark

    f = lambda x: mark(jnp.sort(x), "sorter")[0]  # noqa: E731
    with pytest.raises(NoRuleError, match=r"sort in layer 'sorter'.*plain gradient|sort in layer 'sorter'"):
        xc.deeplift(f)(jnp.arange(3.0))
    g = lambda x: jnp.where(x[0] > x[1], x[2], x[3] * x[2])  # noqa: E731
    with pytest.raises(NoRuleError, match="select_n"):
        xc.deeplift(g)(jnp.arange(4.0))
    with pytest.raises(ValueError, match=r"baselines must have shape \(n, \*x.shape\)"):
        xc.deeplift_shap(lambda x: x.sum(), jnp.zeros(3))(jnp.ones(3))
    with pytest.raises(ValueError, match="needs a set of baselines"):
        xc.deeplift_shap(lambda x: x.sum())(jnp.ones(3))
    with pytest.raises(ValueError, match="explicit PRNG key"):
        xc.gradient_shap(lambda x: x.sum(), jnp.zeros((1, 3)))(jnp.ones(3))


torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

from rule_models import CNN, MLP, ResNet, build, images, three_ways  # noqa: E402

from xai_core.adapters import from_torch  # noqa: E402


def rel(ours: object, theirs: object) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def ours_batched(net: torch.nn.Module, xs: torch.Tensor, targets: list[int], method: str, **options: object) -> np.ndarray:
    m = from_torch(net, xs[:1])
    fn = jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method=method, **options), in_axes=(0, 0))
    return np.asarray(fn(jnp.asarray(xs.numpy()), jnp.array(targets)))


NETS = {"mlp": (MLP, 8), "cnn": (CNN, 16), "resnet": (ResNet, 8)}


@pytest.mark.parametrize("name", sorted(NETS))
def test_deeplift_and_deeplift_shap_equal_captum(name: str, x64: None) -> None:
    cls, size = NETS[name]
    net = build(cls)
    xs, x0 = images(2, size), images(1, size, seed=5) * 0.3
    targets = [1, 3]
    theirs = captum_attr.DeepLift(net).attribute(xs, baselines=x0, target=targets).detach().numpy()
    ours = ours_batched(net, xs, targets, "deeplift", baseline=jnp.asarray(x0.numpy()[0]))
    print(f"\ndeeplift {name} vs Captum DeepLift: {rel(ours, theirs):.1e}")
    assert rel(ours, theirs) < 1e-4
    bs = images(3, size, seed=6) * 0.5
    theirs = captum_attr.DeepLiftShap(net).attribute(xs, baselines=bs, target=targets).detach().numpy()
    ours = ours_batched(net, xs, targets, "deeplift_shap", baselines=jnp.asarray(bs.numpy()))
    print(f"deeplift_shap {name} vs Captum DeepLiftShap: {rel(ours, theirs):.1e}")
    assert rel(ours, theirs) < 1e-4


def test_gradient_shap_equals_captum_on_the_same_draws(monkeypatch: pytest.MonkeyPatch, x64: None) -> None:
    net = build(ResNet)
    x, bs = images(1, 8), images(4, 8, seed=6)
    idx, alpha = np.array([3, 0, 2, 2, 1]), np.array([0.15, 0.8, 0.5, 0.33, 0.95])
    # Captum draws the baselines with np.random.choice and the path points with np.random.uniform
    monkeypatch.setattr(np.random, "choice", lambda *a, **k: idx)
    monkeypatch.setattr(np.random, "uniform", lambda *a, **k: alpha)
    theirs = captum_attr.GradientShap(net).attribute(x, baselines=bs, target=2, n_samples=5, stdevs=0.0)
    monkeypatch.undo()
    m = from_torch(net, x)
    ours = xc.gradient_shap(m.score(2), jnp.asarray(bs.numpy()), samples=5)(
        jnp.asarray(x.numpy()[0]), draws={"baseline": jnp.asarray(idx), "alpha": jnp.asarray(alpha)})
    print(f"\ngradient_shap vs Captum GradientShap (same draws): {rel(ours, theirs.detach().numpy()[0]):.1e}")
    assert rel(ours, theirs.detach().numpy()[0]) < 1e-4


def test_three_ways_of_writing_a_model_give_one_deeplift_map_and_captums_differ(x64: None) -> None:
    nets = three_ways()
    xs, x0 = images(2), torch.zeros(1, 3, 16, 16, dtype=torch.float64)
    targets = [0, 4]
    ours = {s: ours_batched(n, xs, targets, "deeplift") for s, n in nets.items()}
    theirs = {s: captum_attr.DeepLift(nets[s]).attribute(xs, baselines=x0, target=targets).detach().numpy()
              for s in ("modules", "functional")}
    for style in ("functional", "reused"):
        assert rel(ours[style], ours["modules"]) < 1e-6
    print(f"\nCaptum DeepLift, functional vs modules: {rel(theirs['functional'], theirs['modules']):.1e}")
    assert rel(theirs["functional"], theirs["modules"]) > 1e-2
    with pytest.raises(RuntimeError, match="used more than once"):  # Captum #1082
        captum_attr.DeepLift(nets["reused"]).attribute(xs, baselines=x0, target=targets)
    # with max-pooling as nn.MaxPool2d, Captum's rule and ours agree, and both conserve
    assert rel(ours["modules"], theirs["modules"]) < 1e-6
    change = (nets["modules"](xs) - nets["modules"](x0)).detach().numpy()[[0, 1], targets]
    assert np.abs(ours["modules"].sum(axis=(1, 2, 3)) - change).max() < 1e-8 * np.abs(change).max()


def test_remat_is_walked_into_and_a_scan_is_an_error(x64: None) -> None:
    w = jax.random.normal(jax.random.key(0), (3, 3), jnp.float64)
    block = jax.checkpoint(lambda h: jax.nn.relu(h @ w))
    f = lambda x: jnp.sum(block(block(x)))  # noqa: E731
    x = jnp.array([1.0, -2.0, 3.0], jnp.float64)
    assert abs(float(xc.completeness_gap(f, x, xc.deeplift(f)(x)))) < 1e-12
    plain = lambda x: jnp.sum(jax.nn.relu(jax.nn.relu(x @ w) @ w))  # noqa: E731
    np.testing.assert_allclose(xc.deeplift(f)(x), xc.deeplift(plain)(x), rtol=1e-12)
    np.testing.assert_allclose(xc.lrp(f, "epsilon")(x), xc.lrp(plain, "epsilon")(x), rtol=1e-12)
    looped = lambda x: jax.lax.scan(lambda c, _: (jax.nn.relu(c @ w), None), x, None, length=2)[0].sum()  # noqa: E731
    for method in (xc.deeplift, xc.lrp):
        with pytest.raises(NoRuleError, match="'scan' whose body .* does not enter"):
            method(looped)(x)


def test_overlapping_max_pool_conserves_where_captums_rule_does_not(x64: None) -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 6, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2, 1),
                              torch.nn.Flatten(), torch.nn.Linear(6 * 8 * 8, 5)).double().eval()
    x, x0 = images(1), images(1, seed=7) * 0.5
    change = float(net(x)[0, 2] - net(x0)[0, 2])
    ours = xc.deeplift(from_torch(net, x).score(2), baseline=jnp.asarray(x0.numpy()[0]))(jnp.asarray(x.numpy()[0]))
    theirs = captum_attr.DeepLift(net).attribute(x, baselines=x0, target=2).detach().numpy()
    print(f"\noverlapping 3x3/2 max-pool: gap / change, ours {abs(float(ours.sum()) - change) / abs(change):.1e}, "
          f"Captum {abs(theirs.sum() - change) / abs(change):.1e}")
    assert abs(float(ours.sum()) - change) < 1e-8 * abs(change)
    assert abs(theirs.sum() - change) > 1e-3 * abs(change)
