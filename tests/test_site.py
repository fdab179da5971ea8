"""The documentation site: ``sphinx-build -W`` builds it (warnings are errors, the notebooks
executed), and in headless Chromium the index opens offline, the API page has an entry for every
public name, the methods table lists every registered method, and the notebooks show their pictures."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import xai_core as xc
from xai_core.registry import methods

REPO = Path(__file__).resolve().parents[1]
NAMESPACES = {"cam": xc.cam, "layer": xc.layer, "featureviz": xc.featureviz, "metrics": xc.metrics, "viz": xc.viz,
              "segments": xc.segments, "lm": xc.lm, "concepts": xc.concepts,
              "robust": xc.robust, "influence": xc.influence}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_nb")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "sphinx", "-W", "-E", "-q", "-d", str(out / "doctrees"),
                           str(REPO / "docs"), str(out / "html")], capture_output=True, text=True, timeout=2400)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    return out / "html"


def opened(browser, path: Path):  # noqa: ANN001, ANN201 - playwright's types
    """``path`` in a new tab, with every page error, console error and non-file request recorded."""
    page = browser.new_page()
    page.problems = []
    page.on("pageerror", lambda e: page.problems.append(f"page error: {e}"))
    page.on("console", lambda m: page.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("request", lambda r: None if r.url.startswith(("file://", "data:")) else page.problems.append(r.url))
    page.goto(path.as_uri())
    return page


def test_index_opens_offline_and_links_every_page(site: Path, browser) -> None:  # noqa: ANN001
    page = opened(browser, site / "index.html")
    links = {href.split("#")[0] for href in page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
             if href}
    pages = {p.stem for p in (REPO / "docs").glob("*.md")} - {"index"} | {"benchmarks", "api"}
    assert {f"{name}.html" for name in pages} <= links, sorted(links)
    assert {f"notebooks/{n}.html" for n in ("quickstart", "inside_the_network", "torch", "keras", "language_model",
                                            "regions_and_concepts")} <= links
    assert page.problems == []
    page.close()


def test_api_page_has_every_public_name(site: Path, browser) -> None:  # noqa: ANN001
    page = opened(browser, site / "api.html")
    hrefs = page.eval_on_selector_all("a", "els => els.map(e => e.getAttribute('href'))")
    entries = {re.sub(r"\.html.*$", "", h.rsplit("/", 1)[-1]) for h in hrefs if h and h.startswith("generated/")}
    for name in xc.__all__:
        if name in NAMESPACES:
            expected = {f"{NAMESPACES[name].__name__}.{member}" for member in NAMESPACES[name].__all__}
            assert expected <= entries, sorted(expected - entries)
        else:
            assert f"xai_core.{name}" in entries, name
    assert page.problems == []
    page.close()
    entry = (site / "generated" / "xai_core.integrated_gradients.html").read_text()
    assert "steps" in entry and "Sundararajan" in entry  # the signature and the docstring


def test_methods_table_lists_the_registry(site: Path) -> None:
    text = (site / "methods.html").read_text()
    for name in methods():
        assert f"<span class=\"pre\">{name}</span>" in text, name


def test_notebooks_rendered_with_their_pictures(site: Path, browser) -> None:  # noqa: ANN001
    for name in ("quickstart", "inside_the_network", "torch", "keras", "regions_and_concepts"):
        page = opened(browser, site / "notebooks" / f"{name}.html")
        pictures = page.eval_on_selector_all(".cell_output img", "els => els.map(e => e.naturalWidth)")
        assert pictures and min(pictures) > 0, (name, pictures)
        assert "Traceback" not in page.inner_text("body"), name
        assert page.problems == [], (name, page.problems)
        page.close()
