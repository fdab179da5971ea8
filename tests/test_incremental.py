"""Incremental inference (xai_core.graph.incremental) and occlusion through it: the same values
as the whole model per window, for convolutions with padding, stride and dilation, max and
average pooling, pads, residual adds and BatchNorm, for boxes at edges and corners."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.graph.incremental import incremental


def _conv(x, w, stride=1, padding="SAME", dilation=1, spec=("NHWC", "HWIO", "NHWC")):
    return jax.lax.conv_general_dilated(x, w.astype(x.dtype), (stride, stride), padding,
                                        rhs_dilation=(dilation, dilation), dimension_numbers=spec)


def native_net(seed: int = 0):
    """An HxWxC network with each kind of operation the box rules follow, and a dense head."""
    rng = np.random.default_rng(seed)
    w = lambda *s: jnp.asarray(rng.normal(size=s) / np.sqrt(np.prod(s[:-1])))  # noqa: E731
    k1, k2, k3, k4, dense = w(3, 3, 3, 6), w(3, 3, 6, 8), w(1, 1, 8, 8), w(3, 3, 8, 8), w(8, 4)
    scale, shift = jnp.asarray(rng.uniform(0.5, 1.5, 8)), jnp.asarray(rng.uniform(-0.2, 0.2, 8))

    def fn(x):
        h = jax.nn.relu(_conv(x[None], k1))                                           # SAME, stride 1
        h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                  ((0, 0), (1, 1), (1, 1), (0, 0)))                    # padded max pool
        h = _conv(h, k2, stride=2, padding=((2, 1), (1, 2)), dilation=2)               # strided, dilated
        h = (h - 0.1) * scale + shift                                                  # BatchNorm's affine
        h = jax.nn.relu(h + _conv(h, k3, padding="VALID"))                             # residual add
        h = jnp.pad(h, ((0, 0), (1, 0), (0, 1), (0, 0)), constant_values=0.5)          # an explicit pad
        h = jax.lax.reduce_window(h, 0.0, jax.lax.add, (1, 2, 2, 1), (1, 1, 1, 1), "VALID") / 4  # avg pool
        h = jnp.transpose(h, (0, 3, 1, 2))                                             # to NCHW ...
        h = _conv(h, k4, spec=("NCHW", "HWIO", "NCHW"))                                # ... and a conv there
        return jnp.tanh(h.mean(axis=(2, 3))[0] @ dense)[1]

    return fn


X_SHAPE = (23, 19, 3)


@pytest.mark.parametrize("box", [(4, 5, 3), (6, 3, 1)])
def test_incremental_equals_the_whole_function(x64, box) -> None:
    fn = native_net()
    x = jax.random.normal(jax.random.key(0), X_SHAPE, jnp.float64)
    changed = incremental(fn, x)
    patch = jax.random.normal(jax.random.key(1), box, jnp.float64)
    last = [s - b for s, b in zip(X_SHAPE, box)]
    starts = list(itertools.product(*[sorted({0, 1, lim // 2, lim - 1, lim}) for lim in last]))
    for start in starts:  # corners, edges, the middle
        want = fn(jax.lax.dynamic_update_slice(x, patch, start))
        np.testing.assert_allclose(changed(start, patch), want, rtol=1e-12, err_msg=str(start))
    # jit and vmap over traced starts: one program for every box
    batch = jax.jit(jax.vmap(lambda s: changed(list(s), patch)))(jnp.asarray(starts))
    whole = jax.vmap(lambda s: fn(jax.lax.dynamic_update_slice(x, patch, list(s))))(jnp.asarray(starts))
    np.testing.assert_allclose(batch, whole, rtol=1e-12)


def test_incremental_works_on_boxes_not_on_the_whole_map() -> None:
    """The changed pass's convolutions read slabs smaller than their input: work is saved."""
    x = jnp.ones(X_SHAPE)
    changed = incremental(native_net(), x)
    jaxpr = jax.make_jaxpr(lambda s: changed(list(s), jnp.zeros((4, 5, 3))))(jnp.zeros(3, jnp.int32))
    convs = [e for e in jaxpr.eqns if e.primitive.name == "conv_general_dilated"]
    assert len(convs) == 4
    first = convs[0].outvars[0].aval.shape
    assert first[1:3] == (6, 7), first  # a 4x5 box grown by the 3x3 kernel, of the 23x19 map


def test_incremental_falls_back_to_dense_work_where_no_box_rule_applies(x64) -> None:
    """A sort, a cumulative sum and a flatten have no box rule: they get dense operands."""
    def fn(x):
        h = jnp.cumsum(jax.nn.relu(_conv(x[None], jnp.ones((3, 3, 3, 2)))), axis=1)
        return jnp.sort(h.reshape(-1))[-3:].sum() + h.reshape(-1) @ jnp.linspace(0, 1, h.size)

    x = jax.random.normal(jax.random.key(0), (9, 8, 3), jnp.float64)
    patch = jnp.zeros((2, 3, 3), jnp.float64)
    np.testing.assert_allclose(incremental(fn, x)((7, 0, 0), patch),
                               fn(jax.lax.dynamic_update_slice(x, patch, (7, 0, 0))), rtol=1e-12)


@pytest.mark.parametrize("window, stride", [((5, 4, 3), (3, 4, 3)), ((3, 3, 1), (2, 3, 1)), ((23, 2, 3), (1, 2, 3))])
def test_occlusion_incremental_equals_whole_model_per_window(x64, window, stride) -> None:
    """Non-tiling strides: the last windows stick out and are clipped; partial channels too."""
    fn = native_net(seed=3)
    x = jax.random.normal(jax.random.key(2), X_SHAPE, jnp.float64)
    fast = xc.occlusion(fn, window, stride, baseline=0.3, batch_size=5)(x)
    slow = xc.occlusion(fn, window, stride, baseline=0.3, batch_size=5, incremental=False)(x)
    np.testing.assert_allclose(fast, slow, rtol=1e-10, atol=1e-14)


torch = pytest.importorskip("torch")


class _Pools(torch.nn.Module):
    """Torch's pooling layers, a dilated and a strided conv, BatchNorm and a residual add."""

    def __init__(self) -> None:
        super().__init__()
        nn = torch.nn
        self.a = nn.Sequential(nn.Conv2d(3, 6, 3, padding=2, dilation=2), nn.BatchNorm2d(6), nn.ReLU(),
                               nn.MaxPool2d(3, 2, padding=1))
        self.b = nn.Conv2d(6, 6, 3, padding=1)
        self.c = nn.Sequential(nn.AvgPool2d(2, 1), nn.Conv2d(6, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten(), nn.Linear(8, 5))

    def forward(self, x):
        h = self.a(x)
        return self.c(torch.relu(h + self.b(h)))


@pytest.mark.parametrize("name", ["small_cnn", "resnetish", "functional", "pools"])
def test_occlusion_incremental_on_torch_models(name) -> None:
    from torch_models import build, inputs, randomize_batchnorm

    from xai_core.adapters import from_torch

    if name == "pools":
        torch.manual_seed(0)
        net = _Pools().eval()
        randomize_batchnorm(net)
    else:
        net = build(name)
    x = inputs(2)
    m = from_torch(net, x[:1])
    xs, ts = jnp.asarray(x.numpy()), jnp.asarray([1, 3])
    run = lambda inc: jax.jit(jax.vmap(lambda x, t: xc.occlusion(  # noqa: E731
        m.score(t), (3, 5, 5), (3, 3, 3), batch_size=7, incremental=inc)(x)))(xs, ts)
    fast, slow = run(True), run(False)
    np.testing.assert_allclose(fast, slow, rtol=1e-4, atol=1e-5 * float(jnp.abs(slow).max()))


def token_net(seed: int = 0, query_first: bool = True):
    """A causal transformer block over rows ``(L, D)`` written with the operations a converted HF
    model uses: dense layers, a split of heads by reshape, a rotation by slice and concatenate,
    softmax attention under a causal mask, and rows taken at the end by a gather."""
    rng = np.random.default_rng(seed)
    w = lambda *s: jnp.asarray(rng.normal(size=s) / np.sqrt(s[0]))  # noqa: E731
    wq, wk, wv, wo, w1, w2, head = w(8, 8), w(8, 8), w(8, 8), w(8, 8), w(8, 16), w(16, 8), w(8, 5)

    def fn(x):
        n = x.shape[0]
        heads = lambda h: h.reshape(n, 2, 4).transpose(1, 0, 2)  # noqa: E731
        q, k, v = heads(x @ wq), heads(x @ wk), heads(x @ wv)
        q = jnp.concatenate([-q[..., 2:], q[..., :2]], -1) * 0.5 + q  # rotate-half, as RoPE
        if query_first:
            s = jnp.einsum("hqd,hkd->hqk", q, k)
        else:  # the keys as the dot_general's first operand, then transposed to (h, q, k)
            s = jax.lax.dot_general(k, q, (((2,), (2,)), ((0,), (0,)))).transpose(0, 2, 1)
        a = jax.nn.softmax(jnp.where(jnp.tril(jnp.ones((n, n), bool)), s, -1e9), -1)
        h = x + jnp.einsum("hqk,hkd->qhd", a, v).reshape(n, 8) @ wo
        h = h + jax.nn.relu(h @ w1) @ w2
        return jnp.tanh(h @ head)[jnp.array([n - 3, n - 2, n - 1])]

    return fn


def test_rows_of_a_causal_model_are_recomputed_from_the_change_on(x64) -> None:
    fn = token_net()
    x = jax.random.normal(jax.random.key(0), (12, 8), jnp.float64)
    changed = incremental(fn, x, causal=True)
    for start in (0, 3, 7, 11):
        patch = jax.random.normal(jax.random.key(start), (12 - start, 8), jnp.float64)
        want = fn(jax.lax.dynamic_update_slice(x, patch, (start, 0)))
        np.testing.assert_allclose(changed((start, 0), patch), want, rtol=1e-12, err_msg=str(start))
    # the work is on the rows: the dense layers read (12 - start) rows, not 12
    jaxpr = jax.make_jaxpr(lambda p: changed((7, 0), p))(jnp.zeros((5, 8), jnp.float64))
    shapes = {e.invars[0].aval.shape for e in jaxpr.eqns if e.primitive.name == "dot_general"}
    assert (5, 8) in shapes and (12, 8) not in shapes, shapes


def test_without_causal_two_changed_operands_go_dense_and_a_dense_layer_on_rows_is_exact(x64) -> None:
    fn = token_net()
    x = jax.random.normal(jax.random.key(0), (12, 8), jnp.float64)
    patch = jnp.zeros((3, 8), jnp.float64)
    for start in (0, 4, 9):  # a box of 3 rows anywhere, not only to the end: exact without causal=True
        np.testing.assert_allclose(incremental(fn, x)((start, 0), patch),
                                   fn(jax.lax.dynamic_update_slice(x, patch, (start, 0))), rtol=1e-12)


def test_a_key_first_attention_breaks_the_causal_rule_so_callers_check_it(x64) -> None:
    """The causal rule computes the rows of a dot_general's first operand: written key-first,
    the scores get the wrong rows (xc.lm checks one ablation densely and falls back)."""
    fn = token_net(query_first=False)
    x = jax.random.normal(jax.random.key(0), (12, 8), jnp.float64)
    patch = jnp.zeros((5, 8), jnp.float64)
    want = fn(jax.lax.dynamic_update_slice(x, patch, (7, 0)))
    assert not np.allclose(incremental(fn, x, causal=True)((7, 0), patch), want)
    np.testing.assert_allclose(incremental(fn, x)((7, 0), patch), want, rtol=1e-12)
