"""The docs run: every docstring example, and every Python block of the README and the site's pages."""

from __future__ import annotations

import doctest
import importlib
import re
from pathlib import Path

import pytest
from test_house import module_files

REPO = Path(__file__).resolve().parents[1]
# Every module of the package (``adapters/`` as ``xai_core.adapters``): a moved or new module has its
# examples run without anyone editing a list.
MODULES = sorted(name for name in module_files() if not name.endswith(".__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", [p for p in PAGES if "```python" in p.read_text()], ids=lambda p: p.name)
def test_python_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each page's Python blocks, in order, in one namespace per page, in a fresh folder."""
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S)
    monkeypatch.chdir(tmp_path)
    for block in blocks:
        exec(compile(block, str(path.relative_to(REPO)), "exec"), {})
