"""`dlirc viz`: the page's structure, read back with html.parser (the browser test is test_viz_browser.py).

Every IR node is a box with its name, boxes never overlap, a scan's body sits
inside its cluster (in the drawing and in the DOM), nothing is fetched, model
text is escaped, the same input gives the same bytes; --diff marks the node
`dlirc diff` reports and what reads it; --grad draws the gradient graph too.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest
from viz_page import El, boxes, inside, overlap, parse

import dlir
from dlir.cli import main
from dlir.ir.graph import Graph, body_reads
from dlir.viz.draw import draw

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

SEQ_LOSS = """use nn
model SeqLoss(x: f32[B, T, 4]) -> f32[] {
    lstm = LSTM(4, 8)
    hs, h, c = lstm(x)
    ys, s = scan y_t in hs along 1 carry acc = h {
        acc = acc + tanh(y_t)
        emit acc
    }
    return mean(s * s)
}
"""


def _names(g: Graph) -> list[str]:
    """Every node's first output name, bodies included."""
    out = []
    for n in g.nodes:
        out.append(n.outputs[0].name)
        if n.body is not None:
            out += _names(n.body)
    return out


def _page(path: Path, model: str | None = None, **kw: object) -> tuple[Graph, El, str]:
    graph = dlir.load(path).graph(model)
    text = draw(graph, str(path), **kw)  # type: ignore[arg-type]
    return graph, parse(text), text


@pytest.mark.parametrize("sample", ["lstm", "gru", "mlp", "resmlp", "cnn", "attention", "transformer"])
def test_every_ir_node_is_one_box_named_by_its_first_output(sample: str) -> None:
    graph, root, _ = _page(SAMPLES / f"{sample}.dlir")
    drawn = [b.attrs["data-node"] for b in boxes(root) if "data-node" in b.attrs]
    assert sorted(drawn) == sorted(_names(graph))
    values = {b.attrs["data-value"] for b in boxes(root) if "data-value" in b.attrs}
    assert values == {v.name for v in (*graph.inputs, *graph.params)} | {
        v.name for n in graph.nodes if n.body is not None for v in n.body.inputs
    }
    for b in boxes(root):
        if "data-node" in b.attrs:  # op, types and .dlir line are on the box
            text = " ".join(t.text for t in b.walk() if t.tag == "text")
            assert b.attrs["data-op"] in text and "f32[" in text or "i64[" in text or "bool[" in text
            assert b.attrs["data-loc"].count(":") >= 2


@pytest.mark.parametrize("sample", ["lstm", "gru", "resmlp", "transformer"])
def test_no_two_boxes_overlap_and_scan_bodies_sit_in_their_cluster(sample: str) -> None:
    _, root, _ = _page(SAMPLES / f"{sample}.dlir")
    all_boxes = boxes(root)
    leaves = [b for b in all_boxes if "scan" not in b.classes()]
    for a, b in itertools.combinations(leaves, 2):
        assert not overlap(a.rect(), b.rect()), (a.attrs, b.attrs)
    clusters = [b for b in all_boxes if "scan" in b.classes()]
    for c in clusters:
        members = [b for b in all_boxes if c in b.ancestors()]
        assert members, "a scan cluster holds its body"
        header = next(e for e in c.children if e.attrs.get("class") == "header")
        title_baseline = float(next(t for t in header.children if t.tag == "text").attrs["y"])
        assert all(b.rect()[1] > title_baseline for b in members)  # the title bar stays readable
        for b in all_boxes:
            if b is c:
                continue
            if b in members:
                assert inside(b.rect(), c.rect()), (b.attrs, c.attrs)
            elif c not in b.ancestors() and b not in c.ancestors():
                assert not overlap(b.rect(), c.rect()), (b.attrs, c.attrs)


def test_scan_body_nodes_are_inside_their_scan_element() -> None:
    graph, root, _ = _page(SAMPLES / "gru.dlir")
    by_name = {b.attrs.get("data-node"): b for b in boxes(root)}
    scans = [n for n in graph.nodes if n.body is not None]
    assert len(scans) == 2  # the stdlib GRU and the file's own backward scan
    for n in scans:
        assert n.body is not None
        cluster = by_name[n.outputs[0].name]
        assert "scan" in cluster.classes() and cluster.attrs["data-op"] == "scan"
        for inner in _names(n.body):
            assert cluster in by_name[inner].ancestors()
        header = next(e for e in cluster.children if e.attrs.get("class") == "header")
        assert "scan reverse" in " ".join(t.text for t in header.walk()) or not n.attrs["reverse"]


def test_the_page_fetches_nothing() -> None:
    _, root, text = _page(SEQ_LOSS_FILE(), grad=True)
    for el in root.walk():
        for key in ("src", "href", "xlink:href", "action", "data"):
            v = el.attrs.get(key, "")
            assert not re.match(r"\s*(https?:)?//", v), (el.tag, key, v)
        assert el.tag not in ("link", "iframe", "img", "object", "embed")
    assert "url(" not in text and "@import" not in text
    scripts = [e.text for e in root.walk() if e.tag == "script"]
    assert len(scripts) == 1 and not re.search(r"fetch\(|XMLHttpRequest|import\(|WebSocket", scripts[0])


_tmp: list[Path] = []


def SEQ_LOSS_FILE() -> Path:  # noqa: N802 - a constant made once
    if not _tmp:
        import tempfile

        d = Path(tempfile.mkdtemp(prefix="dlir-viz-test-"))
        (d / "seq.dlir").write_text(SEQ_LOSS, encoding="utf-8")
        _tmp.append(d / "seq.dlir")
    return _tmp[0]


def test_nested_scans_are_nested_clusters_and_grad_is_drawn_beside() -> None:
    from dlir.autodiff import autodiff

    graph, root, _ = _page(SEQ_LOSS_FILE(), grad=True)
    grad = autodiff(graph)
    drawn = [b.attrs["data-node"] for b in boxes(root, "grad") if "data-node" in b.attrs]
    assert sorted(drawn) == sorted(_names(grad))
    assert any(n.op.startswith("scan") for n in grad.nodes)  # the backward pass has its own scans
    fwd = boxes(root, "forward")
    right_of_forward = max(b.rect()[2] for b in fwd)
    assert min(b.rect()[0] for b in boxes(root, "grad")) > right_of_forward  # beside, not on top


def test_the_same_input_gives_the_same_bytes(tmp_path: Path) -> None:
    outs = []
    for name in ("a.html", "b.html", "c.svg", "d.svg"):
        assert main(["viz", str(SAMPLES / "lstm.dlir"), "-O", "2", "-o", str(tmp_path / name)]) == 0
        outs.append((tmp_path / name).read_bytes())
    assert outs[0] == outs[1] and outs[2] == outs[3]


def test_svg_is_the_drawing_alone() -> None:
    graph, root, text = _page(SAMPLES / "lstm.dlir", svg_only=True)
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns="http://www.w3.org/2000/svg"')
    assert "<script" not in text and "<style>" in text and "<html" not in text
    assert sorted(b.attrs["data-node"] for b in boxes(root) if "data-node" in b.attrs) == sorted(_names(graph))


def test_opt_level_draws_the_optimised_graph() -> None:
    from dlir.passes import optimize

    graph, root, _ = _page(SAMPLES / "lstm.dlir", opt_level=2)
    drawn = sorted(b.attrs["data-node"] for b in boxes(root) if "data-node" in b.attrs)
    assert drawn == sorted(_names(optimize(graph, 2))) != sorted(_names(graph))


def test_text_from_the_model_file_is_escaped(tmp_path: Path) -> None:
    odd = tmp_path / "a<b>&\"c'<script>x.dlir"
    odd.write_text((SAMPLES / "mlp.dlir").read_text(encoding="utf-8"), encoding="utf-8")
    out = tmp_path / "m.html"
    assert main(["viz", str(odd), "-o", str(out)]) == 0
    text = out.read_text(encoding="utf-8")
    assert "<b>" not in text and "<script>x" not in text and "&lt;script&gt;x.dlir" in text
    root = parse(text)
    locs = {b.attrs["data-loc"] for b in boxes(root) if "data-loc" in b.attrs}
    assert any(loc.startswith(str(odd) + ":") for loc in locs)  # the attribute reads back as the real name


@pytest.mark.slow
def test_diff_marks_the_first_divergence_and_what_reads_it(tmp_path: Path) -> None:
    from dlir.diff import diff_graph

    path = SAMPLES / "lstm.dlir"
    out = tmp_path / "d.html"
    # at tolerance 0 float32 rounding shows: numpy and torch sum a matmul in other orders
    assert main(["viz", str(path), "--diff", "numpy,torch", "--rtol", "0", "--atol", "0", "-o", str(out)]) == 0
    root = parse(out.read_text(encoding="utf-8"))
    graph = dlir.load(path).graph()
    report = diff_graph(graph, ("numpy", "torch"), rtol=0, atol=0)
    assert report.first is not None
    by_name = {b.attrs["data-node"]: b for b in boxes(root) if "data-node" in b.attrs}
    first = [n for n, b in by_name.items() if "first" in b.classes()]
    assert first == [report.first.node.outputs[0].name]
    tainted = {v.name for v in report.first.node.outputs}
    below = set()
    for n in graph.nodes[report.first.index + 1 :]:
        reads = [v.name for v in n.inputs] + ([v.name for v in body_reads(n.body)] if n.body else [])
        if tainted & set(reads):
            below.add(n.outputs[0].name)
            tainted |= {v.name for v in n.outputs}
    marked = {n for n, b in by_name.items() if "downstream" in b.classes()}
    assert marked == below and below
    for n in graph.nodes:  # every top-level node carries its error
        assert float(by_name[n.outputs[0].name].attrs["data-error"]) >= 0
    summary = next(e for e in root.walk() if e.attrs.get("class") == "diff").text
    assert "diverge first at node" in summary and report.first.node.op in summary
    # at the default tolerance they agree: nothing is marked
    assert main(["viz", str(path), "--diff", "numpy,onnx", "-o", str(out)]) == 0
    root = parse(out.read_text(encoding="utf-8"))
    classes = [b.classes() for b in boxes(root) if "data-error" in b.attrs]
    assert classes and all("agree" in c and not c & {"first", "downstream", "diverged"} for c in classes)


@pytest.mark.parametrize(
    "args, want",
    [
        (["-o", "{tmp}/x.png"], "viz writes .html (the page) or .svg"),
        (["-o", "{tmp}/nodir/x.html"], "no directory"),
        (["-o", "{tmp}/x.html", "--diff", "numpy"], "--diff needs exactly two targets"),
        (["-o", "{tmp}/x.html", "--diff", "numpy,torhc"], "unknown target 'torhc'"),
        (["-o", "{tmp}/x.html", "--model", "Nope"], "has no model 'Nope'"),
    ],
)
def test_mistakes_exit_2_and_write_nothing(
    args: list[str], want: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert main(["viz", str(SAMPLES / "mlp.dlir"), *args]) == 2
    err = capsys.readouterr().err
    assert want in err and "hint:" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_grad_of_a_model_without_a_scalar_output_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["viz", str(SAMPLES / "mlp.dlir"), "--grad", "-o", str(tmp_path / "g.html")]) == 1
    err = capsys.readouterr().err
    assert "autodiff needs a float scalar output" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
