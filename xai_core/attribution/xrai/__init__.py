"""XRAI: a pixel attribution shared out over image regions, ranked greedily. Imports the gradients
(IG) and the core; :mod:`xai_core.attribution`'s users import it: the registry (``xrai.xrai``) and
``xai_core`` (``xc.xrai``, ``xc.xrai_regions``).

- :func:`xrai_regions`, :func:`xrai`: the public functions and their options
  (:mod:`xai_core.attribution.xrai.regions`).
- :func:`xrai_segments`: PAIR's Felzenszwalb masks; the masks stacked and split into atoms
  (:mod:`xai_core.attribution.xrai.masks`).
- the greedy walk and the ranking, :class:`XRAIRegions` (:mod:`xai_core.attribution.xrai.walk`).

Kapishnikov, Bolukbasi, Viégas & Terry, "XRAI: Better Attributions Through Regions", ICCV 2019
(arXiv:1906.02825), as PAIR's ``saliency.core.xrai`` (0.2.1) computes it. The pixel attribution ``a``
(IG averaged over two constant baselines, the image's min and max) is reduced over channels (by
``max``); masks ``S_i`` come from Felzenszwalb segments at six scales, each dilated by a disk of
radius 5. With ``C`` the pixels covered so far, the next region is the mask of largest gain
``g(S) = sum_{p in S \\ C} a_p / |S \\ C|`` among those adding at least ``min_pixel_diff`` new pixels
(the others are dropped); its new pixels get ``g(S)`` and join ``C``, until no mask is left or more
than ``area_threshold`` of the image is covered; the uncovered rest is a last region holding its
mean. So the heatmap sums to ``sum(a)`` and is constant on each region. ``mode="fast"`` sorts the
masks once by ``g`` over their whole area and walks them in that order. The walk is one
``lax.while_loop`` (``fori_loop``) over stacked ``(n, atoms)`` masks, an atom being a set of pixels
that every mask holds whole or not at all (concrete masks are split into atoms on the host; traced
ones keep their pixels), so it jits and vmaps; Felzenszwalb needs the image's values on the host:
inside ``jit`` / ``vmap`` pass ``segments=``.
"""

from xai_core.attribution.xrai.masks import SCALES, xrai_segments
from xai_core.attribution.xrai.regions import CHANNEL_REDUCTIONS, MODES, RULES, xrai, xrai_regions
from xai_core.attribution.xrai.walk import XRAIRegions

__all__ = ["CHANNEL_REDUCTIONS", "MODES", "RULES", "SCALES", "XRAIRegions", "xrai", "xrai_regions", "xrai_segments"]
