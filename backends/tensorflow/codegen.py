"""Writes a dlir graph as the Python source of a ``tf.Module``.

The file reads like hand-written TensorFlow: imports at the top, one
``tf.Variable`` per param (named by its dotted dlir name, seeded exactly as the
numpy reference), and a ``__call__`` that is a ``tf.function`` with an input
signature (symbolic dims are ``None``), one statement per IR node with the
``.dlir`` position as a trailing comment.

Only identifiers that went through a :class:`Namespace`, numbers and
:func:`py_str` literals reach the output: names cannot inject code.
"""

from __future__ import annotations

import keyword
import re

from dlir.backends.codegen import RESERVED, Namespace, dim_expr, loc_comment, py_num, py_str
from dlir.backends.tensorflow.lowering import HELPERS, SEQUENCE_RESULTS, TF_DTYPES, emitter
from dlir.errors import LoweringError
from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import Dim, TensorType

# Every attribute of tf.Module (TF 2.21) and of the generated class: a param
# attribute must not replace one (a test checks this list against dir(tf.Module)).
TF_MODULE_ATTRS = frozenset(
    """_TF_MODULE_IGNORED_PROPERTIES _add_trackable_child _add_variable_with_custom_getter
    _checkpoint_adapter _checkpoint_dependencies _copy_trackable_to_cpu _deferred_dependencies
    _delete_tracking _deserialization_dependencies _deserialize_from_proto _export_to_saved_model_graph
    _flatten _gather_saveables_for_checkpoint _handle_deferred_dependencies _lookup_dependency
    _maybe_initialize_trackable _name_based_attribute_restore _name_based_restores _no_dependency
    _object_identifier _preload_simple_restoration _restore_from_tensors _serialize_to_proto
    _serialize_to_tensors _setattr_tracking _tf_api_names _tf_api_names_v1 _track_trackable
    _trackable_children _unconditional_checkpoint_dependencies _unconditional_dependency_names
    _update_uid name name_scope non_trainable_variables submodules trainable_variables variables
    with_name_scope _self_setattr_tracking _self_unconditional_checkpoint_dependencies
    _self_unconditional_dependency_names _self_unconditional_deferred_dependencies _self_update_uid
    _self_name_based_restores _self_saveable_object_factories _name _name_scope _scope_name
    PARAMS INPUT_NAMES OUTPUT_NAMES load_params get_params""".split()
)
# Names the module level of the generated file defines.
MODULE_NAMES = frozenset({"init_value", "Init", *HELPERS})

# A tf.TensorSpec name becomes a graph node name and, in a SavedModel's serving
# signature, a Python keyword argument: it must be both.
_NODE_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.\-/>]*$")
# Type text (dtype, ints, symbols) safe to place in a comment.
_SAFE_TYPE = re.compile(r"[A-Za-z0-9_\[\], *+?-]*$")


def variable_name(name: str) -> str:
    """The tf.Variable name of a param: its dotted name, unless TF forbids it.

    SavedModel uses variable names as name scopes, which cannot start with ``_``
    (``__init__``) or hold spaces; ``PARAMS`` still maps the exact dlir name.
    """
    if _NODE_NAME.match(name):
        return name
    return re.sub(r"^[^A-Za-z0-9.]+", "", re.sub(r"[^A-Za-z0-9_.\-/>]", "_", name)) or "param"


def spec_names(names: list[str]) -> list[str]:
    """The input names as TensorSpec names: the dlir name where legal (``class`` -> ``class_``), unique."""
    out: list[str] = []
    for name in names:
        cand = re.sub(r"[^A-Za-z0-9_]", "_", name).lstrip("_") or "input"
        if cand[0].isdigit():
            cand = "x" + cand
        if keyword.iskeyword(cand):
            cand += "_"
        pick, i = cand, 1
        while pick in out:
            pick, i = f"{cand}_{i}", i + 1
        assert _NODE_NAME.match(pick) and pick.isidentifier()
        out.append(pick)
    return out


def _type_comment(t: TensorType) -> str:
    text = str(t)
    return f"  # {text}" if _SAFE_TYPE.match(text) else ""


def _spec(t: TensorType, name: str) -> str:
    dims = ", ".join(str(d.value) if d.is_static else "None" for d in t.shape)
    return f"tf.TensorSpec([{dims}], {TF_DTYPES[t.dtype]}, name={py_str(name)})"


def _init_expr(p: Value) -> str:
    assert p.init is not None
    args = [f"({py_str(k)}, {py_num(v)})" for k, v in p.init.args]
    pairs = f"({args[0]},)" if len(args) == 1 else "(" + ", ".join(args) + ")"
    init = f"Init({py_str(p.init.kind)}" + (f", {pairs})" if args else ")")
    shape = p.type.static_shape() if p.type.is_static else None
    if shape is None:
        raise LoweringError(f"param '{p.name}' has a symbolic shape {p.type}", p.loc, hint="param shapes must be known at compile time")
    dtype = f"{TF_DTYPES[p.type.dtype]}.as_numpy_dtype"
    return f"init_value({py_str(p.name)}, {shape!r}, {dtype}, {init}, seed)"


class _CallWriter:
    """Writes the body of ``__call__``; implements the emitters' :class:`Ctx`."""

    def __init__(self, graph: Graph, attrs: dict[Value, str], reserved: set[str]) -> None:
        self.graph = graph
        self.attrs = attrs
        self.ns = Namespace(reserved)
        self.sym_vars: dict[str, str] = {}
        self.helpers: set[str] = set()
        self.params = [self.ns.name(v.name, key=v) for v in graph.inputs]

    # -- Ctx ----------------------------------------------------------------
    def arg(self, v: Value) -> str:
        if v in self.attrs:
            return f"self.{self.attrs[v]}"
        return self.ns.name(v.name, key=v)

    def dim(self, d: Dim | int, node: Node) -> str:
        d = Dim.of(d)
        if d.is_static:
            return str(d.value)
        sources = self.graph.symbol_sources()
        for s in sorted(d.symbols):
            if s not in sources:
                raise LoweringError(
                    f"{node.op}: the size {d} cannot be read off any input",
                    node.loc,
                    hint="a symbol in an attribute must be a whole dim of some input, e.g. x: f32[B, 4]",
                )
            if s not in self.sym_vars:
                self.sym_vars[s] = self.ns.name(s, key=("symbol", s))
        return dim_expr(d, self.sym_vars)

    def helper(self, name: str) -> str:
        self.helpers.add(name)
        return name

    # -- body -----------------------------------------------------------------
    def body(self) -> list[str]:
        lines = [self._statement(n) for n in self.graph.nodes]
        sources = self.graph.symbol_sources()
        syms = []
        for s, var in self.sym_vars.items():  # sizes known only at run time
            v, axis = sources[s]
            syms.append(f"{var} = tf.shape({self.arg(v)})[{axis}]")
        return syms + lines + [self._return()]

    def _statement(self, node: Node) -> str:
        if node.body is not None:
            raise LoweringError(f"the tensorflow target cannot lower '{node.op}' with a body yet", node.loc)
        expr = emitter(node)(self, node)
        outs = [self.ns.name(v.name, key=v) for v in node.outputs]
        if node.op in SEQUENCE_RESULTS:
            target = ", ".join(outs) if len(outs) > 1 else f"({outs[0]},)"
        else:
            assert len(outs) == 1, node.op
            target = outs[0]
        return f"{target} = {expr}{loc_comment(node.loc)}"

    def _return(self) -> str:
        items = []
        for _, v in self.graph.outputs:
            ref = self.arg(v)
            # An output that is an input or a variable is returned as a fresh tensor.
            items.append(ref if v.producer is not None else f"tf.identity({ref})")
        if len(items) == 1:
            return f"return {items[0]}"
        return "return " + ", ".join(items)


def _class_lines(graph: Graph, cls: str) -> tuple[list[str], set[str]]:
    attr_ns = Namespace(set(RESERVED) | TF_MODULE_ATTRS)
    # No attribute starts with "_": that is where tf.Module keeps its own state.
    attrs = {p: attr_ns.name(p.name.lstrip("_") or "param", key=p) for p in graph.params}
    call = _CallWriter(graph, attrs, set(RESERVED) | MODULE_NAMES | {cls})
    body = call.body()

    out = [f"class {cls}(tf.Module):", f'    """The dlir model {cls}, compiled for TensorFlow."""', ""]
    out.append("    # dotted dlir name -> the attribute holding its tf.Variable")
    out.append("    PARAMS = {" + ", ".join(f"{py_str(p.name)}: {py_str(a)}" for p, a in attrs.items()) + "}")
    out.append(f"    INPUT_NAMES = {_tuple([v.name for v in graph.inputs])}")
    out.append(f"    OUTPUT_NAMES = {_tuple(graph.output_names())}")
    out += ["", "    def __init__(self, seed: int = 0) -> None:", "        super().__init__()"]
    if graph.params:
        out.append("        # The same seeded numbers as every other dlir target.")
    for p, a in attrs.items():
        flags = ", trainable=False" if p.kind == "buffer" else ""
        out.append(f"        self.{a} = tf.Variable({_init_expr(p)}{flags}, name={py_str(variable_name(p.name))})")
    out += _param_methods()
    out += _call_header(graph, call.params)
    out += ["        " + line for line in body]
    return out, call.helpers


def _tuple(names: list[str]) -> str:
    items = [py_str(n) for n in names]
    return f"({items[0]},)" if len(items) == 1 else "(" + ", ".join(items) + ")"


def _param_methods() -> list[str]:
    return [
        "",
        "    def load_params(self, params: dict[str, np.ndarray]) -> None:",
        '        """Assign weights by dotted dlir name (``fc1.w``); an unknown name is an error."""',
        "        for name, value in params.items():",
        "            if name not in self.PARAMS:",
        '                raise KeyError(f"{name!r} is not a param of {type(self).__name__}")',
        "            getattr(self, self.PARAMS[name]).assign(value)",
        "",
        "    def get_params(self) -> dict[str, np.ndarray]:",
        '        """Every param and buffer as a numpy array, by dotted dlir name."""',
        "        return {name: getattr(self, attr).numpy() for name, attr in self.PARAMS.items()}",
    ]


def _call_header(graph: Graph, params: list[str]) -> list[str]:
    out = ["", "    @tf.function(", "        input_signature=["]
    for v, name in zip(graph.inputs, spec_names([v.name for v in graph.inputs])):
        out.append(f"            {_spec(v.type, name)},{_type_comment(v.type)}")
    out.append("        ],")
    out.append("        autograph=False,  # straight-line code: nothing for autograph to convert")
    out.append("    )")
    ret = "tf.Tensor" if len(graph.outputs) == 1 else "tuple[" + ", ".join("tf.Tensor" for _ in graph.outputs) + "]"
    args = "".join(f", {p}: tf.Tensor" for p in params)
    out.append(f"    def __call__(self{args}) -> {ret}:")
    return out


def class_name(graph: Graph) -> str:
    """The name of the generated class: the model's name, made a legal identifier."""
    return Namespace(set(RESERVED) | MODULE_NAMES).name(graph.name)


def generate_source(graph: Graph) -> str:
    """The Python source of a ``tf.Module`` computing ``graph``."""
    if not graph.outputs:
        raise LoweringError(f"model {graph.name} has no outputs", graph.loc)
    cls = class_name(graph)
    body, helpers = _class_lines(graph, cls)
    head = [
        f"# Generated by dlir from model {cls} for TensorFlow; edit the .dlir source, not this file.",
        "# A tf.Module with one tf.Variable per param (named by its dotted dlir name)",
        "# and a __call__ traced once by tf.function for the input signature below.",
        "",
        "import numpy as np",
        "import tensorflow as tf",
        "",
    ]
    if graph.params:
        head += ["from dlir.ir.graph import Init", "from dlir.runtime.init import init_value", ""]
    for name in sorted(helpers):
        head += ["", HELPERS[name]]
    return "\n".join(head + ["", *body]) + "\n"


def generate(graph: Graph) -> bytes:
    """The file ``dlirc compile --target tensorflow`` writes (UTF-8 Python source)."""
    return generate_source(graph).encode("utf-8")
