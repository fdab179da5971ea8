"""The batch job's HTML gallery: the files it writes, the row data read back, escaping and paging,
and the page itself in headless Chromium from file:// (pictures drawn, sorting, paging, errors)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from xai_core.batch.report import write_report

N, K, PAGE_SIZE = 120, 10, 50
NASTY = 'cat <b>bold</b> & "dog" \'s </script> é.png'
ERROR = "ValueError: bad <input> & \"shape\""
def make_rows() -> list[dict]:
    """120 rows: distinct gaps, a few NaN and None gaps, one errored row (index 5), one nasty name (index 3)."""
    gaps = np.random.default_rng(0).permutation(N) * 0.01 - 0.6
    rows = [{"index": i, "name": f"data/img_{i:04d}.png", "target": i % 7, "score": float(np.cos(i)),
             "gap": float(gaps[i]), "error": None} for i in range(N)]
    for i in (7, 60, 111):
        rows[i]["gap"] = float("nan")
    rows[90]["gap"] = None
    rows[3]["name"] = NASTY
    rows[5].update(target=-1, score=None, gap=None, error=ERROR)
    return rows


def pictures() -> tuple[dict, dict]:
    rng = np.random.default_rng(1)
    images = {i: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(K)}
    overlays = {i: rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for i in range(K)}
    return images, overlays


def read_rows(report: Path) -> list:
    text = (report / "rows.js").read_text().strip()
    assert text.startswith("const ROWS = ") and text.endswith(";")
    return json.loads(text.removeprefix("const ROWS = ").removesuffix(";"))


def written(tmp_path: Path, rows: list | None = None, **kw) -> Path:
    images, overlays = pictures()
    return write_report(tmp_path, make_rows() if rows is None else rows, images=images, overlays=overlays,
                        title=kw.pop("title", "ig on <val> & co"), method="integrated_gradients", **kw)


def test_files_rows_and_escaping(tmp_path) -> None:
    from PIL import Image

    index = written(tmp_path)
    report = tmp_path / "report"
    assert index == report / "index.html"
    for sub in ("images", "overlays"):
        assert sorted(p.name for p in (report / sub).iterdir()) == sorted(f"{i}.png" for i in range(K))
        assert Image.open(report / sub / "0.png").size == (16, 16)
    np.testing.assert_array_equal(np.asarray(Image.open(report / "images" / "4.png")), pictures()[0][4])
    data = read_rows(report)
    assert len(data) == N
    assert data[3][1] == NASTY  # the name round-trips exactly
    assert data[5] == [5, "data/img_0005.png", -1, None, None, ERROR]
    assert data[7][4] is None and data[90][4] is None  # NaN and None gaps: null
    assert data[10][3] == pytest.approx(math.cos(10), rel=1e-6)
    assert (report / "rows.js").read_bytes().isascii()  # non-ASCII as \u escapes: no encoding to get wrong
    page = index.read_text()
    assert "<val>" not in page and "ig on &lt;val&gt; &amp; co" in page
    assert '<script src="rows.js"' in page and "integrated_gradients" in page and "120 examples" in page
    assert "1 error" in page and 'id="page">page 1 of 3<' in page
    assert "http://" not in page and "https://" not in page  # nothing from a network
    for key in ("index", "name", "image", "overlay", "target", "score", "gap", "error"):
        assert f'data-key="{key}"' in page
    assert page.count("<img") == 0  # pictures are made by the script, one page at a time


@pytest.mark.parametrize(("n", "size", "pages"), [(0, 50, 1), (1, 50, 1), (50, 50, 1), (51, 50, 2), (120, 7, 18)])
def test_page_count(tmp_path, n, size, pages) -> None:
    page = written(tmp_path, make_rows()[:n], page_size=size).read_text()
    assert f'id="page">page 1 of {pages}<' in page
    assert len(read_rows(tmp_path / "report")) == n


def test_errors(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OSError, match="cannot write the report under"):
        written(blocker)
    with pytest.raises(ValueError, match="page_size"):
        written(tmp_path, page_size=0)
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        write_report(tmp_path, [], images={0: np.zeros((4, 4), np.float32)}, overlays={}, title="t", method="m")
    with pytest.raises(KeyError, match="gap"):
        write_report(tmp_path, [{"index": 0, "name": "a", "target": 0, "score": 1.0, "error": None}],
                     images={}, overlays={}, title="t", method="m")


# The page in a real browser ------------------------------------------------------------------------------------------


@pytest.fixture
def page(browser, tmp_path):
    index = written(tmp_path, page_size=PAGE_SIZE)
    pg = browser.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("request", lambda r: None if r.url.startswith("file://") else problems.append(f"request: {r.url}"))
    pg.goto(index.as_uri())
    yield pg
    pg.close()
    assert problems == []


def shown(pg) -> list[int]:
    return [int(i) for i in pg.locator("#rows tbody tr").evaluate_all("trs => trs.map(t => t.dataset.index)")]


def sorted_by_gap(descending: bool) -> list[int]:
    rows = make_rows()
    have = [r for r in rows if r["gap"] is not None and not math.isnan(r["gap"])]
    have.sort(key=lambda r: r["gap"], reverse=descending)
    return [r["index"] for r in have] + [r["index"] for r in rows if r not in have]  # missing last, in row order


def test_page_shows_the_pictures_and_the_rows(page) -> None:
    assert page.title() == "ig on <val> & co"
    assert shown(page) == list(range(PAGE_SIZE))
    assert page.locator("#page").inner_text() == "page 1 of 3"
    imgs = page.locator("#rows img")
    assert imgs.count() == 2 * K  # only this page's pictures, only the rows that have one
    for i in range(imgs.count()):  # loading="lazy": bring each one into view
        imgs.nth(i).scroll_into_view_if_needed()
    page.wait_for_function("[...document.images].every(i => i.complete)")
    sizes = imgs.evaluate_all("els => els.map(e => [e.naturalWidth, e.naturalHeight, e.getAttribute('src')])")
    assert all(w == 16 and h == 16 for w, h, _ in sizes), sizes
    assert {s for _, _, s in sizes} == {f"{d}/{i}.png" for d in ("images", "overlays") for i in range(K)}
    assert page.locator("#rows tbody tr").nth(K).locator("td").nth(2).inner_text() == "no preview"
    nasty = page.locator("#rows tbody tr").nth(3)
    assert nasty.locator("td").nth(1).inner_text() == NASTY  # shown as text, not markup
    assert page.locator("#rows b").count() == 0
    errored = page.locator('#rows tbody tr[data-index="5"]')
    assert errored.locator("td").nth(7).inner_text() == ERROR
    assert errored.locator("td").nth(4).inner_text() == "-1"
    assert "err" in errored.get_attribute("class")
    assert "red = positive evidence" in page.inner_text("body") and "blue = negative" in page.inner_text("body")


def test_sorting_by_gap(page) -> None:
    header = page.locator('#rows th[data-key="gap"]')
    header.click()
    ascending = sorted_by_gap(descending=False)
    assert shown(page) == ascending[:PAGE_SIZE]  # the first row has the smallest gap
    assert header.get_attribute("aria-sort") == "ascending"
    page.click("#next")
    page.click("#next")
    assert shown(page) == ascending[2 * PAGE_SIZE:]
    assert shown(page)[-5:] == [5, 7, 60, 90, 111]  # NaN / None / errored gaps last
    header.click()  # again: reversed, back on page 1
    descending = sorted_by_gap(descending=True)
    assert page.locator("#page").inner_text() == "page 1 of 3"
    assert shown(page) == descending[:PAGE_SIZE]  # the first row has the largest gap
    page.click("#next")
    page.click("#next")
    assert shown(page)[-5:] == [5, 7, 60, 90, 111]  # still last
    page.locator('#rows th[data-key="name"]').click()  # strings: code-point order
    assert shown(page) == sorted(range(N), key=lambda i: make_rows()[i]["name"])[:PAGE_SIZE]


def test_paging(page) -> None:
    prev, nxt, label = page.locator("#prev"), page.locator("#next"), page.locator("#page")
    assert prev.is_disabled() and not nxt.is_disabled()
    nxt.click()
    assert label.inner_text() == "page 2 of 3" and shown(page) == list(range(50, 100))
    assert page.locator("#rows img").count() == 0  # no previews past the first 10 rows
    nxt.click()
    assert label.inner_text() == "page 3 of 3" and shown(page) == list(range(100, N)) and nxt.is_disabled()
    prev.click()
    assert label.inner_text() == "page 2 of 3" and shown(page) == list(range(50, 100))
    prev.click()
    assert label.inner_text() == "page 1 of 3" and shown(page)[0] == 0 and prev.is_disabled()


def test_empty_report_in_the_browser(browser, tmp_path) -> None:
    pg = browser.new_page()
    pg.goto(write_report(tmp_path, [], images={}, overlays={}, title="empty", method="m").as_uri())
    assert pg.locator("#page").inner_text() == "page 1 of 1" and shown(pg) == []
    assert pg.locator("#next").is_disabled() and "0 examples" in pg.inner_text("#summary")
    pg.close()
