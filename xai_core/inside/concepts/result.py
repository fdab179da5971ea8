"""The result of a TCAV run (:class:`TCAVResult`): the scores per layer, concept and random set,
the random-vs-random baseline, the p-values; a table (``str``, ``to_rows``, markdown, JSON) and a
plot (matplotlib, the ``eval`` extra).

Example:
    >>> import numpy as np
    >>> from xai_core.inside.concepts.cavs import CAVs
    >>> cavs = CAVs(("up",), {"h": np.zeros((1, 3, 2))}, {"h": np.zeros((2, 2))})
    >>> dd = np.array([[1.0, 2.0, 3.0, 1.0, -1.0], [1.0, 1.0, 1.0, -1.0, 1.0]])  # 2 inputs x 5 CAVs
    >>> r = TCAVResult.from_derivatives(["h"], cavs, [dd], target=0)
    >>> r.scores["sign_count"].tolist(), r.random_scores["sign_count"].tolist()
    ([[[1.0, 1.0, 1.0]]], [[0.5, 0.5]])
    >>> r.to_rows()[0]["p_value"]
    0.0
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from xai_core.inside.concepts.cavs import CAVs
from xai_core.inside.concepts.stats import ttest_ind

__all__ = ["SCORES", "TCAVResult"]

#: Captum's two scores: the share of inputs whose directional derivative is positive, and its mean.
SCORES = ("sign_count", "magnitude")


@dataclass
class TCAVResult:
    """TCAV scores at each layer (``L``) for each concept (``C``) and random set (``R``).

    Attributes:
      layers, concepts: the names, in order.
      scores: ``{"sign_count" | "magnitude": (L, C, R)}``: concept ``c`` against random set ``j``.
      random_scores: ``{score: (L, R - 1)}``: random set 0 against random set ``j + 1``.
      p_values: ``{score: (L, C)}``: Student's two-sided t-test of ``scores[l, c]`` against
        ``random_scores[l]`` (``scipy.stats.ttest_ind``); small means the concept matters.
      accuracy, random_accuracy: ``(L, C, R)`` and ``(L, R - 1)``: the CAV classifiers' held-out
        accuracy (NaN for CAVs given from elsewhere).
      derivatives: per layer ``(n, C R + R - 1)``: every input's directional derivatives.
      target: the class (or classes) explained.
    """

    layers: list[str]
    concepts: list[str]
    scores: dict[str, np.ndarray]
    random_scores: dict[str, np.ndarray]
    p_values: dict[str, np.ndarray]
    accuracy: np.ndarray
    random_accuracy: np.ndarray
    derivatives: list[np.ndarray]
    target: Any = None

    @classmethod
    def from_derivatives(cls, layers: list[str] | tuple[str, ...], cavs: CAVs, derivatives: list[np.ndarray],
                         target: Any = None) -> TCAVResult:
        """Captum's scores from the directional derivatives ``(n, C R + R - 1)`` of each layer
        (CAVs in the order of :func:`~xai_core.inside.concepts.cavs.pairs`)."""
        c, r = len(cavs.concepts), np.shape(cavs.weights[layers[0]])[1]
        dd = [np.asarray(d, np.float64) for d in derivatives]
        per_pair = {"sign_count": np.stack([np.mean(d > 0, axis=0) for d in dd]),
                    "magnitude": np.stack([np.mean(d, axis=0) for d in dd])}
        scores = {k: v[:, :c * r].reshape(len(dd), c, r) for k, v in per_pair.items()}
        random = {k: v[:, c * r:] for k, v in per_pair.items()}
        p = {k: np.array([[ttest_ind(scores[k][i, j], random[k][i])[1] for j in range(c)] for i in range(len(dd))])
             for k in SCORES}

        def acc(d: dict[str, np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
            return np.stack([np.asarray(d.get(la, np.full(shape, np.nan)), np.float64) for la in layers])

        return cls(list(layers), list(cavs.concepts), scores, random, p, acc(cavs.accuracy, (c, r)),
                   acc(cavs.random_accuracy, (r - 1,)), dd, target)

    def to_rows(self, alpha: float = 0.05) -> list[dict[str, Any]]:
        """One dict per layer and concept: each score's mean and standard deviation over the
        random sets, the baseline's mean, the p-value, the mean CAV accuracy and whether the
        sign-count p-value is below ``alpha``."""
        rows = []
        for i, layer in enumerate(self.layers):
            for j, concept in enumerate(self.concepts):
                row: dict[str, Any] = {"layer": layer, "concept": concept}
                for k in SCORES:
                    suffix = "" if k == "sign_count" else "_magnitude"
                    row |= {k: float(np.mean(self.scores[k][i, j])), f"{k}_std": float(np.std(self.scores[k][i, j])),
                            f"random_{k}": float(np.mean(self.random_scores[k][i])),
                            f"p_value{suffix}": float(self.p_values[k][i, j])}
                acc = self.accuracy[i, j]
                row["accuracy"] = float(np.mean(acc)) if np.isfinite(acc).any() else float("nan")
                row["significant"] = bool(row["p_value"] < alpha)
                rows.append(row)
        return rows

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        head = ["layer", "concept", "sign_count", "random", "p", "magnitude", "random", "p (magnitude)", "CAV accuracy"]
        body = [[r["layer"], r["concept"], f"{r['sign_count']:.3f} ± {r['sign_count_std']:.3f}",
                 f"{r['random_sign_count']:.3f}", f"{r['p_value']:.2g}" + (" *" if r["significant"] else ""),
                 f"{r['magnitude']:.3g} ± {r['magnitude_std']:.2g}", f"{r['random_magnitude']:.3g}",
                 f"{r['p_value_magnitude']:.2g}", f"{r['accuracy']:.2f}"] for r in self.to_rows()]
        return head, body

    def __str__(self) -> str:
        head, body = self._cells()
        widths = [max(len(row[k]) for row in [head, *body]) for k in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *body]]
        return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])

    def to_markdown(self) -> str:
        """The table of :meth:`to_rows` in markdown (``*``: sign-count p-value below 0.05)."""
        head, body = self._cells()
        return "\n".join(["| " + " | ".join(head) + " |", "|---" * len(head) + "|",
                          *("| " + " | ".join(row) + " |" for row in body)])

    def to_json(self) -> str:
        """Everything but the per-input derivatives, as JSON."""
        return json.dumps({"layers": self.layers, "concepts": self.concepts, "target": np.asarray(self.target).tolist(),
                           "rows": self.to_rows(), "scores": {k: v.tolist() for k, v in self.scores.items()},
                           "random_scores": {k: v.tolist() for k, v in self.random_scores.items()},
                           "p_values": {k: v.tolist() for k, v in self.p_values.items()},
                           "accuracy": self.accuracy.tolist()}, indent=1, allow_nan=True)

    def save(self, path: str | Path) -> Path:
        """Write the table as ``.md`` or ``.json``, or the plot as ``.png`` (by the suffix)."""
        path = Path(path)
        if path.suffix not in (".md", ".json", ".png"):
            raise ValueError(f"TCAVResult.save: {path.name} must end in .md, .json or .png.")
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".png":
            fig = self.plot()
            fig.savefig(path, dpi=100)
            import matplotlib.pyplot as plt

            plt.close(fig)
        else:
            path.write_text((self.to_markdown() if path.suffix == ".md" else self.to_json()) + "\n")
        return path

    def plot(self, score: str = "sign_count", alpha: float = 0.05) -> Any:
        """A matplotlib figure, a panel per layer: each concept's mean score over the random sets
        (bar, standard deviation as error bar) beside the random baseline, with the p-value
        (``*`` below ``alpha``); Captum's TCAV tutorial's picture."""
        if score not in SCORES:
            raise ValueError(f"TCAVResult.plot: score must be one of {SCORES}, got {score!r}.")
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("TCAVResult.plot needs matplotlib: pip install 'xai-core[eval]'") from err
        width = 1.2 + 1.3 * (len(self.concepts) + 1) * len(self.layers)
        fig, axes = plt.subplots(1, len(self.layers), figsize=(width, 3.4), squeeze=False)
        for ax, i in zip(axes[0], range(len(self.layers))):
            values = [*self.scores[score][i], self.random_scores[score][i]]
            names = [*self.concepts, "random"]
            ax.bar(range(len(names)), [np.mean(v) for v in values], yerr=[np.std(v) for v in values], capsize=3,
                   color=["tab:blue"] * len(self.concepts) + ["tab:gray"])
            for j, p in enumerate(self.p_values[score][i]):
                ax.annotate(f"p={p:.2g}" + (" *" if p < alpha else ""), (j, np.mean(values[j])), ha="center",
                            va="bottom", xytext=(0, 8), textcoords="offset points", fontsize=7)
            ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
            ax.set_title(self.layers[i], fontsize=9)
            if score == "sign_count":
                ax.set_ylim(0, 1.15)
        axes[0][0].set_ylabel(f"TCAV {score}")
        fig.tight_layout()
        return fig
