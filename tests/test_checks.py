"""Bad input: every error says what is wrong and what to do."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

import xai_core as xc

ALL = ["gradient", "gradient_x_input", "ig", "occlusion"]
OPTIONS = {"occlusion": {"window": 1}}


@pytest.mark.parametrize("method", ALL)
def test_non_scalar_score_names_the_shape_and_says_select_a_class(method: str) -> None:
    with pytest.raises(ValueError, match=r"returned shape \(3,\).*m\.score\(t\)"):
        xc.attribute(lambda x: x * 2, jnp.ones(3), method=method, **OPTIONS.get(method, {}))


@pytest.mark.parametrize("method", ALL)
def test_integer_input(method: str) -> None:
    with pytest.raises(TypeError, match=r"dtype int32.*astype\(jnp.float32\)"):
        xc.attribute(lambda x: x.sum(), jnp.ones(3, jnp.int32), method=method, **OPTIONS.get(method, {}))


@pytest.mark.parametrize("bad", [jnp.nan, jnp.inf])
@pytest.mark.parametrize("method", ALL)
def test_nan_or_inf_input(method: str, bad: float) -> None:
    with pytest.raises(ValueError, match="NaN"):
        xc.attribute(lambda x: x.sum(), jnp.array([1.0, bad]), method=method, **OPTIONS.get(method, {}))


def test_nan_inside_smoothgrad_input() -> None:
    with pytest.raises(ValueError, match="1 NaN"):
        xc.attribute(lambda x: x.sum(), jnp.array([1.0, jnp.nan]), method="smoothgrad", key=jax.random.key(0))


@pytest.mark.parametrize("method", ["ig", "occlusion"])
def test_wrong_baseline_shape(method: str) -> None:
    with pytest.raises(ValueError, match=r"baseline of shape \(2,\) does not match x of shape \(3,\)"):
        xc.attribute(lambda x: x.sum(), jnp.ones(3), method=method, baseline=jnp.zeros(2), **OPTIONS.get(method, {}))


def test_non_callable_score() -> None:
    with pytest.raises(TypeError, match="callable"):
        xc.gradient(jnp.ones(3))


def test_integer_score() -> None:
    with pytest.raises(TypeError, match="floating-point scalar"):
        xc.gradient(lambda x: jnp.int32(1))(jnp.ones(3))


@pytest.mark.parametrize("kwargs, match", [({"steps": 0}, "steps"), ({"steps": 1, "rule": "trapezoid"}, "steps"), ({"rule": "simpson"}, "rule"), ({"batch_size": 0}, "batch_size")])
def test_bad_ig_options(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        xc.integrated_gradients(lambda x: x.sum(), **kwargs)


def test_unknown_rule_suggests_closest() -> None:
    with pytest.raises(ValueError, match="Did you mean 'trapezoid'"):
        xc.integrated_gradients(lambda x: x.sum(), rule="trapezoidal")


def test_completeness_gap_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="attribution of shape"):
        xc.completeness_gap(lambda x: x.sum(), jnp.ones(3), jnp.ones(2))
