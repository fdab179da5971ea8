"""Fast by default: `import xai_core` sets XLA:CPU's convolution flag while that still takes
effect (never over the user's choice, never on an unknown jaxlib), notes once when it is too
late, and `batch_size="auto"` picks chunk sizes from the input and the device."""

from __future__ import annotations

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import xai_core as xc
from xai_core.attribution import occlusion
from xai_core.core import chunking, xla

CONV = "x = jnp.ones((1, 8, 8, 3)); k = jnp.ones((3, 3, 3, 4)); jax.lax.conv_general_dilated(x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC')).block_until_ready()"


def python(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla.OPT_OUT)}
    return subprocess.run([sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True)


def test_importing_xai_core_first_sets_the_flag_and_jax_runs_with_it() -> None:
    out = python(f"import os, xai_core, jax, jax.numpy as jnp; {CONV}; print(xai_core.XLA_DEFAULTS); print(os.environ['XLA_FLAGS'])")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["set", xla.FLAG]


def test_the_users_setting_wins_and_the_opt_out_leaves_xla_alone() -> None:
    mine = "--xla_cpu_experimental_ynn_fusion_type=individual_convolution"
    out = python("import os, xai_core; print(xai_core.XLA_DEFAULTS); print(os.environ['XLA_FLAGS'])", XLA_FLAGS=mine)
    assert out.stdout.split("\n")[:2] == ["user", mine], out.stderr
    out = python("import os, xai_core; print(xai_core.XLA_DEFAULTS); print(os.environ.get('XLA_FLAGS'))",
                 **{xla.OPT_OUT: "0"})
    assert out.stdout.split("\n")[:2] == ["opted out", "None"], out.stderr
    kept = python("import os, xai_core; print(os.environ['XLA_FLAGS'])", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    assert kept.stdout.strip() == f"--xla_force_host_platform_device_count=2 {xla.FLAG}", kept.stderr


def test_a_late_import_leaves_the_flags_and_notes_it_once() -> None:
    out = python(f"import os, jax, jax.numpy as jnp; {CONV}; import xai_core; import importlib; "
                 "print(xai_core.XLA_DEFAULTS); print(os.environ.get('XLA_FLAGS'))")
    assert out.stdout.split("\n")[:2] == ["too late", "None"], out.stderr
    assert out.stderr.count("PerformanceNote") == 1 and "Import xai_core before the first JAX computation" in out.stderr


def test_an_unknown_jaxlib_gets_no_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    monkeypatch.delenv(xla.OPT_OUT, raising=False)
    for version in (None, (0, 4), (9, 0)):
        monkeypatch.setattr(xla, "_jaxlib_version", lambda v=version: v)
        assert xla.apply_cpu_defaults() == "unknown jaxlib"
        assert "XLA_FLAGS" not in os.environ


def test_auto_batch_size_follows_the_input_and_the_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chunking, "_cores", lambda: 2)
    budget = 2 * chunking.CPU_ELEMENTS_PER_CORE
    image = jnp.ones((3, 64, 64))
    assert chunking.resolve_batch_size("auto", [image]) == max(2, budget // image.size) == 2
    assert chunking.resolve_batch_size("auto", [jnp.ones((3, 112, 112))]) == 2  # at least 2
    assert chunking.resolve_batch_size("auto", [jnp.ones((3, 224, 224))]) == 4  # large inputs: at least 4
    assert chunking.resolve_batch_size("auto", [jnp.ones(6)]) == budget // 6  # tiny inputs: big chunks
    assert chunking.resolve_batch_size("auto", [jnp.ones(3000), jnp.ones(1000)]) == budget // 4000
    monkeypatch.setattr(chunking, "_cores", lambda: 8)
    assert chunking.resolve_batch_size("auto", [jnp.ones(16384)]) == 8
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert chunking.resolve_batch_size("auto", [image]) == chunking.ACCELERATOR_BATCH_SIZE
    assert chunking.resolve_batch_size(5, [image]) == 5 and chunking.resolve_batch_size(None, [image]) is None


def test_occlusion_chunks_hold_more_windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Occlusion's forwards keep no activations: its "auto" chunk uses the forward budget, at least 8."""
    monkeypatch.setattr(chunking, "_cores", lambda: 2)
    seen = []
    real = occlusion.chunked_sum
    monkeypatch.setattr(occlusion, "chunked_sum", lambda term, n, size: seen.append(size) or real(term, n, size))
    for side in (64, 112, 224):
        xc.occlusion(lambda x: jnp.sum(x ** 2), window=(3, 16, 16))(jnp.ones((3, side, side)))
    budget = 2 * chunking.FORWARD_ELEMENTS_PER_CORE
    assert seen == [budget // (3 * 64 * 64), budget // (3 * 112 * 112), 8] == [42, 13, 8]


def test_auto_is_the_default_and_gives_the_fixed_size_result() -> None:
    assert xc.DEFAULT_BATCH_SIZE == "auto"
    f = lambda x: jnp.sum(jnp.tanh(x) ** 2)  # noqa: E731
    x = jnp.linspace(-1, 1, 12).reshape(3, 4)
    auto = xc.attribute(f, x, method="ig", steps=16)
    fixed = xc.attribute(f, x, method="ig", steps=16, batch_size=5)
    np.testing.assert_allclose(auto, fixed, rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be 'auto', None or an integer"):
        xc.attribute(f, x, method="ig", batch_size="big")
