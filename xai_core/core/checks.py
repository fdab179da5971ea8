"""Input validation shared by every method.

Every check raises at trace time with the offending shape or dtype in the message and says
what to do. Checks that need values (NaN / Inf) run only on concrete arrays: inside
``jax.jit`` the input is abstract and the check is skipped.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

ScoreFn = Callable[[jax.Array], jax.Array]


def is_concrete(x: Any) -> bool:
    """True when ``x`` holds values (not a tracer inside jit / vmap / grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_finite(x: jax.Array, what: str, method: str) -> None:
    """Raise if a concrete array holds NaN or Inf; tracers pass unchecked."""
    if not is_concrete(x):
        return
    values = np.asarray(x, dtype=np.float64)
    n_nan, n_inf = int(np.isnan(values).sum()), int(np.isinf(values).sum())
    if n_nan or n_inf:
        raise ValueError(
            f"{method}: {what} of shape {tuple(x.shape)} contains {n_nan} NaN and {n_inf} Inf "
            "values; attributions of non-finite inputs are meaningless. Clean the input first "
            "(e.g. jnp.nan_to_num) or find where the NaN comes from."
        )


def check_input(x: Any, method: str, where: str = "") -> jax.Array:
    """Return ``x`` as a JAX array after checking it is floating point and finite
    (``where`` names the input among several, for messages)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(
            f"{method}: x{where} must be a floating-point array, got dtype {x.dtype} with shape "
            f"{tuple(x.shape)}. Integer inputs have no gradient: cast first, e.g. "
            "x.astype(jnp.float32); inputs that are not to be attributed (token ids, masks) "
            "go in as xc.fixed(value); for token ids attribute the embeddings (xai_core.adapters.from_torch "
            "and from_keras, given token ids, return a text model)."
        )
    check_finite(x, f"x{where}", method)
    return x


def check_baseline(baseline: Any, x: jax.Array, method: str) -> jax.Array:
    """Broadcast ``baseline`` (None means zeros, a scalar, or an array) to ``x``'s shape and dtype."""
    if baseline is None:
        return jnp.zeros_like(x)
    b = jnp.asarray(baseline)
    try:
        shape = jnp.broadcast_shapes(b.shape, x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(
            f"{method}: baseline of shape {tuple(b.shape)} does not match x of shape "
            f"{tuple(x.shape)}. Give a scalar, an array of x's shape, or one that broadcasts to it."
        )
    check_finite(b, "baseline", method)
    return jnp.broadcast_to(b, x.shape).astype(x.dtype)


def checked_score(score_fn: ScoreFn, method: str) -> ScoreFn:
    """Wrap ``score_fn`` so a non-scalar or non-float score fails at trace time, clearly."""
    if not callable(score_fn):
        raise TypeError(f"{method}: score_fn must be callable (x -> scalar), got {type(score_fn).__name__}.")

    def score(x: Any) -> jax.Array:
        y = jnp.asarray(score_fn(x))
        if y.shape != ():
            shapes = jax.tree.map(lambda a: tuple(jnp.shape(a)), x)
            raise ValueError(
                f"{method}: score_fn must return a scalar for ONE example, but it returned shape "
                f"{tuple(y.shape)} for x of shape {shapes}. Select one class, e.g. "
                "m.score(t) with an adapter or `lambda x: logits_fn(x)[t]`; to explain a batch, "
                "jax.vmap the attribution over examples."
            )
        if not jnp.issubdtype(y.dtype, jnp.floating):
            raise TypeError(f"{method}: score_fn must return a floating-point scalar, got dtype {y.dtype}.")
        return y

    return score


def check_choice(value: str, choices: Sequence[str], what: str, method: str) -> str:
    """Raise a ValueError listing the valid choices and the closest match."""
    if value in choices:
        return value
    close = difflib.get_close_matches(str(value), choices, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"{method}: unknown {what} {value!r}; choose one of {', '.join(map(repr, choices))}.{hint}")


def check_positive_int(value: Any, what: str, method: str, minimum: int = 1) -> int:
    """Return ``value`` as an int after checking it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{method}: {what} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_batch_size(batch_size: int | str | None, method: str) -> int | str | None:
    """``"auto"`` (chosen per input and device), ``None`` (everything in one batch) or a
    positive integer."""
    if batch_size is None or batch_size == "auto":
        return batch_size
    if isinstance(batch_size, str):
        raise ValueError(f"{method}: batch_size must be 'auto', None or an integer >= 1, got {batch_size!r}.")
    return check_positive_int(batch_size, "batch_size", method)


class UsageError(ValueError):
    """A command-line value that cannot be used: the message starts with the flag and says what
    to do; ``xai-core`` prints it as one line and exits with status 2."""


def int_at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: an integer in ``minimum..maximum`` (argparse names the flag)."""
    import argparse

    bounds = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected an integer {bounds}, got {text!r}")
        return value

    return parse
