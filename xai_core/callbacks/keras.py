"""The Keras callbacks of :mod:`xai_core.callbacks` (this module imports keras; the core
imports it only when one of them is used)."""

from __future__ import annotations

import pathlib
from typing import Any

import jax
import numpy as np

from xai_core.adapters._keras_load import _import_keras
from xai_core.inside import layer as layer_methods
from xai_core.callbacks.explain import Explainer, PNGWriter, TensorBoardWriter, check_targets, log_attributions

__all__ = ["AttributionCallback", "GradientsInputsCallback", "IntegratedGradientsCallback",
           "OcclusionSensitivityCallback", "SmoothGradCallback", "VanillaGradientsCallback", "GradCAMCallback",
           "ActivationsVisualizationCallback"]

TARGETS = ("label", "predicted")

keras = _import_keras()  # with the JAX backend (set here if Keras is not imported yet), or a clear error


class AttributionCallback(keras.callbacks.Callback):
    """Log attribution maps of ``validation_data`` every ``every_n_epochs`` epochs of ``fit``.

    ``method`` may also be a CAM of :data:`xai_core.callbacks.CAMS` with ``layer=`` (a Keras
    layer name). ``validation_data = (x, y)`` (``y`` class indices or one-hot rows; ``None`` if
    ``targets`` is not ``"label"``); ``targets``: ``"label"``, ``"predicted"`` (the model's
    class at that epoch), one int for every example, or an array (class indices in
    ``0..classes-1``, checked when training begins; negative ones are refused); ``method`` any name of
    ``xc.methods()`` with its ``options``; ``writer`` a :class:`TensorBoardWriter` (default,
    in ``log_dir``) or :class:`PNGWriter` (``writer="png"``); ``masks`` (object masks) adds the
    localization scalar. The model is converted once (``from_keras``) and the explanation
    compiled once: each epoch passes the new weights (``m.with_params``).

    Example::

        model.fit(x, y, epochs=5, callbacks=[AttributionCallback((x_val, y_val), method="ig",
                                                                 log_dir="logs/xai", steps=32)])
    """

    _target_name = "targets"

    def __init__(self, validation_data: Any, method: str = "gradient", targets: Any = "label",
                 log_dir: str | pathlib.Path = "logs/xai", every_n_epochs: int = 1, max_images: int = 16,
                 writer: Any = "tensorboard", masks: Any = None, key: Any = None, layer: str | None = None,
                 **options: Any) -> None:
        super().__init__()
        self.explainer = Explainer(method, layer=layer, **options)  # an unknown method fails now, not after an epoch
        if self.explainer.spec.needs_key and key is None:
            key = jax.random.key(0)
        self.xs, labels = _validation(validation_data, targets)
        self.xs = self.xs[:max_images]
        if isinstance(targets, str):
            if targets not in TARGETS:
                raise ValueError(f"AttributionCallback: targets must be 'label', 'predicted', an int or an array "
                                 f"of class indices, got {targets!r}.")
            self.targets = targets if targets == "predicted" else labels[:max_images]
        else:
            t = np.asarray(targets)
            if t.ndim not in (0, 1) or not np.issubdtype(t.dtype, np.integer):
                raise ValueError(f"AttributionCallback: targets must be an int or an array of class indices, got {targets!r}.")
            self.targets = t if t.ndim == 0 else t[:max_images]
        if not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise ValueError(f"AttributionCallback: every_n_epochs must be an int >= 1, got {every_n_epochs!r}.")
        self.every_n_epochs, self.masks, self.key, self._given = every_n_epochs, masks, key, targets
        self.writer = _writer(writer, log_dir)
        self._m: Any = None

    def on_train_begin(self, logs: Any = None) -> None:
        from xai_core.adapters import from_keras

        shape = tuple(self.model.inputs[0].shape[1:]) if getattr(self.model, "inputs", None) else None
        if shape is not None and any(d is not None and d != s for d, s in zip(shape, self.xs.shape[1:])):
            raise ValueError(f"AttributionCallback: validation images have shape {self.xs.shape[1:]}, the model "
                             f"takes {shape}; pass examples the model accepts.")
        self._m = from_keras(self.model)
        if not isinstance(self.targets, str):  # a class out of range would log empty maps, NaN scores
            what = "labels" if isinstance(self._given, str) else self._target_name
            check_targets(self._m, self.xs[0], self.targets, f"{type(self).__name__}: {what}")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        if (epoch + 1) % self.every_n_epochs:
            return
        m = _current(self._m, self.model)
        targets = self.targets
        if isinstance(targets, str):  # "predicted": the class the model picks now
            targets = np.asarray(jax.vmap(m.logits)(self.xs)).argmax(-1)
        log_attributions(self.writer, epoch, m, self.xs, targets, explainer=self.explainer, masks=self.masks,
                         key=self.key)

    def on_train_end(self, logs: Any = None) -> None:
        self.writer.flush()


def _writer(writer: Any, log_dir: Any) -> Any:
    """A writer given by name (``"tensorboard"``, ``"png"``) in ``log_dir``, or the one given."""
    if not isinstance(writer, str):
        return writer
    kinds = {"tensorboard": TensorBoardWriter, "png": PNGWriter}
    if writer not in kinds:
        raise ValueError(f"callbacks: writer must be 'tensorboard', 'png' or a writer object, got {writer!r}.")
    return kinds[writer](log_dir)


def _current(m: Any, model: Any) -> Any:
    """``m`` with the Keras model's weights now (no new conversion)."""
    return m.with_params(([v.value for v in model.trainable_variables],
                          [v.value for v in model.non_trainable_variables]))


def _validation(data: Any, targets: Any) -> tuple[np.ndarray, np.ndarray | None]:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise ValueError("AttributionCallback: validation_data must be a tuple (x, y) of examples and their labels "
                         "(y may be None when targets is not 'label').")
    x, y = data
    x = np.asarray(x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"AttributionCallback: validation_data's x must be a batch of examples (n, ...), got shape {x.shape}.")
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    if y is None:
        if isinstance(targets, str) and targets == "label":
            raise ValueError("AttributionCallback: targets='label' needs labels in validation_data = (x, y).")
        return x, None
    y = np.asarray(y)
    if y.ndim == 2:  # one-hot rows
        y = y.argmax(-1)
    if y.shape != x.shape[:1]:
        raise ValueError(f"AttributionCallback: validation_data has {x.shape[0]} examples but labels of shape {y.shape}.")
    return x, y.astype(np.int32)


def _alias(method: str, name: str) -> type:
    class Alias(AttributionCallback):
        _target_name = "class_index"

        def __init__(self, validation_data: Any, class_index: Any = "label", output_dir: str = "logs/xai",
                     **options: Any) -> None:
            super().__init__(validation_data, method=method, targets=class_index, log_dir=output_dir, **options)

    Alias.__name__ = Alias.__qualname__ = name
    Alias.__doc__ = f"tf-explain's ``{name}``: :class:`AttributionCallback` with ``method={method!r}``, " \
                    "taking ``class_index`` (an int, or ``'label'``) and ``output_dir``."
    return Alias


VanillaGradientsCallback = _alias("gradient", "VanillaGradientsCallback")
GradientsInputsCallback = _alias("gradient_x_input", "GradientsInputsCallback")
IntegratedGradientsCallback = _alias("integrated_gradients", "IntegratedGradientsCallback")
SmoothGradCallback = _alias("smoothgrad", "SmoothGradCallback")
OcclusionSensitivityCallback = _alias("occlusion", "OcclusionSensitivityCallback")


class GradCAMCallback(AttributionCallback):
    """tf-explain's ``GradCAMCallback``: Grad-CAM at ``layer_name`` for ``class_index``."""

    _target_name = "class_index"

    def __init__(self, validation_data: Any, class_index: Any = "label", layer_name: str | None = None,
                 output_dir: str = "logs/xai", **options: Any) -> None:
        super().__init__(validation_data, method="grad_cam", targets=class_index, log_dir=output_dir,
                         layer=layer_name, **options)


class ActivationsVisualizationCallback(keras.callbacks.Callback):
    """tf-explain's ``ActivationsVisualizationCallback``: every epoch, each channel of the layers
    ``layers_name`` for the validation examples, as one grid per layer and example
    (:func:`xai_core.viz.activation_grid`), compiled once."""

    def __init__(self, validation_data: Any, layers_name: Any, output_dir: str = "logs/xai", max_images: int = 4,
                 writer: Any = "tensorboard") -> None:
        super().__init__()
        self.xs = _validation(validation_data, "predicted")[0][:max_images]
        self.layers = [layers_name] if isinstance(layers_name, str) else list(layers_name)
        self.writer = _writer(writer, output_dir)

        self._fn = jax.jit(lambda m, xs, name: jax.vmap(layer_methods.activation(m, name))(xs), static_argnums=2)
        self._m: Any = None

    def on_train_begin(self, logs: Any = None) -> None:
        from xai_core.adapters import from_keras

        self._m = from_keras(self.model)
        names = [layer.name for layer in self._m.layers] if self._m.layers else []
        missing = [n for n in self.layers if names and n not in names]
        if missing:
            raise ValueError(f"ActivationsVisualizationCallback: no layer {missing}; the model's layers: {names}.")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        from xai_core.viz import activation_grid

        m = _current(self._m, self.model)
        for name in self.layers:
            acts = np.asarray(self._fn(m, self.xs, name))
            for i, a in enumerate(acts):
                grid = activation_grid(a) if a.ndim == 3 else activation_grid(a.reshape(1, 1, -1))
                self.writer.image(f"activations/{name}/{i}", epoch, np.repeat(grid[..., None], 3, axis=-1))

    def on_train_end(self, logs: Any = None) -> None:
        self.writer.flush()


