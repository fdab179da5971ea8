"""Fast and right by default on CPU: the XLA flag the benchmarks found, set when ``xai_core`` is imported.

XLA:CPU hands convolutions to YNNPACK by default; its own kernels ran our attributions
1.1-1.3x faster on ResNet-18 and 2x faster on a small residual CNN (IG-32 on four 64x64
images through ``from_torch``: 1.09 s -> 0.61 s on 2 cores; ``benchmarks/README.md``).
YNNPACK's reduce fusions are off too: in jaxlib 0.10.2 they computed wrong gradients (off by
half their size) for a Llama's log-probabilities under two nested ``vmap``s with the weights as
arguments, the program ``xc.lm``'s IG runs (``tests/test_lm.py`` keeps the case).
XLA reads ``XLA_FLAGS`` once, when JAX starts its backend (the first computation), so
importing ``xai_core`` before that adds
``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-reduce`` (only the CPU
backend reads it), unless:

- ``XLA_FLAGS`` already sets that option (yours wins);
- ``XAI_CORE_XLA_DEFAULTS=0`` is in the environment (leave XLA as it is);
- the installed jaxlib is not one the flag is known to exist in (XLA aborts the process on
  an unknown flag, so we never guess): see ``KNOWN_JAXLIB``.

If JAX's backend already started, nothing can change: a one-time :class:`PerformanceNote`
says how to get the fast path (import ``xai_core`` first, or set the flag yourself).
"""

from __future__ import annotations

import os
import warnings

FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution,-reduce"
OPTION = "xla_cpu_experimental_ynn_fusion_type"
KNOWN_JAXLIB = ((0, 10), (0, 10))
"""Oldest and newest (major, minor) jaxlib the flag is known in (checked: 0.10.2)."""
OPT_OUT = "XAI_CORE_XLA_DEFAULTS"


class PerformanceNote(UserWarning):
    """xai-core could not apply its fast defaults (JAX started before it was imported)."""


def _jaxlib_version() -> tuple[int, int] | None:
    try:
        from importlib.metadata import version

        major, minor = version("jaxlib").split(".")[:2]
        return int(major), int(minor)
    except Exception:  # not installed as a distribution, or an unusual version string
        return None


def _backend_started() -> bool:
    import sys

    bridge = sys.modules.get("jax._src.xla_bridge")
    return bridge is not None and bool(bridge.backends_are_initialized())


def apply_cpu_defaults() -> str:
    """Add :data:`FLAG` to ``XLA_FLAGS`` where that is safe and still takes effect.

    Returns what happened: ``"set"``, ``"user"`` (``XLA_FLAGS`` sets the option already),
    ``"opted out"``, ``"unknown jaxlib"`` or ``"too late"`` (with a one-time note).
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if OPTION in flags:
        return "user"
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "false", "no", "off"):
        return "opted out"
    jaxlib = _jaxlib_version()
    if jaxlib is None or not KNOWN_JAXLIB[0] <= jaxlib <= KNOWN_JAXLIB[1]:
        return "unknown jaxlib"
    if _backend_started():
        warnings.warn(
            "xai_core was imported after JAX started its backend, so it could not set its fast CPU "
            f"default ({FLAG}: 1.1-2x faster attributions with convolutions on CPU). Import xai_core "
            f"before the first JAX computation, or start Python with XLA_FLAGS={FLAG}; set "
            f"{OPT_OUT}=0 to silence this note.", PerformanceNote, stacklevel=2)
        return "too late"
    os.environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return "set"
