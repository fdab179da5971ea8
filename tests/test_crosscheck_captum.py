"""Cross-check against Captum on the same torch weights, inputs and targets.

Captum gets each model's forward before the softmax (``net.logits``); xai-core gets
the model through ``from_torch``, which cuts the softmax on the jaxpr. Everything
runs in float32. Differences are measured relative to the size of Captum's map:
``max|ours - captum| / max|captum|`` must be <= 1e-4; ``pytest -s`` prints each.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
captum_attr = pytest.importorskip("captum.attr")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from torch_models import MODELS, build, inputs  # noqa: E402
from xai_core.adapters import from_torch  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

TOL = 1e-4
TARGETS = [1, 4]  # one per example


def rel(ours: object, theirs: object) -> float:
    """Largest difference, relative to the largest magnitude of Captum's map."""
    if isinstance(theirs, torch.Tensor):
        theirs = theirs.detach().numpy()
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.abs(ours - theirs).max() / np.abs(theirs).max())


def check(what: str, ours: object, theirs: object) -> None:
    err = rel(ours, theirs)
    print(f"\n{what}: {err:.1e}")
    assert err <= TOL, what


@pytest.fixture(scope="module", params=sorted(MODELS))
def setup(request: pytest.FixtureRequest):
    net = build(request.param)
    m = from_torch(net, inputs(1))
    xs = inputs(len(TARGETS), seed=7)
    return request.param, net, m, xs, jnp.asarray(xs.numpy()), jnp.array(TARGETS)


def ours(m, method: str, xs, ts, **options):
    return jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method=method, **options)))(xs, ts)


def test_saliency(setup) -> None:
    model, net, m, xs_t, xs, ts = setup
    theirs = captum_attr.Saliency(net.logits).attribute(xs_t, target=TARGETS, abs=False)
    check(f"saliency {model}", ours(m, "gradient", xs, ts), theirs)


def test_input_x_gradient(setup) -> None:
    model, net, m, xs_t, xs, ts = setup
    theirs = captum_attr.InputXGradient(net.logits).attribute(xs_t, target=TARGETS)
    check(f"input_x_gradient {model}", ours(m, "gradient_x_input", xs, ts), theirs)


CAPTUM_RULES = {"gauss_legendre": "gausslegendre", "riemann_left": "riemann_left",
                "riemann_right": "riemann_right", "riemann_middle": "riemann_middle"}


@pytest.mark.parametrize("rule", sorted(CAPTUM_RULES))
def test_integrated_gradients_and_convergence_delta(setup, rule: str) -> None:
    model, net, m, xs_t, xs, ts = setup
    steps, baseline = 20, 0.25
    theirs, delta = captum_attr.IntegratedGradients(net.logits).attribute(
        xs_t, baselines=baseline, target=TARGETS, n_steps=steps, method=CAPTUM_RULES[rule],
        return_convergence_delta=True)
    got = ours(m, "ig", xs, ts, steps=steps, rule=rule, baseline=baseline)
    check(f"ig {rule} {model}", got, theirs)
    for x, t, a, d in zip(xs, TARGETS, got, delta.detach().numpy()):
        score = m.score(t)
        gap = xc.completeness_gap(score, x, a, baseline)
        change = abs(float(score(x) - score(jnp.full_like(x, baseline))))
        print(f"delta {rule} {model}: {abs(float(gap) - d) / change:.1e} of |f(x) - f(x0)|")
        assert abs(float(gap) - d) <= TOL * change


def test_trapezoid_differs_by_captums_weight_sum(setup) -> None:
    """Captum's riemann_trapezoid weights sum to (n-1)/n; ours (the trapezoid rule) to 1."""
    model, net, m, xs_t, xs, ts = setup
    steps = 16
    theirs = captum_attr.IntegratedGradients(net.logits).attribute(
        xs_t, target=TARGETS, n_steps=steps, method="riemann_trapezoid")
    got = ours(m, "ig", xs, ts, steps=steps, rule="trapezoid")
    check(f"ig trapezoid x (n-1)/n {model}", np.asarray(got) * (steps - 1) / steps, theirs)
    assert rel(got, theirs) > 10 * TOL  # not equal as they are


def test_smoothgrad_on_the_same_noise_draws(setup, monkeypatch: pytest.MonkeyPatch) -> None:
    model, net, m, xs_t, xs, ts = setup
    samples, sigma = 6, 0.2
    z = np.random.default_rng(3).standard_normal((len(TARGETS), samples, *xs.shape[1:])).astype(np.float32)

    # Captum draws torch.normal(0, stdev) of shape (batch * samples, ...), example-major.
    from captum.attr._core import noise_tunnel
    monkeypatch.setattr(noise_tunnel.torch, "normal",
                        lambda mean, std: torch.from_numpy(z.reshape(-1, *xs.shape[1:])) * std)
    theirs = captum_attr.NoiseTunnel(captum_attr.Saliency(net.logits)).attribute(
        xs_t, nt_type="smoothgrad", nt_samples=samples, stdevs=sigma, target=TARGETS, abs=False)

    def smooth(x: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
        fn = xc.smoothgrad(xc.gradient(m.score(t)), samples=samples, sigma=sigma, relative=False)
        return fn(x, noise=noise)

    got = jax.jit(jax.vmap(smooth))(xs, ts, jnp.asarray(z))
    check(f"smoothgrad {model}", got, theirs)


@pytest.mark.parametrize(("window", "stride"), [((3, 4, 4), (3, 2, 2)), ((1, 5, 3), (1, 3, 2))])
def test_occlusion(setup, window: tuple[int, ...], stride: tuple[int, ...]) -> None:
    model, net, m, xs_t, xs, ts = setup
    theirs = captum_attr.Occlusion(net.logits).attribute(
        xs_t, sliding_window_shapes=window, strides=stride, baselines=0.1, target=TARGETS)
    got = ours(m, "occlusion", xs, ts, window=window, stride=stride, baseline=0.1)
    check(f"occlusion {window}/{stride} {model}", got, theirs)
