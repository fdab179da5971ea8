"""A static HTML gallery of a batch attribution job: ``write_report`` writes ``report/index.html``,
the row data as ``report/rows.js`` and the previews as PNG files, all under ``out_dir``.

The page needs no server and no network (it opens from ``file://``): no external CSS, JS or fonts.
Rows are stored compactly (one JSON array per row, numbers to 7 significant digits, float32's
precision) and only the current page's rows and ``<img>`` elements are ever built, so a run of
millions of examples stays fast. Columns sort on a click (numbers numerically, missing values
last, a second click reverses); Previous / Next page through ``page_size`` rows at a time.

Example:
    >>> import numpy as np, tempfile
    >>> rows = [{"index": 0, "name": "a.png", "target": 3, "score": 1.5, "gap": 0.01, "error": None}]
    >>> pic = np.zeros((8, 8, 3), np.uint8)
    >>> write_report(tempfile.mkdtemp(), rows, images={0: pic}, overlays={0: pic}, title="run", method="ig").name
    'index.html'
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_report"]

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>@TITLE@</title>
<style>
body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:middle}
th{background:#f2f2f2;position:sticky;top:0}th.sort{cursor:pointer;user-select:none}th.sort:hover{background:#e4e4e4}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
td.num{text-align:right;font-variant-numeric:tabular-nums}td img{width:64px;image-rendering:pixelated;display:block}
td.none{color:#999;font-size:12px}tr.err td{background:#fff0f0}td.error{color:#a00}
.legend{display:inline-block;width:160px;height:12px;vertical-align:middle;border:1px solid #999;
background:linear-gradient(to right,rgb(5,48,97),rgb(67,147,195),#fff,rgb(214,96,77),rgb(103,0,31))}
nav{margin:.8em 0}nav button{margin-right:.5em}
</style></head><body>
<h1>@TITLE@</h1>
<p id="summary">@SUMMARY@</p>
<p>Overlay: <span style="color:rgb(5,48,97)">blue = negative evidence</span> <span class="legend"></span>
<span style="color:rgb(178,24,43)">red = positive evidence</span> (white: none).</p>
<nav><button id="prev">Previous</button><button id="next">Next</button><span id="page">@PAGE@</span></nav>
<table id="rows"><thead><tr>
<th data-key="index" class="sort">index</th><th data-key="name" class="sort">name</th><th data-key="image">image</th>
<th data-key="overlay">overlay</th><th data-key="target" class="sort">target</th>
<th data-key="score" class="sort">score</th>
<th data-key="gap" class="sort">gap</th><th data-key="error" class="sort">error</th></tr></thead><tbody></tbody></table>
<noscript><p>This page needs JavaScript to show the rows.</p></noscript>
<script src="rows.js" charset="utf-8"></script>
<script>
"use strict";
const PAGE_SIZE = @PAGE_SIZE@, IMGS = new Set(@IMGS@), OVLS = new Set(@OVLS@);
const COL = {index: 0, name: 1, target: 2, score: 3, gap: 4, error: 5};  // positions in a ROWS entry
const data = typeof ROWS === "undefined" ? [] : ROWS;
let order = data.map((_, i) => i), page = 0, sortKey = null, sortDir = 1;
const pages = () => Math.max(1, Math.ceil(order.length / PAGE_SIZE));
const missing = v => v === null || v !== v;
const fmt = v => missing(v) ? "\\u2013" : String(+v.toPrecision(4));
function cell(tr, text, cls) {
  const td = tr.insertCell(); td.textContent = text; if (cls) td.className = cls; return td;
}
function picture(tr, have, dir, i) {
  const td = tr.insertCell();
  if (!have.has(i)) { td.className = "none"; td.textContent = "no preview"; return; }
  const img = document.createElement("img");
  img.loading = "lazy"; img.src = dir + "/" + i + ".png"; img.alt = dir + " " + i; td.appendChild(img);
}
function render() {
  const body = document.querySelector("#rows tbody"), rows = document.createDocumentFragment();
  for (const k of order.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)) {
    const r = data[k], tr = document.createElement("tr");
    tr.dataset.index = r[0]; if (r[5] !== null) tr.className = "err";
    cell(tr, r[0], "num"); cell(tr, r[1], "name");
    picture(tr, IMGS, "images", r[0]); picture(tr, OVLS, "overlays", r[0]);
    cell(tr, r[2], "num"); cell(tr, fmt(r[3]), "num score").title = String(r[3]);
    cell(tr, fmt(r[4]), "num gap").title = String(r[4]); cell(tr, r[5] === null ? "" : r[5], "error");
    rows.appendChild(tr);
  }
  body.replaceChildren(rows);
  document.getElementById("page").textContent = "page " + (page + 1) + " of " + pages();
  document.getElementById("prev").disabled = page === 0;
  document.getElementById("next").disabled = page >= pages() - 1;
}
function sortBy(key) {
  sortDir = key === sortKey ? -sortDir : 1; sortKey = key;
  const c = COL[key], v = data.map(r => r[c]);
  order.sort((a, b) => {
    const x = v[a], y = v[b], mx = missing(x), my = missing(y);
    if (mx || my) return mx === my ? a - b : mx ? 1 : -1;  // missing last, in either direction
    return (x < y ? -sortDir : x > y ? sortDir : 0) || a - b;
  });
  for (const th of document.querySelectorAll("#rows th.sort"))
    th.setAttribute("aria-sort", th.dataset.key === key ? (sortDir > 0 ? "ascending" : "descending") : "none");
  page = 0; render();
}
for (const th of document.querySelectorAll("#rows th.sort")) {
  th.tabIndex = 0; th.addEventListener("click", () => sortBy(th.dataset.key));
  th.addEventListener("keydown", e => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sortBy(th.dataset.key); }
  });
}
document.getElementById("prev").addEventListener("click", () => { if (page > 0) { page--; render(); } });
document.getElementById("next").addEventListener("click", () => { if (page < pages() - 1) { page++; render(); } });
if (typeof ROWS === "undefined") document.getElementById("summary").textContent += " (rows.js did not load)";
render();
</script></body></html>
"""


def _num(v: Any) -> str:
    """A JSON number (7 significant digits), ``null`` for None / NaN, ``±1e999`` (parses as ±inf) for inf."""
    if v is None:
        return "null"
    v = float(v)
    if math.isnan(v):
        return "null"
    return ("1e999" if v > 0 else "-1e999") if math.isinf(v) else f"{v:.7g}"


def _row(r: Mapping[str, Any]) -> str:
    """One row as a compact JSON array ``[index, name, target, score, gap, error]``."""
    try:
        err = r["error"]
        return (f'[{int(r["index"])},{json.dumps(str(r["name"]))},{int(r["target"])},{_num(r["score"])},'
                f'{_num(r["gap"])},{json.dumps(str(err)) if err else "null"}]')
    except KeyError as e:
        raise KeyError(f"row {dict(r)!r} lacks {e}: rows need index, name, target, score, gap, error") from None


def _png(arr: np.ndarray, path: Path, what: str) -> None:
    """Save a uint8 (H, W, 3) array as a PNG file."""
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype != np.uint8 or a.ndim != 3 or a.shape[-1] != 3 or 0 in a.shape:
        raise ValueError(f"{what}: expected a uint8 (H, W, 3) array, got {a.dtype} {a.shape}")
    Image.fromarray(a).save(path)


def write_report(out_dir: str | Path, rows: Sequence[Mapping[str, Any]], *, images: Mapping[int, np.ndarray],
                 overlays: Mapping[int, np.ndarray], title: str, method: str, page_size: int = 50) -> Path:
    """Write the gallery under ``out_dir/report/`` and return the path of its ``index.html``.

    Args:
      out_dir: the job's output folder (created if missing).
      rows: one mapping per example with ``index`` (int), ``name`` (str), ``target`` (int, -1 for an
        errored example), ``score`` and ``gap`` (float, None or NaN) and ``error`` (str or None).
      images, overlays: index -> uint8 (H, W, 3) input image and its signed attribution overlay,
        for the examples that have a preview; written as ``images/<index>.png`` and
        ``overlays/<index>.png``. Other rows show "no preview".
      title: the page's heading.
      method: the attribution method, shown under the title.
      page_size: rows per page.

    Raises:
      ValueError: ``page_size`` < 1 or a picture that is not uint8 (H, W, 3).
      KeyError: a row without one of the keys.
      OSError: ``out_dir`` cannot be written (the message names the folder).
    """
    if int(page_size) < 1:
        raise ValueError(f"page_size must be at least 1, got {page_size}")
    report = Path(out_dir) / "report"
    try:
        for sub in ("images", "overlays"):
            (report / sub).mkdir(parents=True, exist_ok=True)
        for what, pics in (("images", images), ("overlays", overlays)):
            for i, a in pics.items():
                _png(a, report / what / f"{int(i)}.png", f"{what}[{i}]")
        n = errors = 0
        with open(report / "rows.js", "w", encoding="ascii") as f:  # json.dumps escapes all non-ASCII
            f.write("const ROWS = [")
            for r in rows:
                f.write(("\n" if n == 0 else ",\n") + _row(r))
                n += 1
                errors += bool(r["error"])
            f.write("\n];\n")
        n_pages = max(1, math.ceil(n / int(page_size)))
        summary = f"{method} \u00b7 {n:,} example{'s' * (n != 1)} \u00b7 {errors:,} error{'s' * (errors != 1)}"
        values = {"TITLE": html.escape(title), "SUMMARY": html.escape(summary), "PAGE": f"page 1 of {n_pages}",
                  "PAGE_SIZE": str(int(page_size)), "IMGS": json.dumps(sorted(int(i) for i in images)),
                  "OVLS": json.dumps(sorted(int(i) for i in overlays))}
        page = re.sub(r"@([A-Z_]+)@", lambda m: values[m.group(1)], _PAGE)  # one pass: no text is re-expanded
        (report / "index.html").write_text(page, encoding="utf-8")
    except OSError as e:
        msg = f"cannot write the report under {report}: {e.strerror or e}"
        raise (OSError(e.errno, msg, e.filename) if e.errno else OSError(msg)) from e  # errno keeps the subclass
    return report / "index.html"
