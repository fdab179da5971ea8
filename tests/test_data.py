"""Tests for xai_core.data: the procedural shapes data set."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from xai_core.data import CLASSES, Shapes, make_shapes

SIZE = 32


@pytest.fixture(scope="module")
def shapes() -> Shapes:
    return make_shapes(jax.random.key(0), 64, size=SIZE)


def test_shapes_and_dtypes(shapes: Shapes) -> None:
    assert shapes.images.shape == (64, SIZE, SIZE, 3)
    assert shapes.labels.shape == (64,)
    assert shapes.masks.shape == (64, SIZE, SIZE)
    assert shapes.images.dtype == np.float32
    assert shapes.labels.dtype == np.int32
    assert shapes.masks.dtype == np.bool_


def test_value_ranges(shapes: Shapes) -> None:
    images = np.asarray(shapes.images)
    assert np.isfinite(images).all()
    assert images.min() >= 0.0 and images.max() <= 1.0
    assert set(np.unique(shapes.labels).tolist()) <= set(range(len(CLASSES)))


def test_same_key_gives_identical_arrays(shapes: Shapes) -> None:
    again = make_shapes(jax.random.key(0), 64, size=SIZE)
    for a, b in zip(shapes, again):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_different_keys_differ(shapes: Shapes) -> None:
    other = make_shapes(jax.random.key(1), 64, size=SIZE)
    assert not np.array_equal(np.asarray(shapes.images), np.asarray(other.images))
    assert not np.array_equal(np.asarray(shapes.masks), np.asarray(other.masks))


def test_labels_balanced(shapes: Shapes) -> None:
    counts = np.bincount(np.asarray(shapes.labels), minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1


def test_masks_non_empty_and_inside_image(shapes: Shapes) -> None:
    masks = np.asarray(shapes.masks)
    assert masks.any(axis=(1, 2)).all()
    border = masks[:, 0, :].any() or masks[:, -1, :].any() or masks[:, :, 0].any() or masks[:, :, -1].any()
    assert not border, "objects must lie fully inside the image, off the border pixels"


def test_object_area_in_expected_range(shapes: Shapes) -> None:
    fraction = np.asarray(shapes.masks).mean(axis=(1, 2))
    assert fraction.min() > 0.005 and fraction.max() < 0.25


def test_object_is_one_colour_contrasting_with_its_surroundings(shapes: Shapes) -> None:
    images, masks = np.asarray(shapes.images), np.asarray(shapes.masks)
    for image, mask in zip(images, masks):
        inside = image[mask]
        # One flat colour plus pixel noise (uniform, +-0.07) inside the object.
        assert np.ptp(inside, axis=0).max() <= 0.15 + 1e-6
        ring = np.zeros_like(mask)
        ys, xs = np.nonzero(mask)
        ring[max(ys.min() - 3, 0) : ys.max() + 4, max(xs.min() - 3, 0) : xs.max() + 4] = True
        ring &= ~mask
        contrast = np.linalg.norm(inside.mean(axis=0) - np.median(image[ring], axis=0))
        assert contrast > 0.15


def test_default_size_is_64() -> None:
    shapes = make_shapes(jax.random.key(3), 2)
    assert shapes.images.shape == (2, 64, 64, 3)


def test_minimum_size_has_objects() -> None:
    shapes = make_shapes(jax.random.key(4), 32, size=16)
    assert np.asarray(shapes.masks).any(axis=(1, 2)).all()


@pytest.mark.parametrize("n", [0, -1, 2.0, True])
def test_bad_n_raises(n: object) -> None:
    with pytest.raises(ValueError, match="n must be"):
        make_shapes(jax.random.key(0), n)  # type: ignore[arg-type]


@pytest.mark.parametrize("size", [15, 0, 32.0])
def test_bad_size_raises(size: object) -> None:
    with pytest.raises(ValueError, match="size must be"):
        make_shapes(jax.random.key(0), 4, size=size)  # type: ignore[arg-type]
