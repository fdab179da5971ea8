"""Explain while training: attribution maps logged to TensorBoard (or PNG folders) every epoch.
An application: it imports the public face, the methods, metrics and adapters; nothing imports it.

- :func:`log_attributions` for a hand-written loop: give the model (an adapter's
  :class:`~xai_core.adapters.Model`) and the step's weights (``params=``: a pytree for a
  Flax / optax loop, or the ``torch.nn.Module`` itself, whose ``state_dict()`` becomes the
  params without converting the model again); it writes one picture per example (the input
  beside its signed overlay) and the scalars that matter.
- :class:`AttributionCallback` (a ``keras.callbacks.Callback``) does it at the end of every
  ``every_n_epochs`` epoch of ``model.fit``, with tf-explain's aliases
  (:class:`VanillaGradientsCallback`, ...), so a tf-explain user changes one import. It
  explains the logit (the softmax is cut), not the probability (tf-explain's #159).

The model is converted once and the explanation compiled once: every later call passes new
weights to the same program (weights are arguments, DESIGN lesson 7). Writers:
:class:`TensorBoardWriter` (tensorboardX: TensorBoard's event format with no TensorFlow, a
small pure-Python package) and :class:`PNGWriter`; both write on a background thread, off
the training step's path.
"""

from __future__ import annotations

from typing import Any

from xai_core.callbacks.explain import (
    CAMS,
    Explainer,
    PNGWriter,
    TensorBoardWriter,
    check_targets,
    log_attributions,
    picture,
    torch_params,
)


KERAS_CALLBACKS = ("AttributionCallback", "VanillaGradientsCallback", "GradientsInputsCallback",
                   "IntegratedGradientsCallback", "SmoothGradCallback", "OcclusionSensitivityCallback",
                   "GradCAMCallback", "ActivationsVisualizationCallback")
"""The Keras callbacks (:mod:`xai_core.callbacks.keras`), built on first use: keras is imported
only when one of these names is looked up (any other name, e.g. a tool probing ``__wrapped__``,
is an AttributeError without importing keras)."""


__all__ = ["CAMS", "Explainer", "PNGWriter", "TensorBoardWriter", "check_targets", "log_attributions", "picture",
           "torch_params", *KERAS_CALLBACKS]


def __getattr__(name: str) -> Any:
    if name in KERAS_CALLBACKS:
        from xai_core.callbacks import keras

        return getattr(keras, name)
    raise AttributeError(f"module 'xai_core.callbacks' has no attribute {name!r}")
