"""A model and data to try ``xai-core attribute`` with (the README's "Run a batch job"): the demo's
ShapesCNN with random weights (a real job loads yours) and shapes images with labels.

    xai-core attribute --model xai_core.batch.examples:shapes_model \\
        --data xai_core.batch.examples:shapes_data --targets label --out runs/ig --method ig
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

SIZE = 32


def shapes_model() -> Any:
    """The demo's :class:`~xai_core.demo.ShapesCNN` on ``(32, 32, 3)`` images, random weights (seed 0)."""
    from xai_core.adapters import from_flax
    from xai_core.demo import ShapesCNN

    net = ShapesCNN()
    return from_flax(net, net.init(jax.random.key(0), jnp.zeros((1, SIZE, SIZE, 3))), input_shape=(SIZE, SIZE, 3))


def shapes_data(n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``n`` shapes images ``(n, 32, 32, 3)`` in [0, 1] and their labels (seed 1)."""
    from xai_core.data import make_shapes

    data = make_shapes(jax.random.key(1), n, SIZE)
    return np.asarray(data.images), np.asarray(data.labels)


def save_shapes(folder: str | Path, n: int = 64) -> Path:
    """Write :func:`shapes_data`'s images as PNG files ``folder/shape_000.png`` ... (a folder to
    read with ``--data folder``) and their labels as ``folder/labels.txt``."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    images, labels = shapes_data(n)
    for i, image in enumerate(images):
        Image.fromarray((image * 255).round().astype(np.uint8)).save(folder / f"shape_{i:03d}.png")
    np.savetxt(folder / "labels.txt", labels, fmt="%d")
    return folder
