"""Layers: named points of a program (:func:`mark`, :func:`layers`), and cutting the
program there into a head and a tail (:func:`split`)."""

from __future__ import annotations

import difflib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.ad_checkpoint import checkpoint_name
from jax.extend.core import ClosedJaxpr, DropVar, Jaxpr, JaxprEqn, Literal, Var

from xai_core.graph.interpreter import _read, _run


# --------------------------------------------------------------------------- #
# Layers: named points of a program, and splitting it there
# --------------------------------------------------------------------------- #

#: Prefix of the ``checkpoint_name`` labels that :func:`mark` puts on layer outputs.
LAYER_MARK = "xai-layer:"


def mark(x: Any, name: str) -> Any:
    """Label ``x`` as the output of layer ``name``: an identity that stays in the jaxpr.

    Adapters call this on each layer's output (for ONE example) while tracing, so that
    :func:`layers` and :func:`split` find the layer in the program however the model
    was written. It is ``jax.ad_checkpoint.checkpoint_name`` with a reserved prefix:
    free at run time, and no effect on gradients.
    """
    return checkpoint_name(x, LAYER_MARK + name)


@dataclass(frozen=True)
class Layer:
    """A named point of a program: the output of one layer, for one example."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype

    def __repr__(self) -> str:
        return f"Layer({self.name!r}, shape={self.shape}, dtype={self.dtype})"


def _marks(jaxpr: Jaxpr) -> list[tuple[str, Var]]:
    """``(name, var)`` of every layer mark, in program order; the k-th repeated use of
    one name (a module called twice, like a shared ReLU) is named ``name:k``."""
    seen: dict[str, int] = {}
    out = []
    for eqn in jaxpr.eqns:
        label = eqn.params.get("name") if eqn.primitive.name == "name" else None
        if not (isinstance(label, str) and label.startswith(LAYER_MARK)):
            continue
        base = label[len(LAYER_MARK):]
        k = seen.get(base, 0)
        seen[base] = k + 1
        v = eqn.outvars[0]
        if not isinstance(v, DropVar):
            out.append((base if k == 0 else f"{base}:{k}", v))
    return out


def layers(closed_jaxpr: ClosedJaxpr) -> list[Layer]:
    """The layers :func:`mark`-ed in a program, in the order they are computed.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import layers, mark, trace
        >>> f = lambda x: mark(jnp.tanh(mark(2 * x, "double")), "tanh").sum()
        >>> [(l.name, l.shape) for l in layers(trace(f, jnp.ones(3)))]
        [('double', (3,)), ('tanh', (3,))]
    """
    return [Layer(n, tuple(v.aval.shape), np.dtype(v.aval.dtype))
            for n, v in _marks(closed_jaxpr.jaxpr)]


def _live(jaxpr: Jaxpr, targets: Sequence[Any], given: Collection[Any]) -> tuple[list[JaxprEqn], set]:
    """The equations needed to compute ``targets`` when the vars in ``given`` are
    known, and every var they read (inputs included)."""
    needed = {v for v in targets if not isinstance(v, Literal)}
    live: list[JaxprEqn] = []
    for eqn in reversed(jaxpr.eqns):
        if any(o in needed and o not in given for o in eqn.outvars if not isinstance(o, DropVar)):
            live.append(eqn)
            needed.update(x for x in eqn.invars if not isinstance(x, Literal))
    live.reverse()
    return live, needed


@dataclass(frozen=True)
class Split:
    """A program cut at one layer (see :func:`split`).

    Attributes:
        layer: the layer it was cut at.
        tail_inputs: indices of the program inputs that :attr:`tail` still reads
            besides the activation (parameters, and an input a skip connection
            carries past the layer).
    """

    layer: Layer
    tail_inputs: tuple[int, ...]
    _closed: ClosedJaxpr
    _var: Var
    _head_eqns: tuple[JaxprEqn, ...]
    _tail_eqns: tuple[JaxprEqn, ...]

    def head(self, *args: Any) -> Any:
        """The layer's output, from the program's inputs."""
        jaxpr = self._closed.jaxpr
        env = dict(zip(jaxpr.constvars, self._closed.consts))
        env.update(zip(jaxpr.invars, args))
        return _run(self._head_eqns, env)[self._var]

    def tail(self, args: Sequence[Any], activation: Any) -> list[Any]:
        """The program's outputs with the layer's output replaced by ``activation``.

        ``args`` are the program's inputs; only those in :attr:`tail_inputs` are
        read (pass ``None`` for the others).
        """
        shape, dtype = tuple(jax.numpy.shape(activation)), jax.numpy.result_type(activation)
        if shape != self.layer.shape:
            raise ValueError(f"tail of layer {self.layer.name!r}: the activation has shape {shape}; "
                             f"the layer's output has shape {self.layer.shape} (one example, no batch "
                             "axis; batch with jax.vmap).")
        jaxpr = self._closed.jaxpr
        env = dict(zip(jaxpr.constvars, self._closed.consts))
        env.update((jaxpr.invars[i], args[i]) for i in self.tail_inputs)
        env[self._var] = jax.numpy.asarray(activation, self.layer.dtype) if dtype != self.layer.dtype \
            else activation
        env = _run(self._tail_eqns, env)
        return [_read(env, v) for v in jaxpr.outvars]


def split(closed_jaxpr: ClosedJaxpr, name: str) -> Split:
    """Cut a program at the layer ``name`` (one of :func:`layers`).

    ``head(*inputs)`` computes only what the layer's output needs;
    ``tail(inputs, activation)`` runs the rest of the program from it, so
    ``tail(inputs, head(*inputs))`` equals the program. Values a skip connection
    carries past the layer are recomputed from the inputs listed in
    ``tail_inputs``. Both are pure JAX (jit, vmap, grad).

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from xai_core.graph import mark, split, trace
        >>> f = lambda w, x: jnp.tanh(mark(w * x, "scale")).sum()
        >>> s = split(trace(f, jnp.ones(3), jnp.ones(3)), "scale")
        >>> w, x = jnp.full(3, 2.0), jnp.arange(3.0)
        >>> a = s.head(w, x)
        >>> a.tolist(), s.tail_inputs, bool(jnp.isclose(s.tail([w, x], a)[0], f(w, x)))
        ([0.0, 2.0, 4.0], (), True)
    """
    jaxpr = closed_jaxpr.jaxpr
    marks = _marks(jaxpr)
    if not marks:
        raise ValueError(f"split: no layer named {name!r}: the program has no layer marks "
                         "(build the model with an adapter that marks layers, or call graph.mark).")
    names = [n for n, _ in marks]
    if name not in names:
        close = difflib.get_close_matches(str(name), names, n=1)
        raise ValueError(f"split: unknown layer {name!r}; choose one of {', '.join(map(repr, names))}."
                         + (f" Did you mean {close[0]!r}?" if close else ""))
    var = next(v for n, v in marks if n == name)
    head_eqns, _ = _live(jaxpr, [var], ())
    tail_eqns, needed = _live(jaxpr, jaxpr.outvars, {var})
    used = tuple(i for i, v in enumerate(jaxpr.invars) if v in needed)
    layer = Layer(name, tuple(var.aval.shape), np.dtype(var.aval.dtype))
    return Split(layer, used, closed_jaxpr, var, tuple(head_eqns), tuple(tail_eqns))
