"""TCAV: :func:`tcav` trains the CAVs of every (concept, random set) pair at each layer and
returns :class:`TCAV`, ``fn(inputs, target) -> TCAVResult``; :func:`directional_derivatives` is
its pure core for ONE example (jit, vmap, traced targets).

Follows Captum's ``TCAV`` (``captum/concept/_core/tcav.py``): activations and gradients at a
layer's output, flattened per example; the sensitivity of the target to the layer is the plain
gradient (Captum's default ``LayerGradientXActivation(multiply_by_inputs=False)``), here of the
logit (the model cut before its softmax); ``TCAV = grad . CAV`` per input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core.core.checks import check_batch_size, check_finite, check_positive_int
from xai_core.core.chunking import CPU_FORWARD_CHUNK, DEFAULT_BATCH_SIZE, FORWARD_ELEMENTS_PER_CORE, resolve_batch_size
from xai_core.graph import fast_kernels
from xai_core.inside.concepts.cavs import HIGHEST, CAVs, fit, pairs
from xai_core.inside.concepts.result import TCAVResult

__all__ = ["TCAV", "directional_derivatives", "tcav", "train_cavs"]

METHOD = "concepts.tcav"


def directional_derivatives(m: Any, layer: str, cavs: jax.Array) -> Callable[[jax.Array, Any], jax.Array]:
    """``fn(x, target) -> cavs @ flatten(dS_target / dA(x))``: the directional derivative of the
    target's logit along each CAV (``cavs`` ``(P, F)``) at ``layer``, for ONE example."""

    def fn(x: jax.Array, target: Any) -> jax.Array:
        head, tail = m.split(layer, x)
        g = jax.grad(lambda a: tail(a, x)[target])(head(x))
        return jnp.dot(cavs, g.reshape(-1).astype(cavs.dtype), precision=HIGHEST)

    return fn


def _sets(concepts: Mapping[str, Any], randoms: Sequence[Any]) -> tuple[tuple[str, ...], list[jax.Array]]:
    if not isinstance(concepts, Mapping) or not concepts:
        raise TypeError(f"{METHOD}: concepts must be a non-empty dict {{name: examples}}, each an array of shape "
                        f"(n, *x.shape); got {type(concepts).__name__}.")
    if isinstance(randoms, Mapping) or not isinstance(randoms, Sequence) or len(randoms) < 2:
        got = len(randoms) if isinstance(randoms, Sequence) else type(randoms).__name__
        raise ValueError(f"{METHOD}: randoms must be a list of at least 2 random sets (arrays of shape (n, *x.shape)), "
                         f"got {got}: the t-test compares each concept's scores over the random sets with random set "
                         "0 against the others. Give 10 or more sets of random examples for a meaningful p-value.")
    names = tuple(str(k) for k in concepts)
    sets = [*concepts.values(), *randoms]
    labels = [f"concept {n!r}" for n in names] + [f"random set {j}" for j in range(len(randoms))]
    arrays = []
    for label, s in zip(labels, sets):
        a = jnp.asarray(s)
        if not jnp.issubdtype(a.dtype, jnp.floating) or a.ndim < 2 or a.shape[0] < 2:
            raise ValueError(f"{METHOD}: {label} must be a floating-point array of at least 2 examples, shape "
                             f"(n, *x.shape); got dtype {a.dtype} and shape {tuple(a.shape)}.")
        if arrays and a.shape[1:] != arrays[0].shape[1:]:
            raise ValueError(f"{METHOD}: {label} holds examples of shape {tuple(a.shape[1:])}, but {labels[0]} "
                             f"holds {tuple(arrays[0].shape[1:])}; every set needs examples of the inputs' shape.")
        check_finite(a, label, METHOD)
        arrays.append(a)
    return names, arrays


def _check_layers(m: Any, layers: str | Sequence[str], x: jax.Array) -> tuple[str, ...]:
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if not layers:
        raise ValueError(f"{METHOD}: layers is empty; name at least one of m.layers.")
    for layer in layers:
        try:
            m.split(layer, x)
        except ValueError as err:
            raise ValueError(f"{METHOD}: {err}") from None
    return layers


def _chunked(fn: Callable[..., list[jax.Array]], size: int | None, xs: jax.Array, *rest: jax.Array) -> list[jax.Array]:
    """``fn`` (a compiled, vmapped program) over chunks of ``size`` examples, the last one padded
    (one compilation), its outputs concatenated. A loop in Python rather than ``lax.map``:
    within one program XLA computes the layers' common part once (inside ``lax.map``'s loop it
    did not: ResNet-18's layer3 and layer4 cost the sum of the two, measured on CPU)."""
    n = xs.shape[0]
    size = n if size is None else min(size, n)
    pad = -n % size
    args = [jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]) if pad else a for a in (xs, *rest)]
    outs = [fn(*(a[i:i + size] for a in args)) for i in range(0, n + pad, size)]
    return [jnp.concatenate(parts)[:n] for parts in zip(*outs)]


def _chunk(batch_size: int | str | None, x: jax.Array) -> int | None:
    """Examples per compiled call: ``"auto"`` takes as many as a forward-only method (on 2 CPU
    cores, ResNet-18's gradients at two layers for 48 inputs at 112x112 took 1.6 s in chunks of
    4, 0.92 s of 16, 0.76 s at once)."""
    return resolve_batch_size(check_batch_size(batch_size, METHOD), [x], per_core=FORWARD_ELEMENTS_PER_CORE,
                              most=CPU_FORWARD_CHUNK)


@partial(jax.jit, static_argnames=("layers",))
def _activations(m: Any, xs: jax.Array, *, layers: tuple[str, ...]) -> list[jax.Array]:
    heads = [m.split(layer, xs[0])[0] for layer in layers]
    return fast_kernels(jax.vmap(lambda x: [h(x).reshape(-1) for h in heads]))(xs)


@partial(jax.jit, static_argnames=("shape", "alpha", "steps", "test_split", "normalize"))
def _train(acts: list[jax.Array], positions: jax.Array | None, mask: jax.Array, index: jax.Array, key: jax.Array, *,
           shape: tuple[int, int], alpha: float, steps: int, test_split: float,
           normalize: bool) -> list[tuple[jax.Array, jax.Array]]:
    out = []
    for a in acts:
        if positions is not None:  # sets of different sizes: padded to the largest
            a = jnp.zeros((shape[0] * shape[1], a.shape[-1]), a.dtype).at[positions].set(a)
        out.append(fit(a.reshape(*shape, -1), mask, index, key, alpha=alpha, steps=steps, test_split=test_split,
                       normalize=normalize))
    return out


def train_cavs(m: Any, layers: str | Sequence[str], concepts: Mapping[str, Any], randoms: Sequence[Any], *,
               key: jax.Array, alpha: float = 0.01, steps: int = 1000, test_split: float = 0.33,
               normalize: bool = True, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> CAVs:
    """The :class:`CAVs` of every concept against every random set, and of random set 0 against
    the others, at each layer: the activations of all layers from one forward pass per chunk of
    ``batch_size`` examples, then the classifiers of every layer and pair in one compiled program
    (see :mod:`xai_core.inside.concepts.cavs`). Sets may differ in size (padded
    and masked); ``key`` draws each pair's held-out split (``test_split``, Captum's 0.33);
    ``normalize``: train on the activations over their root mean square norm (the CAVs are
    returned in the layer's units), so that ``alpha`` weighs the same at every layer."""
    names, sets = _sets(concepts, randoms)
    return _fit(m, _check_layers(m, layers, sets[0][0]), names, sets, key, alpha, steps, test_split, normalize,
                batch_size)


def _fit(m: Any, layers: tuple[str, ...], names: tuple[str, ...], sets: list[jax.Array], key: Any, alpha: float,
         steps: int, test_split: float, normalize: bool, batch_size: int | str | None) -> CAVs:
    steps = check_positive_int(steps, "steps", METHOD)
    if isinstance(alpha, bool) or not (isinstance(alpha, (int, float)) and alpha > 0 and math.isfinite(alpha)):
        raise ValueError(f"{METHOD}: alpha (the L2 penalty) must be a positive number, got {alpha!r}.")
    if isinstance(test_split, bool) or not (isinstance(test_split, (int, float)) and 0 <= test_split < 1):
        raise ValueError(f"{METHOD}: test_split must be in [0, 1) (the share of each pair held out), "
                         f"got {test_split!r}.")
    c, r = len(names), len(sets) - len(names)
    sizes = [s.shape[0] for s in sets]
    n = max(sizes)
    positions = np.concatenate([k * n + np.arange(size) for k, size in enumerate(sizes)])
    mask = np.arange(n)[None] < np.array(sizes)[:, None]
    bs = _chunk(batch_size, sets[0][0])
    acts = _chunked(partial(_activations, m, layers=layers), bs, jnp.concatenate(sets))
    out = _train(acts, None if len(set(sizes)) == 1 else positions, mask, pairs(c, r), key, shape=(len(sets), n),
                 alpha=float(alpha), steps=steps, test_split=float(test_split), normalize=bool(normalize))
    weights, random, acc, random_acc = {}, {}, {}, {}
    for layer, (w, a) in zip(layers, out):
        weights[layer], random[layer] = w[:c * r].reshape(c, r, -1), w[c * r:]
        acc[layer], random_acc[layer] = np.asarray(a[:c * r]).reshape(c, r), np.asarray(a[c * r:])
    return CAVs(names, weights, random, acc, random_acc)


@partial(jax.jit, static_argnames=("layers",))
def _derivatives(m: Any, cavs: list[jax.Array], xs: jax.Array, ts: jax.Array, *,
                 layers: tuple[str, ...]) -> list[jax.Array]:
    fns = [directional_derivatives(m, layer, w) for layer, w in zip(layers, cavs)]
    return fast_kernels(jax.vmap(lambda x, t: [f(x, t) for f in fns]))(xs, ts)


class TCAV:
    """``fn(inputs, target) -> TCAVResult`` with the CAVs trained once (:attr:`cavs`); made by
    :func:`tcav`."""

    def __init__(self, m: Any, layers: tuple[str, ...], cavs: CAVs, example_shape: tuple[int, ...],
                 batch_size: int | str | None) -> None:
        self.m, self.layers, self.cavs = m, layers, cavs
        self.example_shape, self.batch_size = example_shape, batch_size

    def __call__(self, inputs: Any, target: Any) -> TCAVResult:
        xs = jnp.asarray(inputs)
        if xs.shape[1:] != self.example_shape or xs.shape[0] < 1 or not jnp.issubdtype(xs.dtype, jnp.floating):
            raise ValueError(f"{METHOD}: inputs must be a floating-point batch of shape (n, "
                             f"{', '.join(map(str, self.example_shape))}), the concept examples' shape; got dtype "
                             f"{xs.dtype} and shape {tuple(xs.shape)}.")
        check_finite(xs, "inputs", METHOD)
        classes = jax.eval_shape(self.m.logits, xs[0]).shape
        ts = np.asarray(target)
        ts = np.broadcast_to(ts, (xs.shape[0],)) if ts.ndim == 0 or ts.shape == (xs.shape[0],) else None
        if ts is None or len(classes) != 1 or not np.issubdtype(ts.dtype, np.integer) or \
                (ts < 0).any() or (ts >= classes[0]).any():
            raise ValueError(f"{METHOD}: target must be a class index in [0, {classes[0] if classes else '?'}) or one "
                             f"per input ({xs.shape[0]}), and the model one vector of logits per example; got target "
                             f"{target!r} for logits of shape {classes}.")
        bs = _chunk(self.batch_size, xs[0])
        cavs = [self.cavs.stacked(layer) for layer in self.layers]
        dd = _chunked(partial(_derivatives, self.m, cavs, layers=self.layers), bs, xs, jnp.asarray(ts))
        return TCAVResult.from_derivatives(self.layers, self.cavs, [np.asarray(d) for d in dd], target)


def tcav(m: Any, layers: str | Sequence[str], concepts: Mapping[str, Any], randoms: Sequence[Any], *,
         key: jax.Array | None = None, classifier: str | CAVs = "sgd", alpha: float = 0.01, steps: int = 1000,
         test_split: float = 0.33, normalize: bool = True, batch_size: int | str | None = DEFAULT_BATCH_SIZE) -> TCAV:
    """Testing with Concept Activation Vectors: ``fn(inputs, target) -> TCAVResult``.

    Kim et al., "Interpretability Beyond Feature Attribution: Quantitative Testing with Concept
    Activation Vectors (TCAV)", ICML 2018. For each layer ``l``, concept ``c`` and random set
    ``j``, the CAV ``v_cj`` separates the concept's activations ``A_l`` from the random set's
    (:func:`train_cavs`); per input ``x`` the directional derivative is
    ``S_cj(x) = dS_target/dA_l(x) . v_cj``, and over the inputs (Captum's scores)
    ``sign_count = mean_x [S_cj(x) > 0]`` and ``magnitude = mean_x S_cj(x)``. Each concept's
    ``R`` scores are compared with those of random set 0 against the other ``R - 1`` by
    Student's two-sided t-test (``scipy.stats.ttest_ind``'s default; Captum's tutorial).

    ``concepts``: ``{name: examples}``, arrays ``(n, *x.shape)``; ``randoms``: at least 2 such
    arrays (10 or more for a useful test); ``classifier``: ``"sgd"`` (train with ``key``,
    ``alpha``, ``steps``, ``test_split``, ``normalize``: :func:`train_cavs`) or :class:`CAVs`
    (e.g. ``fn.cavs`` of an earlier call, or another library's weights); ``batch_size``:
    examples per compiled call (``"auto"``).

    >>> import jax, jax.numpy as jnp, numpy as np, xai_core as xc
    >>> from xai_core.adapters import Model
    >>> from xai_core.graph import mark
    >>> m = Model(lambda w, x: mark(jnp.tanh(x), "h") @ w, jnp.eye(3)[:, :2])
    >>> rng = np.random.default_rng(0)
    >>> up = {"first": rng.normal(size=(8, 3)) + [3.0, 0, 0]}  # a concept along unit 0, which raises class 0
    >>> randoms = [rng.normal(size=(8, 3)) for _ in range(4)]
    >>> fn = xc.concepts.tcav(m, "h", up, randoms, key=jax.random.key(0))
    >>> result = fn(jnp.asarray(rng.normal(size=(16, 3))), target=0)
    >>> result.scores["sign_count"][0, 0].tolist()
    [1.0, 1.0, 1.0, 1.0]
    """
    names, sets = _sets(concepts, randoms)
    layers = _check_layers(m, layers, sets[0][0])
    if isinstance(classifier, CAVs):
        cavs = classifier
        c, r, missing = len(names), len(randoms), [la for la in layers if la not in cavs.weights]
        if missing or tuple(cavs.concepts) != names:
            raise ValueError(f"{METHOD}: classifier= CAVs for layers {cavs.layers} and concepts {list(cavs.concepts)} "
                             f"cannot serve layers {list(layers)} and concepts {list(names)}; train them with "
                             "classifier='sgd' or pass CAVs of these layers and concepts.")
        for la in layers:
            f = math.prod(jax.eval_shape(m.split(la, sets[0][0])[0], sets[0][0]).shape)
            w, rr = np.shape(cavs.weights[la]), np.shape(cavs.random[la])
            if w != (c, r, f) or rr != (r - 1, f):
                raise ValueError(f"{METHOD}: the CAVs of layer {la!r} have shapes {w} and {rr}; expected {(c, r, f)} "
                                 f"(concepts x random sets x the layer's {f} values) and {(r - 1, f)}.")
    elif isinstance(classifier, str) and classifier == "sgd":
        if key is None:
            raise ValueError(f"{METHOD}: training the CAVs needs a PRNG key for the held-out split: pass "
                             "key=jax.random.key(0) (or classifier=CAVs trained before).")
        cavs = _fit(m, layers, names, sets, key, alpha, steps, test_split, normalize, batch_size)
    else:
        raise ValueError(f"{METHOD}: classifier must be 'sgd' or a CAVs object, got {classifier!r}.")
    check_batch_size(batch_size, METHOD)
    return TCAV(m, layers, cavs, tuple(sets[0].shape[1:]), batch_size)
