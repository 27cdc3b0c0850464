"""Torch emitters for convolution, pooling, batch norm, LRN, padding and indexing.

In the IR a conv or pool's padding is always four explicit ints ``[top, left,
bottom, right]`` (the OpDefs' ``canonical`` hook). Torch's own ``padding=`` is
symmetric, and for pools at most half the kernel, so any other padding becomes an
explicit ``F.pad`` first: ``-inf`` for a max, zeros and a count of the cells that
really are averaged for a mean. Where torch's own arguments fit, the call is
exactly the one a person writes.

A node in NHWC layout (made by the ``layout`` pass, which runs for the
tensorflow target only) is lowered as its NCHW twin between two ``permute``s:
correct, not fast. A conv2d's fused ``act`` wraps the call, as linear's does.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlir.backends.codegen import py_num
from dlir.backends.torch.site import Emitter, Site, torch_dtype

from dlir.ir.types import Dim, DType
from dlir.ops.conv import has_running_stats, nchw_twin

Pair = tuple[int, int]


def _pair(v: int | list[int] | tuple[int, ...]) -> Pair:
    if isinstance(v, int):
        return (v, v)
    return (v[0], v[0]) if len(v) == 1 else (v[0], v[1])


def _pair_src(p: Pair) -> str:
    """``2`` for (2, 2), ``(2, 1)`` otherwise: what a person passes to torch."""
    return str(p[0]) if p[0] == p[1] else f"({p[0]}, {p[1]})"


def _pads(s: Site) -> tuple[int, int, int, int]:
    top, left, bottom, right = s.attr("padding")
    return top, left, bottom, right


def _torch_pad(left: object, right: object, top: object, bottom: object) -> str:
    """F.pad's tuple for the last two axes: last axis first."""
    return f"({left}, {right}, {top}, {bottom})"


def _channels_last(emit: Emitter) -> Emitter:
    """``emit`` for NCHW nodes; an NHWC node as its NCHW twin between two permutes."""

    def emitter(s: Site) -> str:
        if s.attr("layout") == "NCHW":
            return emit(s)
        twin = Site(nchw_twin(s.node), [f"{s.x}.permute(0, 3, 1, 2)", *s.args[1:]], s.dim, s.device)
        return f"({emit(twin)}).permute(0, 2, 3, 1)"

    return emitter


# -- conv2d ----------------------------------------------------------------------------


def _conv2d(s: Site) -> str:
    top, left, bottom, right = _pads(s)
    x = s.x
    kw: list[str] = []
    stride, dilation, groups = _pair(s.attr("stride")), _pair(s.attr("dilation")), s.attr("groups")
    if stride != (1, 1):
        kw.append(f"stride={_pair_src(stride)}")
    if (top, left) == (bottom, right):
        if (top, left) != (0, 0):
            kw.append(f"padding={_pair_src((top, left))}")
    else:
        # e.g. "same" with an even kernel: the extra row/column goes at the bottom/right.
        x = f"F.pad({x}, {_torch_pad(left, right, top, bottom)})"
    if dilation != (1, 1):
        kw.append(f"dilation={_pair_src(dilation)}")
    if groups != 1:
        kw.append(f"groups={groups}")
    call = f"F.conv2d({', '.join([x, *s.args[1:], *kw])})"
    act = s.attr("act")
    if act == "none":
        return call
    from dlir.backends.torch.lowering import TORCH_ACTS  # (that module imports this one)

    return TORCH_ACTS[act].format(call)


# -- pooling ---------------------------------------------------------------------------


def _window(s: Site) -> tuple[Pair, Pair, Pair]:
    kernel = _pair(s.attr("kernel"))
    stride = s.node.attrs.get("stride")
    dilation = _pair(s.node.attrs.get("dilation", [1, 1]))
    return kernel, kernel if stride is None else _pair(stride), dilation


def _native_padding(s: Site, kernel: Pair) -> Pair | None:
    """The (ph, pw) torch's pools take for this padding, or None where they cannot."""
    top, left, bottom, right = _pads(s)
    if top == bottom and left == right and top <= kernel[0] // 2 and left <= kernel[1] // 2:
        return top, left
    return None


@dataclass(frozen=True)
class Amount:
    """A padding amount: a number, or Python computing it from the input's shape."""

    src: str
    value: int | None = None  # None: known only at run time

    def minus(self, n: int) -> Amount:
        if self.value is not None:
            return Amount(str(self.value - n), self.value - n)
        return Amount(f"{self.src} - {n}" if n else self.src)

    def beyond(self, limit: int) -> bool:
        """Whether it may pad past ``limit`` (one known only at run time is assumed to)."""
        return self.value is None or self.value > limit


def _end_pad(s: Site, axis: int, begin: int, end: int, kernel: int, stride: int, dilation: int) -> Amount:
    """The bottom/right padding after which floor-mode windows are exactly the reference's.

    That is the attribute's own padding, except where ceil_mode adds a last,
    partial window: then the padding reaches to that window's end.
    """
    if not s.attr("ceil_mode"):
        return Amount(str(end), end)
    n, out = s.in_type.shape[axis], s.out_type.shape[axis]
    ext = dilation * (kernel - 1) + 1
    if not out.unknown:
        d: Dim = (out - 1) * stride + ext - n - begin
        if d.is_static:
            return Amount(str(max(d.value, end)), max(d.value, end))
        return Amount(f"max({s.dim(d)}, {end})")
    # The count of windows is known only at run time (a symbolic size over a stride):
    # they start at multiples of the stride up to the last one that fits the padded
    # input, plus one more (ceil_mode) if it starts before the bottom/right padding.
    size = f"{s.x}.shape[{axis}]"
    last = min(begin + end - ext + stride, begin)  # windows start before size + last
    count = f"-(-({size} + {last}) // {stride})" if last else f"-(-{size} // {stride})"
    return Amount(f"max(({count} - 1) * {stride} + {ext - begin} - {size}, {end})")


def _explicit_pads(s: Site, kernel: Pair, stride: Pair, dilation: Pair) -> tuple[Amount, Amount]:
    """(right, bottom) paddings that make plain floor-mode windows the reference's windows."""
    top, left, bottom, right = _pads(s)
    b = _end_pad(s, 2, top, bottom, kernel[0], stride[0], dilation[0])
    r = _end_pad(s, 3, left, right, kernel[1], stride[1], dilation[1])
    return r, b


def _kernel_args(kernel: Pair, stride: Pair) -> str:
    """``2`` or ``3, stride=2``: torch's stride defaults to the kernel, as dlir's does."""
    k = _pair_src(kernel)
    return k if stride == kernel else f"{k}, stride={_pair_src(stride)}"


def _max_pool2d(s: Site) -> str:
    kernel, stride, dilation = _window(s)
    dil = f", dilation={_pair_src(dilation)}" if dilation != (1, 1) else ""
    native = _native_padding(s, kernel)
    if native is not None:
        pad = f", padding={_pair_src(native)}" if native != (0, 0) else ""
        ceil = ", ceil_mode=True" if s.attr("ceil_mode") else ""
        return f"F.max_pool2d({s.x}, {_kernel_args(kernel, stride)}{pad}{dil}{ceil})"
    # Torch cannot pad this itself: pad with -inf (padding never wins a max) up to
    # exactly the rows and columns the reference's windows cover.
    top, left, _, _ = _pads(s)
    right, bottom = _explicit_pads(s, kernel, stride, dilation)
    pads = _torch_pad(left, right.src, top, bottom.src)
    padded = f"F.pad({s.x}, {pads}, value=float('-inf'))"
    return f"F.max_pool2d({padded}, {_kernel_args(kernel, stride)}{dil})"


def _avg_pool2d(s: Site) -> str:
    kernel, stride, _ = _window(s)
    k = _kernel_args(kernel, stride)
    include = s.attr("count_include_pad")
    native = _native_padding(s, kernel)
    if native is not None:
        pad = f", padding={_pair_src(native)}" if native != (0, 0) else ""
        ceil = ", ceil_mode=True" if s.attr("ceil_mode") else ""
        excl = ", count_include_pad=False" if not include else ""
        return f"F.avg_pool2d({s.x}, {k}{pad}{ceil}{excl})"
    top, left, bottom, right = _pads(s)
    r_end, b_end = _explicit_pads(s, kernel, stride, (1, 1))
    padded = f"F.pad({s.x}, {_torch_pad(left, r_end.src, top, b_end.src)})"
    if include and not (r_end.beyond(right) or b_end.beyond(bottom)):
        return f"F.avg_pool2d({padded}, {k})"  # every window has kh*kw cells
    # The sum of each window over the count of the cells it averages: the padding
    # (when counted) and the real cells, never ceil_mode's overhang past the padding.
    ones = f"torch.ones_like({s.x}[:1, :1])"
    if include:
        cells = f"F.pad({ones}, {_torch_pad(left, right, top, bottom)}, value=1.0)"
        cells = f"F.pad({cells}, {_torch_pad(0, r_end.minus(right).src, 0, b_end.minus(bottom).src)})"
    else:
        cells = f"F.pad({ones}, {_torch_pad(left, r_end.src, top, b_end.src)})"
    total = f"F.avg_pool2d({padded}, {k}, divisor_override=1)"
    count = f"F.avg_pool2d({cells}, {k}, divisor_override=1)"
    return f"{total} / {count}"


# -- batch norm, pad -----------------------------------------------------------------------


def _batch_norm(s: Site) -> str:
    # With running statistics as registered buffers the module behaves as nn.BatchNorm2d does:
    # .train() normalises with the batch's statistics and updates the buffers (momentum), .eval()
    # uses them. dlir's own runners call .eval(); the trainer builds its step in dlir.train.modes.
    x, scale, bias, mean, var = s.args
    eps = py_num(s.attr("eps"))
    if has_running_stats(s.node):
        momentum = py_num(s.attr("momentum"))
        return (
            f"F.batch_norm({x}, {mean}, {var}, {scale}, {bias}, training=self.training, momentum={momentum}, eps={eps})"
        )
    return f"F.batch_norm({x}, {mean}, {var}, {scale}, {bias}, training=False, eps={eps})"


def _pad(s: Site) -> str:
    pads: list[int] = list(s.attr("pads"))
    pairs = [(pads[2 * i], pads[2 * i + 1]) for i in range(len(pads) // 2)]
    while pairs and pairs[0] == (0, 0):  # F.pad starts at the last axis: leading axes left alone
        pairs.pop(0)
    if not pairs:
        return s.x
    flat = [str(n) for before, after in reversed(pairs) for n in (before, after)]
    value = s.attr("value")
    if not s.in_type.dtype.is_float:
        value = int(value) if s.in_type.dtype.is_int else bool(value)  # as numpy casts the fill
    val = "" if value == 0 else f", value={py_num(value)}"
    return f"F.pad({s.x}, ({', '.join(flat)}){val})"


def _lrn(s: Site) -> str:
    size = s.attr("size")
    args = f"{size}, alpha={py_num(s.attr('alpha'))}, beta={py_num(s.attr('beta'))}, k={py_num(s.attr('bias'))}"
    # torch views x of rank >= 5 as [N, 1, C, D1, -1], which needs contiguous trailing axes.
    x = f"{s.x}.contiguous()" if s.in_type.rank >= 5 else s.x
    dt = s.in_type.dtype
    narrow = dt in (DType.f16, DType.bf16)
    if narrow:  # torch's CPU avg_pool3d has no half kernels; computed wide and rounded once, as the reference
        x = f"{x}.float()"
    if size % 2:
        y = f"F.local_response_norm({x}, {args})"
    else:
        # For an even size torch's window reaches one channel further down, ONNX's (dlir's) one
        # further up: mirrored channels swap the two.
        y = f"F.local_response_norm({x}.flip(1), {args}).flip(1)"
    return f"{y}.to({torch_dtype(dt)})" if narrow else y


# -- indexing ----------------------------------------------------------------------------------


def _gather(s: Site) -> str:
    # numpy's take along one axis is indexing with one index tensor there; torch
    # reads negative indices from the end, as take does, and puts idx's axes in
    # place of that axis.
    x, idx = s.args
    axis = s.attr("axis") % s.in_type.rank
    return f"{x}[{':, ' * axis}{idx}]"


def _one_hot(s: Site) -> str:
    # F.one_hot raises on an index outside [0, n); the reference gives a row of zeros.
    i, n = s.x, s.attr("n")
    return f"({i}.unsqueeze(-1) == torch.arange({n}, device={i}.device)).to({torch_dtype(s.attr('dtype'))})"


NN_EMITTERS: dict[str, Emitter] = {
    "conv2d": _channels_last(_conv2d),
    "max_pool2d": _channels_last(_max_pool2d),
    "avg_pool2d": _channels_last(_avg_pool2d),
    "batch_norm": _channels_last(_batch_norm),
    "lrn": _channels_last(_lrn),
    "pad": _pad,
    "gather": _gather,
    "one_hot": _one_hot,
}
