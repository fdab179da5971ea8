"""Training and test data in chunks of ``batch_size`` examples, whatever form they arrive in.

Three forms of a data set (an *example* is what the loss function reads: ``(x, y)``, a dict, ...):

- an **array pytree**: every leaf an array whose leading axis runs over the ``n`` examples
  (``(xs, ys)``, ``{"image": ..., "label": ...}``);
- a **random-access source** of single examples: ``len(data)`` and ``data[i]`` (a grain
  ``MapDataset`` or ``RandomAccessDataSource``, a list of examples), or the batch job's reader
  (:class:`~xai_core.batch.sources.Source` of :func:`~xai_core.batch.sources.load_data`: a folder of
  images, an ``.npy`` or zarr array), whose examples are ``(read(i), labels[i])``, or ``read(i)``
  where it has no labels;
- any other **iterable of batches**, each an array pytree with a leading batch axis (a grain
  ``IterDataset`` after ``.batch``, a data loader, a generator). It is read once, in order; a list
  of batches is passed as ``iter(batches)``.

:func:`chunks` yields them as chunks of exactly ``batch_size`` examples (the last one padded by
repeating its last example, with the count of real ones), so one compiled program serves every
chunk and memory stays bounded by ``batch_size`` whatever the size of the data set.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import jax
import numpy as np

__all__ = ["chunks", "is_array_pytree", "peek"]


class _Rows:
    """The batch job's :class:`~xai_core.batch.sources.Source` (``len``, ``read(i)``, ``labels``) as
    a source of examples ``(x, label)``, or ``x`` without labels (duck-typed: the batch job sits
    above this floor)."""

    def __init__(self, source: Any) -> None:
        self.source = source

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, i: int) -> Any:
        x = self.source.read(i)
        return x if self.source.labels is None else (x, self.source.labels[i])


def _rows_of(data: Any) -> Any:
    is_reader = hasattr(data, "read") and hasattr(data, "labels") and hasattr(data, "__len__")
    return _Rows(data) if is_reader and not hasattr(data, "__getitem__") else data


def _is_array(a: Any) -> bool:
    return isinstance(a, (np.ndarray, jax.Array, np.generic))


def is_array_pytree(data: Any) -> bool:
    """Every leaf an array with one shared leading axis (the examples)."""
    if isinstance(data, Iterator):
        return False
    leaves = jax.tree.leaves(data)
    if not leaves or not all(_is_array(a) and np.ndim(a) >= 1 for a in leaves):
        return False
    return len({np.shape(a)[0] for a in leaves}) == 1


def _rows(batch: Any, what: str) -> int:
    leaves = jax.tree.leaves(batch)
    sizes = {np.shape(a)[0] if np.ndim(a) else None for a in leaves}
    if not leaves or len(sizes) != 1 or None in sizes:
        shapes = jax.tree.map(np.shape, batch)
        raise ValueError(f"{what}: a batch must be arrays with one shared leading (batch) axis, got shapes "
                         f"{shapes}. Pass a whole data set as an array pytree ((xs, ys)), a source of single "
                         "examples (len(data) and data[i]) or an iterable of batches.")
    return sizes.pop()


def _pad(batch: Any, n: int, size: int) -> Any:
    """``batch`` of ``n`` examples, as ``size`` (the last example repeated)."""
    if n == size:
        return batch
    return jax.tree.map(lambda a: np.concatenate([np.asarray(a), np.repeat(np.asarray(a)[-1:], size - n, 0)]), batch)


def _from_arrays(data: Any, size: int) -> Iterator[tuple[Any, int]]:
    total = np.shape(jax.tree.leaves(data)[0])[0]
    for start in range(0, total, size):
        n = min(size, total - start)
        yield _pad(jax.tree.map(lambda a: a[start:start + n], data), n, size), n


def _from_source(data: Any, size: int) -> Iterator[tuple[Any, int]]:
    total = len(data)
    for start in range(0, total, size):
        examples = [data[i] for i in range(start, min(total, start + size))]
        batch = jax.tree.map(lambda *a: np.stack([np.asarray(x) for x in a]), *examples)
        yield _pad(batch, len(examples), size), len(examples)


def _from_batches(data: Iterable[Any], size: int, what: str) -> Iterator[tuple[Any, int]]:
    pending: list[Any] = []
    held = 0
    for batch in data:
        rows = _rows(batch, what)
        pending.append(jax.tree.map(np.asarray, batch))
        held += rows
        while held >= size:
            joined = jax.tree.map(lambda *a: np.concatenate(a), *pending)
            yield jax.tree.map(lambda a: a[:size], joined), size
            rest = jax.tree.map(lambda a: a[size:], joined)
            held -= size
            pending = [rest] if held else []
    if held:
        joined = jax.tree.map(lambda *a: np.concatenate(a), *pending)
        yield _pad(joined, held, size), held


def chunks(data: Any, size: int, what: str) -> Iterator[tuple[Any, int]]:
    """``(batch, n)``: chunks of exactly ``size`` examples of ``data``, ``n`` of them real.

    >>> import numpy as np
    >>> [(b[1].tolist(), n) for b, n in chunks((np.zeros((5, 2)), np.arange(5)), 2, "demo")]
    [([0, 1], 2), ([2, 3], 2), ([4, 4], 1)]
    >>> [n for _, n in chunks(iter([np.ones((3, 2)), np.ones((4, 2))]), 5, "demo")]
    [5, 2]
    """
    data = _rows_of(data)
    if is_array_pytree(data):
        return _from_arrays(data, size)
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        if len(data) == 0:
            raise ValueError(f"{what}: the data set is empty.")
        return _from_source(data, size)
    if isinstance(data, Iterable):
        return _from_batches(data, size, what)
    raise TypeError(f"{what}: cannot read data of type {type(data).__name__}; pass an array pytree whose leaves "
                    "share a leading axis ((xs, ys)), a source of single examples (len(data), data[i]: a grain "
                    "MapDataset) or an iterable of batches (a generator, a grain IterDataset after .batch).")


def peek(data: Any, what: str) -> tuple[Any, Any]:
    """``(example, data)``: the first example (for tracing) and the data to read from the start (an
    iterator put back together)."""
    data = _rows_of(data)
    if is_array_pytree(data):
        if np.shape(jax.tree.leaves(data)[0])[0] == 0:
            raise ValueError(f"{what}: the data set is empty.")
        return jax.tree.map(lambda a: np.asarray(a[0]), data), data
    if hasattr(data, "__len__") and hasattr(data, "__getitem__"):
        if len(data) == 0:
            raise ValueError(f"{what}: the data set is empty.")
        return jax.tree.map(np.asarray, data[0]), data
    if not isinstance(data, Iterable):
        return None, data  # chunks() names the type
    it = iter(data)
    first = next(it, None)
    if first is None:
        raise ValueError(f"{what}: the data set is empty (the iterable yielded no batch).")
    _rows(first, what)
    return jax.tree.map(lambda a: np.asarray(a)[0], first), itertools.chain([first], it)
