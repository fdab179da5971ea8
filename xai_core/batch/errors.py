"""The batch job's user errors: each names the flag whose value caused it and says what to do.

:func:`blame` is the one place that turns an error a value causes (a file that does not load,
a method option the method refuses) into a :class:`SpecError`; ``xai-core attribute`` prints
its message as one line and exits with status 2.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from xai_core.core.checks import UsageError


class SpecError(UsageError):
    """A flag's value that cannot be used: the message starts with the flag and says what to do."""


class MissingExtra(ImportError):
    """A library of the batch job (grain, tensorstore) is not installed."""


@contextmanager
def blame(flag: str, *errors: type[Exception], hint: str = "") -> Iterator[None]:
    """Re-raise ``errors`` (default ``OSError``, ``ValueError``, ``TypeError``) raised inside as a
    :class:`SpecError` naming ``flag`` (e.g. ``"--labels y.txt"``), with ``hint`` (what to do)."""
    try:
        yield
    except SpecError:
        raise
    except (errors or (OSError, ValueError, TypeError)) as err:
        reason = str(err) if isinstance(err, (ValueError, TypeError)) else f"{type(err).__name__}: {err}"
        raise SpecError(f"{flag}: {reason.rstrip('.')}{'; ' + hint if hint else ''}.") from err


def class_indices(flag: str, path: str, n: int) -> np.ndarray:
    """One class index per example from a ``.npy`` array or a text file (one integer a line)."""
    hint = "give a .npy array or a text file of one integer per line"
    if not Path(path).is_file():
        raise SpecError(f"{flag} {path}: no such file; {hint}.")
    with blame(f"{flag} {path}", hint=hint):
        values = np.load(path) if path.endswith(".npy") else np.loadtxt(path, ndmin=1)
    integral = np.issubdtype(values.dtype, np.integer) or (
        np.issubdtype(values.dtype, np.floating) and bool(np.all(np.isfinite(values) & (values == np.round(values)))))
    if values.shape != (n,) or not integral:
        what = f"{values.shape} values" if values.shape != (n,) else f"non-integer values ({values.dtype})"
        raise SpecError(f"{flag} {path}: {what} for {n} examples; give one integer class index per example.")
    return values.astype(np.int64)
