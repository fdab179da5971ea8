"""benchmarks/weights_as_args.py's core function runs on a tiny Keras CNN: passing the model
as an argument keeps its weights out of the program, and new weights reuse it.

Never asserts a time: the numbers live in benchmarks/results/.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")
if keras.config.backend() != "jax":  # pragma: no cover - a test run configured for another backend
    pytest.skip("Keras runs another backend in this process", allow_module_level=True)

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `benchmarks` is not installed; plain `pytest` does not add the root
    sys.path.insert(0, str(REPO))

from benchmarks import weights_as_args as wa  # noqa: E402
from xai_core.adapters import from_keras  # noqa: E402

L = keras.layers


@pytest.fixture(scope="module")
def tiny() -> object:
    keras.utils.set_random_seed(0)
    net = keras.Sequential([keras.Input((16, 16, 3)), L.Conv2D(16, 3, activation="relu", name="c1"),
                            L.Conv2D(32, 3, activation="relu", name="c2"), L.BatchNormalization(name="bn"),
                            L.Conv2D(32, 3, strides=2, activation="relu", name="c3"),
                            L.GlobalAveragePooling2D(name="pool"), L.Dense(10, activation="softmax", name="probs")],
                           name="tiny")
    return from_keras(net)


@pytest.mark.parametrize("method", ["gradient", "ig"])
def test_argument_program_is_smaller_and_reused(tiny: object, method: str) -> None:
    xs, ts = wa.inputs(16)
    options = {"steps": 4, "batch_size": 4} if method == "ig" else {}
    closure = wa.measure(tiny, "closure", method, xs, ts, options=options, repeats=1, recompile=True)
    argument = wa.measure(tiny, "argument", method, xs, ts, options=options, repeats=1, recompile=True)

    params_mb = sum(a.nbytes for a in wa.jax.tree.leaves(tiny.params)) / wa.MB
    assert argument["program_text_mb"] < closure["program_text_mb"]
    assert closure["program_bytecode_mb"] - argument["program_bytecode_mb"] >= 0.9 * params_mb  # weights inside
    assert argument["program_args"] == closure["program_args"] + len(wa.jax.tree.leaves(tiny.params))

    rc = argument["recompile"]
    assert rc["cache_size"] == 1  # with_params (same shapes): the same compiled program
    assert rc["new_weights_change_output"]  # ... run with the new weights, not the old constants
    assert closure["recompile"]["new_weights_change_output"]
    assert "new_closure_compile_s" in closure["recompile"] and "new_closure_compile_s" not in rc

    result = {"machine": {"cpu": "test", "cores": 2, "gpu": None, "versions": {"jax": "x", "keras": "y"},
                          "load_average_at_start": (0.0, 0.0, 0.0)},
              "size": 16, "images": 2, "variants": {"closure / " + method: closure, "argument / " + method: argument}}
    table = wa.markdown(result)
    assert "| argument / " + method in table and "(`_cache_size()`)" in table
