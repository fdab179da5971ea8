"""Which method should I use, on *my* model? Run methods x metrics and rank them.

``xc.evaluate(model, images, labels, masks=..., methods=..., metrics=...)`` explains every image
with every method (one jitted, vmapped program per method), scores every map with every
metric (one program per method and metric), and returns a :class:`Report`: the mean per
method and metric, the per-image values, and the model-randomization curves per layer.
``xai-core evaluate`` (:mod:`xai_core.demo.evaluate`) does it on the shapes model and writes the
table and the plot.

Example:
    >>> import jax, jax.numpy as jnp
    >>> from xai_core.adapters import from_flax
    >>> import flax.linen as nn
    >>> net = nn.Dense(3)
    >>> m = from_flax(net, net.init(jax.random.key(0), jnp.ones((1, 8))))
    >>> xs, ts = jax.random.normal(jax.random.key(1), (4, 8)), jnp.array([0, 1, 2, 0])
    >>> report = evaluate(m, xs, ts, methods=["gradient", "gradient_x_input"], metrics=["sparseness"],
    ...                   key=jax.random.key(0), progress=False)
    >>> sorted(report.scores)
    ['gradient', 'gradient_x_input']
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from xai_core import metrics as xm

from xai_core.attribution.gradients import gradient
from xai_core.registry import attribute, get_method
from xai_core.metrics.report import Report

Explain = Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]
"""``(model, x, target, key) -> map`` for one example."""


class Context(NamedTuple):
    """What a metric sees for one example."""

    model: Any
    x: jax.Array
    target: jax.Array
    attribution: jax.Array
    mask: jax.Array | None
    key: jax.Array
    explain: Explain
    options: dict[str, Any]

    @property
    def axis(self) -> int | None:
        """The attribution's channel axis, or None for an (H, W) map (a CAM)."""
        return self.options["channel_axis"] if jnp.ndim(self.attribution) == jnp.ndim(self.x) else None

    @property
    def full(self) -> jax.Array:
        """The attribution broadcast to x's shape (a CAM repeated over the channels)."""
        a = self.attribution if self.axis is not None else jnp.expand_dims(self.attribution, self.options["channel_axis"])
        return jnp.broadcast_to(a, self.x.shape)

    @property
    def score(self) -> Callable[[jax.Array], jax.Array]:
        return self.model.score(self.target)


@dataclass(frozen=True)
class Metric:
    """A metric for :func:`evaluate`: ``fn(context) -> scalar``; ``higher`` is better or not."""

    fn: Callable[[Context], jax.Array]
    higher: bool
    needs_mask: bool = False
    summary: str = ""


def _subset(c: Context) -> int:
    pixels = math.prod(jnp.shape(c.attribution)) // (1 if c.axis is None else jnp.shape(c.x)[c.axis])
    return max(1, min(224, pixels // 4))


def _randomized(c: Context) -> jax.Array:
    values = xm.model_randomization(lambda p, x: c.explain(c.model.with_params(p), x, c.target, c.key), c.model.params,
                                    c.x, randomized=c.options["randomized"], layers=c.options["layers"],
                                    similarity="spearman_abs", channel_axis=c.options["channel_axis"])
    return jnp.stack(list(values.values()))


METRICS: dict[str, Metric] = {
    "deletion": Metric(lambda c: xm.deletion(c.score, c.x, c.attribution, steps=32, baseline=c.options["baseline"],
                                        channel_axis=c.options["channel_axis"]),
                       False, summary="AUC of the score as the top pixels are deleted"),
    "insertion": Metric(lambda c: xm.insertion(c.score, c.x, c.attribution, steps=32, baseline=c.options["baseline"],
                                        channel_axis=c.options["channel_axis"]),
                        True, summary="AUC of the score as the top pixels are inserted"),
    "faithfulness_correlation": Metric(
        lambda c: xm.faithfulness_correlation(c.score, c.x, c.attribution, key=c.key, runs=64, subset_size=_subset(c),
                                              baseline=c.options["baseline"], channel_axis=c.options["channel_axis"]),
        True, summary="correlation of held attribution and score drop over random subsets"),
    "infidelity": Metric(lambda c: xm.infidelity(c.score, c.x, c.full, key=c.key, samples=32, normalize=True), False, summary="error of the map's linear prediction under noise (scale-free)"),
    "sensitivity_max": Metric(lambda c: xm.sensitivity_max(lambda x: c.explain(c.model, x, c.target, c.key), c.x,
                                                           key=c.key, samples=8, relative=True),
                              False, summary="largest relative change of the map under 0.02 noise"),
    "localization": Metric(lambda c: xm.localization(c.attribution, c.mask, channel_axis=c.axis), True, True,
                           "share of positive mass on the object"),
    "pointing_game": Metric(lambda c: xm.pointing_game(c.attribution, c.mask, channel_axis=c.axis), True, True,
                            "the maximum lies on the object"),
    "relevance_rank": Metric(lambda c: xm.relevance_rank(c.attribution, c.mask, channel_axis=c.axis), True, True,
                             "share of the top-|mask| pixels on the object"),
    "mask_auc": Metric(lambda c: xm.mask_auc(c.attribution, c.mask, channel_axis=c.axis), True, True,
                       "ROC AUC of the map as an object detector"),
    "sparseness": Metric(lambda c: xm.sparseness(c.attribution, channel_axis=c.axis), True,
                         summary="Gini index of |map|"),
    "complexity": Metric(lambda c: xm.complexity(c.attribution, channel_axis=c.axis), False,
                         summary="entropy of |map|"),
    "randomization": Metric(lambda c: _randomized(c).mean(), False,
                            summary="mean Spearman |map| similarity under cascading randomization"),
    "random_logit": Metric(lambda c: xm.random_logit(lambda x, t: c.explain(c.model, x, t, c.key), c.x, c.target,
                                                     num_classes=c.options["classes"], key=c.key,
                                                     similarity="spearman_abs", channel_axis=c.options["channel_axis"]),
                           False, summary="Spearman |map| similarity to another class's map"),
}
"""The metrics :func:`evaluate` knows by name (add your own: ``METRICS[name] = Metric(...)``)."""


def _method(spec: Any) -> Explain:
    if callable(spec):
        return spec
    name, options = (spec, {}) if isinstance(spec, str) else spec
    get_method(name)  # an unknown name fails here, listing the known ones
    return lambda m, x, t, k: attribute(m.score(t), x, method=name, key=k, **options)


def _progress(done: int, total: int, label: str, start: float) -> None:
    filled = 30 * done // total
    sys.stderr.write(f"\revaluate [{'#' * filled}{'-' * (30 - filled)}] {done}/{total} {label:40.40s} "
                     f"{time.perf_counter() - start:6.1f}s")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def evaluate(model: Any, images: Any, labels: Any, *, masks: Any = None,
             methods: Sequence[Any] | Mapping[str, Any] = ("gradient", "gradient_x_input", "integrated_gradients"),
             metrics: Sequence[str] = ("deletion", "insertion", "faithfulness_correlation", "sparseness"),
             key: jax.Array, baseline: Any = 0.0, channel_axis: int = -1, progress: bool = True) -> Report:
    """Score every method with every metric on ``images`` (a batch) of ``model`` (an adapter's
    model: ``m.score``, ``m.params``, ``m.with_params``).

    Args:
      labels: the class explained per image (the true label, or the prediction).
      masks: ``(N, H, W)`` object masks, needed by the localization metrics.
      methods: names in ``xc.methods()``, ``(name, options)`` pairs, or ``(model, x, t, key) -> map``
        functions; a mapping gives them labels.
      metrics: names in :data:`METRICS`.
      key: one ``jax.random`` key for every draw (methods, perturbations, randomization).
      baseline: what deletion, insertion and the correlations remove features to.
      channel_axis: the images' channel axis (-1 for HWC; 0 for a torch model's CHW); a
        pixel's channels are removed together, and maps are summed over it.
      progress: a progress bar on stderr.
    """
    named = dict(methods) if isinstance(methods, Mapping) else {
        (m if isinstance(m, str) else m[0] if isinstance(m, tuple) else getattr(m, "__name__", "method")): m
        for m in methods}
    unknown = [name for name in metrics if name not in METRICS]
    if unknown:
        raise ValueError(f"evaluate: unknown metrics {unknown}; known: {sorted(METRICS)}.")
    if masks is None and any(METRICS[name].needs_mask for name in metrics):
        raise ValueError(f"evaluate: {[n for n in metrics if METRICS[n].needs_mask]} need masks= ((N, H, W) booleans).")
    xs, ts = jnp.asarray(images), jnp.asarray(labels)
    masks = None if masks is None else jnp.asarray(masks)
    method_key, metric_key, random_key = jax.random.split(key, 3)
    keys = jax.random.split(metric_key, len(xs))
    options: dict[str, Any] = {"baseline": baseline, "channel_axis": channel_axis, "classes": int(jnp.shape(model.logits(xs[0]))[-1])}
    if "randomization" in metrics:
        explain_gradient = lambda p, x: gradient(model.with_params(p).score(ts[0]))(x)  # noqa: E731
        options["layers"] = xm.param_layers(explain_gradient, model.params, xs[0])
        options["randomized"] = xm.randomize(model.params, options["layers"], random_key)
    report = Report(higher={name: METRICS[name].higher for name in metrics}, layers=options.get("layers", []))
    total, done, start = len(named) * (1 + len(metrics)), 0, time.perf_counter()
    for label, spec in named.items():
        explain = _method(spec)
        begin = time.perf_counter()
        maps = jax.jit(jax.vmap(lambda x, t, k: explain(model, x, t, k)))(xs, ts, jax.random.split(method_key, len(xs)))
        jax.block_until_ready(maps)
        report.seconds[label] = time.perf_counter() - begin
        done += 1
        if progress:
            _progress(done, total, f"{label}: explain", start)
        values: dict[str, np.ndarray] = {}
        for name in metrics:
            def one(x: jax.Array, t: jax.Array, a: jax.Array, mask: Any, k: jax.Array, name: str = name) -> jax.Array:
                context = Context(model, x, t, a, mask, k, explain, options)
                return _randomized(context) if name == "randomization" else METRICS[name].fn(context)

            out = np.asarray(jax.jit(jax.vmap(one))(xs, ts, maps, masks if masks is not None else ts, keys))
            if name == "randomization":
                report.randomization[label] = dict(zip(options["layers"], out.mean(axis=0).tolist()))
                out = out.mean(axis=1)
            values[name] = out
            done += 1
            if progress:
                _progress(done, total, f"{label}: {name}", start)
        report.per_image[label] = values
    return report


__all__ = ["METRICS", "Context", "Metric", "Report", "evaluate"]
