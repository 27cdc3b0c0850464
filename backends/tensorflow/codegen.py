"""Writes a dlir graph as the Python source of a ``tf.Module``.

The file reads like hand-written TensorFlow: imports at the top, one
``tf.Variable`` per param (named by its dotted dlir name, seeded exactly as the
numpy reference), and a ``__call__`` that is a ``tf.function`` with an input
signature (symbolic dims are ``None``), one statement per IR node with the
``.dlir`` position as a trailing comment. Images that conv and pool nodes
compute channels-last stay so until a reader needs NCHW (:mod:`.layout`); the
statements that change layout are the only ones without an IR node. A ``scan``
node's body becomes a local step function written the same way.

Only identifiers that went through a :class:`Namespace`, numbers and
:func:`py_str` literals reach the output: names cannot inject code.
"""

from __future__ import annotations

import keyword
import re
from typing import Any

from dlir.backends.codegen import (
    RESERVED,
    WEIGHTS_NAMES,
    Namespace,
    dim_expr,
    loc_comment,
    py_num,
    py_str,
    read_weights,
    weights_reader,
)
from dlir.backends.decompose import DECOMPOSE, decomposed
from dlir.backends.lstm_training import skipped_nodes as lstm_skipped
from dlir.backends.lstm_training import trained_lstms
from dlir.backends.step_reads import stepped_only
from dlir.backends.tensorflow import layout
from dlir.backends.tensorflow.lowering import HELPERS, KERNEL_FITS, SEQUENCE_RESULTS, TF_DTYPES, Nhwc, emitter
from dlir.backends.tensorflow.lstm_training import backward_lines as lstm_backward
from dlir.backends.tensorflow.lstm_training import forward_lines as lstm_forward

from dlir.errors import LoweringError
from dlir.ir.graph import Graph, Node, Value
from dlir.ir.types import Dim, DType, TensorType
from dlir.ops import get_op
from dlir.ops.nn import differs_in_training
from dlir.runtime.init import standalone_source

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
MODULE_NAMES = frozenset({"Any", "math", "zlib", "fans", "draw", *HELPERS}) | WEIGHTS_NAMES

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


def _init_expr(p: Value, stored: bool) -> str:
    """A param's initial value: from the checked weights ``w`` (``stored``), or dlir's seeded init."""
    dtype = f"{TF_DTYPES[p.type.dtype]}.as_numpy_dtype"
    if stored:  # BF16 is read as its 16-bit patterns: TF's numpy bfloat16 reinterprets them
        return f"w[{py_str(p.name)}]" + (f".view({dtype})" if p.type.dtype is DType.bf16 else "")
    assert p.init is not None
    args = "{" + ", ".join(f"{py_str(k)}: {py_num(v)}" for k, v in p.init.args) + "}"
    shape = p.type.static_shape() if p.type.is_static else None
    if shape is None:
        raise LoweringError(
            f"param '{p.name}' has a symbolic shape {p.type}", p.loc, hint="param shapes must be known at compile time"
        )
    return f"draw({py_str(p.name)}, {shape!r}, {dtype}, {py_str(p.init.kind)}, {args}, seed)"


class _Scope:
    """One function being written: ``__call__``, or the step function of a scan.

    Implements the emitters' :class:`Ctx`. Values are read in the scope that
    defines them (``home``); a body reads the enclosing function's values as
    closures. Each value may be available channels-first (``nchw``), channels-last
    (``nhwc``) or both; the missing form is made once, by a transpose (a reshape
    where that is the same), in the value's home scope just before its first reader.
    """

    def __init__(self, graph: Graph, parent: _Scope | None, ns: Namespace, training: bool = False) -> None:
        self.graph = graph
        self.parent = parent
        self.training: bool = training if parent is None else parent.training
        self.ns = ns
        self.lines: list[str] = []
        self.home: set[Value] = set(graph.inputs) | set(graph.params) | {v for n in graph.nodes for v in n.outputs}
        self.nchw: dict[Value, str] = {}
        self.nhwc_names: dict[Value, str] = {}
        self.uses = layout.uses(graph)
        self.params = [self.ns.name(v.name, key=v) for v in graph.inputs]
        self.nchw.update(zip(graph.inputs, self.params, strict=True))

    @property
    def root(self) -> _CallWriter:
        s = self
        while s.parent is not None:
            s = s.parent
        assert isinstance(s, _CallWriter)
        return s

    def _owner(self, v: Value) -> _Scope:
        s: _Scope | None = self
        while s is not None and v not in s.home:
            s = s.parent
        assert s is not None, f"value {v.name} is read outside the function that defines it"
        return s

    # -- Ctx ----------------------------------------------------------------
    def arg(self, v: Value) -> str:
        owner = self._owner(v)
        if v not in owner.nchw:
            assert v in owner.nhwc_names, f"value {v.name} is read before it is computed"
            name = owner.ns.name(v.name, key=v)
            expr = layout.relayout(owner.nhwc_names[v], layout.nchw_reshape(v.type), layout.TO_NCHW)
            owner.lines.append(f"{name} = {expr}")
            owner.nchw[v] = name
        return owner.nchw[v]

    def nhwc(self, v: Value) -> str:
        owner = self._owner(v)
        if v not in owner.nhwc_names:
            name = owner.ns.name(v.name + "_nhwc", key=("nhwc", v))
            expr = layout.relayout(owner.arg(v), layout.nhwc_reshape(v.type), layout.TO_NHWC)
            owner.lines.append(f"{name} = {expr}")
            owner.nhwc_names[v] = name
        return owner.nhwc_names[v]

    def dim(self, d: Dim | int, node: Node) -> str:
        return self.root.dim(d, node)

    def helper(self, name: str) -> str:
        return self.root.helper(name)

    def prefer_nhwc(self, node: Node, inputs: list[Value]) -> bool:
        """Run ``node`` channels-last when that costs no more transposes than channels-first."""
        ins = list(dict.fromkeys(inputs))
        if not any(self._has_nhwc(v) for v in ins):
            return False
        out = node.outputs[0]
        # A change of layout that is a reshape (a channel or both spatial dims of size 1) is free.
        out_moves = layout.nhwc_reshape(out.type) is None
        to_nhwc = sum(1 for v in ins if not self._has_nhwc(v) and layout.costs_transpose(v.type))
        to_nchw = sum(
            1
            for v in ins
            if not self._has_nchw(v) and v not in self._owner(v).uses.nchw and layout.costs_transpose(v.type)
        )
        return to_nhwc + (out_moves and out in self.uses.nchw) <= to_nchw + (out_moves and out in self.uses.nhwc)

    def steps_first(self, v: Value) -> bool:
        return v in self.root.stepped

    def step_function(self, node: Node) -> str:
        assert node.body is not None
        body = _Scope(node.body, self, self.ns)
        name = self.ns.name(node.body.name or "step", key=("step", node))
        lines = body.write()
        self.lines.append(f"def {name}({', '.join(body.params)}):{loc_comment(node.loc)}")
        self.lines += ["    " + line for line in lines]
        return name

    # -- layout ---------------------------------------------------------------
    def _has_nhwc(self, v: Value) -> bool:
        return v in self._owner(v).nhwc_names

    def _has_nchw(self, v: Value) -> bool:
        return v in self._owner(v).nchw

    def nhwc_operand(self, v: Value) -> str:
        """``v`` for an elementwise op run channels-last: its NHWC copy, or a view of a small operand."""
        if self._has_nhwc(v) or v.type.rank == 4:
            return self.nhwc(v)
        if v.type.rank == 0:
            return self.arg(v)
        shape = layout.nhwc_reshape(v.type)
        if shape is not None:  # e.g. a per-channel bias [C, 1, 1] -> [1, 1, 1, C]
            return f"tf.reshape({self.arg(v)}, [{', '.join(shape)}])"
        expr = self.arg(v)
        for _ in range(4 - v.type.rank):
            expr = f"tf.expand_dims({expr}, 0)"
        return f"tf.transpose({expr}, perm={layout.TO_NHWC})"

    # -- statements -------------------------------------------------------------
    def write(self) -> list[str]:
        """The statements of the function, ending with its return."""
        # a training step's LSTM: its forward and backward scans as two fused kernels
        lstms = trained_lstms(self.graph) if self.parent is None else {}
        skipped = lstm_skipped(lstms)
        for node in self.graph.nodes:
            if node in lstms:
                pair = lstms[node]
                (lstm_forward if node is pair.forward else lstm_backward)(pair, self)
            elif node not in skipped:
                self._statement(node)
        self.lines.append(self._return())
        return self.lines

    def fresh(self, base: str) -> str:
        """A new name for a statement's own temporary."""
        return self.ns.name(base)

    def bind(self, v: Value) -> str:
        """The name ``v`` gets, channels-first, from the statement that is about to compute it."""
        name = self.ns.name(v.name, key=v)
        self.nchw[v] = name
        return name

    def _statement(self, node: Node) -> None:
        if node.body is not None and node.op != "scan":
            raise LoweringError(f"the tensorflow target cannot lower '{node.op}' with a body", node.loc)
        if emitter(node) is DECOMPOSE or not KERNEL_FITS.get(node.op, bool)(node):
            # no TensorFlow kernel for this op: its decomposition's statements, its results theirs
            nodes, results = decomposed(node)
            self.home.update(v for n in nodes for v in n.outputs)
            for n in nodes:
                self._statement(n)
            for out, r in zip(node.outputs, results, strict=True):
                self.nchw[out] = self.arg(r)
            return
        opdef = get_op(node.op)
        if opdef.elementwise and layout.runs_either_way(node) and self.prefer_nhwc(node, node.inputs):
            expr: str = Nhwc(emitter(node)(_NhwcView(self), node))
        else:
            expr = emitter(node)(self, node)
        if isinstance(expr, Nhwc):
            out = node.outputs[0]
            target = self.ns.name(out.name + "_nhwc", key=("nhwc", out))
            self.nhwc_names[out] = target
        else:
            outs = [self.ns.name(v.name, key=v) for v in node.outputs]
            self.nchw.update(zip(node.outputs, outs, strict=True))
            if node.op in SEQUENCE_RESULTS:
                target = ", ".join(outs) if len(outs) > 1 else f"({outs[0]},)"
            else:
                assert len(outs) == 1, node.op
                target = outs[0]
        self.lines.append(f"{target} = {expr}{loc_comment(node.loc)}")

    def _return(self) -> str:
        items = [self.arg(v) for _, v in self.graph.outputs]
        if self.parent is not None:  # a step function: always a tuple, new carries then emits
            return "return " + (", ".join(items) if len(items) > 1 else f"({items[0]},)")
        # An output that is an input or a variable is returned as a fresh tensor.
        outs = [v for _, v in self.graph.outputs]
        items = [ref if v.producer is not None else f"tf.identity({ref})" for ref, v in zip(items, outs, strict=True)]
        if len(items) == 1:
            return f"return {items[0]}"
        return "return " + ", ".join(items)


class _NhwcView:
    """The scope as an elementwise emitter running channels-last sees it: every operand in NHWC."""

    def __init__(self, scope: _Scope) -> None:
        self._scope = scope

    def arg(self, v: Value) -> str:
        return self._scope.nhwc_operand(v)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scope, name)


class _CallWriter(_Scope):
    """The body of ``__call__``: the outermost scope, which also owns symbols and helpers."""

    def __init__(self, graph: Graph, attrs: dict[Value, str], reserved: set[str], training: bool = False) -> None:
        super().__init__(graph, None, Namespace(reserved), training)
        # scan emits that later scans read one step at a time: kept with their steps first
        self.stepped = stepped_only(graph)
        self.sym_vars: dict[str, str] = {}
        self.helpers: set[str] = set()
        self.nchw.update({p: f"self.{a}" for p, a in attrs.items()})

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

    def body(self) -> list[str]:
        lines = self.write()
        sources = self.graph.symbol_sources()
        syms = []
        for s, var in self.sym_vars.items():  # sizes known only at run time
            v, axis = sources[s]
            syms.append(f"{var} = tf.shape({self.arg(v)})[{axis}]")
        return syms + lines


def _class_lines(graph: Graph, cls: str, weights: str | None) -> tuple[list[str], set[str]]:
    attr_ns = Namespace(set(RESERVED) | TF_MODULE_ATTRS)
    # No attribute starts with "_": that is where tf.Module keeps its own state.
    attrs = {p: attr_ns.name(p.name.lstrip("_") or "param", key=p) for p in graph.params}
    call = _CallWriter(graph, attrs, set(RESERVED) | MODULE_NAMES | {cls})
    body = call.body()
    train_call = (
        _CallWriter(graph, attrs, set(RESERVED) | MODULE_NAMES | {cls}, training=True)
        if has_training_path(graph)
        else None
    )

    out = [f"class {cls}(tf.Module):", f'    """The dlir model {cls}, compiled for TensorFlow."""', ""]
    out.append("    # dotted dlir name -> the attribute holding its tf.Variable")
    out.append("    PARAMS = {" + ", ".join(f"{py_str(p.name)}: {py_str(a)}" for p, a in attrs.items()) + "}")
    out.append(f"    INPUT_NAMES = {_tuple([v.name for v in graph.inputs])}")
    out.append(f"    OUTPUT_NAMES = {_tuple(graph.output_names())}")
    if weights is None:
        out += ["", "    def __init__(self, seed: int = 0) -> None:", "        super().__init__()"]
        if graph.params:
            out.append("        # The same seeded numbers as every other dlir target.")
    else:
        out += ["", "    def __init__(self, weights: str = WEIGHTS_FILE) -> None:", "        super().__init__()"]
        out.append("        # The weights of the .safetensors file (dlirc compile --weights), held to the params.")
        out += ["        " + line for line in read_weights(graph.params)]
    for p, a in attrs.items():
        flags = ", trainable=False" if p.kind == "buffer" else ""
        value = _init_expr(p, stored=weights is not None)
        variable = f"tf.Variable({value}{flags}, name={py_str(variable_name(p.name))})"
        out.append(f"        self.{a} = {variable}{loc_comment(p.loc)}")
    out += _param_methods()
    if train_call is None:
        out += _call_header(graph, call.params, "__call__")
        out += ["        " + line for line in body]
        return out, call.helpers
    train_body = train_call.body()
    out += _keras_call(graph, call.params)
    out += _call_header(graph, call.params, "call", "inference: the running statistics, no dropout")
    out += ["        " + line for line in body]
    out += _call_header(
        graph, train_call.params, "call_train", "training: batch statistics (moving ones updated), dropout"
    )
    out += ["        " + line for line in train_body]
    return out, call.helpers | train_call.helpers


def has_training_path(graph: Graph) -> bool:
    """Whether the model computes differently in training (dropout, batch norm with running statistics)."""
    return any(differs_in_training(n) for n in graph.nodes)


def _keras_call(graph: Graph, params: list[str]) -> list[str]:
    args = ", ".join(params)
    return [
        "",
        f"    def __call__(self, {args}, training: bool = False):",
        '        """As a Keras layer: training=True normalises with the batch statistics, updates the moving ones,',
        '        and applies dropout; both paths are tf.functions traced once (``call``, ``call_train``)."""',
        f"        return self.call_train({args}) if training else self.call({args})",
    ]


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


def _call_header(graph: Graph, params: list[str], method: str, doc: str = "") -> list[str]:
    out = ["", "    @tf.function(", "        input_signature=["]
    for v, name in zip(graph.inputs, spec_names([v.name for v in graph.inputs]), strict=True):
        out.append(f"            {_spec(v.type, name)},{_type_comment(v.type)}")
    out.append("        ],")
    out.append("        autograph=False,  # straight-line code: nothing for autograph to convert")
    out.append("    )")
    ret = "tf.Tensor" if len(graph.outputs) == 1 else "tuple[" + ", ".join("tf.Tensor" for _ in graph.outputs) + "]"
    args = "".join(f", {p}: tf.Tensor" for p in params)
    out.append(f"    def {method}(self{args}) -> {ret}:")
    if doc:
        out.append(f'        """{doc[0].upper() + doc[1:]}."""')
    return out


def class_name(graph: Graph) -> str:
    """The name of the generated class: the model's name, made a legal identifier."""
    return Namespace(set(RESERVED) | MODULE_NAMES).name(graph.name)


def generate_source(graph: Graph, weights: str | None = None) -> str:
    """The Python source of a ``tf.Module`` computing ``graph``.

    ``weights``: the name of a ``.safetensors`` file beside the generated one that the
    constructor reads (``dlirc compile --weights``) instead of making the seeded init.
    """
    if not graph.outputs:
        raise LoweringError(f"model {graph.name} has no outputs", graph.loc)
    cls = class_name(graph)
    body, helpers = _class_lines(graph, cls, weights)
    head = [
        f"# Generated by dlir from model {cls} for TensorFlow; edit the .dlir source, not this file.",
        "# A tf.Module with one tf.Variable per param (named by its dotted dlir name)",
        "# and a __call__ traced once by tf.function for the input signature below.",
        "",
        "import numpy as np",
        "import tensorflow as tf",
        "",
    ]
    if weights is not None:  # the weights file beside this one, read with numpy alone
        head[4:4] = ["import json", "import math", "import os", ""]
        head += ["", *weights_reader(weights), ""]
    elif graph.params:  # the seeded init, written out: the file needs tensorflow and numpy, not dlir
        head[4:4] = ["import math", "import zlib", "from typing import Any", ""]
        head += ["", standalone_source().rstrip("\n"), ""]
    for name in sorted(helpers):
        head += ["", HELPERS[name]]
    return "\n".join(head + ["", *body]) + "\n"


def generate(graph: Graph, weights: str | None = None) -> bytes:
    """The file ``dlirc compile --target tensorflow`` writes (UTF-8 Python source)."""
    return generate_source(graph, weights).encode("utf-8")
