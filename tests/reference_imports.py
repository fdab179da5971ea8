"""Importing a reference library that needs torchvision at import time (zennit, grad-cam), which
cannot be imported beside the CPU torch here: a stub stands in for the import only."""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Sequence


def import_with_stub(package: str, submodules: Sequence[str], stub: Callable[[], dict[str, types.ModuleType]],
                     install: str) -> types.ModuleType:
    """``package`` with its ``submodules`` imported, idempotently. ``stub()`` gives the fake
    torchvision modules by name (deepest last); they are put in ``sys.modules`` only when the
    deepest is missing (a real torchvision is used as it is), and only for the import: the
    previous entries are restored afterwards. ImportError (naming ``install``) when missing."""
    if f"{package}.{submodules[-1]}" in sys.modules:
        return sys.modules[package]
    if importlib.util.find_spec(package) is None:
        raise ImportError(f"{package} is not installed ({install})")
    modules = stub()
    stubbed = list(modules) if list(modules)[-1] not in sys.modules else []
    saved = {name: sys.modules.get(name) for name in stubbed}
    sys.modules.update({name: modules[name] for name in stubbed})
    try:
        module = importlib.import_module(package)
        for sub in submodules:
            importlib.import_module(f"{package}.{sub}")
    finally:
        for name in stubbed:
            if saved[name] is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = saved[name]
    return module


def require(importer: Callable[[], types.ModuleType]) -> types.ModuleType:
    """``importer()``, or ``pytest.skip`` when the library is missing; in CI (``CI=true``, where
    the README's test command installs it) a missing library is an error, not a skip."""
    import pytest

    try:
        return importer()
    except ImportError as err:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(str(err))
