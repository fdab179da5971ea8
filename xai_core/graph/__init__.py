"""Graph tools on jaxprs: one set, shared by every framework adapter. The ground floor: it imports no
other part of xai_core, and every part may import it.

An adapter turns a model into a JAX function; these tools work on the traced
program (the jaxpr), where every op is visible however it was written (as a layer,
a functional call, or inline arithmetic):

- :func:`trace` traces a function to a :class:`~jax.extend.core.ClosedJaxpr` with
  nested ``jit`` calls inlined, so the graph tools see one flat program.
- :func:`cut_final_activation` removes a final softmax / log_softmax / sigmoid, so
  attributions explain the class score (logits), not a saturated probability.
- :func:`looks_like_probabilities` is the sanity check for outputs that could not
  be cut.
- :func:`mark` labels a layer's output while an adapter traces the model (a torch
  module name, a Keras layer name, a Flax module path); :func:`layers` lists the
  labels of a program and :func:`split` cuts it there into ``head`` and ``tail``.

No ``jax._src`` imports: only ``jax.make_jaxpr``, ``jax.core.eval_jaxpr``,
``jax.extend.core`` / ``jax.extend.source_info_util``, and per equation the calls
``jax.core.eval_jaxpr`` itself makes (``Primitive.get_bind_params``, ``bind``).
Rewritten programs are produced by re-tracing a small interpreter with
``jax.make_jaxpr`` rather than by editing ``Jaxpr`` objects, so no private
constructors are needed and dead code is never emitted.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core import graph
    >>> f = lambda w, x: jax.nn.softmax(x @ w)
    >>> w, x = jnp.ones((3, 2)), jnp.ones(3)
    >>> cut, what = graph.cut_final_activation(graph.trace(f, w, x))
    >>> what
    'softmax'
    >>> bool(jnp.allclose(jax.core.eval_jaxpr(cut.jaxpr, cut.consts, w, x)[0], x @ w))
    True

The package, by responsibility: :mod:`~xai_core.graph.interpreter` (the interpreter
every rewrite shares, and :func:`trace`), :mod:`~xai_core.graph.patterns` and
:mod:`~xai_core.graph.cut` (the final-activation cut), :mod:`~xai_core.graph.marks`
(layers and :func:`split`), :mod:`~xai_core.graph.rewrites` (:func:`channels_last`,
:func:`fast_kernels`; the whole-program layout pass in :mod:`~xai_core.graph.layout`; pooling
gradients and box sums as elementwise work in :mod:`~xai_core.graph.windows`),
:mod:`~xai_core.graph.incremental` (:func:`incremental`: a function re-evaluated with one box
of its input changed, recomputing only what the change reaches; boxes in
:mod:`~xai_core.graph.boxes`).
"""

from xai_core.graph.cut import ACTIVATIONS, cut_final_activation, looks_like_probabilities
from xai_core.graph.incremental import incremental
from xai_core.graph.interpreter import KEEP_CALLS, trace
from xai_core.graph.marks import LAYER_MARK, Layer, Split, layers, mark, split
from xai_core.graph.rewrites import channels_last, fast_kernels


__all__ = [
    "KEEP_CALLS",
    "ACTIVATIONS",
    "trace",
    "cut_final_activation",
    "looks_like_probabilities",
    "LAYER_MARK",
    "mark",
    "Layer",
    "layers",
    "Split",
    "split",
    "channels_last",
    "fast_kernels",
    "incremental",
]
