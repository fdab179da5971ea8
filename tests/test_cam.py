"""The CAM family at named layers: defining properties, channel weights and ranking, layouts
(channels-first, channels-last, token grids), jit / vmap with traced targets, and errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.adapters import Model
from xai_core.graph import mark

K = jax.random.split(jax.random.key(0), 4)
CONV = jax.random.normal(K[0], (3, 3, 3, 6)) / 3
DENSE = jax.random.normal(K[1], (6, 4))


def apply(params, x):
    """conv -> relu (marked "features", HWC) -> global average pool -> dense."""
    conv, dense = params
    y = jax.lax.conv_general_dilated(x[None], conv, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
    a = mark(jax.nn.relu(y), "features")
    return a.mean(axis=(0, 1)) @ dense


M = Model(apply, (CONV, DENSE))
X = jax.random.normal(K[2], (8, 8, 3))
GRADIENT_CAMS = ["grad_cam", "hires_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam"]
ALL_CAMS = GRADIENT_CAMS + ["eigen_cam", "score_cam", "ablation_cam"]


def by_hand(x: jax.Array, t: int) -> tuple[jax.Array, jax.Array]:
    head, tail = M.split("features", x)
    A = head(x)
    return A, jax.grad(lambda a: tail(a)[t])(A)


def test_grad_cam_is_relu_of_mean_gradient_weighted_channels() -> None:
    for t in range(4):
        A, g = by_hand(X, t)
        want = jax.nn.relu(jnp.einsum("hwc,c->hw", A, g.mean(axis=(0, 1))))
        np.testing.assert_allclose(xc.cam.grad_cam(M, "features", upsample=False)(X, t), want, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(xc.cam.channel_weights(M, "features")(X, t), g.mean(axis=(0, 1)), rtol=1e-6)
        # a global-average-pool + dense head: HiResCAM is Grad-CAM
        np.testing.assert_allclose(xc.cam.hires_cam(M, "features", upsample=False)(X, t), want, rtol=1e-5, atol=1e-7)


def test_the_other_formulas_written_out() -> None:
    A, g = by_hand(X, 2)
    s = A.sum(axis=(0, 1))
    alpha = g ** 2 / (2 * g ** 2 + s * g ** 3 + 1e-6)
    pp = jnp.sum(jax.nn.relu(g) * jnp.where(g != 0, alpha, 0), axis=(0, 1))
    want = {
        "grad_cam_plus_plus": jax.nn.relu(A @ pp),
        "xgrad_cam": jax.nn.relu(A @ (jnp.sum(g * A, axis=(0, 1)) / (s + 1e-7))),
        "layer_cam": jax.nn.relu(jnp.sum(jax.nn.relu(g) * A, axis=-1)),
    }
    for name, w in want.items():
        np.testing.assert_allclose(getattr(xc.cam, name)(M, "features", upsample=False)(X, 2), w, rtol=1e-5, atol=1e-7)
    head, tail = M.split("features", X)
    drops = jnp.array([tail(A)[2] - tail(A.at[..., k].set(0))[2] for k in range(6)])
    np.testing.assert_allclose(xc.cam.rank_channels(M, "features")(X, 2), drops, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xc.cam.ablation_cam(M, "features", upsample=False, batch_size=2)(X, 2),
                               jax.nn.relu(A @ (drops / tail(A)[2])), rtol=1e-5, atol=1e-6)


def test_channel_selection_and_top_k() -> None:
    A, g = by_hand(X, 1)
    w = g.mean(axis=(0, 1))
    pos = xc.cam.grad_cam(M, "features", channels="positive", upsample=False)(X, 1)
    np.testing.assert_allclose(pos, jax.nn.relu(A @ jnp.where(w > 0, w, 0)), rtol=1e-5, atol=1e-7)
    neg = xc.cam.grad_cam(M, "features", channels="negative", upsample=False)(X, 1)
    np.testing.assert_allclose(neg, jax.nn.relu(-(A @ jnp.where(w < 0, w, 0))), rtol=1e-5, atol=1e-7)
    top = int(jnp.argmax(jnp.abs(w)))
    one = xc.cam.grad_cam(M, "features", top_k=1, upsample=False)(X, 1)
    np.testing.assert_allclose(one, jax.nn.relu(A[..., top] * w[top]), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="top_k must be an int in"):
        xc.cam.grad_cam(M, "features", top_k=7)(X, 1)
    with pytest.raises(ValueError, match="unknown channels 'postive'.*Did you mean 'positive'"):
        xc.cam.grad_cam(M, "features", channels="postive")


def test_rank_channels_finds_the_planted_channel() -> None:
    dense = jnp.zeros((6, 4)).at[:, 3].set(0.01).at[4, 3].set(5.0)  # channel 4 carries class 3
    m = Model(apply, (CONV, dense))
    drops = xc.cam.rank_channels(m, "features")(X, 3)
    assert int(jnp.argmax(drops)) == 4


@pytest.mark.parametrize("name", ALL_CAMS)
def test_shapes_upsampling_jit_and_vmap_with_traced_targets(name: str) -> None:
    build = getattr(xc.cam, name)
    raw = build(M, "features", upsample=False)(X, 1)
    assert raw.shape == (8, 8)
    xs = jax.random.normal(K[3], (3, 16, 16, 3))
    ts = jnp.array([0, 3, 1])
    batched = jax.jit(jax.vmap(lambda x, t: build(M, "features")(x, t)))(xs, ts)
    assert batched.shape == (3, 16, 16)
    for i in range(3):
        np.testing.assert_allclose(batched[i], build(M, "features")(xs[i], int(ts[i])), rtol=1e-4, atol=1e-5)
    if name != "eigen_cam":
        np.testing.assert_allclose(build(M, "features")(xs[0], 0),
                                   xc.cam.resize(build(M, "features", upsample=False)(xs[0], 0), (16, 16)), rtol=1e-5,
                                   atol=1e-7)


def test_resize_is_half_pixel_bilinear() -> None:
    cam = jnp.array([[0.0, 1.0], [2.0, 3.0]])
    up = xc.cam.resize(cam, (4, 4))
    np.testing.assert_allclose(up[0], [0.0, 0.25, 0.75, 1.0])  # edges clamp, centres at 1/4, 3/4
    np.testing.assert_allclose(up[:, 0], [0.0, 0.5, 1.5, 2.0])


def test_channels_first_layers_and_token_grids() -> None:
    def chw(params, x):  # the same network with a channels-first input and layer
        conv, dense = params
        y = jax.lax.conv_general_dilated(x[None], conv, (1, 1), "SAME", dimension_numbers=("NCHW", "HWIO", "NCHW"))[0]
        return mark(jax.nn.relu(y), "features").mean(axis=(1, 2)) @ dense

    m = Model(chw, (CONV, DENSE))
    x_chw = jnp.moveaxis(X, -1, 0)
    np.testing.assert_allclose(xc.cam.grad_cam(m, "features")(x_chw, 2), xc.cam.grad_cam(M, "features")(X, 2),
                               rtol=1e-5, atol=1e-7)

    def tokens(params, x):  # a class token and a 4x4 grid of patch tokens
        conv, dense = params
        y = jax.lax.conv_general_dilated(x[None], conv, (2, 2), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))[0]
        t = jnp.concatenate([jnp.ones((1, 6)), jax.nn.relu(y).reshape(16, 6)])
        return mark(t, "tokens").mean(axis=0) @ dense

    mt = Model(tokens, (CONV, DENSE))
    c = xc.cam.grad_cam(mt, "tokens", grid=(4, 4), upsample=False)(X, 1)
    assert c.shape == (4, 4)
    with pytest.raises(ValueError, match=r"needs a \(channels, height, width\)"):
        xc.cam.grad_cam(mt, "tokens")(X, 1)
    with pytest.raises(ValueError, match="at least 25 tokens"):
        xc.cam.grad_cam(mt, "tokens", grid=(5, 5))(X, 1)


def test_a_vit_token_layer_through_from_torch_with_a_grid() -> None:
    torch = pytest.importorskip("torch")
    from vit_model import TinyViT

    from xai_core.adapters import from_torch

    torch.manual_seed(0)
    net = TinyViT().eval()
    x = torch.randn(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    m = from_torch(net, x)
    xj = jnp.asarray(x.numpy()[0])
    A = xc.layer.activation(m, "blocks.1")(xj)
    assert A.shape == (16, 16)  # 16 patch tokens of 16 features
    raw = xc.cam.grad_cam(m, "blocks.1", grid=(4, 4), upsample=False)(xj, 2)
    head, tail = m.split("blocks.1", xj)
    g = jax.grad(lambda a: tail(a)[2])(A)
    want = jax.nn.relu(A.reshape(4, 4, 16) @ g.reshape(4, 4, 16).mean(axis=(0, 1)))
    np.testing.assert_allclose(raw, want, rtol=1e-5, atol=1e-7)
    assert xc.cam.score_cam(m, "blocks.1", grid=(4, 4))(xj, 2).shape == (16, 16)
