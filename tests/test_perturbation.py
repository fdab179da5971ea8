"""occlusion against a hand-written loop, including windows that do not tile the input."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from conftest import cnn_logits


def occlusion_loop(score, x: np.ndarray, window, stride, baseline: float) -> np.ndarray:
    """Captum's definition, spelled out: average score drop over the windows covering each element."""
    total, count = np.zeros(x.shape), np.zeros(x.shape)
    counts = [1 + math.ceil((s - w) / st) for s, w, st in zip(x.shape, window, stride)]
    full = float(score(jnp.asarray(x)))
    for index in itertools.product(*[range(c) for c in counts]):
        region = tuple(slice(i * st, i * st + w) for i, w, st in zip(index, window, stride))
        occluded = x.copy()
        occluded[region] = baseline
        total[region] += full - float(score(jnp.asarray(occluded)))
        count[region] += 1
    return total / np.maximum(count, 1)


@pytest.mark.parametrize(
    "window, stride",
    [((2, 2, 3), (2, 2, 3)), ((3, 3, 1), (1, 1, 1)), ((3, 2, 3), (2, 2, 3)), ((2, 1, 3), (3, 2, 3)), ((4, 4, 2), (3, 3, 2)), ((7, 5, 3), (1, 1, 1))],
)
def test_occlusion_equals_the_loop(window, stride) -> None:
    score = lambda x: cnn_logits(seed=4)(x)[1]  # noqa: E731
    x = np.asarray(jax.random.uniform(jax.random.key(1), (7, 5, 3)))
    got = xc.occlusion(score, window=window, stride=stride, baseline=0.2, batch_size=4)(jnp.asarray(x))
    np.testing.assert_allclose(got, occlusion_loop(score, x, window, stride, 0.2), rtol=1e-4, atol=1e-6)


def test_int_window_and_default_stride_on_a_vector() -> None:
    w = jnp.array([1.0, 2.0, 3.0, 4.0, 5.0])
    a = xc.occlusion(lambda x: w @ x, window=2)(jnp.ones(5))
    # windows [0,2), [2,4), [4,5): linear score, zero baseline -> a_i = w_i x_i summed per window
    np.testing.assert_allclose(a, [3.0, 3.0, 7.0, 7.0, 5.0])


def test_elements_between_windows_get_zero() -> None:
    a = xc.occlusion(lambda x: jnp.sum(x**2), window=1, stride=2)(jnp.ones(5))
    np.testing.assert_allclose(a, [1.0, 0.0, 1.0, 0.0, 1.0])


def test_array_baseline() -> None:
    score = lambda x: jnp.sum(x**2)  # noqa: E731
    x = jnp.arange(4.0)
    a = xc.occlusion(score, window=1, baseline=jnp.ones(4))(x)
    np.testing.assert_allclose(a, x**2 - 1)


def test_window_larger_than_input() -> None:
    with pytest.raises(ValueError, match="larger than x"):
        xc.occlusion(lambda x: x.sum(), window=(9, 2, 3))(jnp.ones((8, 8, 3)))


def test_window_with_wrong_number_of_axes() -> None:
    with pytest.raises(ValueError, match="one per axis"):
        xc.occlusion(lambda x: x.sum(), window=(4, 4))(jnp.ones((8, 8, 3)))


def test_non_positive_stride() -> None:
    with pytest.raises(ValueError, match="integers >= 1"):
        xc.occlusion(lambda x: x.sum(), window=2, stride=0)(jnp.ones(4))
