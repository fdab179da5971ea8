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
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr

from xai_core import graph
from ._program import OutputMode, _Static, _Traced, check_input, probability_message, split, trace_program
from ._shapes import _as_input, _fmt_shapes, _is_shape, _signature

__all__ = ["Model", "OUTPUTS", "ProbabilityOutputWarning", "mark_batch_of_one"]

#: What :meth:`Model.logits` returns, chosen by ``output=``.
OUTPUTS: tuple[str, ...] = ("logits", "probs", "log_probs")

class ProbabilityOutputWarning(UserWarning):
    """A model's output looks like probabilities, and no final activation was cut."""


def mark_batch_of_one(out: Any, name: str) -> Any:
    """Label a layer's output computed on a batch of one (how adapters run a model)
    with :func:`xai_core.graph.mark`, on its one example; other outputs pass as they are."""
    if isinstance(out, jax.Array) and out.ndim >= 1 and out.shape[0] == 1:
        return graph.mark(out[0], name)[None]
    return out


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
    model ends in plain logits). ``x`` may be one array or any pytree of arrays (a model
    of several inputs); ``input_shape`` is then a pytree of shapes.

    **Weights are arguments.** A model is a pytree whose leaves are its weights, so pass
    it INTO a jitted function: ``jax.jit(f)(m, xs)`` compiles once, keeps the weights out
    of the program (a closure over ``m`` bakes them in as constants: compile time and
    memory grow with the model), and ``m.with_params(p)`` with weights of the same shapes
    reuses the compiled program.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> m = Model(lambda p, x: jax.nn.log_softmax(p * x), jnp.array([1.0, 2.0]))
        >>> xs, ts = jnp.ones((4, 2)), jnp.array([0, 1, 1, 0])
        >>> explain = jax.jit(jax.vmap(lambda m, x, t: jax.grad(m.score(t))(x), in_axes=(None, 0, 0)))
        >>> explain(m, xs, ts).shape
        (4, 2)
        >>> explain(m.with_params(m.params * 2), xs, ts).shape  # same program, new weights
        (4, 2)
    """

    def __init__(self, apply: Callable[[Any, Any], Any], params: Any, *,
                 output: OutputMode = "logits",
                 input_shape: Any = None,
                 name: str | None = None,
                 warn_probabilities: bool = True) -> None:
        if not callable(apply):
            raise TypeError(f"Model: `apply` must be a function apply(params, x); got {type(apply).__name__}.")
        if output not in OUTPUTS:
            raise ValueError(f"Model: output={output!r} is not one of {OUTPUTS}. Use 'logits' "
                             "(default, recommended for attribution), 'probs' or 'log_probs'.")
        if input_shape is not None:
            input_shape = jax.tree.map(lambda s: tuple(None if d is None else int(d) for d in s),
                                       input_shape, is_leaf=_is_shape)
        self._static = _Static(apply, output, input_shape,
                               name or getattr(apply, "__name__", None) or "model",
                               warn_probabilities, _signature(params))
        self._params = params

    @classmethod
    def _rebuild(cls, static: _Static, params: Any) -> Model:
        m = object.__new__(cls)
        m._static, m._params = static, params
        return m

    # ------------------------------------------------------------------ info
    @property
    def params(self) -> Any:
        """The weights, as the pytree the model was built with."""
        return self._params

    @property
    def apply(self) -> Callable[[Any, Any], Any]:
        """The original ``apply(params, x)`` (uncut) the model was built from."""
        return self._static.apply

    @property
    def name(self) -> str:
        """The model's name, used in messages."""
        return self._static.name

    @property
    def output(self) -> OutputMode:
        """``"logits"``, ``"probs"`` or ``"log_probs"``: what :meth:`logits` returns."""
        return self._static.output

    @property
    def input_shape(self) -> Any:
        """The shape of one example (a pytree of shapes for several inputs), where known."""
        return self._static.input_shape

    @property
    def cut(self) -> str | None:
        """The final activation removed from the model (``"softmax"``,
        ``"log_softmax"``, ``"sigmoid"``), or ``None`` if there was none, or if the
        model has not been called yet."""
        last = self._static.last
        return None if last is None else last.cut

    def __repr__(self) -> str:
        shape = self._static.input_shape
        shape = "" if shape is None else f", input_shape={_fmt_shapes(shape)}"
        return f"Model({self.name}, output={self.output!r}, cut={self.cut!r}{shape})"

    def with_params(self, new_params: Any) -> Model:
        """The same model with other weights (same pytree structure; e.g. randomized
        layers for the model-randomization sanity check, or the weights after another
        epoch). With the same shapes and dtypes the copy shares the traces and is the
        same pytree type, so a jitted function of the model does not recompile."""
        static = self._static
        treedef, leaves = static.signature
        new_sig = _signature(new_params)
        if new_sig[0] != treedef:
            raise ValueError(f"{self.name}.with_params: the new params have another structure "
                             f"({new_sig[0]}) than the model's ({treedef}); pass a pytree "
                             "like model.params, e.g. jax.tree.map(f, model.params).")
        if new_sig[1] != leaves:  # other shapes: new traces
            static = replace(static, signature=new_sig, cache={}, last=None, warned=False)
        return type(self)._rebuild(static, new_params)

    # --------------------------------------------------------------- tracing
    def jaxpr(self, x: Any) -> ClosedJaxpr:
        """The cut program for inputs like ``x`` (arrays or ``jax.ShapeDtypeStruct`` values, one
        or a pytree of them).

        Its inputs are ``jax.tree.leaves(model.params)`` followed by
        ``jax.tree.leaves(x)``; its one output is the logits (before the ``output=`` mode
        is applied). This is what the core's graph tools (layer splits, backward-rule
        tables) work on.
        """
        check_input(self._static, x)
        return trace_program(self._static, self._params, x).jaxpr

    # ---------------------------------------------------------------- layers
    def _program(self, x: Any = None) -> _Traced:
        """The traced program for inputs like ``x``; without ``x``, the one the model
        last ran (adapters that know the input trace it when they build the model)."""
        if x is not None:
            x = _as_input(x)
            check_input(self._static, x)
            return trace_program(self._static, self._params, x)
        if self._static.last is None:
            raise ValueError(f"{self.name}: the model has not been traced yet, so its layers are "
                             "unknown; call model.logits(x) once, or pass an example: "
                             "model.split(name, x).")
        return self._static.last

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
        return split(self._static, self._program(x), self._params, layer, self._finish)

    # ------------------------------------------------------------ evaluation
    def logits(self, x: Any) -> jax.Array:
        """One example in (no batch axis), pre-activation logits out.

        ``x`` is one array, or a pytree of arrays for a model of several inputs (as the
        adapter was given them). With ``output="probs"`` / ``"log_probs"`` returns
        softmax / log_softmax of the logits instead. Pure JAX: works under ``jit``,
        ``vmap`` and ``grad``; the model itself is a pytree of its weights, so
        ``jax.jit(f)(model, x)`` takes them as arguments (see :class:`Model`).
        """
        x = _as_input(x)
        check_input(self._static, x)
        traced = trace_program(self._static, self._params, x)
        leaves = jax.tree.leaves(self._params)
        z = jax.core.eval_jaxpr(traced.jaxpr.jaxpr, traced.jaxpr.consts, *leaves, *jax.tree.leaves(x))[0]
        static = self._static
        if traced.cut is None and static.warn and not static.warned and not isinstance(z, jax.core.Tracer):
            if graph.looks_like_probabilities(z):
                static.warned = True
                warnings.warn(probability_message(static, z), ProbabilityOutputWarning, stacklevel=2)
        return self._finish(z, traced.cut)

    def _finish(self, z: jax.Array, cut: str | None) -> jax.Array:
        """Apply the ``output=`` mode to logits."""
        if self.output == "logits":
            return z
        if cut == "sigmoid":
            return jax.nn.sigmoid(z) if self.output == "probs" else jax.nn.log_sigmoid(z)
        return jax.nn.softmax(z, axis=-1) if self.output == "probs" else jax.nn.log_softmax(z, axis=-1)

    def score(self, target: Any) -> Callable[[Any], jax.Array]:
        """``score_fn(x) -> scalar``: the logit (or ``output=`` value) of class ``target``.

        ``target`` is a Python int in ``[0, num_classes)``, or an integer scalar array
        that may be traced (e.g. per example under ``jax.vmap``). A traced target out of
        range gives a NaN score (and zero gradient) rather than a silently clamped class.
        """
        if isinstance(target, (bool, np.bool_)):
            raise TypeError(f"{self.name}.score: target must be an integer class index, got {target!r}.")
        if not isinstance(target, jax.core.Tracer) and np.ndim(target) == 0 and \
                np.issubdtype(np.asarray(target).dtype, np.integer):
            target = int(target)
        if isinstance(target, int):
            if target < 0:
                raise ValueError(f"{self.name}.score: target={target} is negative; pass a class "
                                 "index in [0, num_classes).")
            last = self._static.last
            if last is not None and len(last.out.shape) == 1:
                self._check_target(target, last.out.shape[0])
        else:
            if not jnp.issubdtype(jnp.result_type(target), jnp.integer) or jnp.ndim(target) != 0:
                raise TypeError(f"{self.name}.score: target must be an integer scalar (one class "
                                f"per example); got dtype {jnp.result_type(target)} and shape "
                                f"{jnp.shape(target)}. For a batch of targets use "
                                "jax.vmap(lambda x, t: ...(model.score(t))(x))(xs, ts).")

        def score_fn(x: Any) -> jax.Array:
            z = self.logits(x)
            if z.ndim != 1:
                raise ValueError(f"{self.name}.score needs one vector of class scores per example; "
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
            raise ValueError(f"{self.name}.score: target={target} is out of range; the model has "
                             f"{n} classes, so pass 0..{n - 1}.")


def register_model_pytree(cls: type[Model]) -> type[Model]:
    """Register ``cls`` (Model or a subclass) as a pytree: its weights are the children, its
    shared :class:`_Static` the aux data, so weights are arguments of compiled programs."""
    jax.tree_util.register_pytree_node(
        cls, lambda m: ((m._params,), m._static), lambda static, children: cls._rebuild(static, children[0]))
    return cls


register_model_pytree(Model)
