"""Shared fixtures: small deterministic models written in plain JAX, and a headless browser."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest


@contextlib.contextmanager
def jax_flag(name: str, value: bool) -> Iterator[None]:
    """Set a ``jax.config`` flag for the duration of a block, then restore it."""
    previous = getattr(jax.config, name)
    jax.config.update(name, value)
    try:
        yield
    finally:
        jax.config.update(name, previous)


@pytest.fixture
def x64() -> Iterator[None]:
    """Run one test in float64 (for exactness checks), then restore the default."""
    with jax_flag("jax_enable_x64", True):
        yield


def mlp_logits(seed: int = 0, n_in: int = 6, n_hidden: int = 8, n_out: int = 3) -> Callable[[jax.Array], jax.Array]:
    """A smooth nonlinear two-layer tanh network with fixed random weights (dtype follows x)."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(size=(n_in, n_hidden)) / np.sqrt(n_in)
    b1 = rng.normal(size=n_hidden) * 0.1
    w2 = rng.normal(size=(n_hidden, n_out)) / np.sqrt(n_hidden)

    def logits(x: jax.Array) -> jax.Array:
        h = jnp.tanh(x @ jnp.asarray(w1, x.dtype) + jnp.asarray(b1, x.dtype))
        return h @ jnp.asarray(w2, x.dtype)

    return logits


def cnn_logits(seed: int = 0, channels: int = 3, n_out: int = 4) -> Callable[[jax.Array], jax.Array]:
    """A tiny HxWxC conv net (conv, relu, global mean, dense) for one example."""
    rng = np.random.default_rng(seed)
    kernel = rng.normal(size=(3, 3, channels, 5)) / 3.0
    dense = rng.normal(size=(5, n_out))

    def logits(x: jax.Array) -> jax.Array:
        y = jax.lax.conv_general_dilated(
            x[None], jnp.asarray(kernel, x.dtype), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )[0]
        return jax.nn.relu(y).mean(axis=(0, 1)) @ jnp.asarray(dense, x.dtype)

    return logits


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A headless Chromium (Debian's, driven by Playwright) with a fresh profile; skipped where there is
    none, and a failure under CI, whose .ci/run installs it."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright import sync_api
    except ImportError:
        sync_api = None
    if chromium is None or sync_api is None:
        why = "no chromium on PATH (apt-get install -y chromium)" if chromium is None else "no playwright (pip)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}: .ci/run must install it")
        pytest.skip(why)
    with sync_api.sync_playwright() as p:
        profile = str(tmp_path_factory.mktemp("profile"))  # a fresh user-data-dir
        context = p.chromium.launch_persistent_context(profile, executable_path=chromium, headless=True,
                                                       args=CHROMIUM_FLAGS)
        yield context
        context.close()
