"""Pictures of attributions, with pillow and numpy only. On the ground floor: it imports no other
part of xai_core, and every part may import it.

Signed evidence keeps its sign (DESIGN lesson 5): one diverging colour map, blue for
negative, white at zero, red for positive; ``mode="abs"`` shows ``|a|`` on a sequential
map (white at zero to dark red).

- :mod:`xai_core.viz.images`: image maps, ``heatmap``, ``overlay``, ``save_grid`` (PNG).
- :mod:`xai_core.viz.text`: per-token scores, ``text_html``, ``text_image``, ``save_text``
  (HTML or PNG).
- :mod:`xai_core.viz.matrix`: a labelled matrix of scores (output x prompt tokens),
  ``matrix_html``, ``matrix_image``.
- :mod:`xai_core.viz.layers`: a layer's channels (``activation_grid``, ``save_activations``)
  and feature visualizations (``save_features``).

Example:
    >>> import numpy as np
    >>> from xai_core.viz import heatmap, save_text  # images: see xai_core.viz.images
    >>> heatmap(np.array([[1.0, -1.0]]), channel_axis=None)[0].tolist()  # red +, blue -
    [[103, 0, 31], [5, 48, 97]]
    >>> path = save_text(["un", "##fair", "film"], [-0.5, -0.2, 0.1], "/tmp/xai_text.html")
"""

from xai_core.viz.images import heatmap, overlay, save_grid
from xai_core.viz.layers import activation_grid, save_activations, save_features
from xai_core.viz.matrix import matrix_html, matrix_image
from xai_core.viz.text import save_text, text_html, text_image

__all__ = ["activation_grid", "heatmap", "matrix_html", "matrix_image", "overlay", "save_activations",
           "save_features", "save_grid", "save_text", "text_html", "text_image"]
