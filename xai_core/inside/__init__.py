"""Methods that look inside the network at a named layer (``m.split``): CAMs, layer and neuron
attribution, feature visualization. They import the attribution methods, the rule engine and the
core; the metrics, the public face and applications import them.

Modules: :mod:`~xai_core.inside.cam` (``xc.cam``), :mod:`~xai_core.inside.layer` (``xc.layer``),
:mod:`~xai_core.inside.featureviz` (``xc.featureviz``), :mod:`~xai_core.inside.concepts` (``xc.concepts``: TCAV).
"""
