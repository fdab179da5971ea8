"""Import torchax beside a torch that removed operator overloads torchax still names.

torchax 0.0.13 (the newest release) refers, while it imports and while it builds its
default environment, to about 20 named-tensor overloads (``aten.prod.dim_Dimname``,
``aten.all.dimname``, ...) that torch 2.13 removed, and fails with
``AttributeError: ... has no overload name 'dim_Dimname'``. Named tensors never
reach a traced model, so those entries are dead: while torchax loads, a missing
overload is handed back as an inert placeholder (hashable, never called), and the
names are recorded in :data:`MISSING`. Nothing else in torch is changed, and the
patch is undone before :func:`load` returns.

``tests/test_adapters_torch.py`` fails when :data:`MISSING` is empty: then torchax
imports on its own and this module should go.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

__all__ = ["MISSING", "load"]

#: The overloads torchax named that this torch lacks (filled by :func:`load`).
MISSING: list[str] = []

_lock = threading.Lock()


class _MissingOverload:
    """Stands in for an operator overload this torch does not have."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<overload {self.name} missing in this torch>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{self.name} does not exist in this version of torch.")


def load() -> ModuleType:
    """Import torchax and build its default environment; return the module."""
    import sys

    import torch._ops

    with _lock:
        if "torchax" in sys.modules and getattr(sys.modules["torchax"], "_env", None) is not None:
            return sys.modules["torchax"]
        packet = torch._ops.OpOverloadPacket
        original = packet.__getattr__

        def tolerant(self: Any, key: str) -> Any:
            try:
                return original(self, key)
            except AttributeError:
                if key.startswith("__"):
                    raise
                name = f"{self}.{key}"
                if name not in MISSING:
                    MISSING.append(name)
                return _MissingOverload(name)

        packet.__getattr__ = tolerant  # type: ignore[method-assign]
        try:
            import torchax

            torchax.default_env()
        finally:
            packet.__getattr__ = original  # type: ignore[method-assign]
        return torchax
