"""Tests for xai_core.graph: tracing with jit inlined, cutting final activations."""

from __future__ import annotations

from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_core import graph
from xai_core.graph.interpreter import _inner
from conftest import jax_flag


# A small model with (4, 5) logits for a (4, 6) input, so softmax can run over any axis.
_RNG = np.random.default_rng(0)
_W1, _W2 = _RNG.normal(size=(6, 8)).astype(np.float32), _RNG.normal(size=(8, 5)).astype(np.float32)


def _params() -> dict[str, jax.Array]:
    return {"w1": jnp.asarray(_W1), "w2": jnp.asarray(_W2)}


def _logits(p: dict[str, jax.Array], x: jax.Array) -> jax.Array:
    return jnp.tanh(x @ p["w1"]) @ p["w2"]


X = jnp.asarray(_RNG.normal(size=(4, 6)).astype(np.float32))
LOGITS = jax.jit(_logits)(_params(), X)


def _run(closed, *args):
    # jitted: one compile instead of one per op (keeps the tests fast)
    return jax.jit(lambda *a: jax.core.eval_jaxpr(closed.jaxpr, closed.consts, *a))(*jax.tree.leaves(args))


def _prims(closed) -> list[str]:
    return [e.primitive.name for e in closed.jaxpr.eqns]


@pytest.fixture
def softmax_custom_jvp() -> Iterator[None]:
    with jax_flag("jax_softmax_custom_jvp", True):
        yield


def _hand_softmax(z, axis=-1):
    e = jnp.exp(z - z.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


# activation applied to the logits -> what the cut should report
ENDINGS = {
    "softmax": (jax.nn.softmax, "softmax"),
    "softmax_axis0": (lambda z: jax.nn.softmax(z, axis=0), "softmax"),
    "softmax_all_axes": (lambda z: jax.nn.softmax(z, axis=(0, 1)), "softmax"),
    "log_softmax": (jax.nn.log_softmax, "log_softmax"),
    "log_softmax_axis0": (lambda z: jax.nn.log_softmax(z, axis=0), "log_softmax"),
    "sigmoid": (jax.nn.sigmoid, "sigmoid"),
    "inline_exp_over_sum": (lambda z: jnp.exp(z) / jnp.sum(jnp.exp(z), -1, keepdims=True), "softmax"),
    "inline_shifted": (_hand_softmax, "softmax"),
    "inline_times_reciprocal": (lambda z: jnp.exp(z) * (1.0 / jnp.exp(z).sum(-1, keepdims=True)), "softmax"),
    "inline_log_softmax": (lambda z: z - jnp.log(jnp.exp(z).sum(-1, keepdims=True)), "log_softmax"),
    "minus_logsumexp": (lambda z: z - jax.nn.logsumexp(z, axis=-1, keepdims=True), "log_softmax"),
    "inline_sigmoid": (lambda z: 1.0 / (1.0 + jnp.exp(-z)), "sigmoid"),
}


@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_cut_final_activation_returns_logits(ending: str) -> None:
    act, expected = ENDINGS[ending]
    p = _params()
    closed = graph.trace(lambda p, x: act(_logits(p, x)), p, X)
    cut, what = graph.cut_final_activation(closed)
    assert what == expected
    np.testing.assert_allclose(_run(cut, p, X)[0], LOGITS, atol=1e-6)
    # the activation is gone (dead code removed), only the logits' ops remain
    assert not {"exp", "logistic", "log", "reduce_max", "custom_jvp_call"} & set(_prims(cut))
    # same inputs as before: params stay inputs, in the same order
    assert [v.aval for v in cut.jaxpr.invars] == [v.aval for v in closed.jaxpr.invars]


def test_cut_softmax_custom_jvp(softmax_custom_jvp: None) -> None:
    p = _params()
    closed = graph.trace(lambda p, x: jax.nn.softmax(_logits(p, x)), p, X)
    assert "custom_jvp_call" in _prims(closed)
    cut, what = graph.cut_final_activation(closed)
    assert what == "softmax"
    assert "custom_jvp_call" not in _prims(cut)
    np.testing.assert_allclose(_run(cut, p, X)[0], LOGITS, atol=1e-6)


def test_trace_inlines_jit_but_keeps_log_softmax_and_custom_jvp() -> None:
    p = _params()

    @jax.jit
    def block(p, x):
        return jax.nn.relu(jax.jit(jnp.tanh)(x @ p["w1"])) @ p["w2"]

    closed = graph.trace(lambda p, x: jax.nn.log_softmax(block(p, x)), p, X)
    calls = [e for e in closed.jaxpr.eqns if e.primitive.name in ("jit", "pjit")]
    assert [e.params["name"] for e in calls] == ["log_softmax"]
    assert "custom_jvp_call" in _prims(closed)  # relu keeps its custom derivative
    assert "tanh" in _prims(closed)  # inlined from the nested jit
    assert len(closed.jaxpr.invars) == 3 and not closed.consts  # params are inputs
    ref = jax.nn.log_softmax(block(p, X))
    np.testing.assert_allclose(_run(closed, p, X)[0], ref, atol=1e-6)
    cut, what = graph.cut_final_activation(closed)
    assert what == "log_softmax"
    np.testing.assert_allclose(_run(cut, p, X)[0], block(p, X), atol=1e-6)


def test_trace_accepts_shape_structs_and_returns_shape() -> None:
    spec = jax.ShapeDtypeStruct((4, 6), jnp.float32)
    closed, out = graph.trace(lambda x: jnp.sum(x, 0), spec, return_shape=True)
    assert out.shape == (6,) and _prims(closed) == ["reduce_sum"]


STRUCTURAL = {
    "index0": lambda y: y[0],
    "reshape": lambda y: y.reshape(-1),
    "transpose": lambda y: y.T,
    "gather": lambda y: y.reshape(-1)[jnp.array([3, 0, 7])],
    "astype_then_squeeze": lambda y: y.astype(jnp.float32)[None][0],
    "slice": lambda y: y[1:3, ::2],
}


@pytest.mark.parametrize("tail", sorted(STRUCTURAL))
def test_structural_ops_after_the_activation_are_kept(tail: str) -> None:
    post = STRUCTURAL[tail]
    p = _params()
    closed = graph.trace(lambda p, x: post(jax.nn.softmax(_logits(p, x))), p, X)
    cut, what = graph.cut_final_activation(closed)
    assert what == "softmax"
    np.testing.assert_allclose(_run(cut, p, X)[0], post(_logits(p, X)), atol=1e-6)


def test_dynamic_index_after_softmax_is_kept() -> None:
    p = _params()
    closed = graph.trace(lambda p, x, i: jax.nn.softmax(_logits(p, x))[i], p, X, 2)
    cut, what = graph.cut_final_activation(closed)
    assert what == "softmax"
    np.testing.assert_allclose(_run(cut, p, X, 2)[0], _logits(p, X)[2], atol=1e-6)


@pytest.mark.parametrize("fn", [
    _logits,                                                            # plain logits
    lambda p, x: jax.nn.softmax(_logits(p, x)) @ p["w2"].T,             # softmax in the middle
    lambda p, x: jnp.tanh(jax.nn.softmax(_logits(p, x))),               # something after it
    lambda p, x: (lambda z: jax.nn.softmax(z @ z.T) @ z)(_logits(p, x)),  # attention
    lambda p, x: (lambda s: s / s.sum(-1, keepdims=True))(jax.nn.softplus(_logits(p, x))),
    lambda p, x: jnp.exp(_logits(p, x)) / jnp.sum(jnp.exp(_logits(p, x) * 2), -1, keepdims=True),
], ids=["logits", "mid_softmax", "tanh_after", "attention", "normalized_softplus", "mismatched_exp"])
def test_nothing_to_cut_returns_the_same_program(fn) -> None:
    p = _params()
    closed = graph.trace(fn, p, X)
    cut, what = graph.cut_final_activation(closed)
    assert what is None
    assert cut is closed


def test_cut_inside_remat_stays_remat() -> None:
    p = _params()
    f = jax.checkpoint(lambda p, x: jax.nn.softmax(_logits(p, x))[0])
    cut, what = graph.cut_final_activation(graph.trace(f, p, X))
    assert what == "softmax"
    remat = [e for e in cut.jaxpr.eqns if e.primitive.name in ("checkpoint", "remat", "remat2")]
    assert len(remat) == 1
    assert "exp" not in [e.primitive.name for e in _inner(remat[0]).jaxpr.eqns]
    np.testing.assert_allclose(_run(cut, p, X)[0], _logits(p, X)[0], atol=1e-6)


def test_cut_with_low_precision_casts_around_the_softmax() -> None:
    p = jax.tree.map(lambda a: a.astype(jnp.bfloat16), _params())
    x = X.astype(jnp.bfloat16)

    def f(p, x):
        return jax.nn.softmax(_logits(p, x).astype(jnp.float32)).astype(jnp.bfloat16)

    cut, what = graph.cut_final_activation(graph.trace(f, p, x))
    assert what == "softmax"
    out = _run(cut, p, x)[0]
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(out.astype(np.float32), _logits(p, x).astype(np.float32), atol=1e-2)


def test_multiple_outputs_are_cut_independently() -> None:
    p = _params()

    def fn(p, x):
        z = _logits(p, x)
        probs = jax.nn.softmax(z)
        return probs, probs.sum(-1), z * 2, jax.nn.sigmoid(z)

    cut, what = graph.cut_final_activation(graph.trace(fn, p, X))
    assert what == "softmax,sigmoid"
    probs_out, total, twice, sig_out = _run(cut, p, X)
    z = _logits(p, X)
    np.testing.assert_allclose(probs_out, z, atol=1e-6)
    np.testing.assert_allclose(total, np.ones(4), atol=1e-6)  # other uses keep the softmax
    np.testing.assert_allclose(twice, 2 * z, atol=1e-6)
    np.testing.assert_allclose(sig_out, z, atol=1e-6)


def test_cut_program_differentiates_like_the_logits() -> None:
    p = _params()
    cut, _ = graph.cut_final_activation(graph.trace(lambda p, x: jax.nn.softmax(_logits(p, x)), p, X))
    g_cut = jax.grad(lambda x: _run(cut, p, x)[0][1, 3])(X)
    g_ref = jax.grad(lambda x: _logits(p, x)[1, 3])(X)
    np.testing.assert_allclose(g_cut, g_ref, atol=1e-5)


def test_looks_like_probabilities() -> None:
    z = jnp.array([[2.0, -1.0, 0.5], [0.1, 0.2, 0.3]])
    assert graph.looks_like_probabilities(jax.nn.softmax(z))
    assert graph.looks_like_probabilities(jax.nn.softmax(z[0]))
    assert graph.looks_like_probabilities(jnp.array([0.7]))  # one sigmoid-like output
    assert graph.looks_like_probabilities(jnp.array(0.2))
    assert not graph.looks_like_probabilities(z)
    assert not graph.looks_like_probabilities(jnp.array([0.1, 0.2, 0.3]))  # in [0, 1], sum != 1
    assert not graph.looks_like_probabilities(jnp.array([1.2]))
    assert not graph.looks_like_probabilities(jnp.array([0.5, jnp.nan, 0.5]))
    assert not graph.looks_like_probabilities(jnp.array([0, 1]))  # integers
    assert not graph.looks_like_probabilities(jnp.zeros((0,)))


# ------------------------------------------------------------------ layers and split

def _two_layer(w, x):
    h = graph.mark(jnp.tanh(w * x), "hidden")
    h2 = graph.mark(jnp.sin(h), "hidden")  # the same name twice: the second is "hidden:1"
    return graph.mark(h2 + x, "out").sum()  # a skip connection from x past both


def test_layers_lists_marks_in_order_and_numbers_repeated_names() -> None:
    closed = graph.trace(_two_layer, jnp.ones(3), jnp.ones(3))
    assert [(l.name, l.shape, str(l.dtype)) for l in graph.layers(closed)] == [
        ("hidden", (3,), "float32"), ("hidden:1", (3,), "float32"), ("out", (3,), "float32")]
    assert graph.layers(graph.trace(lambda x: jnp.sin(x), jnp.ones(2))) == []


def test_split_head_and_tail_recompose_the_program_and_report_what_tail_reads() -> None:
    w, x = jnp.array([0.5, -1.0, 2.0]), jnp.array([0.3, 0.1, -0.7])
    closed = graph.trace(_two_layer, w, x)
    for name, reads in [("hidden", (1,)), ("hidden:1", (1,)), ("out", ())]:
        s = graph.split(closed, name)
        assert s.tail_inputs == reads, name
        a = s.head(w, x)
        np.testing.assert_allclose(s.tail([None, x], a)[0], _two_layer(w, x), rtol=1e-6)
    s = graph.split(closed, "hidden")
    np.testing.assert_allclose(s.head(w, x), jnp.tanh(w * x), rtol=1e-6)
    # the tail is a function of the activation: gradients, jit and vmap go through it
    g = jax.grad(lambda a: s.tail([None, x], a)[0])(s.head(w, x))
    np.testing.assert_allclose(g, jnp.cos(jnp.tanh(w * x)), rtol=1e-6)
    batched = jax.jit(jax.vmap(lambda a: s.tail([None, x], a)[0]))(jnp.stack([s.head(w, x)] * 2))
    np.testing.assert_allclose(batched, [_two_layer(w, x)] * 2, rtol=1e-6)


def test_split_errors_name_the_layers_and_the_expected_shape() -> None:
    closed = graph.trace(_two_layer, jnp.ones(3), jnp.ones(3))
    with pytest.raises(ValueError, match=r"unknown layer 'hiden'.*Did you mean 'hidden'"):
        graph.split(closed, "hiden")
    with pytest.raises(ValueError, match="no layer marks"):
        graph.split(graph.trace(jnp.sin, jnp.ones(2)), "hidden")
    s = graph.split(closed, "out")
    with pytest.raises(ValueError, match=r"activation has shape \(4,\); the layer's output has shape \(3,\)"):
        s.tail([None, None], jnp.ones(4))


def test_a_layer_mark_is_an_identity_and_survives_the_softmax_cut() -> None:
    f = lambda x: graph.mark(jax.nn.softmax(graph.mark(2 * x, "z")), "probs")  # noqa: E731
    np.testing.assert_allclose(f(jnp.arange(3.0)), jax.nn.softmax(2 * jnp.arange(3.0)), rtol=1e-6)
    cut, what = graph.cut_final_activation(graph.trace(f, jnp.ones(3)))
    assert what == "softmax"
    # after the cut, the final layer's label is on the logits
    assert [l.name for l in graph.layers(cut)] == ["z", "probs"]
    s = graph.split(cut, "probs")
    np.testing.assert_allclose(s.head(jnp.arange(3.0)), 2 * jnp.arange(3.0))


@pytest.mark.parametrize("dtype", [jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize("act", [jax.nn.softmax, jax.nn.log_softmax])
def test_low_precision_activations_are_cut(dtype, act) -> None:
    """jax.nn.softmax sums low-precision values in float32: the cut looks through the casts."""
    f = lambda p, x: act(_logits(p, x).astype(dtype))  # noqa: E731
    cut, what = graph.cut_final_activation(graph.trace(f, _params(), X))
    assert what == act.__name__
    got = jax.core.eval_jaxpr(cut.jaxpr, cut.consts, *jax.tree.leaves(_params()), X)[0]
    np.testing.assert_array_equal(got, LOGITS.astype(dtype))


def test_bfloat16_probabilities_are_recognised() -> None:
    probs = jax.nn.softmax(jnp.arange(7.0)).astype(jnp.bfloat16)
    assert abs(float(probs.astype(jnp.float32).sum()) - 1) > 1e-4  # rounding moves the sum
    assert graph.looks_like_probabilities(probs)


# ------------------------------------------------------------------ channels_last

@pytest.mark.parametrize("groups", [1, 2])
def test_channels_last_keeps_values_and_gradients_and_runs_convolutions_nhwc(groups) -> None:
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(2, 4, 9, 7)).astype(np.float32))          # NCHW
    w = jnp.asarray(rng.normal(size=(6, 4 // groups, 3, 2)).astype(np.float32))  # OIHW

    def f(x, w):
        y = jax.lax.conv_general_dilated(x, w, (2, 1), ((1, 1), (0, 1)), rhs_dilation=(1, 2),
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                         feature_group_count=groups)
        return graph.mark(jnp.tanh(y), "conv").sum()

    g = graph.channels_last(f)
    np.testing.assert_allclose(g(x, w), f(x, w), rtol=1e-5)
    for a, b in zip(jax.grad(g, (0, 1))(x, w), jax.grad(f, (0, 1))(x, w)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    closed = graph.trace(g, x, w)
    (conv,) = [e for e in closed.eqns if e.primitive.name == "conv_general_dilated"]
    lhs, rhs, out = conv.params["dimension_numbers"]
    assert (lhs, rhs, out) == ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2))  # NHWC, HWIO, NHWC
    assert [layer.name for layer in graph.layers(closed)] == ["conv"]


# ------------------------------------------------------------------ fast_kernels

def _primitives(fn, *args) -> set[str]:
    return {e.primitive.name for e in jax.make_jaxpr(fn)(*args).eqns}


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("window, stride, padding", [((3, 3), (2, 2), (1, 1)),   # ResNet's stem pool
                                                     ((2, 2), (2, 2), (0, 0)),   # no overlap
                                                     ((3, 2), (1, 2), (0, 1))])  # overlap, uneven
def test_fast_kernels_max_pool_gradient_matches_select_and_scatter(layout, window, stride, padding) -> None:
    rng = np.random.default_rng(5)
    shape = (2, 3, 9, 8) if layout == "NCHW" else (2, 9, 8, 3)
    # ReLU outputs and rounded values: many windows tie (all zeros, or repeated maxima), and the
    # first maximum in window order must get the gradient, as XLA's select and torch's pool do.
    x = jnp.asarray(np.round(np.maximum(rng.normal(size=shape), 0), 1).astype(np.float32))
    spatial = (2, 3) if layout == "NCHW" else (1, 2)
    dims, strides, pads = [1] * 4, [1] * 4, [(0, 0)] * 4
    for axis, w, s, p in zip(spatial, window, stride, padding):
        dims[axis], strides[axis], pads[axis] = w, s, (p, p)

    def pool(x, sign=1.0):
        y = sign * jax.lax.reduce_window(sign * x, -jnp.inf, jax.lax.max, dims, strides, pads)
        return jnp.sum(y * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))  # distinct cotangents

    for sign in (1.0, -1.0):  # max pooling, and min pooling written through it
        grad = jax.grad(pool)
        assert "select_and_scatter_add" in _primitives(grad, x, sign)
        fast = graph.fast_kernels(grad)
        assert "select_and_scatter_add" not in _primitives(fast, x, sign)
        np.testing.assert_allclose(fast(x, sign), grad(x, sign), rtol=1e-6)
        np.testing.assert_allclose(jax.jit(fast)(x, sign), grad(x, sign), rtol=1e-6)


@pytest.mark.parametrize("window, stride, padding, dilation", [((4, 4), (4, 4), (0, 0), (1, 1)),  # adaptive pool
                                                                ((3, 3), (2, 2), (1, 1), (1, 1)),  # overlap, pad
                                                                ((3, 2), (1, 2), (0, 1), (2, 1))])  # dilated
def test_fast_kernels_box_sums_one_axis_at_a_time(x64, window, stride, padding, dilation) -> None:
    # Average pooling and its transpose (a wide window at stride 1 over the dilated cotangent):
    # per-axis sums, equal up to the order of additions.
    x = jnp.asarray(np.random.default_rng(7).normal(size=(2, 3, 13, 12)))
    dims, strides, pads, dil = [1, 1, *window], [1, 1, *stride], [(0, 0), (0, 0), *[(p, p) for p in padding]], \
        [1, 1, *dilation]

    def pool(x):
        y = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, pads, window_dilation=dil)
        return jnp.sum(y * jnp.arange(y.size, dtype=y.dtype).reshape(y.shape))

    grad = jax.grad(pool)
    assert "reduce_window_sum" in _primitives(grad, x)
    for fn in (pool, grad):
        fast = graph.fast_kernels(fn)
        windows = [e.params["window_dimensions"] for e in jax.make_jaxpr(fast)(x).eqns
                   if e.primitive.name == "reduce_window_sum"]
        assert windows and all(sum(w > 1 for w in ws) <= 1 for ws in windows), windows
        np.testing.assert_allclose(fast(x), fn(x), rtol=1e-12)
        np.testing.assert_allclose(jax.jit(jax.vmap(fast))(x[:, None]), jax.vmap(fn)(x[:, None]), rtol=1e-12)


def test_fast_kernels_min_select_and_nested_transforms() -> None:
    # A `le` select (min pooling's gradient), under vmap and under a second derivative.
    from jax._src.lax.windowed_reductions import _select_and_scatter_add
    rng = np.random.default_rng(6)
    x = jnp.asarray(np.round(rng.normal(size=(3, 7, 6)), 1).astype(np.float32))
    src = jnp.asarray(rng.normal(size=(3, 3, 3)).astype(np.float32))

    def scatter(s, x):
        return _select_and_scatter_add(s, x, jax.lax.le_p, (1, 3, 2), (1, 2, 2), ((0, 0), (0, 1), (0, 0)))

    fast = graph.fast_kernels(scatter)
    np.testing.assert_allclose(fast(src, x), scatter(src, x), rtol=1e-6)
    batched = (src[:, None], x[:, None])
    np.testing.assert_allclose(jax.vmap(fast)(*batched), jax.vmap(scatter)(*batched), rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda s: jnp.sum(fast(s, x) ** 2))(src),
                               jax.grad(lambda s: jnp.sum(scatter(s, x) ** 2))(src), rtol=1e-6)


# ------------------------------------------------------------------ whole-program layout

@pytest.mark.parametrize("name", ["small_cnn", "resnetish", "functional", "flatten_dense", "small_resnet"])
def test_layout_carried_through_keeps_gradients(name) -> None:
    # fast_kernels keeps every value in the layout its convolution wrote (NHWC for torch's NCHW
    # programs): the values and gradients are those of the plain program, and the transposes
    # around each convolution no longer move data between torch's layers.
    torch = pytest.importorskip("torch")
    from torch_models import MODELS, SHAPE, build

    from xai_core.adapters import from_torch

    torch.manual_seed(0)
    if name == "flatten_dense":  # a flatten of NCHW must still flatten in NCHW order
        net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                  torch.nn.Linear(4 * 14 * 14, 5)).eval()
    elif name == "small_resnet":
        from benchmarks.models import torch_small_resnet

        net = torch_small_resnet(width=8)
    else:
        assert name in MODELS
        net = build(name)
    m = from_torch(net, torch.zeros(1, *SHAPE))
    x = jax.random.normal(jax.random.key(0), SHAPE)
    grad = lambda x: jax.grad(m.score(1))(x)  # noqa: E731
    fast = graph.fast_kernels(grad)
    np.testing.assert_allclose(fast(x), grad(x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(graph.fast_kernels(m.logits)(x), m.logits(x), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(jax.jit(fast)(x), grad(x), rtol=1e-5, atol=1e-7)


def test_layout_rules_for_each_kind_of_operation(x64) -> None:
    from xai_core.graph.layout import whole_program

    x = jnp.asarray(np.random.default_rng(8).normal(size=(2, 3, 6, 5)))
    w = jnp.asarray(np.random.default_rng(9).normal(size=(4, 3, 3, 3)))

    def program(x):
        y = jax.lax.conv(x, w, (1, 1), "SAME")                       # NCHW, stored NHWC after it
        y = jnp.maximum(y + jnp.arange(4.0)[None, :, None, None], 0)  # broadcast per channel, elementwise
        y = jax.lax.reduce_window(y, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 1, 1), "SAME")
        y = jnp.pad(y, ((0, 0), (0, 0), (1, 0), (0, 1)))
        z = y[:1].reshape(4, 7, 6)                                      # a batch-of-one squeeze
        s = y.sum(axis=(2, 3))                                          # a reduction back to (N, C)
        t = jnp.transpose(y, (0, 2, 3, 1))                              # free: a relabelling
        return z.sum() + jnp.sum(s @ jnp.arange(4.0)) + jnp.sum(t * jnp.arange(4.0)) + jnp.sum(jnp.flip(y, 2)[0, :, 0])

    fast = whole_program(program, {})
    np.testing.assert_allclose(fast(x), program(x), rtol=1e-12)
    np.testing.assert_allclose(whole_program(jax.grad(program), {})(x), jax.grad(program)(x), rtol=1e-12)
    np.testing.assert_allclose(jax.vmap(whole_program(jax.grad(program), {}))(x[:, None]),
                               jax.vmap(jax.grad(program))(x[:, None]), rtol=1e-12)
