"""The result of :func:`xai_core.evaluate.evaluate`: a table of methods x metrics, written as
markdown, CSV or JSON, and a plot (one panel per metric, and the randomization curves per layer).

Example:
    >>> import numpy as np
    >>> r = Report(higher={"sparseness": True}, per_image={"gradient": {"sparseness": np.array([0.2, 0.4])}})
    >>> print(r.to_markdown())
    | method | sparseness ↑ |
    |---|---|
    | gradient | **0.300** |
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Report:
    """Methods x metrics.

    Attributes:
      higher: per metric, whether higher is better (the table marks the best method in bold).
      per_image: ``{method: {metric: (N,) values}}``.
      seconds: ``{method: seconds}`` to compile and run the method on all images.
      randomization: ``{method: {layer: mean similarity}}``, layers from the output side down,
        each randomized with all layers above it (cascading).
      layers: the randomized layers, in that order.
    """

    higher: dict[str, bool]
    per_image: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    randomization: dict[str, dict[str, float]] = field(default_factory=dict)
    layers: list[str] = field(default_factory=list)

    @property
    def scores(self) -> dict[str, dict[str, float]]:
        """``{method: {metric: mean over images}}`` (NaN values, e.g. images without an object, skipped)."""
        return {method: {name: float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
                         for name, v in values.items()} for method, values in self.per_image.items()}

    def best(self) -> dict[str, str]:
        """``{metric: the best method}`` by its mean."""
        scores = self.scores
        return {name: (max if up else min)(scores, key=lambda m: _finite(scores[m][name], up))
                for name, up in self.higher.items() if scores}

    def to_markdown(self, digits: int = 3) -> str:
        """A markdown table: a row per method, a column per metric (↑ higher / ↓ lower is
        better), the best value in bold."""
        best, scores = self.best(), self.scores
        lines = ["| method | " + " | ".join(f"{n} {'↑' if up else '↓'}" for n, up in self.higher.items()) + " |",
                 "|---" * (len(self.higher) + 1) + "|"]
        for method, row in scores.items():
            cells = [f"**{row[n]:.{digits}f}**" if best.get(n) == method else f"{row[n]:.{digits}f}" for n in self.higher]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_csv(self) -> str:
        """One row per method and metric: ``method,metric,mean,higher_is_better``."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["method", "metric", "mean", "higher_is_better"])
        for method, row in self.scores.items():
            for name, value in row.items():
                writer.writerow([method, name, f"{value:.6g}", self.higher[name]])
        return out.getvalue()

    def to_json(self) -> str:
        """Everything: means, per-image values, seconds, randomization curves."""
        return json.dumps({"higher_is_better": self.higher, "scores": self.scores, "seconds": self.seconds,
                           "randomization": self.randomization, "layers": self.layers,
                           "per_image": {m: {n: np.asarray(v).tolist() for n, v in row.items()}
                                         for m, row in self.per_image.items()}}, indent=1, allow_nan=True)

    def save(self, path: str | Path) -> Path:
        """Write the table as ``.md``, ``.csv`` or ``.json`` (by the suffix), or the plot as ``.png``."""
        path = Path(path)
        writers = {".md": self.to_markdown, ".csv": self.to_csv, ".json": self.to_json}
        if path.suffix == ".png":
            return self.plot(path)
        if path.suffix not in writers:
            raise ValueError(f"Report.save: {path} must end in .md, .csv, .json or .png.")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(writers[path.suffix]() + "\n")
        return path

    def plot(self, path: str | Path) -> Path:
        """A PNG: a bar panel per metric (methods side by side, the better direction in the
        title) and, when randomization ran, the similarity per randomized layer."""
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError as err:
            raise ImportError("Report.plot needs matplotlib: pip install 'xai-core[eval]'") from err
        scores, methods = self.scores, list(self.scores)
        panels = len(self.higher) + bool(self.randomization)
        cols = min(4, panels)
        fig, axes = plt.subplots(-(-panels // cols), cols, figsize=(4 * cols, 3.2 * -(-panels // cols)), squeeze=False)
        for ax, (name, up) in zip(axes.flat, self.higher.items()):
            ax.bar(range(len(methods)), [scores[m][name] for m in methods], color="tab:blue")
            ax.set_xticks(range(len(methods)), methods, rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{name} ({'higher' if up else 'lower'} is better)", fontsize=9)
        if self.randomization:
            ax = axes.flat[len(self.higher)]
            for method, curve in self.randomization.items():
                ax.plot(range(len(curve)), list(curve.values()), marker="o", label=method)
            ax.set_xticks(range(len(self.layers)), self.layers, rotation=60, ha="right", fontsize=6)
            ax.set_title("cascading randomization (similarity)", fontsize=9)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[panels:]:
            ax.axis("off")
        fig.tight_layout()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path


def _finite(value: float, higher: bool) -> float:
    return value if np.isfinite(value) else (-np.inf if higher else np.inf)
