"""The callback's cost per epoch, as a share of the epoch's training time, on tf-explain's
tutorial model.

    python -m benchmarks.callbacks            # about 1 minute on 2 cores

The seed model of tf-explain's tutorial (Conv2D 32/64/128 ReLU, Flatten, Dense 128 ReLU,
Dense 10 softmax; Keras 3 on JAX) trained on scikit-learn's digits upsampled to 28x28 (the
1797 images four times over, batch 64), with :class:`xai_core.callbacks.AttributionCallback`
explaining 16 validation images with the gradient or IG-32 at every epoch's end. The time
inside the callback (explaining, picturing, handing the images to the writer's thread) is
measured per epoch against the epoch's own time; the first epoch includes the one compilation.
Writes ``results/callbacks-<machine>.json``.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "jax")

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    import jax
    import keras
    import numpy as np
    from sklearn.datasets import load_digits

    from benchmarks.run import cpu_name, machine, machine_tag
    from xai_core.callbacks import AttributionCallback

    d = load_digits()
    x = np.asarray(jax.image.resize(d.images[..., None] / 16.0, (len(d.images), 28, 28, 1), "linear"), np.float32)
    x, y = np.tile(x, (4, 1, 1, 1)), np.tile(d.target, 4)
    L = keras.layers

    def model() -> Any:
        keras.utils.set_random_seed(0)
        m = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(32, 3, activation="relu"),
                              L.Conv2D(64, 3, activation="relu"), L.Conv2D(128, 3, activation="relu"), L.Flatten(),
                              L.Dense(128, activation="relu"), L.Dense(10, activation="softmax")])
        m.compile("adam", "sparse_categorical_crossentropy")
        return m

    class Timed(keras.callbacks.Callback):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner, self.epoch_s, self.callback_s = inner, [], []

        def set_model(self, model: Any) -> None:
            super().set_model(model)
            self.inner.set_model(model)

        def on_train_begin(self, logs: Any = None) -> None:
            self.inner.on_train_begin(logs)

        def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
            t = time.perf_counter()
            self.inner.on_epoch_end(epoch, logs)
            self.callback_s.append(time.perf_counter() - t)
            self.epoch_s.append(t - self.start)

        def on_train_end(self, logs: Any = None) -> None:
            self.inner.on_train_end(logs)

    rows = {}
    for label, method, options in [("gradient", "gradient", {}), ("IG-32", "ig", {"steps": 32})]:
        with tempfile.TemporaryDirectory() as out:
            timed = Timed(AttributionCallback((x[:16], y[:16]), method=method, log_dir=out, **options))
            model().fit(x, y, epochs=4, batch_size=64, callbacks=[timed], verbose=0)
        later = [c / e for c, e in zip(timed.callback_s[1:], timed.epoch_s[1:])]
        rows[label] = {"epoch_s": timed.epoch_s, "callback_s": timed.callback_s, "first_epoch_share": timed.callback_s[0] / timed.epoch_s[0],
                       "later_share_median": float(np.median(later)), "compiled": timed.inner.explainer.compiled()}
        print(f"{label}: epoch {np.median(timed.epoch_s[1:]):.2f} s, callback {np.median(timed.callback_s[1:]) * 1000:.0f} ms "
              f"= {100 * np.median(later):.1f}% (first epoch, with the compilation: {100 * rows[label]['first_epoch_share']:.1f}%), "
              f"programs compiled: {rows[label]['compiled']}")
    out = RESULTS / f"callbacks-{machine_tag(machine())}.json"
    out.write_text(json.dumps({"machine": cpu_name(), "cores": os.cpu_count(), "images": int(len(x)), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
