"""Feature visualization (xc.featureviz) and layer pictures (viz.layers): the objective rises,
a planted filter is recovered, many channels run as one program, and the PNG grids."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import xai_core as xc
from xai_core.adapters import Model
from xai_core import viz
from xai_core.graph import mark

PLANTED = np.stack([np.array([[1, -1, 1, -1, 1], [-1, 1, 1, 1, -1], [1, 1, -1, 1, 1], [-1, 1, 1, 1, -1],
                              [1, -1, 1, -1, 1]], np.float32) * s for s in (1.0, -1.0, 0.5)], axis=-1)


def model() -> Model:
    """conv 5x5 (channel 0 is the planted filter) -> relu -> conv 3x3 -> mean -> dense."""
    k = jax.random.split(jax.random.key(0), 3)
    conv1 = 0.1 * jax.random.normal(k[0], (5, 5, 3, 4))
    conv1 = conv1.at[..., 0].set(jnp.asarray(PLANTED))
    conv2 = jax.random.normal(k[1], (3, 3, 4, 6)) / 6
    dense = jax.random.normal(k[2], (6, 3))

    def apply(p, x):
        c1, c2, d = p
        conv = lambda x, w: jax.lax.conv_general_dilated(x[None], w, (1, 1), "SAME",  # noqa: E731
                                                          dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        a = mark(conv(x, c1), "conv1")
        b = mark(jax.nn.relu(conv(jax.nn.relu(a), c2)), "conv2")
        return b.mean(axis=(0, 1)) @ d

    return Model(apply, (conv1, conv2, dense))


def test_the_objective_rises_under_jitter_and_scaling() -> None:
    m = model()
    img, values = xc.featureviz.optimize(xc.featureviz.channel(m, "conv2", 3), (16, 16, 3), key=jax.random.key(1),
                                         steps=64, jitter=2, scale=(0.9, 1.1), tv=0.01, history=True)
    assert img.shape == (16, 16, 3) and float(img.min()) >= 0 and float(img.max()) <= 1
    assert values.shape == (64,)
    assert float(values[-8:].mean()) > float(values[:8].mean()) + 0.1
    logit = xc.featureviz.optimize(xc.featureviz.logit(m, 1), (16, 16, 3), key=jax.random.key(2), steps=32,
                                   history=True)[1]
    assert float(logit[-1]) > float(logit[0])


def test_a_planted_first_layer_filter_is_recovered() -> None:
    m = model()
    img = xc.featureviz.optimize(xc.featureviz.neuron(m, "conv1", (8, 8, 0)), (16, 16, 3), key=jax.random.key(3),
                                 steps=200, learning_rate=0.1, parameterization="pixel")
    patch = np.asarray(img[6:11, 6:11])
    corr = np.corrcoef(patch.ravel(), PLANTED.ravel())[0, 1]
    print(f"\ncorrelation of the optimized patch with the planted filter: {corr:.3f}")
    assert corr > 0.9


def test_many_channels_are_one_program_and_equal_one_at_a_time() -> None:
    m = model()
    key = jax.random.key(4)
    many = xc.featureviz.channels(m, "conv2", jnp.arange(3), (12, 12, 3), key=key, steps=16)
    assert many.shape == (3, 12, 12, 3)
    keys = jax.random.split(key, 3)
    one = xc.featureviz.optimize(xc.featureviz.channel(m, "conv2", 1), (12, 12, 3), key=keys[1], steps=16)
    np.testing.assert_allclose(many[1], one, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="unknown parameterization 'pixels'"):
        xc.featureviz.optimize(lambda x: x.sum(), (4, 4, 3), key=key, parameterization="pixels")
    with pytest.raises(ValueError, match=r"shape must be \(H, W, C\)"):
        xc.featureviz.optimize(lambda x: x.sum(), (4, 4), key=key)


def test_activation_and_feature_grids(tmp_path) -> None:
    m = model()
    x = jax.random.uniform(jax.random.key(5), (16, 16, 3))
    a = xc.layer.activation(m, "conv2")(x)
    grid = viz.activation_grid(np.asarray(a), columns=4)
    assert grid.shape == (2 * 17 - 1, 4 * 17 - 1) and grid.dtype == np.uint8
    chw = viz.activation_grid(np.moveaxis(np.asarray(a), -1, 0), channel_axis=0, columns=4)
    np.testing.assert_array_equal(chw, grid)
    path = viz.save_activations(np.asarray(a), tmp_path / "acts.png", columns=4, scale=2)
    assert Image.open(path).size == (2 * grid.shape[1], 2 * grid.shape[0])
    imgs = xc.featureviz.channels(m, "conv2", jnp.arange(2), (16, 16, 3), key=jax.random.key(6), steps=4)
    assert viz.save_features(np.asarray(imgs), tmp_path / "features.png", titles=["c0", "c1"]).exists()
    with pytest.raises(ValueError, match=r"needs one example's \(h, w, C\)"):
        viz.activation_grid(np.zeros((2, 3)))
