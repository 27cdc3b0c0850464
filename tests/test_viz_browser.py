"""`dlirc viz` in a real browser: headless Chromium (Debian's `chromium`, which .ci/setup installs).

Chromium loads the page from a file (no server, no network), with a few lines
of test script appended that record script errors and then use the page as a
person would: type into the search box, fold a scan cluster. ``--dump-dom``
prints the document after that, so the test reads back what the page's own
script did. A screenshot of the page must not be blank.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from viz_page import boxes, parse

import dlir
from dlir.viz.draw import draw

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (bash .ci/setup installs it)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=2000"]

# Before the page's script: every error and console.error lands on <html data-js-errors>.
CATCH = """<script>
window.__errors = [];
window.addEventListener("error", function (e) { window.__errors.push(String(e.message)); });
var __ce = console.error; console.error = function () { window.__errors.push([].join.call(arguments, " ")); __ce.apply(console, arguments); };
</script>"""

# After it: search for "matmul" through the search box's input event, fold the first cluster.
DRIVE = """<script>
(function () {
  var box = document.getElementById("search");
  var before = document.getElementById("graph").getAttribute("viewBox");
  box.value = "matmul";
  box.dispatchEvent(new Event("input"));
  var root = document.documentElement;
  root.setAttribute("data-hits", document.querySelectorAll(".hit").length);
  root.setAttribute("data-count", document.getElementById("count").textContent);
  root.setAttribute("data-moved", String(document.getElementById("graph").getAttribute("viewBox") !== before));
  var header = document.querySelector(".scan > .header");
  header.dispatchEvent(new MouseEvent("click", { bubbles: true }));
  root.setAttribute("data-folded", header.parentNode.classList.contains("collapsed"));
  root.setAttribute("data-js-errors", window.__errors.join(" | "));
})();
</script>"""


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=120)


def _page(tmp_path: Path, driven: bool) -> tuple[Path, str]:
    graph = dlir.load(ROOT / "samples" / "lstm.dlir").graph()
    text = draw(graph, "samples/lstm.dlir")
    if driven:
        text = text.replace("<head>\n", "<head>\n" + CATCH + "\n", 1).replace("</body>", DRIVE + "\n</body>", 1)
    path = tmp_path / ("driven.html" if driven else "page.html")
    path.write_text(text, encoding="utf-8")
    return path, text


def _console_errors(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)]


@pytest.mark.slow
def test_search_highlights_the_nodes_and_a_cluster_folds(tmp_path: Path) -> None:
    path, text = _page(tmp_path, driven=True)
    r = _chromium("--dump-dom", path.as_uri())
    assert r.returncode == 0, r.stderr[-2000:]
    assert _console_errors(r.stderr) == []
    dom = parse(r.stdout)
    html = next(e for e in dom.walk() if e.tag == "html")
    assert html.attrs["data-js-errors"] == ""
    matmuls = [b for b in boxes(parse(text)) if b.attrs.get("data-op") == "matmul"]
    hits = [b for b in boxes(dom) if "hit" in b.classes()]
    assert len(matmuls) == 3 and sorted(b.attrs["data-node"] for b in hits) == sorted(
        b.attrs["data-node"] for b in matmuls
    )
    assert html.attrs["data-hits"] == "3" and html.attrs["data-count"] == "3 matches"
    assert html.attrs["data-moved"] == "true"  # the view went to the first match
    assert html.attrs["data-folded"] == "true"


@pytest.mark.slow
def test_the_page_renders_something(tmp_path: Path) -> None:
    from PIL import Image

    path, _ = _page(tmp_path, driven=False)
    shot = tmp_path / "shot.png"
    r = _chromium(f"--screenshot={shot}", "--window-size=1200,900", path.as_uri())
    assert r.returncode == 0 and shot.exists(), r.stderr[-2000:]
    assert _console_errors(r.stderr) == []
    img = Image.open(shot).convert("RGB")
    colours = img.getcolors(maxcolors=1 << 20) or []
    white = sum(n for n, c in colours if c == (255, 255, 255))
    assert len(colours) > 50  # text, boxes and edges, not one flat colour
    assert white < 0.97 * img.width * img.height
    # the drawing is in the middle band of the page, not only the header
    band = img.crop((0, 200, img.width, img.height - 100))
    assert len(band.getcolors(maxcolors=1 << 20) or []) > 20
