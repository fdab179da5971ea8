"""What a batch job reads: the model (``--model SPEC``) and the data (``--data SPEC``).

Models: a Keras file (``.keras`` / ``.h5``), a torch ``ExportedProgram`` file (``.pt2``, from
``torch.export.save``), or ``package.module:factory``, a function returning an adapter model
(``from_flax(...)``, ``from_torch(...)``, anything with ``logits`` / ``score`` / ``params``).

Data: a folder of images (PNG / JPEG through pillow, sorted by path, resized to the model's
input size, scaled to [0, 1], then ``(x - mean) / std``), a ``.npy`` array of examples
(memory-mapped), a ``.zarr`` array (v2 or v3, read row by row through tensorstore), or ``package.module:factory`` returning an array or an ``(images, labels)``
pair. Each source reads one example at a time by index, so a loader (grain) can decode shards
in threads ahead of the devices; an example that cannot be read is an :class:`ExampleError`
(recorded by the job, which goes on).

A value that cannot be used is a :class:`~xai_core.batch.errors.SpecError` naming its flag.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from xai_core.batch.errors import MissingExtra, SpecError, blame, class_indices

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


class ExampleError(Exception):
    """One example that cannot be read (a corrupt or wrong-shaped image)."""


def need(module: str) -> Any:
    """Import one of the batch job's libraries (grain, tensorstore), naming the install if missing."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtra(f"xai-core attribute needs {module}: pip install 'xai-core[batch]'") from err


def _factory(spec: str, what: str) -> Any:
    module_name, _, attr = spec.partition(":")
    sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except (ImportError, ValueError) as err:  # ValueError: an empty module name
        raise SpecError(f"--{what} {spec!r}: cannot import {module_name!r} ({err}); the spec is "
                        "'package.module:factory' with the module importable from here") from err
    finally:
        sys.path.pop(0)
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise SpecError(f"--{what} {spec!r}: {module_name} has no callable {attr!r}.")
    return fn()


def load_model(spec: str) -> Any:
    """An adapter model from a ``--model`` spec (see the module doc)."""
    path = Path(spec)
    if path.suffix in (".keras", ".h5"):
        if not path.is_file():
            raise SpecError(f"--model {spec}: no such file.")
        from xai_core.adapters import from_keras

        with blame(f"--model {spec}", ValueError, OSError):
            return from_keras(path)
    if path.suffix == ".pt2":
        if not path.is_file():
            raise SpecError(f"--model {spec}: no such file.")
        return _from_exported(path, spec)
    if ":" in spec and not path.exists():
        model = _factory(spec, "model")
        if not all(hasattr(model, a) for a in ("logits", "score", "params")):
            raise SpecError(f"--model {spec}: the factory returned {type(model).__name__}, not an adapter model "
                            "(return xai_core.adapters.from_flax(...) / from_torch(...) / from_keras(...)).")
        return model
    raise SpecError(f"--model {spec!r}: expected a .keras / .h5 file, a .pt2 torch.export file, or "
                    "'package.module:factory'.")


def _from_exported(path: Path, spec: str) -> Any:
    """The adapter model of a ``torch.export`` file, quietly: torch logs a failed read with its
    traceback and warns of its own deprecations, neither the user's to act on."""
    import torch

    from xai_core.adapters import from_torch

    log, fix = logging.getLogger("torch.export"), "save it with torch.export.save(torch.export.export(model, args))"
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            try:
                program = torch.export.load(str(path))
            except Exception as err:  # noqa: BLE001 - whatever stops the file from loading
                raise SpecError(f"--model {spec}: torch.export.load failed ({type(err).__name__}: {err}); "
                                f"{fix}.") from err
            args, _ = program.example_inputs
            # core ATen operations (every argument explicit), which torchax lowers
            with blame(f"--model {spec}", ValueError, TypeError, NotImplementedError):
                return from_torch(_Exported(program.run_decompositions().module()), *args)
    finally:
        log.setLevel(level)


def _Exported(module: Any) -> Any:  # noqa: N802 - a class made on demand (torch is imported lazily)
    """An ``ExportedProgram``'s module in a plain ``nn.Module``. An exported program runs with the
    semantics it was exported with (its ``training`` flags change nothing) and refuses ``.eval()``,
    which ``from_torch`` calls: the flags are cleared here, so ``from_torch`` has no mode to warn of."""
    import torch

    for sub in module.modules():
        sub.training = False

    class Exported(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.program = module
            self.training = False

        def forward(self, *args: Any) -> Any:
            return self.program(*args)

        def train(self, mode: bool = True) -> Any:
            return self

    return Exported()


@dataclass
class Source:
    """Examples by index: ``read(i) -> (H, W, C) or (C, H, W) float32``; ``labels`` or None."""

    names: list[str]
    example_shape: tuple[int, ...]
    labels: np.ndarray | None
    fingerprint: str
    reader: Any = field(repr=False)

    def __len__(self) -> int:
        return len(self.names)

    def read(self, i: int) -> np.ndarray:
        return self.reader(i)


def _image_reader(paths: Sequence[Path], shape: tuple[int, ...], mean: Any, std: Any) -> Any:
    from PIL import Image, UnidentifiedImageError

    first = channels_first(shape)
    c, h, w = shape if first else (shape[2], shape[0], shape[1])

    def read(i: int) -> np.ndarray:
        try:
            with Image.open(paths[i]) as image:
                image = image.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
                x = np.asarray(image, np.float32).reshape(h, w, c) / 255.0
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise ExampleError(f"cannot decode: {type(err).__name__}: {err}") from err
        x = (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1) if first else x)

    return read


def _labels_file(labels: str | None, n: int) -> np.ndarray | None:
    return None if labels is None else class_indices("--labels", labels, n)


def channels_first(shape: Sequence[Any]) -> bool:
    """Whether an image's shape reads as ``(C, H, W)`` rather than ``(H, W, C)``."""
    return len(shape) == 3 and shape[0] in (1, 3) and shape[-1] not in (1, 3)


def load_data(spec: str, example_shape: tuple[int, ...] | None, *, labels: str | None = None,
              mean: Sequence[float] = (0.0,), std: Sequence[float] = (1.0,)) -> Source:
    """A :class:`Source` from a ``--data`` spec; ``example_shape`` is the model's input shape
    (images are resized to it and laid out as it is: ``(H, W, C)`` or ``(C, H, W)``)."""
    source = _open(spec, example_shape, labels, mean, std)
    shape = source.example_shape
    if len(shape) == 3:
        channels = shape[0] if channels_first(shape) else shape[-1]
        for flag, values in (("--mean", mean), ("--std", std)):
            if len(values) not in (1, channels):
                raise SpecError(f"{flag} {','.join(map(str, values))}: {len(values)} values for images of "
                                f"{channels} channel(s); give one value, or one per channel.")
    return source


def _open(spec: str, example_shape: tuple[int, ...] | None, labels: str | None, mean: Sequence[float],
          std: Sequence[float]) -> Source:
    path = Path(spec)
    if path.is_dir() and path.suffix != ".zarr":
        paths = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not paths:
            raise SpecError(f"--data {spec}: no {'/'.join(IMAGE_SUFFIXES)} images in this folder.")
        if example_shape is None or len(example_shape) != 3 or None in example_shape:
            raise SpecError(f"--data {spec}: the model's input shape {example_shape} is not an image's "
                            "(H, W, C) or (C, H, W); pass --input-shape H,W,C (or C,H,W), or an .npy array.")
        stats = [(str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in paths]
        digest = hashlib.sha256(json.dumps([stats, list(mean), list(std), list(example_shape)]).encode()).hexdigest()
        names = [s[0] for s in stats]
        return Source(names, tuple(example_shape), _labels_file(labels, len(paths)), digest,
                      _image_reader(paths, tuple(example_shape), mean, std))
    if path.suffix == ".zarr" and path.is_dir():
        ts = need("tensorstore")
        driver = "zarr3" if (path / "zarr.json").is_file() else "zarr"
        try:
            array = ts.open({"driver": driver, "kvstore": {"driver": "file", "path": str(path)}}, open=True).result()
        except ValueError as err:
            raise SpecError(f"--data {spec}: tensorstore cannot open it as a zarr array ({err}).") from err
        meta = sorted((str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns) for p in path.rglob("*")
                      if p.is_file())
        digest = hashlib.sha256(json.dumps(meta).encode()).hexdigest()
        reader = _ZarrRows(_batch(array, spec))
        return _array_source(reader, _labels_file(labels, len(reader)), digest, spec, example_shape)
    if path.suffix == ".npy":
        if not path.is_file():
            raise SpecError(f"--data {spec}: no such file.")
        with blame(f"--data {spec}", hint="give a .npy array of examples (N, ...) saved by numpy.save"):
            array = _batch(np.load(path, mmap_mode="r"), spec)
        stat = path.stat()
        digest = hashlib.sha256(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}:{array.shape}".encode()).hexdigest()
        return _array_source(array, _labels_file(labels, len(array)), digest, spec, example_shape)
    if ":" in spec and not path.exists():
        made = _factory(spec, "data")
        with blame(f"--data {spec}", hint="the factory returns an array of examples or a pair (images, labels)"):
            images, given = made if isinstance(made, tuple) else (made, None)
            images = _batch(np.asarray(images), spec)
        digest = hashlib.sha256(images.tobytes()).hexdigest()
        label_array = _labels_file(labels, len(images)) if labels else (None if given is None else np.asarray(given))
        if label_array is not None and label_array.shape != (len(images),):
            raise SpecError(f"--data {spec}: the factory returned {len(images)} examples and labels of shape "
                            f"{label_array.shape}; return one integer label per example.")
        return _array_source(images, label_array, digest, spec, example_shape)
    what = "no such file or folder" if not path.exists() and ":" not in spec else "not a data spec"
    raise SpecError(f"--data {spec!r}: {what}; expected a folder of images, a .npy file, a .zarr array, or "
                    "'package.module:factory'.")


class _ZarrRows:
    """A zarr array's rows read one at a time (tensorstore), like a memory-mapped ``.npy``."""

    def __init__(self, array: Any) -> None:
        self.array, self.shape = array, tuple(array.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.array[i].read().result())


def _batch(array: Any, spec: str) -> Any:
    """``array`` if it is a batch of examples ``(N, ...)``, N >= 1."""
    if len(array.shape) < 2 or not array.shape[0]:
        raise SpecError(f"--data {spec}: an array of shape {tuple(array.shape)}; give a batch of examples "
                        "(N, ...) with N >= 1.")
    return array


def _array_source(array: np.ndarray, labels: np.ndarray | None, digest: str, spec: str,
                  example_shape: tuple[int, ...] | None) -> Source:
    shape = tuple(array.shape[1:])
    if example_shape is not None and (len(example_shape) != len(shape) or any(
            e is not None and e != s for e, s in zip(example_shape, shape))):
        raise SpecError(f"--data {spec}: examples of shape {shape}, but the model takes {tuple(example_shape)} "
                        "(its own input shape, or --input-shape); give examples of that shape.")
    return Source([f"{spec}[{i}]" for i in range(len(array))], shape, labels, digest,
                  lambda i: np.asarray(array[i], np.float32))


def model_fingerprint(model: Any) -> str:
    """A hash of the model's weights: their structure and every leaf's bytes."""
    import jax

    leaves, treedef = jax.tree.flatten(model.params)
    digest = hashlib.sha256(str(treedef).encode())
    for leaf in leaves:
        digest.update(np.asarray(leaf).tobytes())
    return digest.hexdigest()
