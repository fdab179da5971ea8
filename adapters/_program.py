"""What a :class:`~xai_core.adapters.Model` is besides its weights, and how it traces: the
cached, cut program per input shape, and the input checks with their messages."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import jax
import numpy as np
from jax.extend.core import ClosedJaxpr

from xai_core import graph
from ._shapes import _as_input, _fmt_shape, _fmt_shapes, _is_shape, _shapes, _spec

OutputMode = Literal["logits", "probs", "log_probs"]


@dataclass(frozen=True)
class _Traced:
    jaxpr: ClosedJaxpr               # cut program: inputs = leaves(params) + leaves(x)
    cut: str | None                  # what was removed
    out: jax.ShapeDtypeStruct        # the output of one example


@dataclass(eq=False)
class _Static:
    """What a model is besides its weights, shared by every copy with weights of the same
    shapes (``with_params``, and copies rebuilt inside ``jax.jit``). Compared by identity:
    it is the pytree aux data of :class:`Model`, so equal weights' shapes mean one compiled
    program."""
    apply: Callable[[Any, Any], Any]
    output: OutputMode
    input_shape: Any                 # one example's shape (a pytree of them), or None
    name: str
    warn: bool
    signature: tuple[Any, tuple[tuple[tuple[int, ...], str], ...]]
    cache: dict[tuple[Any, ...], _Traced] = field(default_factory=dict)
    last: _Traced | None = None
    warned: bool = False
    extra: Any = None                # what a subclass adds (TextModel: its embedding layer)


def check_input(static: _Static, x: Any) -> None:
    """A ``ValueError`` naming the shapes when ``x`` is not one example of the model's input shape."""
    expected = static.input_shape
    if expected is None:
        return
    if _is_shape(expected) and isinstance(x, (jax.Array, jax.ShapeDtypeStruct, np.ndarray)):
        shape = tuple(x.shape)
        if len(shape) == len(expected) and all(e is None or e == s for e, s in zip(expected, shape)):
            return
        msg = (f"{static.name} expects one example of shape {_fmt_shape(expected)} "
               f"(no batch axis); got shape {_fmt_shape(shape)}.")
        if len(shape) == len(expected) + 1 and all(e is None or e == s for e, s in zip(expected, shape[1:])):
            msg += (f" This looks like a batch of {shape[0]}: map over it with "
                    "jax.vmap(model.logits) or jax.vmap(model.score(t)).")
        raise ValueError(msg)
    want = jax.tree.structure(expected, is_leaf=_is_shape)
    got = _shapes(x)
    ok = jax.tree.structure(got, is_leaf=_is_shape) == want and all(
        len(g) == len(e) and all(d is None or d == h for d, h in zip(e, g))
        for e, g in zip(jax.tree.leaves(expected, is_leaf=_is_shape),
                        jax.tree.leaves(got, is_leaf=_is_shape)))
    if not ok:
        raise ValueError(f"{static.name} expects one example shaped {_fmt_shapes(expected)} (no batch "
                         f"axis), got {_fmt_shapes(got)}. Pass the inputs in the same structure "
                         "as the example the model was built with; batch with jax.vmap.")



def trace_program(static: _Static, params: Any, x: Any) -> _Traced:
    """The cut program for inputs like ``x``, traced once per structure, shape and dtype."""
    leaves, treedef = jax.tree.flatten(x)
    avals = [jax.typeof(a) for a in leaves]
    key = (treedef, tuple((tuple(a.shape), str(a.dtype)) for a in avals))
    hit = static.cache.get(key)
    if hit is not None:
        static.last = hit
        return hit
    x_spec = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in avals])
    p_spec = jax.tree.map(_spec, params)
    try:
        closed, out = graph.trace(static.apply, p_spec, x_spec, return_shape=True)
    except Exception as e:  # shape / rank / dtype errors from inside the model
        seen = sorted({_fmt_shapes(k[0].unflatten([s for s, _ in k[1]])) for k in static.cache})
        hint = (f" Shapes that worked: {', '.join(seen)}." if seen else
                " If the shape is the problem: pass ONE example without a batch axis "
                "(batch with jax.vmap).")
        what = ", ".join(sorted({str(a.dtype) for a in avals}))
        raise ValueError(f"{static.name} could not be applied to one example of shape "
                         f"{_fmt_shapes(_shapes(x_spec))} and dtype {what}: "
                         f"{type(e).__name__}: {e}{hint}") from e
    if not isinstance(out, jax.ShapeDtypeStruct):
        raise TypeError(f"{static.name}: apply(params, x) must return one array (the class "
                        f"scores); it returned {jax.tree.structure(out)}. Wrap it to pick "
                        "the logits, e.g. lambda p, x: apply(p, x)[0].")
    cut_jaxpr, cut = graph.cut_final_activation(closed)
    traced = _Traced(cut_jaxpr, cut, out)
    static.cache[key] = traced
    static.last = traced
    return traced


def split(static: _Static, traced: _Traced, params: Any, layer: str,
          finish: Callable[[jax.Array, str | None], jax.Array]) -> tuple[Callable[[Any], jax.Array], Callable[..., jax.Array]]:
    """``(head, tail)`` of the traced program cut at ``layer`` (see :meth:`Model.split`); ``finish``
    applies the model's ``output=`` mode to the tail's logits."""
    s = graph.split(traced.jaxpr, layer)
    n_params = len(jax.tree.leaves(params))
    invars = traced.jaxpr.jaxpr.invars
    reads_x = any(i >= n_params for i in s.tail_inputs)
    shapes = [tuple(v.aval.shape) for v in invars[n_params:]]
    name = static.name

    def check(x: Any) -> list[jax.Array]:
        leaves = jax.tree.leaves(_as_input(x))
        if [tuple(a.shape) for a in leaves] != shapes:
            raise ValueError(f"{name}.split({layer!r}) was made for one example of shape "
                             f"{', '.join(map(_fmt_shape, shapes))}; got "
                             f"{', '.join(_fmt_shape(a.shape) for a in leaves)}. Split again "
                             "with an example of the new shape: model.split(name, x).")
        return leaves

    def head(x: Any) -> jax.Array:
        return s.head(*jax.tree.leaves(params), *check(x))

    def tail(a: Any, x: Any = None) -> jax.Array:
        if x is None and reads_x:
            raise ValueError(f"{name}: the rest of the model after layer {layer!r} also reads "
                             "the input directly (a skip connection past the layer), so the "
                             "activation alone does not determine the output; call tail(a, x).")
        given = [None] * len(shapes) if x is None else check(x)
        return finish(s.tail([*jax.tree.leaves(params), *given], a)[0], traced.cut)

    return head, tail


def probability_message(static: _Static, z: Any) -> str:
    """The warning for an output that looks like probabilities with nothing cut."""
    what = "a value in [0, 1]" if np.size(z) == 1 else "values in [0, 1] that sum to 1"
    msg = (f"{static.name}: the model's output looks like probabilities ({what}), but no final "
           "softmax / log_softmax / sigmoid was found to cut, so attributions will explain a "
           "probability, whose gradients vanish as the model grows confident (tf-explain #159). ")
    if static.output == "probs":
        msg += "output='probs' also applies a softmax on top of it. "
    msg += ("To fix: build the model from a function that returns the scores before the "
            "normalisation (e.g. drop the final x / sum(x)). If these values really are "
            "logits, pass warn_probabilities=False.")
    return msg
