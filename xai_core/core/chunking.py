"""Bounded-memory evaluation: steps, samples and patches are evaluated ``batch_size`` at a time.

IG with 512 steps, SmoothGrad with 50 samples and occlusion with hundreds of patches all
multiply the batch the model sees. ``chunked_sum`` vmaps a term over one chunk of indices and
``lax.scan``s over chunks, so peak memory is that of ``batch_size`` evaluations, and the whole
reduction is still one compiled program.

The chunk body is the already-differentiated program, run through
:func:`xai_core.graph.fast_kernels`: every convolution in it, the backward ones included,
is computed channels-last, and max-pooling gradients as dense elementwise work.
Backward convolutions come out of JAX's transpose rule with the kernel's in/out features
swapped (``01oi``). In a straight-line program XLA:CPU folds that swap into the
constant weights, but inside the ``lax.scan`` the weights are loop operands, and the
swapped convolutions missed XLA:CPU's fast path: the ResNet-18 IG-64 loop ran 2.2x
slower than unchunked (6.4 s against 2.9 s on one core at 112x112). Rewritten, the
kernels are transposed explicitly and it runs in 3.2 s (``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any, Literal

import jax
import jax.numpy as jnp

from xai_core.graph import fast_kernels

DEFAULT_BATCH_SIZE: Literal["auto"] = "auto"
"""Default number of steps / samples / patches evaluated at once: ``"auto"`` chooses it from
the input's size and the device (:func:`resolve_batch_size`); an int fixes it; ``None``
means all at once."""

ACCELERATOR_BATCH_SIZE = 32
"""``"auto"`` on a GPU or TPU."""

CPU_ELEMENTS_PER_CORE = 16384
"""``"auto"`` on a CPU: a chunk holds about this many input elements per core, and at least
2 evaluations. On 2 cores, through ``from_torch``, small chunks were fastest: IG-32 on four
64x64 images of a small residual CNN took 0.44 s at 2, 0.55 s at 8 and 0.61 s at 32; a
ResNet-18's IG-64 on two 224x224 images 3.5-4.2 s at 1-2 and 5.9 s at 32; larger chunks
only pay for tiny inputs (``benchmarks/README.md``). Large inputs: see :data:`LARGE_INPUT`."""

LARGE_INPUT = 65536
"""Inputs of at least this many elements (a 224x224 RGB image has 150528) get chunks of at
least 4 on a CPU. Since the whole-program layout pass, on 2 cores, a torch ResNet-18's
IG-32 on two 224x224 images took 3.35 s at chunk 1, 3.26 s at 2, 2.90 s at 4 and 2.78 s
at 8, its SmoothGrad-16 2.02 s at 2 and 1.50 s at 4 or 8; the small residual CNN at 64x64
still wants 2 (SmoothGrad-50: 0.77 s at 2, 0.90 s at 4). Not 8: ``jax.vmap`` over images
multiplies the chunk, and with it the activations a backward pass keeps."""


FORWARD_ELEMENTS_PER_CORE = 16 * CPU_ELEMENTS_PER_CORE
"""``"auto"`` for occlusion on a CPU (with at least 8 windows a chunk): forwards keep no
activations for a backward pass, and incremental occlusion's boxes are small. On 2 cores,
incremental occlusion 16/8 of two 112x112 images through a torch ResNet-18 took 2.27 s at
chunk 2, 1.50 s at 4, 1.34 s at 8, 1.30 s at 16 and 1.21 s at 64; on the small residual CNN
(four 64x64 images, 8/4) 0.17-0.20 s from 2 to 32 and 0.27 s at 64."""


CPU_FORWARD_CHUNK = 16
"""The most whole forwards ``"auto"`` evaluates at once on a CPU where a method passes it as
``most`` (the model-agnostic methods' coalitions, RISE's masks; incremental occlusion boxes
take the larger chunks above). On 2 cores, Kernel SHAP's 256 coalitions through ``from_torch``
took 3.7-3.8 ms each at chunks of 4-16 and 4.8 ms at 42 on the small residual CNN (64x64), and
on a ResNet-18 at 112x112 6.8 ms at 13, 7.8 ms at 8 and 13.6 ms at 4."""


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def resolve_batch_size(batch_size: int | str | None, leaves: Sequence[Any],
                       per_core: int = CPU_ELEMENTS_PER_CORE, least: int = 2, most: int | None = None) -> int | None:
    """``batch_size`` as an int (or ``None``): ``"auto"`` becomes
    :data:`ACCELERATOR_BATCH_SIZE` on a GPU / TPU and, on a CPU,
    ``max(least, per_core * cores // elements)`` for inputs of ``elements`` values in all
    (``leaves``: the attributed arrays of one example; ``per_core`` is
    :data:`CPU_ELEMENTS_PER_CORE` and ``least`` 2 unless a method knows better, as occlusion's
    forward-only chunks do: :data:`FORWARD_ELEMENTS_PER_CORE`), at least 4 for inputs of
    :data:`LARGE_INPUT` elements or more, and at most ``most`` (e.g. :data:`CPU_FORWARD_CHUNK`).

    >>> import jax.numpy as jnp
    >>> resolve_batch_size(8, [jnp.ones(3)]), resolve_batch_size(None, [jnp.ones(3)])
    (8, None)
    """
    if batch_size != "auto":
        return batch_size
    if jax.default_backend() != "cpu":
        return ACCELERATOR_BATCH_SIZE
    elements = sum(math.prod(jnp.shape(a)) for a in leaves)
    if elements >= LARGE_INPUT:
        least = max(least, 4)
    chunk = max(least, per_core * _cores() // max(elements, 1))
    return chunk if most is None else min(chunk, most)


def accumulation_dtype(dtype: Any) -> jnp.dtype:
    """Sums of low-precision terms are accumulated in at least float32."""
    return jnp.promote_types(dtype, jnp.float32)


def chunked_sum(term: Callable[[jax.Array], Any], n: int, batch_size: int | None) -> Any:
    """Return ``sum(term(i) for i in range(n))`` for a pytree-valued ``term``.

    The ``n`` terms are split into ``ceil(n / batch_size)`` equal chunks (the last one padded
    and masked), each evaluated with ``jax.vmap`` and summed inside a ``lax.scan``; leaves are
    accumulated in at least float32. ``batch_size=None`` (or ``>= n``) evaluates all ``n`` at once.

    >>> import jax.numpy as jnp
    >>> float(chunked_sum(lambda i: jnp.float32(i), 10, batch_size=3))
    45.0
    """
    shapes = jax.eval_shape(term, jnp.zeros((), jnp.int32))

    def cast(tree: Any) -> Any:
        return jax.tree.map(lambda a: a.astype(accumulation_dtype(a.dtype)), tree)

    batch = fast_kernels(jax.vmap(term))
    if batch_size is None or batch_size >= n:
        return jax.tree.map(lambda a: a.sum(0), cast(batch(jnp.arange(n))))
    n_chunks = math.ceil(n / batch_size)
    size = math.ceil(n / n_chunks)  # equal chunks, at most batch_size each, least padding
    index = jnp.arange(n_chunks * size).reshape(n_chunks, size)

    def body(total: Any, chunk: jax.Array) -> tuple[Any, None]:
        valid = chunk < n
        values = cast(batch(jnp.minimum(chunk, n - 1)))
        masked = jax.tree.map(
            lambda v: jnp.where(valid.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0).sum(0), values
        )
        return jax.tree.map(jnp.add, total, masked), None

    init = jax.tree.map(lambda s: jnp.zeros(s.shape, accumulation_dtype(s.dtype)), shapes)
    total, _ = jax.lax.scan(body, init, index)
    return total


def chunked_map(term: Callable[[jax.Array], Any], n: int, batch_size: int | None) -> Any:
    """Return ``term(i)`` stacked over ``i in range(n)`` (a pytree of arrays with a leading ``n``).

    Chunked as :func:`chunked_sum` (``vmap`` within a chunk of at most ``batch_size``, ``lax.map``
    across chunks), for methods that need every evaluation rather than their sum: the scores of
    sampled coalitions before a regression, a permutation's walk.

    >>> import jax.numpy as jnp
    >>> chunked_map(lambda i: 2 * i, 5, batch_size=2).tolist()
    [0, 2, 4, 6, 8]
    """
    batch = fast_kernels(jax.vmap(term))
    if batch_size is None or batch_size >= n:
        return batch(jnp.arange(n))
    n_chunks = math.ceil(n / batch_size)
    size = math.ceil(n / n_chunks)
    index = jnp.minimum(jnp.arange(n_chunks * size), n - 1).reshape(n_chunks, size)
    out = jax.lax.map(batch, index)
    return jax.tree.map(lambda a: a.reshape((n_chunks * size,) + a.shape[2:])[:n], out)
