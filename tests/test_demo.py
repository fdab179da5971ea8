"""Tests for xai_core.demo: the pipeline on a tiny run (the real 60 s run is not a unit test)."""

from __future__ import annotations

import io

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from xai_core.data import CLASSES
from xai_core.demo import ShapesCNN, TrainedModel, max_pool_2x2, train_shapes_model
from xai_core.demo.model import _ProgressBar

TINY = dict(n_train=32, epochs=2, n_test=8, size=16, batch_size=16, progress=False)


@pytest.fixture(scope="module")
def tiny() -> TrainedModel:
    return train_shapes_model(jax.random.key(0), **TINY)  # type: ignore[arg-type]


def test_tiny_run_returns_model_and_test_set(tiny: TrainedModel) -> None:
    assert isinstance(tiny.module, ShapesCNN)
    assert set(tiny.variables) == {"params", "batch_stats"}
    assert tiny.test.images.shape == (8, 16, 16, 3)
    assert tiny.test.labels.shape == (8,)
    assert tiny.test.masks.shape == (8, 16, 16)
    assert 0.0 <= tiny.test_accuracy <= 1.0
    assert tiny.seconds > 0.0


def test_trained_variables_are_finite_and_changed(tiny: TrainedModel) -> None:
    leaves = jax.tree.leaves(tiny.variables)
    assert all(bool(jnp.isfinite(leaf).all()) for leaf in leaves)
    stats = jax.tree.leaves(tiny.variables["batch_stats"])
    assert any(float(jnp.abs(s).sum()) > 0 for s in stats)  # Running means moved off zero.


def test_model_returns_logits_for_one_example_and_batches(tiny: TrainedModel) -> None:
    images = tiny.test.images
    apply = jax.jit(tiny.module.apply)  # Jitted: eager Flax dispatches op by op (slow).
    batched = apply(tiny.variables, images)
    single = apply(tiny.variables, images[0])
    assert batched.shape == (8, len(CLASSES)) and single.shape == (len(CLASSES),)
    np.testing.assert_allclose(single, batched[0], rtol=1e-5, atol=1e-5)
    # Logits, not probabilities: a score function of one example has a gradient of x's shape.
    grad = jax.jit(jax.grad(lambda x: tiny.module.apply(tiny.variables, x)[0]))(images[0])
    assert grad.shape == images[0].shape and bool(jnp.isfinite(grad).all())


def test_model_has_no_softmax(tiny: TrainedModel) -> None:
    logits = np.asarray(jax.jit(tiny.module.apply)(tiny.variables, tiny.test.images * 20.0))
    assert (logits < 0).any() or not np.allclose(logits.sum(axis=-1), 1.0)


def test_progress_bar_draws_to_stream() -> None:
    stream = io.StringIO()
    bar = _ProgressBar(4, stream, width=8)
    for done in range(1, 5):
        bar.update(done, jnp.float32(0.5))
    bar.close()
    text = stream.getvalue()
    assert "[########] 4/4" in text and "loss 0.500" in text and text.endswith("\n")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 8, "batch_size": 16}, "at least batch_size"),
        ({"epochs": 0}, "epochs must be"),
        ({"n_test": 0}, "n_test must be"),
        ({"size": 8}, "size must be"),
    ],
)
def test_bad_arguments_raise(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_shapes_model(jax.random.key(0), progress=False, **kwargs)  # type: ignore[arg-type]


def test_demo_command_end_to_end(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    from PIL import Image

    from xai_core.cli import main
    from xai_core.demo import METHODS

    out = tmp_path / "grid.png"
    assert main(["demo", "--train-images", "64", "--epochs", "1", "--images", "2", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and "localization" in printed
    for method in METHODS:
        assert method in printed
    width, height = Image.open(out).size
    assert width > height > 0  # 2 rows of images, 2 + len(METHODS) columns


def test_explain_reports_ig_gap_and_localization(tiny: TrainedModel) -> None:
    from xai_core.demo import CAMS, METHODS, explain, format_table

    maps, reports = explain(tiny, 2, jax.random.key(0))
    assert set(maps) == set(METHODS) | set(CAMS)
    assert all(a.shape == ((2, 16, 16) if name in CAMS else (2, 16, 16, 3)) for name, a in maps.items())
    by_name = {r.method: r for r in reports}
    assert by_name["integrated_gradients"].gap is not None and by_name["gradient"].gap is None
    assert by_name["deeplift"].gap is not None and by_name["deeplift"].gap < 1e-5  # summation to delta
    assert all(0.0 <= r.localization <= 1.0 and 0.0 < r.uniform < 1.0 for r in reports)
    assert "integrated_gradients" in format_table(reports, 2)


def test_methods_list_command(capsys: pytest.CaptureFixture[str]) -> None:
    from xai_core.cli import main

    assert main(["methods"]) == 0
    assert "ig (alias of integrated_gradients)" in capsys.readouterr().out


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (7, 9, 5), (1, 4, 6, 2)])
def test_max_pool_2x2_matches_flax_max_pool(shape: tuple[int, ...]) -> None:
    x = jax.random.normal(jax.random.key(3), shape)
    batched = x if x.ndim == 4 else x[None]
    expected = nn.max_pool(batched, (2, 2), strides=(2, 2))
    np.testing.assert_array_equal(max_pool_2x2(batched), expected)
    if x.ndim == 3:  # Unbatched input, as a score function sees it.
        np.testing.assert_array_equal(max_pool_2x2(x), expected[0])


def test_labels_flipped_on_purpose_and_checkpoints_per_epoch(tiny: TrainedModel) -> None:
    # without noise or checkpoints, nothing changes and nothing extra is kept
    assert tiny.train is None and len(tiny.flipped) == 0 and tiny.checkpoints == ()
    noisy = train_shapes_model(jax.random.key(0), **{**TINY, "n_train": 48},  # type: ignore[arg-type]
                               label_noise=0.1, checkpoints=True)
    clean = train_shapes_model(jax.random.key(0), **{**TINY, "n_train": 48})  # type: ignore[arg-type]
    assert len(noisy.flipped) == 5
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(noisy.train.labels != tiny_labels(48))), noisy.flipped)
    np.testing.assert_array_equal(noisy.test.labels, clean.test.labels)  # the same data apart from the flips
    assert len(noisy.checkpoints) == TINY["epochs"] and all(c.learning_rate > 0 for c in noisy.checkpoints)
    for a, b in zip(jax.tree.leaves(noisy.checkpoints[-1].params), jax.tree.leaves(noisy.variables)):
        np.testing.assert_array_equal(a, b)  # the last checkpoint is the result
    with pytest.raises(ValueError, match="label_noise must be a share"):
        train_shapes_model(jax.random.key(0), label_noise=1.5, progress=False)


def tiny_labels(n: int) -> np.ndarray:
    """The training labels :func:`train_shapes_model` draws for ``TINY`` with ``n`` images."""
    from xai_core.data import make_shapes

    data_key = jax.random.split(jax.random.key(0), 3)[0]
    return np.asarray(make_shapes(data_key, n + TINY["n_test"], TINY["size"]).labels[:n])


def test_find_mislabeled_ranks_by_self_influence() -> None:
    from xai_core.demo.mislabeled import find_mislabeled, precision_at_k

    found = find_mislabeled(jax.random.key(1), n_train=48, label_noise=0.1, epochs=2, size=16, batch_size=16,
                            n_test=8, mode="full", last=1)
    assert found.scores.shape == (48,) and len(found.flipped) == 5 and len(found.trained.checkpoints) == 2
    np.testing.assert_array_equal(found.ranking, np.argsort(-found.scores, kind="stable"))
    assert found.precision == precision_at_k(found.scores, found.flipped)
    assert precision_at_k([3.0, 1.0, 2.0], [0, 2]) == 1.0 and precision_at_k([3.0, 1.0, 2.0], [1], k=2) == 0.0
    with pytest.raises(ValueError, match="k must be >= 1"):
        precision_at_k([1.0], [])
