"""Attribution methods over a score function: gradients and paths, smoothing, occlusion, the
expectation methods (DeepLiftShap, GradientShap) and token scores. They import the core, the graph
tools and the rule engine; the registry, the layer methods, metrics and applications import them.

Modules: :mod:`~xai_core.attribution.gradients` (gradient, gradient x input, integrated gradients,
the completeness gap), :mod:`~xai_core.attribution.smoothing` (SmoothGrad over any method),
:mod:`~xai_core.attribution.occlusion`, :mod:`~xai_core.attribution.expectations`,
:mod:`~xai_core.attribution.tokens`.
"""
