"""Keras adapter: a Keras 3 model (JAX backend), or its ``.keras`` / ``.h5`` file -> :class:`Model`.

Keras picks its backend once per process, when it is first imported, and a model is
tied to the backend it was built with. ``from_keras`` needs the JAX backend: if Keras
is not imported yet it sets ``KERAS_BACKEND=jax`` (unless that variable names another
backend, which is an error); otherwise run Python with ``KERAS_BACKEND=jax``. No
TensorFlow is needed.

Example:
    >>> import os; os.environ.setdefault("KERAS_BACKEND", "jax")
    'jax'
    >>> import keras, jax.numpy as jnp
    >>> from xai_core.adapters import from_keras
    >>> net = keras.Sequential([keras.Input((4,)),
    ...                         keras.layers.Dense(3, activation="softmax", name="scores")])
    >>> m = from_keras(net)
    >>> m.logits(jnp.ones(4)).shape, m.cut, m.layers
    ((3,), 'softmax', [Layer('scores', shape=(3,), dtype=float32)])
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ._base import Model, OutputMode, mark_batch_of_one
from ._keras_load import _check_model, _import_keras, _load
from ._shapes import _is_shape
from ._text import TextModel, check_replacement

__all__ = ["from_keras"]

def _sublayers(layer: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, layer)`` for every layer inside ``layer``, depth first; nested models
    and layers made of layers give names like ``outer/inner``."""
    for child in layer._flatten_layers(include_self=False, recursive=False):
        name = prefix + child.name
        yield name, child
        yield from _sublayers(child, name + "/")


def _marking(call: Callable[..., Any], name: str, value: Any = None) -> Callable[..., Any]:
    """``call`` with its output (a batch of one) marked as layer ``name``; with ``value``
    (one example), that value replaces the output (a text model's embeddings)."""
    calls: list[int] = []

    def marked(*args: Any, **kwargs: Any) -> Any:
        out = call(*args, **kwargs)
        if value is not None:
            calls.append(1)
            check_replacement(name, len(calls), out.shape, value.shape)
            out = value[None].astype(out.dtype)
        return mark_batch_of_one(out, name)

    return marked


@contextlib.contextmanager
def _marked(model: Any, replace: tuple[str, Any] | None = None) -> Iterator[None]:
    """While tracing: every sublayer's ``call`` marks its output (the layer named
    ``replace[0]`` returns ``replace[1]`` instead). Restored on exit."""
    patched: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    try:
        for name, layer in _sublayers(model):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            own = layer.__dict__.get("call")  # an instance attribute, if any, to put back
            value = replace[1] if replace is not None and replace[0] == name else None
            object.__setattr__(layer, "call", _marking(layer.call, name, value))
            patched.append((layer, own))
        yield
    finally:
        for layer, own in reversed(patched):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


def _model_input(keras: Any, model: Any, input_shape: Any) -> tuple[Any, Any, Callable[[Any], Any]]:
    """One example's shapes and dtypes (a pytree: one, a tuple for a list of inputs, a dict
    for named ones), and the function that makes the batch of one the model is called with."""
    name = model.name
    try:
        struct = model.input  # functional models: a KerasTensor, or a list / dict of them
    except (AttributeError, ValueError):  # never called on symbolic inputs
        struct = None
    try:
        known = model.input_shape
    except (AttributeError, ValueError):  # subclassed models
        known = None
    if struct is None:  # a Sequential never called: its one input is in model.inputs
        shapes: Any = None if known is None else tuple(known)[1:]
        inputs = getattr(model, "inputs", None) or []
        dtypes: Any = str(inputs[0].dtype) if len(inputs) == 1 else keras.config.floatx()
    else:
        if isinstance(struct, list) and len(struct) != 1:
            struct = tuple(struct)
        shapes = keras.tree.map_structure(lambda t: tuple(t.shape)[1:], struct)
        dtypes = keras.tree.map_structure(lambda t: str(t.dtype), struct)
        if isinstance(struct, (list, dict)) and len(struct) == 1:  # one input: one array per example
            shapes, dtypes = jax.tree.leaves(shapes, is_leaf=_is_shape)[0], jax.tree.leaves(dtypes)[0]
    if input_shape is not None:
        given = jax.tree.map(lambda s: tuple(None if d is None else int(d) for d in s), input_shape,
                             is_leaf=_is_shape)
        fits = shapes is None or (jax.tree.structure(given, is_leaf=_is_shape) ==
                                  jax.tree.structure(shapes, is_leaf=_is_shape) and all(
            len(g) == len(k) and all(b is None or a == b for a, b in zip(g, k))
            for g, k in zip(jax.tree.leaves(given, is_leaf=_is_shape), jax.tree.leaves(shapes, is_leaf=_is_shape))))
        if not fits:
            raise ValueError(f"from_keras: input_shape={given} does not match {name}'s input shape "
                             f"{shapes} (one example, no batch axis).")
        shapes = given

    def batch(x: Any) -> Any:
        if isinstance(struct, (list, dict)) and len(struct) == 1:
            return keras.tree.pack_sequence_as(struct, [x[None]])
        if isinstance(struct, tuple):
            return [a[None] for a in x]
        return jax.tree.map(lambda a: a[None], x)

    return shapes, dtypes, batch


def from_keras(model: Any, *, output: OutputMode = "logits", input_shape: Any = None,
               embedding: str | None = None) -> Model:
    """Wrap a Keras 3 model (JAX backend) as a :class:`Model` of one example that returns logits.

    ``m.logits(x)`` takes ONE example ``x`` without the batch axis (e.g. ``(28, 28, 1)``)
    and runs ``model.stateless_call(trainable, non_trainable, x[None], training=False)``
    (BatchNorm uses its moving averages, Dropout is off); batch with ``jax.vmap``.
    A final softmax / log_softmax / sigmoid is cut, whether it is a layer's
    ``activation=`` or a layer of its own. ``m.params`` is ``(trainable,
    non_trainable)``: lists of the variables' values in the order of
    ``model.trainable_variables`` / ``model.non_trainable_variables`` (copies, taken
    now: after more training, call ``from_keras`` again). Every layer's output is a split
    point, named as Keras names the layer (``outer/inner`` inside a nested model):
    see ``m.layers`` and ``m.split(name)``. Your model is not changed.

    Needs Keras's JAX backend (see the module docstring): if Keras is not imported
    yet, this sets ``KERAS_BACKEND=jax`` first; a process that already runs Keras on
    another backend gets an error saying what to do.

    Args:
        model: a ``keras.Model`` (or layer), or the path of a ``.keras`` file or legacy
            ``.h5`` file, loaded with ``keras.saving.load_model(path, compile=False)``.
        output: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``; see :class:`Model`.
        input_shape: the shape of one example (no batch axis); by default taken from
            ``model.input_shape``. When it is fully known, the model is traced right
            away, so errors show here and ``m.layers`` is ready. For several inputs, a
            tuple (a list of inputs) or dict (named inputs) of shapes.
        embedding: for a model of token ids: the name of its embedding layer (default:
            the one ``keras.layers.Embedding``).

    A model of several inputs takes one example as a tuple of arrays (in the order of
    ``model.inputs``) or, for named inputs, a dict. A model of integer inputs (token ids)
    becomes a :class:`TextModel`, explained on its embedding layer's output (the ids are a
    fixed input; a ``mask_zero`` mask still comes from them).

    Example:
        >>> import keras, jax, jax.numpy as jnp
        >>> L = keras.layers
        >>> net = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(2, 3, name="conv"),
        ...                         L.GlobalAveragePooling2D(name="pool"), L.Dense(3, name="dense"),
        ...                         L.Softmax(name="softmax")])
        >>> m = from_keras(net)  # or from_keras("model.keras")
        >>> [layer.name for layer in m.layers], m.cut
        (['conv', 'pool', 'dense', 'softmax'], 'softmax')
        >>> jax.grad(m.score(2))(jnp.ones((8, 8, 1))).shape
        (8, 8, 1)
    """
    keras = _import_keras()
    if isinstance(model, (str, os.PathLike)):
        model = _load(keras, Path(model))
    _check_model(keras, model)
    if not model.built:
        raise ValueError(f"from_keras: {model.name} has no weights yet (it was never built). "
                         "Build and train it first (model.fit(...); or model.build((None, *shape)) "
                         "for random weights), or load it: from_keras('model.keras').")
    shapes, dtypes, batch = _model_input(keras, model, input_shape)
    # Copies: Keras's fit() donates (deletes) the variables' buffers as it trains on.
    params = ([jnp.array(v.value, copy=True) for v in model.trainable_variables],
              [jnp.array(v.value, copy=True) for v in model.non_trainable_variables])

    # stateless_call passes keywords on to model.call, which may not take `training`
    # (its layers then run in inference mode by default).
    kwargs = {"training": False} if "training" in model.call_signature_parameters else {}
    ints = [d for d in jax.tree.leaves(dtypes) if not jnp.issubdtype(d, jnp.floating)]
    layer = _embedding_layer(keras, model, embedding, ints[0]) if ints else None

    def apply(params: Any, x: Any, embeddings: Any = None) -> Any:
        with _marked(model, None if embeddings is None else (layer, embeddings)):
            out, _ = model.stateless_call(params[0], params[1], batch(x), **kwargs)
        if not hasattr(out, "shape") or out.ndim == 0 or out.shape[0] != 1:
            raise TypeError(f"from_keras: {model.name} returned {type(out).__name__} "
                            f"{getattr(out, 'shape', '')} for a batch of one; expected one array "
                            "of class scores with a leading batch axis. For a model with several "
                            "outputs, pass keras.Model(model.input, model.outputs[k]).")
        return out[0]

    if layer is not None:  # token ids: a text model, traced on a length of 16 where it is open
        length = lambda s: tuple(16 if d is None else d for d in s)  # noqa: E731
        example = jax.tree.map(lambda s, d: jax.ShapeDtypeStruct(length(s), d), shapes, dtypes,
                               is_leaf=_is_shape)
        return TextModel(lambda p, x: apply(p, x["inputs"], x["embeddings"]), apply, params,
                         embedding=layer, example=example, output=output, name=model.name)
    m = Model(apply, params, output=output, input_shape=shapes, name=model.name)
    if shapes is not None and all(None not in s for s in jax.tree.leaves(shapes, is_leaf=_is_shape)):
        m.jaxpr(jax.tree.map(jax.ShapeDtypeStruct, shapes, dtypes, is_leaf=_is_shape))
    return m


def _embedding_layer(keras: Any, model: Any, embedding: str | None, dtype: str) -> str:
    """The name of the layer whose output is attributed for a model of token ids."""
    names = [name for name, _ in _sublayers(model)]
    if embedding is not None:
        if embedding not in names:
            raise ValueError(f"from_keras: {model.name} has no layer {embedding!r}; layers: {', '.join(names)}.")
        return embedding
    found = [name for name, layer in _sublayers(model) if isinstance(layer, keras.layers.Embedding)]
    if len(found) == 1:
        return found[0]
    if not found:
        raise TypeError(f"from_keras: {model.name} takes {dtype} inputs, which have no gradient, and has "
                        "no Embedding layer to attribute instead. Give floating-point inputs; for a text "
                        "model with another embedding layer, name it with embedding='...'.")
    raise ValueError(f"from_keras: {model.name} takes integer inputs (token ids), so attributions are "
                     "computed on the output of its embedding layer; it has several, so name one "
                     f"with embedding='...': {', '.join(found)}.")
