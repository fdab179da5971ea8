"""Checkpoints: parameter pytrees saved while a model trained, each with its learning rate.

TracIn (Pruthi et al., NeurIPS 2020) sums over checkpoints ``t`` the learning rate ``eta_t`` times a
gradient dot product at the checkpoint's parameters. Captum loads each checkpoint into the torch
model with ``checkpoints_load_func(model, path)``, which returns the learning rate (its default loader
reads a ``"learning_rate"`` entry of the saved dict, else 1.0). Here a checkpoint is the parameter
pytree itself (``m.params`` of any adapter, a Flax ``TrainState``, a converted torch ``state_dict``:
:func:`from_state_dict`), with the learning rates given beside them or as :class:`Checkpoint` pairs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Checkpoint", "from_state_dict", "stack_checkpoints"]


class Checkpoint(NamedTuple):
    """One checkpoint: the parameters (a pytree) and the learning rate used after it."""

    params: Any
    learning_rate: float = 1.0


def from_state_dict(state_dict: Mapping[str, Any], like: Any = None) -> Checkpoint:
    """A torch ``state_dict`` (as ``torch.load`` returns it) as a :class:`Checkpoint` of JAX arrays.

    Its ``"learning_rate"`` entry, if any, is the learning rate (1.0 otherwise), as Captum's default
    loader reads it. With ``like`` (``m.params`` of :func:`~xai_core.adapters.from_torch`'s model),
    the parameters are that dict's keys, in its order and dtypes (buffers the model does not take,
    such as BatchNorm's ``num_batches_tracked``, are left out; a missing key is an error).
    Torch is not imported: tensors are read with ``.detach().cpu().numpy()``.

    >>> import numpy as np
    >>> ck = from_state_dict({"fc.weight": np.ones((2, 3)), "learning_rate": 0.1})
    >>> sorted(ck.params), ck.learning_rate
    (['fc.weight'], 0.1)
    """
    def array(v: Any) -> np.ndarray:
        v = v.detach().cpu().numpy() if hasattr(v, "detach") else v
        return np.asarray(v)

    lr = float(array(state_dict["learning_rate"])) if "learning_rate" in state_dict else 1.0
    entries = {k: v for k, v in state_dict.items() if k != "learning_rate"}
    if like is None:
        return Checkpoint({k: jnp.asarray(array(v)) for k, v in entries.items()}, lr)
    if not isinstance(like, Mapping):
        raise TypeError(f"from_state_dict: like must be a dict of parameter names (m.params of from_torch), got "
                        f"{type(like).__name__}.")
    missing = [k for k in like if k not in entries]
    if missing:
        raise ValueError(f"from_state_dict: the state_dict lacks {missing}; it holds {sorted(entries)}. Save the "
                         "model's state_dict() itself (plus 'learning_rate').")
    return Checkpoint({k: jnp.asarray(array(entries[k]), dtype=jnp.result_type(like[k])) for k in like}, lr)


def _params(c: Any) -> Any:
    """A checkpoint's parameters: itself, or the ``.params`` of a Checkpoint, a Model, a TrainState."""
    return c.params if isinstance(c, Checkpoint) or hasattr(c, "params") else c


def _describe(tree: Any) -> list[tuple[str, tuple[int, ...], str]]:
    return [(jax.tree_util.keystr(p), tuple(np.shape(a)), str(jnp.result_type(a)))
            for p, a in jax.tree_util.tree_flatten_with_path(tree)[0]]


def stack_checkpoints(checkpoints: Sequence[Any], learning_rates: Any, method: str) -> tuple[Any, jax.Array, Any]:
    """``(stacked, lrs, first)``: the checkpoints' parameters stacked on a leading axis (one
    structure, shapes and dtypes, or an error naming the first difference), their learning rates as
    one array, and the first checkpoint's parameters."""
    if isinstance(checkpoints, (str, bytes)) or not isinstance(checkpoints, Sequence) or not checkpoints:
        raise ValueError(f"{method}: checkpoints must be a non-empty list of parameter pytrees (m.params, a Flax "
                         f"state's params, from_state_dict(...)), got {type(checkpoints).__name__}.")
    params = [_params(c) for c in checkpoints]
    first_struct, first = jax.tree.structure(params[0]), _describe(params[0])
    if not first:
        raise ValueError(f"{method}: checkpoint 0 has no arrays; a checkpoint is the model's parameters.")
    for i, p in enumerate(params[1:], 1):
        if jax.tree.structure(p) != first_struct:
            raise ValueError(f"{method}: checkpoint {i} has another structure than checkpoint 0:\n  "
                             f"{jax.tree.structure(p)}\nvs\n  {first_struct}\nEvery checkpoint must be the same "
                             "model's parameters (the same pytree, shapes and dtypes).")
        for (path, shape, dtype), (_, s0, d0) in zip(_describe(p), first):
            if (shape, dtype) != (s0, d0):
                raise ValueError(f"{method}: checkpoint {i} has {path} of shape {shape} and dtype {dtype}, "
                                 f"checkpoint 0 of shape {s0} and dtype {d0}; every checkpoint must be the same "
                                 "model's parameters.")
    from_pairs = [c.learning_rate for c in checkpoints if isinstance(c, Checkpoint)]
    if from_pairs and learning_rates is not None:
        raise ValueError(f"{method}: the checkpoints carry learning rates (Checkpoint pairs); do not also pass "
                         "learning_rates=.")
    if from_pairs and len(from_pairs) != len(checkpoints):
        raise ValueError(f"{method}: either every checkpoint is a Checkpoint(params, learning_rate) or none is.")
    lrs = from_pairs or (1.0 if learning_rates is None else learning_rates)
    lrs = np.broadcast_to(np.asarray(lrs, np.float64), (len(params),)) if np.ndim(lrs) == 0 else np.asarray(lrs)
    if lrs.shape != (len(params),) or not np.issubdtype(lrs.dtype, np.number) or not np.isfinite(lrs).all():
        raise ValueError(f"{method}: learning_rates must be one finite number or one per checkpoint "
                         f"({len(params)}), got {learning_rates!r}.")
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *params)
    dtype = jnp.result_type(*[jnp.result_type(a) for a in jax.tree.leaves(params[0])], jnp.float32)
    dtype = dtype if jnp.issubdtype(dtype, jnp.floating) else jnp.float32
    return stacked, jnp.asarray(lrs, dtype), params[0]
