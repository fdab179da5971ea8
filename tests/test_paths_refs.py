"""Guided IG and Blur IG against PAIR's ``saliency`` 0.2.1 on the same JAX function, in float64.

PAIR's ``CallModelFunction`` takes a batch of numpy inputs and returns gradients; here it calls
the jitted gradient of the same score function ours attributes. numpy 2 removed
``np.quantile(interpolation=)``, which PAIR's Guided IG calls; the test gives its module a numpy
whose ``quantile`` maps that keyword to ``method=`` (same values).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits

saliency = pytest.importorskip("saliency.core", reason="PAIR's saliency is a test extra (pip install saliency==0.2.1)")
from saliency.core import blur_ig as pair_blur, guided_ig as pair_guided  # noqa: E402

logits_fn = cnn_logits(seed=7)


def score(x: jax.Array) -> jax.Array:
    return logits_fn(x)[1]


@pytest.fixture
def pair_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    def quantile(a: Any, q: Any, interpolation: str = "linear", **kw: Any) -> Any:
        return np.quantile(a, q, method=interpolation, **kw)

    shim = SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    shim.quantile = quantile
    monkeypatch.setattr(pair_guided, "np", shim)


batch_grad = jax.jit(jax.vmap(jax.grad(score)))


def call_model(x_batch: np.ndarray, call_model_args: Any = None, expected_keys: Any = None) -> dict[str, np.ndarray]:
    grads = batch_grad(jnp.asarray(x_batch, jnp.float64))
    return {saliency.INPUT_OUTPUT_GRADIENTS: np.asarray(grads)}


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(size=(8, 8, 3))


def close(ours: Any, ref: np.ndarray, tol: float = 1e-4) -> None:
    assert np.abs(np.asarray(ours) - ref).max() <= tol * np.abs(ref).max()


@pytest.mark.parametrize("options", [{}, {"max_dist": 1.0}, {"fraction": 0.1, "max_dist": 0.1}, {"max_dist": 0.0}])
def test_guided_ig_equals_pairs(options: dict, pair_numpy: None, x64: None) -> None:
    x, baseline = image(0), np.full((8, 8, 3), 0.25)
    ref = saliency.GuidedIG().GetMask(x, call_model, x_baseline=baseline, **options)  # x_steps=200
    close(xc.guided_ig(score, baseline=baseline, **options)(jnp.asarray(x)), ref)
    close(xc.attribute(score, jnp.asarray(x), method="guided_ig", baseline=baseline, **options), ref)
    # float32 (PAIR's path is float64): 1e-6 to 3e-5 here, from float32 rounding alone.
    close(xc.guided_ig(score, baseline=baseline, **options)(jnp.asarray(x, jnp.float32)), ref, tol=1e-3)


@pytest.mark.parametrize("options", [{}, {"max_sigma": 6.0, "steps": 40, "grad_step": 0.05}])
def test_blur_ig_equals_pairs(options: dict, x64: None) -> None:
    x = image(1)
    ref = saliency.BlurIG().GetMask(x, call_model, **options)  # max_sigma=50, steps=100
    close(xc.blur_ig(score, **options)(jnp.asarray(x)), ref)


def test_blur_ig_sqrt_levels_equal_pairs_at_its_default_batch(x64: None) -> None:
    # PAIR weights a batch of levels by the last level's width; with its default batch_size=1
    # (and for evenly spaced levels at any batch) that is each level's own width, as ours.
    x = image(2)
    ref = saliency.BlurIG().GetMask(x, call_model, max_sigma=10.0, steps=30, sqrt=True)
    close(xc.blur_ig(score, max_sigma=10.0, steps=30, sqrt=True)(jnp.asarray(x)), ref)
    batched = saliency.BlurIG().GetMask(x, call_model, max_sigma=10.0, steps=30, sqrt=True, batch_size=10)
    assert np.abs(batched - ref).max() > 1e-3 * np.abs(ref).max()


def test_pairs_blur_is_ours(x64: None) -> None:
    x = image(3)
    for sigma in (0.0, 0.5, 3.0, 50.0):
        expected = pair_blur.gaussian_blur(x, sigma)
        np.testing.assert_allclose(xc.attribution.paths.gaussian_blur(jnp.asarray(x), sigma), expected, atol=1e-14)
