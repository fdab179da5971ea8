"""Pictures of attributions, with pillow and numpy only.

Signed evidence keeps its sign (DESIGN lesson 5): one diverging colour map, blue for
negative, white at zero, red for positive; ``mode="abs"`` shows ``|a|`` on a sequential
map (white at zero to dark red).

- :mod:`xai_core.viz.images`: image maps, ``heatmap``, ``overlay``, ``save_grid`` (PNG).
- :mod:`xai_core.viz.text`: per-token scores, ``text_html``, ``text_image``, ``save_text``
  (HTML or PNG).

Example:
    >>> import numpy as np
    >>> from xai_core.viz import heatmap, overlay, save_grid, save_text
    >>> a = np.zeros((8, 8, 3), np.float32); a[2, 2] = 1.0; a[5, 5] = -1.0
    >>> rgb = heatmap(a)  # Red where a > 0, blue where a < 0, white at 0.
    >>> rgb[2, 2].tolist(), rgb[5, 5].tolist(), rgb[0, 0].tolist()
    ([103, 0, 31], [5, 48, 97], [255, 255, 255])
    >>> img = np.full((8, 8, 3), 0.5, np.float32)
    >>> path = save_grid([[img, heatmap(a), overlay(img, a)]], "/tmp/xai_grid.png")
    >>> path = save_text(["un", "##fair", "film"], [-0.5, -0.2, 0.1], "/tmp/xai_text.html")
"""

from xai_core.viz.images import heatmap, overlay, save_grid
from xai_core.viz.text import save_text, text_html, text_image

__all__ = ["heatmap", "overlay", "save_grid", "save_text", "text_html", "text_image"]
