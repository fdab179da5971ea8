"""What :func:`xai_core.adapters.from_torch` is given: example batches (one tensor, a tuple, a
dict such as a tokenizer's output), their dtypes (bfloat16 too; float64 without JAX's x64 mode
warns), and for a model of token ids the embedding module whose output is attributed."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import jax
import numpy as np

from ._text import check_replacement

def _example(torch: Any, example_input: Any, name: str) -> tuple[Any, Any]:
    """The example batch as tensors (one, a tuple, or a dict: a tokenizer's BatchEncoding
    too), and one example's ``ShapeDtypeStruct``s in the same structure."""
    if isinstance(example_input, Mapping):
        example: Any = {str(k): v for k, v in example_input.items()}
    elif isinstance(example_input, (tuple, list)):
        example = tuple(example_input)
    else:
        example = example_input
    def tensor(v: Any) -> Any:
        if isinstance(v, torch.Tensor):
            return v
        try:
            return torch.as_tensor(np.asarray(v))
        except Exception as e:
            raise TypeError(f"from_torch: example_input must be a tensor (a batch as you feed "
                            f"{name}), a tuple or a dict of them; got {type(v).__name__}.") from e
    example = jax.tree.map(tensor, example, is_leaf=lambda v: not isinstance(v, (tuple, dict)))
    sizes = {t.shape[0] if t.ndim else 0 for t in jax.tree.leaves(example)}
    if not jax.tree.leaves(example) or 0 in sizes or len(sizes) != 1:
        raise ValueError(f"from_torch: example_input must be a batch with one leading batch axis "
                         f"of the same size on every input, e.g. shape (1, 3, 224, 224); got shape "
                         f"{jax.tree.map(lambda t: tuple(t.shape), example)}.")
    spec = jax.tree.map(lambda t: jax.ShapeDtypeStruct(tuple(t.shape[1:]), _jax_dtype(t.dtype)), example)
    return example, spec


def _warn_float64(torch: Any, module: Any, example: Any, name: str) -> None:
    if jax.config.jax_enable_x64:
        return
    wide = [t for t in (*jax.tree.leaves(example), *module.state_dict().values())
            if isinstance(t, torch.Tensor) and t.dtype == torch.float64]
    if wide:
        warnings.warn(f"from_torch: {name} has float64 weights or inputs, but JAX computes in "
                      "float32 unless 64-bit mode is on, so the model runs in float32. For float64, "
                      "run jax.config.update('jax_enable_x64', True) before from_torch.",
                      UserWarning, stacklevel=3)


def _embedding_module(torch: Any, module: Any, embedding: str | None, name: str,
                      dtype: Any) -> tuple[str, Any]:
    """The module whose output is attributed for a model of token ids: ``(name, module)``."""
    names = {id(m): n for n, m in module.named_modules()}
    if embedding is not None:
        try:
            return embedding, module.get_submodule(embedding)
        except AttributeError:
            raise ValueError(f"from_torch: {name} has no module {embedding!r}; modules: "
                             f"{', '.join(n for n in names.values() if n)}.") from None
    found = getattr(module, "get_input_embeddings", None)
    found = found() if callable(found) else None
    if found is not None and id(found) in names:
        return names[id(found)], found
    embeddings = [(n, m) for n, m in module.named_modules() if isinstance(m, torch.nn.Embedding)]
    if len(embeddings) == 1:
        return embeddings[0]
    if not embeddings:
        raise TypeError(f"from_torch: example_input has dtype {dtype}, which has no gradient, and {name} "
                        "has no nn.Embedding to attribute instead. Give floating-point inputs; for a "
                        "text model with another embedding module, name it with embedding='...'.")
    raise ValueError(f"from_torch: {name} takes integer inputs (token ids), which have no gradient, "
                     "so attributions are computed on the output of its embedding module; it has "
                     f"several, so name one with embedding='...': {', '.join(n for n, _ in embeddings)}.")


def _pad_id(module: Any) -> int:
    pad = getattr(getattr(module, "config", None), "pad_token_id", None)
    return 0 if pad is None else int(pad)


def _context(module: Any) -> int | None:
    """A HuggingFace model's position table size (``max_position_embeddings``, GPT-2's
    ``n_positions``), or ``None``."""
    config = getattr(module, "config", None)
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        value = getattr(config, key, None)
        if isinstance(value, int):
            return value
    return None


class _Replacement:
    """While tracing, the embedding module's output is replaced by given embeddings."""

    def __init__(self, found: tuple[str, Any], torchax: Any) -> None:
        self.name, self.module = found
        self.torchax = torchax

    @contextmanager
    def using(self, embeddings: Any) -> Iterator[None]:
        calls = []
        Tensor, env = self.torchax.tensor.Tensor, self.torchax.default_env()

        def hook(mod: Any, args: Any, out: Any) -> Any:
            calls.append(out)
            check_replacement(self.name, len(calls), out.shape, embeddings.shape)
            return Tensor(embeddings[None].astype(out.jax().dtype), env)

        handle = self.module.register_forward_hook(hook)
        try:
            yield
        finally:
            handle.remove()


def _jax_dtype(dtype: Any) -> np.dtype:
    """A torch dtype as a JAX dtype (bfloat16 too, which numpy lacks)."""
    return jax.numpy.dtype(str(dtype).removeprefix("torch."))
