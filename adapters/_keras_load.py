"""Loading Keras: the JAX backend, ``.keras`` / ``.h5`` files, and what is not a Keras 3 model
(for :func:`xai_core.adapters.from_keras`), each with an error that says what to do."""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path
from typing import Any

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
