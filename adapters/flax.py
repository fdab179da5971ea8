"""Flax adapter: a ``flax.linen`` or ``flax.nnx`` module -> :class:`Model`.

Example:
    >>> import jax, jax.numpy as jnp, flax.linen as nn
    >>> from xai_core.adapters import from_flax
    >>> net = nn.Sequential([nn.Dense(3), jax.nn.softmax])
    >>> variables = net.init(jax.random.key(0), jnp.ones((1, 4)))
    >>> m = from_flax(net, variables)
    >>> m.logits(jnp.ones(4)).shape, m.cut
    ((3,), 'softmax')
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import jax

from ._base import Model, OutputMode, mark_batch_of_one
from ._text import TextModel, check_replacement

__all__ = ["from_flax"]


def _import_flax() -> tuple[Any, Any]:
    try:
        from flax import linen, nnx
    except ImportError as e:  # pragma: no cover - flax is installed in the dev env
        raise ImportError("from_flax needs Flax, which is not installed: pip install flax") from e
    return linen, nnx


def _first(out: Any, who: str) -> Any:
    """Drop the batch axis of size 1 that the adapter added."""
    import jax

    if not isinstance(out, jax.Array):
        raise TypeError(f"from_flax: {who} returned {type(out).__name__}, not one array of "
                        "class scores. Pass apply_kwargs={'method': ...} or wrap the module so "
                        "that it returns the logits array.")
    if out.ndim == 0 or out.shape[0] != 1:
        raise ValueError(f"from_flax: {who} returned shape {tuple(out.shape)} for a batch of one; "
                         "expected a leading batch axis of size 1.")
    return out[0]


@contextmanager
def _marked_linen(linen: Any) -> Iterator[None]:
    """Label the output of every submodule call with its path (``"block/Dense_0"``)."""
    def interceptor(next_fun: Callable[..., Any], args: Any, kwargs: Any, context: Any) -> Any:
        out = next_fun(*args, **kwargs)
        path = context.module.path
        if context.method_name != "__call__" or not path:
            return out
        return mark_batch_of_one(out, "/".join(map(str, path)))

    with linen.intercept_methods(interceptor):
        yield


def _mark_nnx(nnx: Any, model: Any) -> None:
    """Make every callable submodule of a freshly merged nnx model label its output
    with its path (``"layers/0"``), by giving each its own subclass."""
    for path, sub in nnx.iter_graph(model):
        call = getattr(type(sub), "__call__", None)
        if path and isinstance(sub, nnx.Module) and call is not None:
            sub.__class__ = type(type(sub).__name__, (type(sub),),
                                 {"__call__": _marking(call, "/".join(map(str, path))),
                                  "__module__": type(sub).__module__})


_REPLACED: dict[str, Any] = {}  # while tracing a text model: the embedding layer's given output


@contextmanager
def _replacing(name: str, value: Any) -> Iterator[None]:
    _REPLACED[name] = value
    try:
        yield
    finally:
        _REPLACED.pop(name, None)


def _marking(call: Callable[..., Any], name: str) -> Callable[..., Any]:
    def marked_call(self: Any, *args: Any, **kwargs: Any) -> Any:
        out = call(self, *args, **kwargs)
        if name in _REPLACED:
            check_replacement(name, 1, out.shape, _REPLACED[name].shape)
            out = _REPLACED[name][None].astype(out.dtype)
        return mark_batch_of_one(out, name)
    return marked_call


def from_flax(module: Any, variables: Mapping[str, Any] | None = None, *,
              output: OutputMode = "logits",
              apply_kwargs: Mapping[str, Any] | None = None,
              input_shape: Sequence[int | None] | None = None, embedding: str | None = None,
              example: Any = None, pad_id: int = 0, context: int | None = None) -> Model:
    """Wrap a Flax model as a :class:`Model` of one example that returns logits.

    The model sees ONE example ``x`` (no batch axis) as a batch of one:
    ``module(x[None])[0]``; batch many examples with ``jax.vmap``. For a module of
    several inputs pass one example as a tuple (``module(a[None], b[None])``) or a dict
    (keyword inputs).

    - **linen**: ``variables`` (from ``module.init``) is required and becomes
      ``m.params``; the call is ``module.apply(variables, x[None], **apply_kwargs)[0]``.
      Linen has no global eval switch: pass what your module needs for inference,
      e.g. ``apply_kwargs={"train": False}`` (BatchNorm running averages, no dropout).
    - **nnx**: the state comes from the module (``nnx.split``) and becomes
      ``m.params`` (an ``nnx.State``); do not pass ``variables``. A copy of the module
      is put in eval mode (``.eval()``: BatchNorm uses its running averages, Dropout
      is off); your module is not changed. The call is
      ``nnx.merge(graphdef, state)(x[None], **apply_kwargs)[0]``.

    Layers (``m.layers``, ``m.split``) are the submodules' outputs, named by their
    path: ``"block/Dense_0"`` (linen) or ``"layers/0"`` (nnx); plain functions inside
    a module (``nn.relu``) are not layers.

    Args:
        module: a ``flax.linen.Module`` or a ``flax.nnx.Module``.
        variables: linen only: the variables dict (``{"params": ..., "batch_stats": ...}``).
        output: ``"logits"`` (default), ``"probs"`` or ``"log_probs"``; see :class:`Model`.
        apply_kwargs: extra keyword arguments for the call (e.g. ``train=False``,
            ``method=...`` for linen).
        input_shape: the shape of one example, if you want it checked up front.
        embedding: nnx only: a model of token ids becomes a :class:`TextModel` explained on
            this submodule's output (its path, e.g. ``"embed"``); give one example's ids as
            ``example``, and ``pad_id`` / ``context`` (the longest sequence) where known.

    Example:
        >>> import jax, jax.numpy as jnp
        >>> from flax import nnx
        >>> net = nnx.Sequential(nnx.Linear(4, 3, rngs=nnx.Rngs(0)), jax.nn.log_softmax)
        >>> m = from_flax(net)
        >>> m.score(2)(jnp.ones(4)).shape, m.cut
        ((), 'log_softmax')
    """
    linen, nnx = _import_flax()
    kwargs = dict(apply_kwargs or {})
    name = type(module).__name__

    if isinstance(module, linen.Module):
        if embedding is not None:
            raise TypeError("from_flax: embedding= (a text model) is supported for flax.nnx modules; wrap a linen "
                            "model with xai_core.adapters.TextModel.")
        if variables is None:
            raise TypeError(f"from_flax: {name} is a flax.linen module, which holds no weights; "
                            "pass its variables: from_flax(module, module.init(key, x_batch)).")
        if not isinstance(variables, Mapping):
            raise TypeError(f"from_flax: variables must be the dict from module.init(...), "
                            f"got {type(variables).__name__}.")

        def apply(variables: Any, x: Any) -> Any:
            with _marked_linen(linen):
                return _first(_call_batch_of_one(partial(module.apply, variables), x, kwargs), f"{name}.apply")

        return Model(apply, variables, output=output, input_shape=input_shape, name=name)

    if isinstance(module, nnx.Module):
        if variables is not None:
            raise TypeError(f"from_flax: {name} is a flax.nnx module and carries its own state; "
                            "do not pass variables (use model.with_params(state) for other weights).")
        graphdef, state = nnx.split(module)
        copy = nnx.merge(graphdef, state)  # leave the caller's module in its mode
        if callable(getattr(copy, "eval", None)):
            copy.eval()
        graphdef, state = nnx.split(copy)

        def apply_nnx(state: Any, x: Any) -> Any:
            model = nnx.merge(graphdef, state)
            _mark_nnx(nnx, model)
            return _first(_call_batch_of_one(model, x, kwargs), name)

        if embedding is None:
            return Model(apply_nnx, state, output=output, input_shape=input_shape, name=name)
        if example is None:
            raise TypeError(f"from_flax: embedding={embedding!r} needs example= (one example's token ids).")

        def apply_text(state: Any, x: Any) -> Any:
            with _replacing(embedding, x["embeddings"]):
                return apply_nnx(state, x["inputs"])

        return TextModel(apply_text, apply_nnx, state, embedding=embedding, example=example, pad_id=pad_id,
                         context=context, output=output, name=name)

    raise TypeError(f"from_flax: expected a flax.linen.Module or flax.nnx.Module, got {name}. "
                    "For a plain function use xai_core.adapters.Model(apply, params).")


def _call_batch_of_one(fn: Any, x: Any, kwargs: Mapping[str, Any]) -> Any:
    """``fn`` on one example as a batch of one: a tuple is positional inputs, a dict keyword ones."""
    batch = jax.tree.map(lambda a: a[None], x)
    if isinstance(x, tuple):
        return fn(*batch, **kwargs)
    if isinstance(x, dict):
        return fn(**batch, **kwargs)
    return fn(batch, **kwargs)
