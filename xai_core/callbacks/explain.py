"""The framework-neutral half of :mod:`xai_core.callbacks`: the compiled :class:`Explainer`, the
writers and :func:`log_attributions` for a hand-written loop."""

from __future__ import annotations

import csv
import pathlib
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from xai_core import metrics
from xai_core.inside import cam
from xai_core.registry import attribute, get_method

#: Methods whose maps should sum to ``f(x) - f(x0)``: their gap is logged as a scalar.
_COMPLETE = ("integrated_gradients", "deeplift")


class _Background:
    """One worker thread; ``submit`` keeps order, ``flush`` waits for what was submitted."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="xai-core-writer")
        self._pending: list[Future] = []

    def submit(self, fn: Any, *args: Any) -> None:
        self._pending = [f for f in self._pending if not f.done()] + [self._pool.submit(fn, *args)]

    def flush(self) -> None:
        for f in self._pending:
            f.result()  # re-raises a writer's error here, not silently
        self._pending = []


class TensorBoardWriter:
    """TensorBoard event files in ``log_dir``, written by tensorboardX (no TensorFlow).

    tensorboardX writes on its own thread and its ``flush`` does not wait for that thread's
    queue, so :meth:`flush` closes the file (everything is on disk when it returns) and the
    next write opens a new one in the same directory, which TensorBoard reads as one run."""

    def __init__(self, log_dir: str | pathlib.Path, flush_secs: int = 5) -> None:
        try:
            import tensorboardX
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("TensorBoardWriter needs tensorboardX: pip install tensorboardX "
                              "(or use PNGWriter).") from err
        self.log_dir, self._flush_secs = pathlib.Path(log_dir), flush_secs
        self._make = tensorboardX.SummaryWriter
        self._writer: Any = None
        self._background = _Background()

    def _open(self) -> Any:
        if self._writer is None:
            self._writer = self._make(str(self.log_dir), flush_secs=self._flush_secs)
        return self._writer

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        self._background.submit(lambda: self._open().add_image(tag, image, step, dataformats="HWC"))

    def scalar(self, tag: str, step: int, value: float) -> None:
        self._background.submit(lambda: self._open().add_scalar(tag, value, step))

    def flush(self) -> None:
        self._background.flush()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def close(self) -> None:
        self.flush()


class PNGWriter:
    """``out_dir/<tag>/step_<step>.png`` per image and ``out_dir/scalars.csv`` (tag, step, value)."""

    def __init__(self, out_dir: str | pathlib.Path) -> None:
        self.out_dir = pathlib.Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._background = _Background()

    def image(self, tag: str, step: int, image: np.ndarray) -> None:
        from PIL import Image

        path = self.out_dir / tag / f"step_{step:06d}.png"
        self._background.submit(lambda: (path.parent.mkdir(parents=True, exist_ok=True),
                                         Image.fromarray(image).save(path)))

    def scalar(self, tag: str, step: int, value: float) -> None:
        def write() -> None:
            with open(self.out_dir / "scalars.csv", "a", newline="") as f:
                csv.writer(f).writerow([tag, step, value])

        self._background.submit(write)

    def flush(self) -> None:
        self._background.flush()

    def close(self) -> None:
        self.flush()


#: The CAMs of :mod:`xai_core.inside.cam` a callback can log (``layer=`` names the layer).
CAMS = ("grad_cam", "hires_cam", "grad_cam_plus_plus", "xgrad_cam", "layer_cam", "eigen_cam", "score_cam",
        "ablation_cam")


@dataclass(frozen=True)
class _CamSpec:
    name: str
    needs_key: bool = False


class Explainer:
    """``method`` with ``options``, compiled once: ``explainer(m, xs, targets, key)`` gives the
    maps of a batch, and later weights (``m.with_params``) reuse the same program. ``method``
    is a name of ``xc.methods()`` or a CAM of :data:`CAMS` (then ``layer=`` is required)."""

    def __init__(self, method: str = "gradient", layer: str | None = None, **options: Any) -> None:
        if method in CAMS:
            if layer is None:
                raise ValueError(f"{method}: a CAM needs the layer to look at: layer='name' (one of m.layers).")
            self.spec: Any = _CamSpec(method)
        else:
            self.spec = get_method(method)  # an unknown name fails here, with the valid ones listed
        self.method, self.options, self.layer = method, options, layer

        def explain(m: Any, xs: jax.Array, ts: jax.Array, keys: jax.Array) -> jax.Array:
            if method in CAMS:
                one = lambda x, t, k: getattr(cam, method)(m, layer, **options)(x, t)  # noqa: E731
            else:
                one = lambda x, t, k: attribute(m.score(t), x, method=method, key=k, **options)  # noqa: E731
            return jax.vmap(one)(xs, ts, keys)

        self._fn = jax.jit(explain)

    def __call__(self, m: Any, xs: jax.Array, targets: jax.Array, key: Any = None) -> jax.Array:
        key = jax.random.key(0) if key is None else key
        return self._fn(m, xs, targets, jax.random.split(key, xs.shape[0]))

    def compiled(self) -> int:
        """How many programs have been compiled (1 after any number of same-shaped calls)."""
        return self._fn._cache_size()


def torch_params(m: Any, module: Any) -> dict[str, jax.Array]:
    """The current weights of ``module`` (a torch module ``m`` was made from) as ``m.params``."""
    state = module.state_dict()
    return {k: jnp.asarray(state[k].detach().cpu().numpy(), dtype=v.dtype) for k, v in m.params.items()}


def picture(x: np.ndarray, a: np.ndarray, channels_first: bool) -> np.ndarray:
    """The input (scaled to [0, 1]) beside its signed overlay: ``uint8 (H, 2W, 3)``."""
    from xai_core.viz import overlay

    one_map = a.ndim == x.ndim - 1  # a CAM: one (H, W) map
    if channels_first:
        x = np.moveaxis(x, 0, -1)
        a = a if one_map else np.moveaxis(a, 0, -1)
    x = (x - x.min()) / (x.max() - x.min() + 1e-12)
    image = np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]
    shown = overlay(x, a, channel_axis=None if one_map else -1)
    return np.concatenate([np.round(255 * image).astype(np.uint8), shown], axis=1)


_EXPLAINERS: dict[tuple[str, str], Explainer] = {}


def check_targets(m: Any, x: Any, targets: Any, what: str) -> None:
    """Raise a ValueError naming the valid range if a class index of ``targets`` (one int, or one
    per example) is not a class of ``m`` on examples like ``x`` (one example). Negative indices are
    refused, as ``m.score`` refuses them: a traced out-of-range class would score NaN silently."""
    out = jax.eval_shape(m.logits, jax.ShapeDtypeStruct(np.shape(x), jnp.result_type(x)))
    t = np.asarray(targets)
    if len(out.shape) != 1 or not np.issubdtype(t.dtype, np.integer):
        return
    n = out.shape[0]
    bad = np.flatnonzero((t < 0) | (t >= n))
    if bad.size:
        where = "" if t.ndim == 0 else f" (example {bad[0]})"
        raise ValueError(f"{what}={t.ravel()[bad[0]]}{where} is out of range for a model with {n} classes: "
                         f"use 0..{n - 1}.")


def log_attributions(writer: Any, step: int, m: Any, xs: Any, targets: Any, method: str = "gradient", *,
                     params: Any = None, masks: Any = None, key: Any = None, max_images: int = 16,
                     tag: str = "attribution", explainer: Explainer | None = None, **options: Any) -> np.ndarray:
    """Explain ``xs`` (a batch) for ``targets`` (one int, or one per example) with ``m``'s
    weights at this step and write it: per example ``<tag>/<method>/<i>`` (input beside map),
    the completeness gap (IG, DeepLift) and, given ``masks``, the localization. Returns the
    maps (numpy). ``params`` replaces ``m``'s weights first (a pytree, or the torch module);
    the compiled program is reused across steps (one per ``method`` and ``options``). A class
    index outside ``0..classes-1`` (negative ones included) is a ValueError."""
    if params is not None:
        m = m.with_params(torch_params(m, params) if hasattr(params, "state_dict") else params)
    xs = jnp.asarray(xs)[:max_images]
    ts = jnp.broadcast_to(jnp.asarray(targets, jnp.int32), xs.shape[:1]) if np.ndim(targets) == 0 else \
        jnp.asarray(targets, jnp.int32)[:max_images]
    given = np.asarray(targets)
    check_targets(m, xs[0], given if given.ndim == 0 else given[:max_images], "log_attributions: targets")
    if explainer is None:
        cache = (method, repr(sorted(options.items())))
        explainer = _EXPLAINERS.get(cache) or _EXPLAINERS.setdefault(cache, Explainer(method, **options))
    maps = np.asarray(explainer(m, xs, ts, key))
    host_x = np.asarray(xs)
    first = cam._channels_first(host_x[0], "auto")  # the CAMs' reading of the layout
    name = explainer.spec.name
    for i in range(len(host_x)):
        writer.image(f"{tag}/{name}/{i}", step, picture(host_x[i], maps[i], first))
    if name in _COMPLETE:
        from xai_core.attribution.gradients import completeness_gap

        base = explainer.options.get("baseline")
        gaps = [completeness_gap(m.score(int(t)), x, a, base) for x, t, a in zip(xs, ts, maps)]
        writer.scalar(f"{tag}/{name}/completeness_gap", step, float(np.mean(np.abs(gaps))))
    if masks is not None:
        axis = None if maps.ndim == xs.ndim - 1 else 0 if first else -1
        share = [metrics.localization(a, k, channel_axis=axis) for a, k in zip(maps, np.asarray(masks)[:len(maps)])]
        writer.scalar(f"{tag}/{name}/localization", step, float(np.mean(share)))
    return maps
