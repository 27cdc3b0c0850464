"""The self-contained HTML page: the SVG inline, its style and a small script; nothing is fetched.

The script does three things: pan (drag) and zoom (wheel, or the buttons) by
changing the SVG's viewBox; collapse a scan cluster by clicking its title; and
search: every box whose IR name or op contains the query gets the class ``hit``,
clusters holding a hit open, and the view moves to the first one.
"""

from __future__ import annotations

from html import escape

from dlir.viz.svg import STYLE

PAGE_STYLE = """
html, body { margin: 0; height: 100%; font: 13px system-ui, sans-serif; color: #222; }
body { display: flex; flex-direction: column; }
header { flex: none; padding: 6px 10px; border-bottom: 1px solid #ccc; background: #fafafa; }
header h1 { font-size: 15px; margin: 0 0 4px 0; }
header .info { color: #555; }
header .diff { margin-top: 3px; }
#tools { display: flex; gap: 8px; align-items: center; margin-top: 4px; }
#view { flex: 1; min-height: 0; overflow: hidden; cursor: grab; }
#view svg { width: 100%; height: 100%; }
.legend span { display: inline-block; padding: 0 6px; margin-right: 4px; border: 1px solid #888; }
"""

SCRIPT = r"""
(function () {
  "use strict";
  var svg = document.getElementById("graph");
  var view = document.getElementById("view");
  var vb = svg.getAttribute("viewBox").split(" ").map(Number);
  var full = vb.slice();
  svg.removeAttribute("width");
  svg.removeAttribute("height");
  function show() { svg.setAttribute("viewBox", vb.map(function (v) { return v.toFixed(1); }).join(" ")); }
  function scale() {
    var r = svg.getBoundingClientRect();
    return Math.max(vb[2] / Math.max(r.width, 1), vb[3] / Math.max(r.height, 1));
  }
  function zoom(k, cx, cy) {
    vb[0] = cx - (cx - vb[0]) * k; vb[1] = cy - (cy - vb[1]) * k; vb[2] *= k; vb[3] *= k; show();
  }
  function toSvg(ev) {
    var r = svg.getBoundingClientRect(), s = scale();
    var ox = (r.width * s - vb[2]) / 2, oy = (r.height * s - vb[3]) / 2;
    return [vb[0] - ox + (ev.clientX - r.left) * s, vb[1] - oy + (ev.clientY - r.top) * s];
  }
  view.addEventListener("wheel", function (ev) {
    ev.preventDefault();
    var p = toSvg(ev);
    zoom(ev.deltaY > 0 ? 1.15 : 1 / 1.15, p[0], p[1]);
  }, { passive: false });
  var drag = null;
  view.addEventListener("mousedown", function (ev) { drag = [ev.clientX, ev.clientY]; });
  window.addEventListener("mouseup", function () { drag = null; });
  window.addEventListener("mousemove", function (ev) {
    if (!drag) return;
    var s = scale();
    vb[0] -= (ev.clientX - drag[0]) * s; vb[1] -= (ev.clientY - drag[1]) * s;
    drag = [ev.clientX, ev.clientY]; show();
  });
  document.getElementById("fit").addEventListener("click", function () { vb = full.slice(); show(); });
  document.getElementById("zin").addEventListener("click", function () {
    zoom(1 / 1.3, vb[0] + vb[2] / 2, vb[1] + vb[3] / 2);
  });
  document.getElementById("zout").addEventListener("click", function () {
    zoom(1.3, vb[0] + vb[2] / 2, vb[1] + vb[3] / 2);
  });
  Array.prototype.forEach.call(document.querySelectorAll(".scan > .header"), function (h) {
    h.addEventListener("click", function (ev) {
      ev.stopPropagation();
      h.parentNode.classList.toggle("collapsed");
    });
  });
  var boxes = document.querySelectorAll("[data-node], [data-value]");
  var box = document.getElementById("search"), count = document.getElementById("count");
  function search() {
    var q = box.value.trim().toLowerCase(), hits = [];
    Array.prototype.forEach.call(boxes, function (b) {
      var name = (b.getAttribute("data-node") || b.getAttribute("data-value") || "").toLowerCase();
      var op = (b.getAttribute("data-op") || "").toLowerCase();
      var hit = q !== "" && (name.indexOf(q) >= 0 || op === q || op.indexOf(q) === 0);
      b.classList.toggle("hit", hit);
      if (hit) hits.push(b);
    });
    hits.forEach(function (b) {
      for (var p = b.parentNode; p && p !== svg; p = p.parentNode) {
        if (p.classList && p.classList.contains("collapsed")) p.classList.remove("collapsed");
      }
    });
    count.textContent = q === "" ? "" : hits.length + " match" + (hits.length === 1 ? "" : "es");
    if (hits.length) {
      var r = hits[0].getBBox(), w = Math.max(r.width * 4, 400), h = Math.max(r.height * 8, 300);
      vb = [r.x + r.width / 2 - w / 2, r.y + r.height / 2 - h / 2, w, h]; show();
    }
  }
  box.addEventListener("input", search);
  window.dlirSearch = function (q) { box.value = q; search(); return count.textContent; };
})();
"""


def html_page(title: str, info: str, diff: str, legend: bool, svg: str) -> str:
    """The page: a header (title, info line, diff summary, search), the drawing, the script."""
    legend_html = (
        '<div class="legend">'
        '<span style="background:#dcf5dc">agrees</span><span style="background:#ffd6cc">differs</span>'
        '<span style="background:#ff8a75;border:2px solid #c92a2a">first divergence</span>'
        '<span style="border:2px dashed #d9480f">downstream of it</span></div>'
        if legend
        else ""
    )
    diff_html = f'<div class="diff">{escape(diff)}</div>{legend_html}' if diff else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        f"<style>{PAGE_STYLE}{STYLE}</style>\n</head>\n<body>\n"
        f'<header><h1>{escape(title)}</h1><div class="info">{escape(info)}</div>{diff_html}\n'
        '<div id="tools"><input id="search" type="search" placeholder="search by op or name" size="30">'
        '<span id="count"></span><button id="zin">+</button><button id="zout">&minus;</button>'
        '<button id="fit">fit</button><span class="info">drag to pan, wheel to zoom, '
        "click a scan's title to fold it</span></div></header>\n"
        f'<div id="view">\n{svg}</div>\n'
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )
