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
import sys
import zipfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from ._base import Model, OutputMode, mark_batch_of_one

__all__ = ["from_keras"]

_INSTALL = "pip install 'xai-core[keras]'"
_USE_JAX = ("Keras picks its backend once per process, when it is first imported: start Python "
            "with KERAS_BACKEND=jax (e.g. `KERAS_BACKEND=jax python script.py`), or run "
            "os.environ['KERAS_BACKEND'] = 'jax' before the first `import keras`.")


def _import_keras() -> Any:
    """Keras, imported with (or already running) the JAX backend."""
    if "keras" not in sys.modules:
        wanted = os.environ.get("KERAS_BACKEND")
        if wanted and wanted != "jax":
            raise RuntimeError(f"from_keras needs Keras's JAX backend, but KERAS_BACKEND={wanted!r} "
                               f"is set. {_USE_JAX}")
        os.environ["KERAS_BACKEND"] = "jax"  # unset or empty (Keras ignores an empty one)
    try:
        import keras
    except ModuleNotFoundError as e:
        if e.name == "keras":
            raise ImportError(f"from_keras needs Keras 3, which is not installed: {_INSTALL}") from e
        raise
    version = getattr(keras, "__version__", "0")
    if int(version.split(".")[0]) < 3:
        raise ImportError(f"from_keras needs Keras 3 (with its JAX backend); Keras {version} is "
                          f"installed: {_INSTALL}")
    backend = keras.config.backend()
    if backend != "jax":
        raise RuntimeError(
            f"from_keras needs Keras's JAX backend, but Keras in this process runs the {backend!r} "
            f"backend. {_USE_JAX} A model built on another backend cannot be converted: save it "
            "(model.save('model.keras')) and load it in a JAX process with from_keras('model.keras'). "
            "keras.config.set_backend('jax') also switches, but it breaks every Keras object "
            "created before it (your model included): load the model from its file afterwards.")
    return keras


def _load(keras: Any, path: Path) -> Any:
    """A model from a ``.keras`` or legacy ``.h5`` file, with clear errors."""
    name = path.name.lower()
    if not path.exists():
        raise FileNotFoundError(f"from_keras: no such model file: {str(path)!r}.")
    if path.is_dir():
        raise ValueError(f"from_keras: {str(path)!r} is a directory; pass a .keras or .h5 model file. "
                         "A TensorFlow SavedModel cannot run on JAX: in the process that has the "
                         "model, save it as model.save('model.keras').")
    if name.endswith((".weights.h5", ".weights.hdf5")):
        raise ValueError(f"from_keras: {str(path)!r} holds only weights, not a model. Build the model "
                         "in code, call model.load_weights(path), then pass the model: from_keras(model).")
    if name.endswith(".keras"):
        if not zipfile.is_zipfile(path):
            raise ValueError(f"from_keras: {str(path)!r} is not a valid .keras file (not a zip archive): "
                             "it is corrupt or truncated, or another format renamed. Save it again "
                             "with model.save('model.keras').")
    elif name.endswith((".h5", ".hdf5")):
        try:
            import h5py
        except ImportError as e:
            raise ImportError(f"from_keras: reading .h5 files needs h5py: {_INSTALL}") from e
        if not h5py.is_hdf5(path):
            raise ValueError(f"from_keras: {str(path)!r} is not a valid .h5 file (not HDF5): it is "
                             "corrupt or truncated, or another format renamed. Save it again "
                             "with model.save('model.keras').")
    else:
        raise ValueError(f"from_keras: cannot load {str(path)!r}: the extension "
                         f"{path.suffix or '(none)'!r} is not .keras or .h5. Pass a file saved "
                         "with model.save('model.keras') (or a legacy .h5), or the model itself.")
    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as e:
        raise ValueError(f"from_keras: could not load the model file {str(path)!r}: "
                         f"{type(e).__name__}: {e} If it needs custom layers or objects, load it "
                         "yourself with keras.saving.load_model(path, custom_objects=...) and "
                         "pass the model.") from e


def _check_model(keras: Any, model: Any) -> None:
    if isinstance(model, keras.layers.Layer):
        return
    if any(c.__module__.split(".")[0] in ("keras", "tf_keras", "tensorflow")
           for c in type(model).__mro__):
        raise TypeError(
            f"from_keras: {type(model).__name__} is a Keras object, but not from the Keras 3 "
            "(JAX backend) that runs in this process: tf.keras / Keras 2, or a model created "
            "before keras.config.set_backend(). Save it (model.save('model.keras')) and pass the "
            "file: from_keras('model.keras').")
    raise TypeError(f"from_keras: expected a Keras model (keras.Model or keras.layers.Layer) or "
                    f"the path of a .keras / .h5 file; got {type(model).__name__}. For PyTorch use "
                    "from_torch, for Flax from_flax, for a plain function xai_core.adapters.Model.")


def _sublayers(layer: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """``(name, layer)`` for every layer inside ``layer``, depth first; nested models
    and layers made of layers give names like ``outer/inner``."""
    for child in layer._flatten_layers(include_self=False, recursive=False):
        name = prefix + child.name
        yield name, child
        yield from _sublayers(child, name + "/")


def _marking(call: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``call`` with its output (a batch of one) marked as layer ``name``."""

    def marked(*args: Any, **kwargs: Any) -> Any:
        return mark_batch_of_one(call(*args, **kwargs), name)

    return marked


@contextlib.contextmanager
def _marked(model: Any) -> Iterator[None]:
    """While tracing: every sublayer's ``call`` marks its output. Restored on exit."""
    patched: list[tuple[Any, Any]] = []
    seen: set[int] = set()
    try:
        for name, layer in _sublayers(model):
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            own = layer.__dict__.get("call")  # an instance attribute, if any, to put back
            object.__setattr__(layer, "call", _marking(layer.call, name))
            patched.append((layer, own))
        yield
    finally:
        for layer, own in reversed(patched):
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)


def _model_input(keras: Any, model: Any, input_shape: Sequence[int | None] | None,
                 ) -> tuple[tuple[int | None, ...] | None, str, Any]:
    """The shape (no batch axis) and dtype of one example, as far as they are known, and
    the nesting the model wants its one input in (``[x]``, ``{"name": x}``), if any."""
    name = model.name
    try:
        struct = model.input  # functional models: a KerasTensor, or a list / dict of them
    except (AttributeError, ValueError):  # never called on symbolic inputs
        struct = None
    try:
        known = model.input_shape
    except (AttributeError, ValueError):  # subclassed models
        known = None
    n_inputs = (len(keras.tree.flatten(struct)) if struct is not None
                else len(known) if isinstance(known, list) else 1)
    if n_inputs != 1:
        raise ValueError(f"from_keras: {name} takes {n_inputs} inputs; from_keras explains models "
                         "of one input tensor. Wrap it in a keras.Model with one input, or write "
                         "apply(params, x) yourself and use xai_core.adapters.Model.")
    known = None if known is None else tuple(known)[1:]
    if input_shape is not None:
        given = tuple(None if d is None else int(d) for d in input_shape)
        if known is not None and (len(given) != len(known) or any(
                k is not None and g != k for g, k in zip(given, known))):
            raise ValueError(f"from_keras: input_shape={given} does not match {name}'s input shape "
                             f"{known} (one example, no batch axis).")
        known = given
    inputs = getattr(model, "inputs", None) or []
    dtype = str(inputs[0].dtype) if len(inputs) == 1 else keras.config.floatx()
    return known, dtype, struct if isinstance(struct, (list, tuple, dict)) else None


def from_keras(model: Any, *, output: OutputMode = "logits",
               input_shape: Sequence[int | None] | None = None) -> Model:
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
            away, so errors show here and ``m.layers`` is ready.

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
    shape, dtype, struct = _model_input(keras, model, input_shape)
    # Copies: Keras's fit() donates (deletes) the variables' buffers as it trains on.
    params = ([jnp.array(v.value, copy=True) for v in model.trainable_variables],
              [jnp.array(v.value, copy=True) for v in model.non_trainable_variables])

    # stateless_call passes keywords on to model.call, which may not take `training`
    # (its layers then run in inference mode by default).
    kwargs = {"training": False} if "training" in model.call_signature_parameters else {}

    def apply(params: Any, x: Any) -> Any:
        batch = x[None] if struct is None else keras.tree.pack_sequence_as(struct, [x[None]])
        with _marked(model):
            out, _ = model.stateless_call(params[0], params[1], batch, **kwargs)
        if not hasattr(out, "shape") or out.ndim == 0 or out.shape[0] != 1:
            raise TypeError(f"from_keras: {model.name} returned {type(out).__name__} "
                            f"{getattr(out, 'shape', '')} for a batch of one; expected one array "
                            "of class scores with a leading batch axis. For a model with several "
                            "outputs, pass keras.Model(model.input, model.outputs[k]).")
        return out[0]

    m = Model(apply, params, output=output, input_shape=shape, name=model.name)
    if shape is not None and None not in shape:
        m.jaxpr(jax.ShapeDtypeStruct(shape, dtype))
    return m
