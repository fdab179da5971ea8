"""The house by purpose: every import points down, and no module imports itself in a circle.

Each part of ``xai_core`` (a subpackage, or a top-level module) has a floor; a module may import
only parts on lower floors, and modules of one part must not form a circle. Every import
statement counts, also those inside functions and under ``TYPE_CHECKING``. CONTRIBUTING.md
shows the same map.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: Floors, from the ground up. A part imports only parts on a strictly lower floor.
FLOORS: dict[str, int] = {
    "graph": 0, "viz": 0, "data": 0,    # jaxpr tools, pictures, the shapes data: import no other part
    "core": 1,                          # inputs, checks, chunking, XLA defaults
    "rules": 2, "adapters": 2,          # the rule engine; model -> logits function
    "attribution": 3,                   # gradients and paths, smoothing, occlusion, expectations, tokens
    "inside": 4,                        # methods at a named layer: CAMs, layer / neuron, feature visualization
    "registry": 5,                      # the one table of method names
    "metrics": 6,                       # metrics, evaluate and its report
    "lm": 6,                            # generative language models: token x token attribution
    "robust": 6,                        # adversarial robustness: FGSM, PGD, the smallest perturbation, comparisons
    "influence": 6,                     # training-data influence: TracIn, self-influence, proponents and opponents
    "__init__": 7,                      # the public face: `import xai_core as xc`
    "demo": 8, "callbacks": 8,          # applications on the public face
    "batch": 9,                         # the batch job (its examples use the demo's model)
    "cli": 10, "__main__": 11,
}


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (``adapters/`` as ``xai_core.adapters``)."""
    files = {}
    for root, prefix in ((REPO / "xai_core", "xai_core"), (REPO / "adapters", "xai_core.adapters")):
        for path in root.rglob("*.py"):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            files[".".join([prefix, *parts])] = path
    return files


def part(module: str) -> str:
    """The part of the house a module belongs to: ``xai_core.core.checks`` -> ``core``."""
    name = module.split(".")[1] if module.count(".") else "__init__"
    return name


def imports(module: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``module`` imports (``from pkg import name`` counts as the
    submodule ``pkg.name`` where one exists, else as ``pkg``)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + is_package]
                base = ".".join([*anchor, *([base] if base else [])])
            found.update(f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names)
    return {name for name in found if name in known and name != module}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    files = module_files()
    return {module: imports(module, path, set(files)) for module, path in files.items()}


def test_every_part_has_a_floor(graph: dict[str, set[str]]) -> None:
    assert {part(m) for m in graph} <= set(FLOORS), "a new part of the house: give it a floor in FLOORS"


def test_imports_point_down(graph: dict[str, set[str]]) -> None:
    upward = sorted(f"{m} ({part(m)}, floor {FLOORS[part(m)]}) imports {t} ({part(t)}, floor {FLOORS[part(t)]})"
                    for m, targets in graph.items() for t in targets
                    if part(t) != part(m) and FLOORS[part(t)] >= FLOORS[part(m)])
    assert not upward, "\n".join(upward)


def test_no_import_circles(graph: dict[str, set[str]]) -> None:
    """Within a part, the modules' imports form no circle (a package's __init__ importing its
    modules is fine; a module importing back its own package's __init__ is a circle)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (circle := visit(t)):
                return circle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (circle := visit(m)):
            pytest.fail("import circle: " + " -> ".join(circle))


def test_each_package_says_what_lives_there_and_who_may_import_it() -> None:
    for init in [*sorted((REPO / "xai_core").glob("*/__init__.py")), REPO / "adapters" / "__init__.py"]:
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert "import" in doc.split("\n\n")[0], f"{init}: the first paragraph says what lives here and who imports it"


def test_modules_stay_small() -> None:
    sizes = {p: len(p.read_text().splitlines()) for p in module_files().values()}
    large = {str(p.relative_to(REPO)): n for p, n in sizes.items() if n > 330}
    assert not large, f"split these modules into a package (~300 lines each): {large}"


def test_every_public_name_the_docs_use_still_works(tmp_path: Path) -> None:
    """Each ``xc.name`` / ``xc.name.attr`` and each ``from xai_core... import ...`` in the README,
    CONTRIBUTING, the site's pages and the notebooks resolves right after ``import xai_core as xc``."""
    import subprocess
    import sys

    text = "\n".join(p.read_text() for p in [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md")),
                                               *sorted((REPO / "notebooks").glob("*.ipynb"))])
    text = text.replace("\\n", "\n")  # notebook sources are JSON strings
    attributes = sorted(set(re.findall(r"\bxc\.([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?)", text)))
    statements = sorted(set(re.findall(r"^\s*(from xai_core[\w.]* import [\w, ]+)", text, flags=re.M)))
    assert len(attributes) > 20 and len(statements) > 5
    code = "import functools, xai_core as xc\n" + "".join(
        f"functools.reduce(getattr, {a.split('.')!r}, xc)\n" for a in attributes) + "\n".join(statements)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr[-3000:]
