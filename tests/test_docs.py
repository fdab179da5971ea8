"""The docs run: every docstring example, and every Python block of the README."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MODULES = [
    "xai_core",
    "xai_core._chunking",
    "xai_core.gradients",
    "xai_core.smoothing",
    "xai_core.inputs",
    "xai_core.tokens",
    "xai_core.perturbation",
    "xai_core.registry",
    "xai_core.rules",
    "xai_core.rules.relu",
    "xai_core.rules.deeplift",
    "xai_core.rules.lrp",
    "xai_core.shap",
    "xai_core.cam",
    "xai_core.featureviz",
    "xai_core.viz.layers",
    "xai_core.callbacks",
    "xai_core.graph",
    "xai_core.graph.interpreter",
    "xai_core.graph.cut",
    "xai_core.graph.marks",
    "xai_core.graph.rewrites",
    "xai_core.data",
    "xai_core.viz",
    "xai_core.viz.images",
    "xai_core.viz.text",
    "xai_core.metrics",
    "xai_core.metrics._common",
    "xai_core.metrics.faithfulness",
    "xai_core.metrics.fidelity",
    "xai_core.metrics.robustness",
    "xai_core.metrics.road",
    "xai_core.metrics.localization",
    "xai_core.metrics.complexity",
    "xai_core.metrics.similarity",
    "xai_core.metrics.randomization",
    "xai_core.evaluation",
    "xai_core.report",
    "xai_core.batch",
    "xai_core.batch.report",
    "xai_core.adapters",
    "xai_core.adapters._base",
    "xai_core.adapters._text",
    "xai_core.adapters.flax",
    "xai_core.adapters.torch",
    "xai_core.adapters.keras",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_readme_python_blocks_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    assert blocks, "README has no python example"
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
