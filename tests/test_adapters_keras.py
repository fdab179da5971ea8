"""Tests for the Keras adapter (adapters/keras.py): Keras 3 on its JAX backend."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("KERAS_BACKEND", "jax")
keras = pytest.importorskip("keras")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import xai_core as xc  # noqa: E402
from xai_core.adapters import from_keras  # noqa: E402

if keras.config.backend() != "jax":  # pragma: no cover - a test run configured for another backend
    pytest.skip("these tests run Keras on its JAX backend", allow_module_level=True)

# Keras's own numpy conversions (get_weights, save, model(x)) under numpy 2: not ours.
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

L = keras.layers
_RNG = np.random.default_rng(0)
XS = _RNG.normal(size=(3, 8, 8, 3)).astype(np.float32)
TS = jnp.array([0, 4, 2])


def _randomize(model: keras.Model) -> keras.Model:
    """Random weights and BatchNorm statistics (numpy: no jax.random compiles)."""
    for v in model.variables:
        if "int" in str(v.dtype):
            continue
        shape = tuple(v.shape)
        value = _RNG.random(shape) + 0.5 if "variance" in v.path else 0.5 * _RNG.normal(size=shape)
        v.assign(value.astype(np.float32))
    return model


def _forward(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The Keras model's own forward pass on one example (inference mode)."""
    return np.asarray(model(x[None], training=False))[0]


def _ref_grad(model: keras.Model, x: np.ndarray, t: int) -> jax.Array:
    """jax.grad of the class-t output of stateless_call, one example."""
    tv = [v.value for v in model.trainable_variables]
    ntv = [v.value for v in model.non_trainable_variables]
    return jax.grad(lambda x: model.stateless_call(tv, ntv, x[None], training=False)[0][0, t])(x)


@pytest.fixture(scope="module")
def cnn() -> tuple[keras.Model, keras.Model]:
    """A small CNN ending in Dense(softmax), and its pre-softmax copy (shared weights)."""
    body = [L.Conv2D(4, 3, padding="same", name="conv"), L.BatchNormalization(name="bn"),
            L.ReLU(name="relu"), L.MaxPooling2D(name="pool"), L.Flatten(name="flat")]
    model = _randomize(keras.Sequential(
        [keras.Input((8, 8, 3)), *body, L.Dense(5, activation="softmax", name="probs")], name="cnn"))
    logits = L.Dense(5, name="logits")
    pre = keras.Sequential([keras.Input((8, 8, 3)), *body, logits], name="cnn_logits")
    logits.set_weights(model.get_layer("probs").get_weights())
    return model, pre


@pytest.fixture(scope="module")
def residual() -> tuple[keras.Model, keras.Model]:
    """A functional model with a nested Sequential block, a residual Add and a Softmax
    layer; and its pre-softmax model (the same layers)."""
    x = keras.Input((6,), name="x")
    h = L.Dense(8, activation="relu", name="d1")(x)
    h = keras.Sequential([keras.Input((8,)), L.Dense(6, name="inner")], name="block")(h)
    h = L.Add(name="add")([h, x])
    z = L.Dense(4, name="logits")(h)
    model = _randomize(keras.Model(x, L.Softmax(name="softmax")(z), name="residual"))
    return model, keras.Model(x, z)


# ------------------------------------------------------------------ forward and grads

@pytest.mark.parametrize("which", ["cnn", "residual"])
def test_logits_and_grads_match_keras(which: str, request: pytest.FixtureRequest) -> None:
    model, pre = request.getfixturevalue(which)
    m = from_keras(model)
    assert m.cut == "softmax" and m.output == "logits"
    x = XS[0] if which == "cnn" else XS[0, 0, :6, 0]
    np.testing.assert_allclose(m.logits(x), _forward(pre, x), atol=1e-5)
    np.testing.assert_allclose(jax.grad(m.score(2))(x), _ref_grad(pre, x, 2), atol=1e-4)
    assert m.input_shape == x.shape
    tv, ntv = m.params
    assert len(tv) == len(model.trainable_variables) and len(ntv) == len(model.non_trainable_variables)


def test_params_survive_more_training() -> None:
    """Keras's fit() donates the variables' buffers: the adapter keeps copies."""
    model = keras.Sequential([keras.Input((6,)), L.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    m = from_keras(model)
    x = XS[0, 0, :6, 0]
    before = np.asarray(m.logits(x))
    model.fit(XS[:, 0, :6, 0], np.zeros(3), epochs=1, verbose=0)
    np.testing.assert_allclose(m.logits(x), before)
    assert not np.allclose(from_keras(model).logits(x), before)  # a new snapshot


def test_probs_output_is_the_keras_output(cnn) -> None:
    model, _ = cnn
    m = from_keras(model, output="probs")
    np.testing.assert_allclose(m.logits(XS[1]), _forward(model, XS[1]), atol=1e-6)


# ------------------------------------------------------------------ softmax cut

@pytest.mark.parametrize("ending, cut, mode", [
    ([L.Dense(3, activation="softmax")], "softmax", "probs"),
    ([L.Dense(3), L.Softmax()], "softmax", "probs"),
    ([L.Dense(3), L.Activation("softmax")], "softmax", "probs"),
    ([L.Dense(3, activation="log_softmax")], "log_softmax", "log_probs"),
    ([L.Dense(1, activation="sigmoid")], "sigmoid", "probs"),
    ([L.Dense(3)], None, "logits"),
])
def test_final_activation_is_cut(ending: list, cut: str | None, mode: str) -> None:
    model = keras.Sequential([keras.Input((6,)), L.Dense(5, activation="tanh"), *ending])
    x = XS[0, 0, :6, 0]
    m = from_keras(model)
    assert m.cut == cut
    hidden = np.tanh(x @ model.layers[0].kernel.numpy() + model.layers[0].bias.numpy())
    np.testing.assert_allclose(m.logits(x), hidden @ model.layers[1].kernel.numpy()
                               + model.layers[1].bias.numpy(), atol=1e-5)
    np.testing.assert_allclose(from_keras(model, output=mode).logits(x), _forward(model, x), atol=1e-6)


@pytest.mark.parametrize("nest", [list, dict])
def test_one_input_in_a_list_or_dict(nest) -> None:
    x = keras.Input((6,), name="feat")
    dense = L.Dense(3)
    model = keras.Model([x] if nest is list else {"feat": x}, dense(x))
    ones = np.ones(6, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no Keras warning about the input structure
        z = from_keras(model).logits(ones)
    np.testing.assert_allclose(z, ones @ dense.kernel.numpy() + dense.bias.numpy(), atol=1e-5)


def test_mixed_bfloat16_softmax_is_cut() -> None:
    model = keras.Sequential([keras.Input((6,)),
                              L.Dense(3, activation="softmax", dtype="mixed_bfloat16")])
    assert from_keras(model).cut == "softmax"


# ------------------------------------------------------------------ files

@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_file_round_trip(cnn, tmp_path: Path, suffix: str) -> None:
    model, _ = cnn
    path = tmp_path / f"model{suffix}"
    model.save(path)
    loaded = from_keras(str(path))
    assert loaded.cut == "softmax"
    np.testing.assert_allclose(loaded.logits(XS[2]), from_keras(model).logits(XS[2]), atol=1e-6)


# ------------------------------------------------------------------ batches, layers

def test_jit_vmap_traced_targets_match_a_loop(cnn) -> None:
    m = from_keras(cnn[0])
    fn = jax.jit(jax.vmap(lambda x, t: xc.attribute(m.score(t), x, method="ig", steps=8)))
    loop = jax.jit(lambda x, t: xc.attribute(m.score(t), x, method="ig", steps=8))
    np.testing.assert_allclose(fn(XS, TS), np.stack([loop(x, t) for x, t in zip(XS, TS)]), atol=1e-5)


@pytest.mark.parametrize("which, names", [
    ("cnn", ["conv", "bn", "relu", "pool", "flat", "probs"]),
    ("residual", ["d1", "block/inner", "block", "add", "logits", "softmax"]),
])
def test_split_at_every_layer(which: str, names: list[str], request: pytest.FixtureRequest) -> None:
    model, _ = request.getfixturevalue(which)
    m = from_keras(model)
    assert [layer.name for layer in m.layers] == names
    x = XS[0] if which == "cnn" else XS[0, 0, :6, 0]
    z = m.logits(x)
    for layer in m.layers:
        head, tail = m.split(layer.name)
        a = head(x)
        assert a.shape == layer.shape
        skips = which == "residual" and layer.name in ("d1", "block/inner", "block")
        np.testing.assert_allclose(tail(a, x) if skips else tail(a), z, atol=1e-5)
    assert not any("call" in layer.__dict__ for layer in model._flatten_layers())  # model unchanged


def test_subclassed_model_traces_on_first_call() -> None:
    class Net(keras.Model):
        def __init__(self):
            super().__init__(name="net")
            self.hidden = L.Dense(5, activation="relu", name="hidden")
            self.drop = L.Dropout(0.5, name="drop")
            self.out = L.Dense(3, name="out")

        def call(self, x):  # no `training` argument: inference mode (no dropout) by default
            return keras.ops.softmax(self.out(self.drop(self.hidden(x))))

    net = Net()
    x = XS[0, 0, :6, 0]
    probs = _forward(net, x)  # builds it
    m = from_keras(net)
    with pytest.raises(ValueError, match="has not been traced yet"):
        m.layers
    np.testing.assert_allclose(jax.nn.softmax(m.logits(x)), probs, atol=1e-6)
    assert m.cut == "softmax" and [layer.name for layer in m.layers] == ["hidden", "drop", "out"]


def test_layer_calls_restored_after_an_error() -> None:
    class Picky(L.Layer):
        def call(self, x):
            if x.shape[-1] == 5:
                raise ValueError("picky refuses 5 features")
            return x

    picky = Picky(name="picky")
    m = from_keras(keras.Sequential([keras.Input((None,)), picky]))
    assert m.input_shape == (None,)
    with pytest.raises(ValueError, match="picky refuses 5 features"):
        m.logits(jnp.ones(5))
    assert "call" not in picky.__dict__
    assert m.logits(jnp.ones(4)).shape == (4,)
    assert [layer.name for layer in m.layers] == ["picky"]


# ------------------------------------------------------------------ errors

def test_missing_keras_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keras", None)  # what `import keras` sees without keras
    with pytest.raises(ImportError, match=r"pip install 'xai-core\[keras\]'"):
        from_keras("model.keras")


def test_bad_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.keras"
    with pytest.raises(FileNotFoundError, match="no such model file: .*missing.keras"):
        from_keras(missing)
    with pytest.raises(ValueError, match="is a directory"):
        from_keras(tmp_path)
    for name, match in [("model.pt", r"extension '.pt' is not .keras or .h5"),
                        ("bad.keras", r"bad.keras' is not a valid .keras file \(not a zip"),
                        ("bad.h5", r"bad.h5' is not a valid .h5 file \(not HDF5"),
                        ("model.weights.h5", "holds only weights")]:
        (tmp_path / name).write_bytes(b"not a model")
        with pytest.raises(ValueError, match=match):
            from_keras(tmp_path / name)
    import zipfile

    with zipfile.ZipFile(tmp_path / "empty.keras", "w") as z:
        z.writestr("notes.txt", "no config")
    with pytest.raises(ValueError, match="could not load the model file .*empty.keras.*config.json"):
        from_keras(tmp_path / "empty.keras")


def test_bad_models() -> None:
    with pytest.raises(TypeError, match="expected a Keras model .* got dict"):
        from_keras({"w": 1})
    with pytest.raises(ValueError, match="never built"):
        from_keras(keras.Sequential([L.Dense(3)]))
    model = keras.Sequential([keras.Input((6,)), L.Dense(3)])
    with pytest.raises(ValueError, match=r"input_shape=\(5,\) does not match"):
        from_keras(model, input_shape=(5,))
    with pytest.raises(ValueError, match=r"expects one example of shape \(6,\).*batch of 2"):
        from_keras(model).logits(jnp.ones((2, 6)))


_BACKEND_SCRIPT = textwrap.dedent("""
    import os, sys
    from xai_core.adapters import from_keras

    def error(f):
        try:
            f()
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return "no error"

    print(error(lambda: from_keras(sys.argv[1])))  # before keras is imported
    import keras
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    print(error(lambda: from_keras(model)))
    print(error(lambda: from_keras(sys.argv[1])))
    keras.config.set_backend("jax")
    print(error(lambda: from_keras(model)))  # a torch-backend model, jax keras
""")


def test_other_backend_errors(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    env = {**os.environ, "KERAS_BACKEND": "torch"}
    res = subprocess.run([sys.executable, "-c", _BACKEND_SCRIPT, "model.keras"], env=env,
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    lines = res.stdout.splitlines()
    assert res.returncode == 0 and len(lines) == 4, res.stderr
    assert lines[0].startswith("RuntimeError: from_keras needs Keras's JAX backend, but "
                               "KERAS_BACKEND='torch' is set.") and "KERAS_BACKEND=jax" in lines[0]
    for line in lines[1:3]:
        assert line.startswith("RuntimeError: from_keras needs Keras's JAX backend, but Keras in "
                               "this process runs the 'torch' backend.")
        assert "model.save('model.keras')" in line and "KERAS_BACKEND=jax" in line
    assert lines[3].startswith("TypeError: from_keras: Sequential is a Keras object, but not from the "
                               "Keras 3 (JAX backend) that runs in this process")


def test_file_loads_in_a_fresh_process(residual, tmp_path: Path) -> None:
    """No KERAS_BACKEND set: from_keras picks JAX before Keras is imported."""
    model, _ = residual
    model.save(tmp_path / "model.keras")
    x = XS[0, 0, :6, 0]
    np.save(tmp_path / "x.npy", x)
    script = ("import os, numpy as np; from xai_core.adapters import from_keras; "
              "m = from_keras('model.keras'); "
              "print(os.environ['KERAS_BACKEND'], m.cut, *m.logits(np.load('x.npy')).tolist())")
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    res = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    backend, cut, *values = res.stdout.split()
    assert (backend, cut) == ("jax", "softmax")
    np.testing.assert_allclose(np.array(values, np.float32), from_keras(model).logits(x), atol=1e-6)
