"""Sphinx configuration of the xai-core site: ``sphinx-build -W docs docs/_build`` (warnings are errors).

The pages are MyST markdown; the notebooks of ``notebooks/`` are executed by myst-nb; the API
reference comes from the docstrings (autodoc / autosummary, Google style through napoleon). Two
things are generated from the code so they cannot drift: the API page (``api.md``, from
``xai_core.__all__`` and the public namespaces) and the methods table (the ``xai-methods``
directive, from the registry).
"""

from __future__ import annotations

import importlib
import inspect
import re
import shutil
import sys
from pathlib import Path

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.pycode import ModuleAnalyzer
from sphinx.util.docutils import SphinxDirective

DOCS = Path(__file__).resolve().parent
REPO = DOCS.parent
sys.path.insert(0, str(REPO))  # the checkout's xai_core (its adapters/ folder maps to xai_core.adapters)

import xai_core  # noqa: E402
from xai_core.registry import _METHODS  # noqa: E402

project = "xai-core"
author = "the xai-core developers"
copyright = "2026, the xai-core developers"
release = xai_core.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]
exclude_patterns = ["_build", "jupyter_execute", "**.ipynb_checkpoints", "results/**"]
html_theme = "furo"
html_title = f"xai-core {release}"
html_static_path: list[str] = []

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3
nb_execution_mode = "force"          # the notebooks are stored without outputs: run them all
nb_execution_timeout = 900
nb_execution_raise_on_error = True   # a notebook that fails fails the build
nb_merge_streams = True

autosummary_generate = True
autodoc_default_options = {"members": False}
autodoc_typehints = "signature"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
add_module_names = False

# --------------------------------------------------------------------------- #
# Notebooks: the repository's notebooks/ are the tutorials (copied in, executed by myst-nb).
# --------------------------------------------------------------------------- #
NOTEBOOKS = ["quickstart", "inside_the_network", "torch", "keras", "language_model", "regions_and_concepts"]
(DOCS / "notebooks").mkdir(exist_ok=True)
for name in NOTEBOOKS:
    shutil.copy(REPO / "notebooks" / f"{name}.ipynb", DOCS / "notebooks" / f"{name}.ipynb")

# --------------------------------------------------------------------------- #
# The benchmarks' own README as a page (its result files beside it, as downloads).
# --------------------------------------------------------------------------- #
shutil.copytree(REPO / "benchmarks" / "results", DOCS / "results", dirs_exist_ok=True)
_bench = (REPO / "benchmarks" / "README.md").read_text()
_bench = re.sub(r"(?<!!)\[([^\]]+)\]\((results/[^)]+)\)", r"{download}`\1 <\2>`", _bench)
if not (DOCS / "benchmarks.md").is_file() or (DOCS / "benchmarks.md").read_text() != _bench:
    (DOCS / "benchmarks.md").write_text(_bench)

# --------------------------------------------------------------------------- #
# The API page, generated from the package's public names.
# --------------------------------------------------------------------------- #
#: Public namespaces documented beside ``xai_core.__all__``: (module, title, names or None for its __all__).
NAMESPACES = [
    ("xai_core.inside.cam", "CAMs (`xc.cam`)", None),
    ("xai_core.inside.layer", "Layer and neuron attribution (`xc.layer`)", None),
    ("xai_core.inside.featureviz", "Feature visualization (`xc.featureviz`)", None),
    ("xai_core.inside.concepts", "Concepts, TCAV (`xc.concepts`)", None),
    ("xai_core.attribution.segments", "Feature masks (`xc.segments`)", None),
    ("xai_core.lm", "Language models (`xc.lm`)", None),
    ("xai_core.metrics", "Metrics (`xc.metrics`)", None),
    ("xai_core.robust", "Robustness (`xc.robust`)", None),
    ("xai_core.influence", "Training-data influence (`xc.influence`)", None),
    ("xai_core.rules", "Rules and composites (`xc.rules`)", None),
    ("xai_core.viz", "Pictures (`xc.viz`)", None),
    ("xai_core.adapters", "Adapters (`xai_core.adapters`)", None),
    ("xai_core.graph", "Graph tools (`xai_core.graph`)", None),
    ("xai_core.callbacks", "Callbacks (`xai_core.callbacks`)", None),
    ("xai_core.batch", "The batch job (`xai_core.batch`)", None),
    ("xai_core.data", "Data (`xai_core.data`)", ["make_shapes", "Shapes", "CLASSES"]),
]


def _api_page() -> str:
    top = [n for n in xai_core.__all__ if not inspect.ismodule(getattr(xai_core, n))]  # namespaces: below
    lines = ["# API reference", "",
             "Every public name of `xai_core` (`import xai_core as xc`), with its signature and docstring;",
             "this page is generated from `xai_core.__all__` and the public namespaces.", "",
             "## `xai_core`", "", "```{eval-rst}", ".. autosummary::", "   :toctree: generated", ""]
    lines += [f"   xai_core.{n}" for n in sorted(top, key=str.lower)]
    lines += ["```", ""]
    for module_name, title, names in NAMESPACES:
        lines += [f"## {title}", "", "```{eval-rst}", f".. automodule:: {module_name}",
                  "   :no-members:", "", ".. autosummary::", "   :toctree: generated", ""]
        listed = names if names is not None else importlib.import_module(module_name).__all__
        lines += [f"   {n}" for n in sorted(listed, key=str.lower)]
        lines += ["```", ""]
    return "\n".join(lines)


_api = _api_page()
if not (DOCS / "api.md").is_file() or (DOCS / "api.md").read_text() != _api:
    (DOCS / "api.md").write_text(_api)


# --------------------------------------------------------------------------- #
# The methods table, generated from the registry.
# --------------------------------------------------------------------------- #
def _options(build: object) -> str:
    shown = []
    for p in inspect.signature(build).parameters.values():
        if p.name == "score_fn" or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        shown.append(f"`{p.name}`" if p.default is p.empty else f"`{p.name}={p.default!r}`")
    return ", ".join(shown)


class MethodsTable(SphinxDirective):
    """``xai-methods``: every name ``xc.attribute`` accepts, its aliases, options and summary."""

    def run(self) -> list[nodes.Node]:
        seen: dict[str, list[str]] = {}
        for label, method in sorted(_METHODS.items()):
            seen.setdefault(method.name, []).append(label)
        rows = ["| `method=` (aliases) | options | what it computes |", "|---|---|---|"]
        for name in sorted(seen):
            method = _METHODS[name]
            aliases = [a for a in seen[name] if a != name]
            transform = name if name in xai_core.__all__ else "smoothgrad"
            label = f"`{name}`" + (f" ({', '.join(f'`{a}`' for a in aliases)})" if aliases else "")
            key = "; needs `key=`" if method.needs_key else ""
            rows.append(f"| {label} | {_options(method.build) or '(none)'} | {method.summary}{key} "
                        f"({{func}}`xai_core.{transform}`) |")
        node = nodes.container()
        self.state.nested_parse(StringList(rows), self.content_offset, node)
        return node.children


def _constant_doc(app: object, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    """A constant ``xai_core`` re-exports gets the docstring written where it is defined (autodoc
    would show its type's docstring, e.g. ``str``'s for ``DEFAULT_BATCH_SIZE``)."""
    short = name.rsplit(".", 1)[-1]
    if what != "data" or name != f"xai_core.{short}":
        return
    for module in sorted(m for m in sys.modules if m.startswith("xai_core.")):
        if getattr(sys.modules[module], short, None) is obj:
            doc = ModuleAnalyzer.for_module(module).find_attr_docs().get(("", short))
            if doc:
                lines[:] = list(doc)
                return


def setup(app: object) -> dict[str, bool]:
    app.add_directive("xai-methods", MethodsTable)
    app.connect("autodoc-process-docstring", _constant_doc)
    return {"parallel_read_safe": True}
