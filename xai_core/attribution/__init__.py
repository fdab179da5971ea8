"""Attribution methods over a score function: gradients and paths, smoothing, occlusion, the
expectation methods (DeepLiftShap, GradientShap), token scores, PAIR's paths and regions (Guided IG,
Blur IG, XRAI) and the model-agnostic family
(feature ablation, Shapley values, Kernel SHAP, Owen values, LIME, RISE). They import the core,
the graph tools and the rule engine; the registry, the layer methods, metrics and applications
import them.

Modules: :mod:`~xai_core.attribution.gradients` (gradient, gradient x input, integrated gradients,
the completeness gap), :mod:`~xai_core.attribution.smoothing` (SmoothGrad over any method),
:mod:`~xai_core.attribution.occlusion`, :mod:`~xai_core.attribution.expectations`,
:mod:`~xai_core.attribution.tokens`, :mod:`~xai_core.attribution.paths` (Guided IG, Blur IG),
:mod:`~xai_core.attribution.xrai` (XRAI's ranked regions); model-agnostic: :mod:`~xai_core.attribution.features` (feature
groups and the coalition game), :mod:`~xai_core.attribution.shapley` (feature ablation, exact and
sampled Shapley values), :mod:`~xai_core.attribution.surrogates` (Kernel SHAP, LIME),
:mod:`~xai_core.attribution.owen`, :mod:`~xai_core.attribution.rise`,
:mod:`~xai_core.attribution.segments` (feature masks).
"""
