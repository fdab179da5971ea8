"""The framework-free model wrapper every adapter returns.

An adapter's only job is to produce ``apply(params, x) -> output`` for ONE example
(no batch axis) and the ``params`` pytree; :class:`Model` does the rest the same way
for every framework: trace to a jaxpr (:func:`xai_core.graph.trace`), cut the final
softmax / log_softmax / sigmoid (:func:`xai_core.graph.cut_final_activation`), and
evaluate the cut program as a pure JAX function (jit / vmap / grad all work).

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core.adapters import Model
    >>> w = jnp.array([[1.0, -1.0], [0.5, 2.0]])
    >>> m = Model(lambda p, x: jax.nn.softmax(x @ p["w"]), {"w": w})
    >>> m.logits(jnp.ones(2)).tolist(), m.cut
    ([1.5, 1.0], 'softmax')
    >>> float(m.score(1)(jnp.ones(2)))
    1.0
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr

from xai_core import graph

__all__ = ["Model", "OUTPUTS", "ProbabilityOutputWarning", "mark_batch_of_one"]

#: What :meth:`Model.logits` returns, chosen by ``output=``.
OUTPUTS: tuple[str, ...] = ("logits", "probs", "log_probs")

OutputMode = Literal["logits", "probs", "log_probs"]


class ProbabilityOutputWarning(UserWarning):
    """A model's output looks like probabilities, and no final activation was cut."""


@dataclass(frozen=True)
class _Traced:
    jaxpr: ClosedJaxpr               # cut program: inputs = leaves(params) + [x]
    cut: str | None                  # what was removed
    out: jax.ShapeDtypeStruct        # the output of one example


def mark_batch_of_one(out: Any, name: str) -> Any:
    """Label a layer's output computed on a batch of one (how adapters run a model)
    with :func:`xai_core.graph.mark`, on its one example; other outputs pass as they are."""
    if isinstance(out, jax.Array) and out.ndim >= 1 and out.shape[0] == 1:
        return graph.mark(out[0], name)[None]
    return out


def _spec(leaf: Any) -> jax.ShapeDtypeStruct:
    aval = jax.typeof(leaf)
    return jax.ShapeDtypeStruct(aval.shape, aval.dtype, weak_type=getattr(aval, "weak_type", False))


def _signature(params: Any) -> tuple[Any, tuple[tuple[tuple[int, ...], str], ...]]:
    leaves, treedef = jax.tree.flatten(params)
    return treedef, tuple((tuple(s.shape), str(s.dtype)) for s in map(_spec, leaves))


def _fmt_shape(shape: Sequence[int | None]) -> str:
    return "(" + ", ".join("*" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Model:
    """A model as a pure JAX function of one example, cut before its final activation.

    Args:
        apply: ``apply(params, x) -> output`` for ONE example ``x`` (no batch axis),
            returning one array (the class scores for a classifier). Traced with
            ``params`` as inputs, never baked in as constants.
        params: the weights, any pytree of arrays.
        output: what :meth:`logits` (and :meth:`score`) return:
            ``"logits"`` (default) — the model's output with a final softmax /
            log_softmax / sigmoid cut off; ``"probs"`` — ``softmax`` of those logits
            over the last axis (``sigmoid`` if a sigmoid was cut);
            ``"log_probs"`` — ``log_softmax`` (``log_sigmoid``).
        input_shape: the shape of one example, if known (``None`` entries match any
            size). Inputs of another shape raise a ``ValueError`` naming it.
        name: for messages and ``repr``.
        warn_probabilities: warn (once) when nothing could be cut but the output of a
            concrete call still looks like probabilities
            (:func:`xai_core.graph.looks_like_probabilities`).

    The program is traced lazily, once per input shape and dtype, and cached;
    :attr:`cut` tells what was removed (``None`` before the first call, or if the
    model ends in plain logits).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> m = Model(lambda p, x: jax.nn.log_softmax(p * x), jnp.array([1.0, 2.0]))
        >>> xs, ts = jnp.ones((4, 2)), jnp.array([0, 1, 1, 0])
        >>> jax.jit(jax.vmap(lambda x, t: jax.grad(m.score(t))(x)))(xs, ts).shape
        (4, 2)
    """

    def __init__(self, apply: Callable[[Any, Any], Any], params: Any, *,
                 output: OutputMode = "logits",
                 input_shape: Sequence[int | None] | None = None,
                 name: str | None = None,
                 warn_probabilities: bool = True) -> None:
        if not callable(apply):
            raise TypeError(f"Model: `apply` must be a function apply(params, x); got {type(apply).__name__}.")
        if output not in OUTPUTS:
            raise ValueError(f"Model: output={output!r} is not one of {OUTPUTS}. Use 'logits' "
                             "(default, recommended for attribution), 'probs' or 'log_probs'.")
        self._apply = apply
        self._params = params
        self._output: OutputMode = output
        self._input_shape = None if input_shape is None else tuple(
            None if d is None else int(d) for d in input_shape)
        self._name = name or getattr(apply, "__name__", None) or "model"
        self._warn = warn_probabilities
        self._warned = False
        self._signature = _signature(params)
        self._cache: dict[tuple[Any, ...], _Traced] = {}
        self._last: _Traced | None = None

    # ------------------------------------------------------------------ info
    @property
    def params(self) -> Any:
        """The weights, as the pytree the model was built with."""
        return self._params

    @property
    def apply(self) -> Callable[[Any, Any], Any]:
        """The original ``apply(params, x)`` (uncut) the model was built from."""
        return self._apply

    @property
    def name(self) -> str:
        """The model's name, used in messages."""
        return self._name

    @property
    def output(self) -> OutputMode:
        """``"logits"``, ``"probs"`` or ``"log_probs"``: what :meth:`logits` returns."""
        return self._output

    @property
    def input_shape(self) -> tuple[int | None, ...] | None:
        """The shape of one example, where known."""
        return self._input_shape

    @property
    def cut(self) -> str | None:
        """The final activation removed from the model (``"softmax"``,
        ``"log_softmax"``, ``"sigmoid"``), or ``None`` if there was none, or if the
        model has not been called yet."""
        return None if self._last is None else self._last.cut

    def __repr__(self) -> str:
        shape = "" if self._input_shape is None else f", input_shape={_fmt_shape(self._input_shape)}"
        return f"Model({self._name}, output={self._output!r}, cut={self.cut!r}{shape})"

    def with_params(self, new_params: Any) -> Model:
        """The same model with other weights (same pytree structure; e.g. randomized
        layers for the model-randomization sanity check). Traces are shared when the
        shapes and dtypes match."""
        treedef, leaves = self._signature
        new_sig = _signature(new_params)
        if new_sig[0] != treedef:
            raise ValueError(f"{self._name}.with_params: the new params have another structure "
                             f"({new_sig[0]}) than the model's ({treedef}); pass a pytree "
                             "like model.params, e.g. jax.tree.map(f, model.params).")
        m = Model(self._apply, new_params, output=self._output, input_shape=self._input_shape,
                  name=self._name, warn_probabilities=self._warn)
        if new_sig[1] == leaves:
            m._cache = self._cache
            m._last = self._last
        return m

    # --------------------------------------------------------------- tracing
    def _check_input(self, x: Any) -> None:
        expected = self._input_shape
        if expected is None:
            return
        shape = tuple(x.shape)
        if len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape)):
            return
        msg = (f"{self._name} expects one example of shape {_fmt_shape(expected)} "
               f"(no batch axis); got shape {_fmt_shape(shape)}.")
        if len(shape) == len(expected) + 1 and all(e is None or e == s for e, s in zip(expected, shape[1:])):
            msg += (f" This looks like a batch of {shape[0]}: map over it with "
                    "jax.vmap(model.logits) or jax.vmap(model.score(t)).")
        raise ValueError(msg)

    def _traced(self, x: Any) -> _Traced:
        aval = jax.typeof(x)
        key = (tuple(aval.shape), str(aval.dtype))
        hit = self._cache.get(key)
        if hit is not None:
            self._last = hit
            return hit
        x_spec = jax.ShapeDtypeStruct(aval.shape, aval.dtype)
        p_spec = jax.tree.map(_spec, self._params)
        try:
            closed, out = graph.trace(self._apply, p_spec, x_spec, return_shape=True)
        except Exception as e:  # shape / rank / dtype errors from inside the model
            seen = sorted({_fmt_shape(k[0]) for k in self._cache})
            hint = (f" Shapes that worked: {', '.join(seen)}." if seen else
                    " If the shape is the problem: pass ONE example without a batch axis "
                    "(batch with jax.vmap).")
            raise ValueError(f"{self._name} could not be applied to one example of shape "
                             f"{_fmt_shape(aval.shape)} and dtype {aval.dtype}: "
                             f"{type(e).__name__}: {e}{hint}") from e
        if not isinstance(out, jax.ShapeDtypeStruct):
            raise TypeError(f"{self._name}: apply(params, x) must return one array (the class "
                            f"scores); it returned {jax.tree.structure(out)}. Wrap it to pick "
                            "the logits, e.g. lambda p, x: apply(p, x)[0].")
        cut_jaxpr, cut = graph.cut_final_activation(closed)
        traced = _Traced(cut_jaxpr, cut, out)
        self._cache[key] = traced
        self._last = traced
        return traced

    def jaxpr(self, x: Any) -> ClosedJaxpr:
        """The cut program for inputs like ``x`` (an array or ``jax.ShapeDtypeStruct``).

        Its inputs are ``jax.tree.leaves(model.params)`` followed by ``x``; its one
        output is the logits (before the ``output=`` mode is applied). This is what
        the core's graph tools (layer splits, backward-rule tables) work on.
        """
        self._check_input(x)
        return self._traced(x).jaxpr

    # ---------------------------------------------------------------- layers
    def _program(self, x: Any = None) -> _Traced:
        """The traced program for inputs like ``x``; without ``x``, the one the model
        last ran (adapters that know the input trace it when they build the model)."""
        if x is not None:
            if not isinstance(x, jax.ShapeDtypeStruct):
                x = jnp.asarray(x)
            self._check_input(x)
            return self._traced(x)
        if self._last is None:
            raise ValueError(f"{self._name}: the model has not been traced yet, so its layers are "
                             "unknown; call model.logits(x) once, or pass an example: "
                             "model.split(name, x).")
        return self._last

    @property
    def layers(self) -> list[graph.Layer]:
        """The named layers, in the order the model computes them: module / layer
        names as the framework calls them, each with the shape of its output for
        ONE example (no batch axis). A module called twice appears twice, the second
        time as ``name:1``. Split points for :meth:`split`."""
        return graph.layers(self._program().jaxpr)

    def split(self, layer: str, x: Any = None) -> tuple[Callable[[Any], jax.Array],
                                                         Callable[..., jax.Array]]:
        """Cut the model at ``layer`` (a name from :attr:`layers`) into ``(head, tail)``.

        ``head(x)`` returns the layer's output for one example; ``tail(a)`` runs the
        rest of the model from an activation ``a`` of that shape and returns what
        :meth:`logits` returns, so ``tail(head(x)) == logits(x)``. Both are pure JAX
        (jit, vmap, grad): ``jax.grad(lambda a: tail(a)[t])(head(x))`` is the gradient
        Grad-CAM needs. If the rest of the model also reads the input directly (a skip
        connection past the layer), call ``tail(a, x)``; the skip path is recomputed
        from ``x``. ``x`` here picks the input shape when the model has run on several.

        Example:
            >>> import jax, jax.numpy as jnp
            >>> from xai_core import graph
            >>> m = Model(lambda p, x: graph.mark(jnp.tanh(x * p), "act") @ p, jnp.ones(3))
            >>> head, tail = m.split("act", jnp.ones(3))
            >>> x = jnp.arange(3.0)
            >>> bool(jnp.isclose(tail(head(x)), m.logits(x))), m.layers
            (True, [Layer('act', shape=(3,), dtype=float32)])
        """
        traced = self._program(x)
        s = graph.split(traced.jaxpr, layer)
        n_params = len(jax.tree.leaves(self._params))
        reads_x = n_params in s.tail_inputs
        aval = traced.jaxpr.jaxpr.invars[n_params].aval
        name = self._name

        def check(x: Any) -> jax.Array:
            x = jnp.asarray(x) if not isinstance(x, jax.Array) else x
            if tuple(x.shape) != tuple(aval.shape):
                raise ValueError(f"{name}.split({layer!r}) was made for one example of shape "
                                 f"{_fmt_shape(aval.shape)}; got {_fmt_shape(x.shape)}. Split again "
                                 "with an example of the new shape: model.split(name, x).")
            return x

        def head(x: Any) -> jax.Array:
            return s.head(*jax.tree.leaves(self._params), check(x))

        def tail(a: Any, x: Any = None) -> jax.Array:
            if x is None and reads_x:
                raise ValueError(f"{name}: the rest of the model after layer {layer!r} also reads "
                                 "the input directly (a skip connection past the layer), so the "
                                 "activation alone does not determine the output; call tail(a, x).")
            args = [*jax.tree.leaves(self._params), None if x is None else check(x)]
            return self._finish(s.tail(args, a)[0], traced.cut)

        return head, tail

    # ------------------------------------------------------------ evaluation
    def logits(self, x: Any) -> jax.Array:
        """One example in (no batch axis), pre-activation logits out.

        With ``output="probs"`` / ``"log_probs"`` returns softmax / log_softmax of the
        logits instead. Pure JAX: works under ``jit``, ``vmap`` and ``grad``.
        """
        if not isinstance(x, jax.Array):  # includes tracers
            x = jnp.asarray(x)
        self._check_input(x)
        traced = self._traced(x)
        leaves = jax.tree.leaves(self._params)
        z = jax.core.eval_jaxpr(traced.jaxpr.jaxpr, traced.jaxpr.consts, *leaves, x)[0]
        if traced.cut is None and self._warn and not self._warned and not isinstance(z, jax.core.Tracer):
            if graph.looks_like_probabilities(z):
                self._warned = True
                warnings.warn(self._probability_message(z), ProbabilityOutputWarning, stacklevel=2)
        return self._finish(z, traced.cut)

    def _finish(self, z: jax.Array, cut: str | None) -> jax.Array:
        """Apply the ``output=`` mode to logits."""
        if self._output == "logits":
            return z
        if cut == "sigmoid":
            return jax.nn.sigmoid(z) if self._output == "probs" else jax.nn.log_sigmoid(z)
        return jax.nn.softmax(z, axis=-1) if self._output == "probs" else jax.nn.log_softmax(z, axis=-1)

    def _probability_message(self, z: Any) -> str:
        what = "a value in [0, 1]" if np.size(z) == 1 else "values in [0, 1] that sum to 1"
        msg = (f"{self._name}: the model's output looks like probabilities ({what}), but no final "
               "softmax / log_softmax / sigmoid was found to cut, so attributions will explain a "
               "probability, whose gradients vanish as the model grows confident (tf-explain #159). ")
        if self._output == "probs":
            msg += "output='probs' also applies a softmax on top of it. "
        msg += ("To fix: build the model from a function that returns the scores before the "
                "normalisation (e.g. drop the final x / sum(x)). If these values really are "
                "logits, pass warn_probabilities=False.")
        return msg

    def score(self, target: Any) -> Callable[[Any], jax.Array]:
        """``score_fn(x) -> scalar``: the logit (or ``output=`` value) of class ``target``.

        ``target`` is a Python int in ``[0, num_classes)``, or an integer scalar array
        that may be traced (e.g. per example under ``jax.vmap``). A traced target out of
        range gives a NaN score (and zero gradient) rather than a silently clamped class.
        """
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"{self._name}.score: target must be an integer class index, got {target!r}.")
        if not isinstance(target, jax.core.Tracer) and np.ndim(target) == 0 and \
                np.issubdtype(np.asarray(target).dtype, np.integer):
            target = int(target)
        if isinstance(target, int):
            if target < 0:
                raise ValueError(f"{self._name}.score: target={target} is negative; pass a class "
                                 "index in [0, num_classes).")
            if self._last is not None and len(self._last.out.shape) == 1:
                self._check_target(target, self._last.out.shape[0])
        else:
            if not jnp.issubdtype(jnp.result_type(target), jnp.integer) or jnp.ndim(target) != 0:
                raise TypeError(f"{self._name}.score: target must be an integer scalar (one class "
                                f"per example); got dtype {jnp.result_type(target)} and shape "
                                f"{jnp.shape(target)}. For a batch of targets use "
                                "jax.vmap(lambda x, t: ...(model.score(t))(x))(xs, ts).")

        def score_fn(x: Any) -> jax.Array:
            z = self.logits(x)
            if z.ndim != 1:
                raise ValueError(f"{self._name}.score needs one vector of class scores per example; "
                                 f"the model returned shape {tuple(z.shape)} for an input of shape "
                                 f"{tuple(jnp.shape(x))}. If that input has a batch axis, use "
                                 "jax.vmap; otherwise write a score_fn that reduces the output.")
            n = z.shape[0]
            if isinstance(target, int):
                self._check_target(target, n)
                return z[target]
            t = jnp.asarray(target)
            ok = (t >= 0) & (t < n)
            return jnp.where(ok, z[jnp.clip(t, 0, n - 1)], jnp.nan)

        return score_fn

    def _check_target(self, target: int, n: int) -> None:
        if not 0 <= target < n:
            raise ValueError(f"{self._name}.score: target={target} is out of range; the model has "
                             f"{n} classes, so pass 0..{n - 1}.")
