"""Tests for xai_core.metrics: localization against ground-truth masks."""

from __future__ import annotations

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
