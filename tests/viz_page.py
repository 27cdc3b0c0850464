"""Reading a `dlirc viz` page back with the standard library's html.parser: elements, attributes, boxes."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

VOID = {"meta", "input", "br", "img", "link", "hr", "source"}


@dataclass(eq=False)
class El:
    tag: str
    attrs: dict[str, str]
    parent: El | None = None
    children: list[El] = field(default_factory=list)
    text: str = ""

    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def walk(self) -> list[El]:
        out = []
        for c in self.children:
            out.append(c)
            out += c.walk()
        return out

    def ancestors(self) -> list[El]:
        out, p = [], self.parent
        while p is not None:
            out.append(p)
            p = p.parent
        return out

    def rect(self) -> tuple[float, float, float, float]:
        """The box of a ``<g>`` drawn by viz: its own first ``<rect>``, as (x0, y0, x1, y1)."""
        r = next(c for c in self.children if c.tag == "rect")
        x, y = float(r.attrs["x"]), float(r.attrs["y"])
        return x, y, x + float(r.attrs["width"]), y + float(r.attrs["height"])


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = El("#root", {})
        self.cur = self.root

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        el = El(tag, {k: v or "" for k, v in attrs}, self.cur)
        self.cur.children.append(el)
        if tag not in VOID:
            self.cur = el

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.cur.children.append(El(tag, {k: v or "" for k, v in attrs}, self.cur))

    def handle_endtag(self, tag: str) -> None:
        el: El | None = self.cur
        while el is not None and el.tag != tag:
            el = el.parent
        assert el is not None, f"</{tag}> closes nothing"
        self.cur = el.parent or self.root

    def handle_data(self, data: str) -> None:
        self.cur.text += data


def parse(text: str) -> El:
    p = _Parser()
    p.feed(text)
    p.close()
    return p.root


def boxes(root: El, panel: str = "forward") -> list[El]:
    """The ``<g>`` of every drawn box (nodes, clusters, inputs, params, outputs) in one panel."""
    pan = next(e for e in root.walk() if e.attrs.get("data-panel") == panel)
    kinds = {"node", "scan", "input", "param", "output"}
    return [e for e in pan.walk() if e.tag == "g" and e.classes() & kinds]


def overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def inside(a: tuple[float, float, float, float], outer: tuple[float, float, float, float]) -> bool:
    return outer[0] <= a[0] and outer[1] <= a[1] and a[2] <= outer[2] and a[3] <= outer[3]
