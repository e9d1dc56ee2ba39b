"""Writes python/convkern/functional.py: one explicit, annotated, documented function per operator.

The 66 public operators (conv1d ... adaptive_max_pool3d_backward) differ only in their rank and in
which rank-generic implementation they call, so their source is generated from the tables below
rather than typed out by hand; the output is committed, so readers, IDEs and type checkers see
ordinary functions. The examples in the docstrings are run here and their printed results written
in, so they are what the package really answers (the test suite runs them again as doctests).

    python tools/gen_functional.py          # rewrite functional.py
    python tools/gen_functional.py --check  # exit 1 if functional.py is not what this writes
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "python" / "convkern" / "functional.py"

CHANNELS_FIRST = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
CHANNELS_LAST = {1: "NWC", 2: "NHWC", 3: "NDHWC"}
WEIGHT_FIRST = {1: "OIW", 2: "OIHW", 3: "OIDHW"}
WEIGHT_LAST = {1: "WIO", 2: "HWIO", 3: "DHWIO"}
SPATIAL = {1: "W", 2: "H, W", 3: "D, H, W"}
KERNEL = {1: "kW", 2: "kH, kW", 3: "kD, kH, kW"}

# name -> (annotation, numpydoc type, description). {r} is the rank; {cf}/{cl} the activation
# layouts, {wf}/{wl} the weight formats, {sp} the spatial axes, {k} the kernel axes.
PARAMS: Dict[str, Tuple[str, str, str]] = {
    "input": (
        "ArrayLike",
        "array_like",
        "The activations, ({cf}) or ({cl}) as ``data_format`` says, or unbatched without N; float32 or "
        "float64. A CUDA array (CuPy, or anything with ``__cuda_array_interface__`` or ``__dlpack__``) "
        "runs on the CUDA kernels and may also be float16.",
    ),
    "grad_output": (
        "ArrayLike",
        "array_like",
        "Gradient of the loss with respect to the forward's output; the forward output's shape and the input's dtype.",
    ),
    "conv_weight": (
        "ArrayLike",
        "array_like",
        "The filters: (C_out, C_in/groups, {k}) with ``weight_format={wf!r}`` (the default), "
        "({k}, C_in/groups, C_out) with ``weight_format={wl!r}`` (a Keras/TensorFlow kernel).",
    ),
    "convt_weight": (
        "ArrayLike",
        "array_like",
        "The filters: (C_in, C_out/groups, {k}) with ``weight_format={wf!r}`` (the default, "
        "PyTorch's), ({k}, C_out/groups, C_in) with ``weight_format={wl!r}`` (a Keras "
        "``Conv{r}DTranspose`` kernel).",
    ),
    "bias": (
        "ArrayLike | None",
        "array_like or None",
        "One value per output channel, added to every output; None for no bias.",
    ),
    "conv_stride": (
        "IntOrTuple",
        "int or sequence of int",
        "Step of the window on each spatial axis ({sp}); one int, or one per axis (a 1-element "
        "sequence applies to every axis).",
    ),
    "pool_stride": (
        "IntOrTuple | None",
        "int, sequence of int or None",
        "Step of the window on each spatial axis ({sp}); None or an empty sequence means "
        "``kernel_size``; a 1-element sequence applies to every axis.",
    ),
    "conv_padding": (
        "ConvPadding",
        "int, str or sequence",
        "Implicit padding: an int for every side, one int per axis, one ``(before, after)`` "
        'pair per axis, ``"valid"`` (none) or ``"same"`` (output size ``ceil(in / stride)`` '
        "at any stride, the extra cell after, as TensorFlow pads).",
    ),
    "convt_padding": (
        "IntOrTuple",
        "int or sequence of int",
        "Cells removed from both ends of each output axis, as in PyTorch (``dilation * "
        "(kernel - 1) - padding`` zeros pad the equivalent convolution's input).",
    ),
    "pool_padding": (
        "PoolPadding",
        "int, str or sequence of int",
        "Implicit padding on both sides of each axis (padded cells are never selected and, "
        'unless ``count_include_pad``, not counted), or ``"same"``/``"valid"``.',
    ),
    "output_padding": (
        "IntOrTuple",
        "int or sequence of int",
        "Extra cells added after each output axis to pick among the input sizes a strided "
        "convolution maps to the same output size; each must be below ``max(stride, dilation)``.",
    ),
    "dilation": ("IntOrTuple", "int or sequence of int", "Spacing between the window's cells on each axis."),
    "groups": (
        "int",
        "int",
        "Channel groups: input and output channels are split into ``groups`` independent "
        "convolutions (``groups == C_in`` is a depthwise convolution).",
    ),
    "padding_mode": (
        "str",
        "str",
        'How padded cells are filled: ``"zeros"``, ``"reflect"`` (mirrored about '
        'the edge cell), ``"replicate"`` (the edge cell repeated) or ``"circular"`` (wrapped).',
    ),
    "data_format": (
        "str | None",
        "str or None",
        'Layout of the activations: ``{cf!r}`` (the default, also ``"channels_first"``) or '
        '``{cl!r}`` (also ``"channels_last"``, Keras\'s). Results come in the same layout.',
    ),
    "weight_format": (
        "str | None",
        "str or None",
        "Layout of the weight: ``{wf!r}`` (the default) or ``{wl!r}`` (Keras/TensorFlow). The "
        "weight gradient comes back in the same format.",
    ),
    "out": (
        "Array | None",
        "ndarray or None",
        "Optional C-contiguous array of the result's shape and dtype to write the result into (and "
        "return); it must not overlap an input.",
    ),
    "output_mask": (
        "tuple[bool, bool, bool]",
        "tuple of 3 bool",
        "Which of (grad_input, grad_weight, grad_bias) to compute; the others are returned as None.",
    ),
    "kernel_size": ("IntOrTuple", "int or sequence of int", "Size of the window on each spatial axis ({sp})."),
    "ceil_mode": (
        "bool",
        "bool",
        "Round the output size up rather than down, as long as the last window "
        "starts inside the input or its leading padding.",
    ),
    "return_indices": (
        "bool",
        "bool",
        "Also return, for each output, the flat index of the selected cell in its (n, c) plane of the input, as int64.",
    ),
    "count_include_pad": ("bool", "bool", "Count padded cells in the divisor (with integer padding)."),
    "divisor_override": ("int | None", "int or None", "Divide every window's sum by this instead."),
    "keepdims": ("bool", "bool", "Keep the spatial axes, with size 1."),
    "output_size": (
        "OutputSize",
        "int, None or sequence of int or None",
        "Output size on each spatial axis ({sp}); None keeps that axis's input size.",
    ),
    "indices": (
        "ArrayLike | None",
        "array_like or None",
        "The forward's ``return_indices`` result, to skip recomputing it; every index is checked.",
    ),
}

DEFAULTS = {
    "bias": "None",
    "conv_stride": "1",
    "pool_stride": "None",
    "conv_padding": "0",
    "convt_padding": "0",
    "pool_padding": "0",
    "output_padding": "0",
    "dilation": "1",
    "groups": "1",
    "padding_mode": '"zeros"',
    "data_format": "None",
    "weight_format": "None",
    "out": "None",
    "output_mask": "(True, True, True)",
    "ceil_mode": "False",
    "return_indices": "False",
    "count_include_pad": "True",
    "divisor_override": "None",
    "keepdims": "False",
    "indices": "None",
}

# The public name of a parameter key ("conv_stride" -> "stride").
PUBLIC = {
    "conv_weight": "weight",
    "convt_weight": "weight",
    "conv_stride": "stride",
    "pool_stride": "stride",
    "conv_padding": "padding",
    "convt_padding": "padding",
    "pool_padding": "padding",
}

CONV = [
    "input",
    "conv_weight",
    "bias",
    "conv_stride",
    "conv_padding",
    "dilation",
    "groups",
    "padding_mode",
    "data_format",
    "*",
    "weight_format",
    "out",
]
CONV_BWD = [
    "grad_output",
    "input",
    "conv_weight",
    "conv_stride",
    "conv_padding",
    "dilation",
    "groups",
    "padding_mode",
    "data_format",
    "*",
    "weight_format",
    "output_mask",
]
CONVT = [
    "input",
    "convt_weight",
    "bias",
    "conv_stride",
    "convt_padding",
    "output_padding",
    "groups",
    "dilation",
    "data_format",
    "*",
    "weight_format",
    "out",
]
CONVT_BWD = [
    "grad_output",
    "input",
    "convt_weight",
    "conv_stride",
    "convt_padding",
    "output_padding",
    "groups",
    "dilation",
    "data_format",
    "*",
    "weight_format",
    "output_mask",
]
EXT = [
    "input",
    "kernel_size",
    "pool_stride",
    "pool_padding",
    "dilation",
    "ceil_mode",
    "return_indices",
    "data_format",
    "*",
    "out",
]
EXT_BWD = [
    "grad_output",
    "input",
    "kernel_size",
    "pool_stride",
    "pool_padding",
    "dilation",
    "ceil_mode",
    "data_format",
    "indices",
]
AVG = [
    "input",
    "kernel_size",
    "pool_stride",
    "pool_padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
    "data_format",
    "*",
    "out",
]
AVG_BWD = [
    "grad_output",
    "input",
    "kernel_size",
    "pool_stride",
    "pool_padding",
    "ceil_mode",
    "count_include_pad",
    "divisor_override",
    "data_format",
]
GLOBAL = ["input", "keepdims", "data_format", "*", "out"]
GLOBAL_BWD = ["grad_output", "input", "keepdims", "data_format"]
ADAPTIVE_AVG = ["input", "output_size", "data_format", "*", "out"]
ADAPTIVE_AVG_BWD = ["grad_output", "input", "output_size", "data_format"]
ADAPTIVE_MAX = ["input", "output_size", "return_indices", "data_format", "*", "out"]
ADAPTIVE_MAX_BWD = ["grad_output", "input", "output_size", "data_format", "indices"]

RAISES = """\
ValueError
    If an argument's value or an array's shape is invalid (the message names the argument, what was
    expected and what was given); nothing is allocated or written before every check has passed.
TypeError
    If an argument has the wrong type, an array an unsupported dtype, or the arrays of the call
    differ in dtype or device.
RuntimeError
    If a CUDA array is given where this build or this machine has no CUDA support."""

GRADS = """\
grad_input : ndarray or None
    Gradient with respect to ``input`` (its shape and layout).
grad_weight : ndarray or None
    Gradient with respect to ``weight``, in ``weight_format``.
grad_bias : ndarray or None
    Gradient with respect to the bias, one value per output channel."""


@dataclass
class Op:
    name: str
    params: List[str]
    impl: str  # the private implementation and its leading bound arguments, e.g. "_conv(2"
    summary: str
    body: str  # the rest of the description
    returns: str
    example: List[str]  # doctest lines without the ">>> "; expressions get their result printed
    overload: bool = False  # return_indices decides the return type
    keyword_impl: Tuple[str, ...] = ()  # parameters the implementation takes by keyword


def fmt(text: str, r: int) -> str:
    return text.format(
        r=r,
        cf=CHANNELS_FIRST[r],
        cl=CHANNELS_LAST[r],
        wf=WEIGHT_FIRST[r],
        wl=WEIGHT_LAST[r],
        sp=SPATIAL[r],
        k=KERNEL[r],
    )


def ones(shape: str) -> str:
    return f"np.ones({shape}, np.float32)"


def ops_for_rank(r: int) -> List[Op]:
    cube = lambda lead, n: "(" + lead + ", " + ", ".join([str(n)] * r) + ")"  # noqa: E731
    grid = f"np.arange({4**r}, dtype=np.float32).reshape({cube('1, 1', 4)})"
    conv_ex = [
        f"x = {ones(cube('1, 2', 5))}",
        f"w = {ones(cube('3, 2', 3))}",
        f'y = convkern.conv{r}d(x, w, padding="same")',
        "y.shape",
        f"float(y[{', '.join(['0', '0'] + ['2'] * r)}])  # 2 channels x {3**r} cells",
    ]
    convt_ex = [
        f"x = {ones(cube('1, 2', 3))}",
        f"w = {ones(cube('2, 4', 2))}",
        f"y = convkern.conv_transpose{r}d(x, w, stride=2)",
        "y.shape",
        "float(y.max())",
    ]
    ops = [
        Op(
            f"conv{r}d",
            CONV,
            f"_conv({r}",
            f"{r}-D convolution (cross-correlation, as in every deep-learning framework).",
            f"""y[n, k, o] = bias[k] + sum over the channels c of k's group and the kernel offsets j of
x[n, c, o * stride - pad_before + j * dilation] * weight[k, c, j], on every spatial axis
({SPATIAL[r]}); the output size of an axis is
``floor((in + pad_before + pad_after - dilation * (kernel - 1) - 1) / stride) + 1``.""",
            f"y : ndarray\n    The output, (N, C_out, {SPATIAL[r]}) in the input's layout (``out`` if given).",
            conv_ex,
            keyword_impl=("weight_format", "out"),
        ),
        Op(
            f"conv{r}d_backward",
            CONV_BWD,
            f"_conv_backward({r}",
            f"Gradients of ``conv{r}d``.",
            """Takes the forward's arrays and arguments. The results are bitwise reproducible, whatever
the thread count. A first layer's input needs no gradient: ``output_mask=(False, True, True)``.""",
            GRADS,
            conv_ex[:3]
            + [
                f'dx, dw, db = convkern.conv{r}d_backward(np.ones_like(y), x, w, padding="same")',
                "dx.shape, dw.shape, db.shape",
            ],
            keyword_impl=("weight_format", "output_mask"),
        ),
        Op(
            f"conv_transpose{r}d",
            CONVT,
            f"_conv_transpose({r}",
            f"{r}-D transposed convolution: the gradient of ``conv{r}d`` with respect to its input, used to upsample.",
            """The output size of an axis is
``(in - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1``. The weight is
PyTorch's ``ConvTranspose`` weight, or with the spatial-first ``weight_format`` a Keras
``ConvTranspose`` kernel, whose last two axes are (C_out, C_in): the reverse of a Keras ``Conv``
kernel's.""",
            f"y : ndarray\n    The output, (N, C_out, {SPATIAL[r]}) in the input's layout (``out`` if given).",
            convt_ex,
            keyword_impl=("weight_format", "out"),
        ),
        Op(
            f"conv_transpose{r}d_backward",
            CONVT_BWD,
            f"_conv_transpose_backward({r}",
            f"Gradients of ``conv_transpose{r}d``.",
            "Takes the forward's arrays and arguments.",
            GRADS,
            convt_ex[:3]
            + [
                f"dx, dw, db = convkern.conv_transpose{r}d_backward(np.ones_like(y), x, w, stride=2)",
                "dx.shape, dw.shape, db.shape",
            ],
            keyword_impl=("weight_format", "output_mask"),
        ),
    ]
    for kind, is_min in (("max", False), ("min", True)):
        word = "minimum" if is_min else "maximum"
        ops.append(
            Op(
                f"{kind}_pool{r}d",
                EXT,
                f"_extremum_pool({is_min}, {r}",
                f"{r}-D {kind} pooling: the {word} of each window.",
                """Padded cells are never selected; NaN propagates; ties go to the first cell in window
order. Sizes follow PyTorch's rules, ``ceil_mode`` included.""",
                f"y : ndarray\n    The pooled values, (N, C, {SPATIAL[r]}) in the input's layout (``out`` if given).\n"
                "indices : ndarray\n    Only with ``return_indices=True``: int64, the output's shape.",
                [f"x = {grid}", f"convkern.{kind}_pool{r}d(x, 2).ravel().tolist()"],
                overload=True,
                keyword_impl=("out",),
            )
        )
        ops.append(
            Op(
                f"{kind}_pool{r}d_backward",
                EXT_BWD,
                f"_extremum_pool_backward({is_min}, {r}",
                f"Gradient of ``{kind}_pool{r}d`` with respect to its input.",
                "Each output's gradient goes to the cell its window selected.",
                "grad_input : ndarray\n    The input's shape and layout.",
                [
                    f"x = {grid}",
                    f"dx = convkern.{kind}_pool{r}d_backward(np.ones({cube('1, 1', 2)}, np.float32), x, 2)",
                    "float(dx.sum())",
                ],
            )
        )
    ops += [
        Op(
            f"avg_pool{r}d",
            AVG,
            f"_avg_pool({r}",
            f"{r}-D average pooling: the mean of each window.",
            """``count_include_pad``, ``divisor_override`` and ``ceil_mode`` follow PyTorch; with
``padding="same"`` or ``"valid"`` the divisor is the number of cells inside the input.""",
            f"y : ndarray\n    The pooled values, (N, C, {SPATIAL[r]}) in the input's layout (``out`` if given).",
            [f"x = {grid}", f"convkern.avg_pool{r}d(x, 2).ravel().tolist()"],
            keyword_impl=("out",),
        ),
        Op(
            f"avg_pool{r}d_backward",
            AVG_BWD,
            f"_avg_pool_backward({r}",
            f"Gradient of ``avg_pool{r}d`` with respect to its input.",
            "Each output's gradient is shared equally by the cells its divisor counted.",
            "grad_input : ndarray\n    The input's shape and layout.",
            [
                f"x = {grid}",
                f"dx = convkern.avg_pool{r}d_backward(np.ones({cube('1, 1', 2)}, np.float32), x, 2)",
                "float(dx.sum())",
            ],
        ),
    ]
    for kind in ("max", "avg", "min"):
        what = {"max": "maximum", "avg": "mean", "min": "minimum"}[kind]
        ops.append(
            Op(
                f"global_{kind}_pool{r}d",
                GLOBAL,
                f"_global_pool({kind!r}, {r}",
                f"Global {r}-D {kind} pooling: the {what} over all spatial cells of each (n, c).",
                "",
                "y : ndarray\n    (N, C), or with ``keepdims`` the input's layout with unit spatial axes.",
                [f"x = {grid}", f"convkern.global_{kind}_pool{r}d(x).tolist()"],
                keyword_impl=("out",),
            )
        )
        ops.append(
            Op(
                f"global_{kind}_pool{r}d_backward",
                GLOBAL_BWD,
                f"_global_pool_backward({kind!r}, {r}",
                f"Gradient of ``global_{kind}_pool{r}d`` with respect to its input.",
                "" if kind == "avg" else "The gradient goes to the first extreme cell.",
                "grad_input : ndarray\n    The input's shape and layout.",
                [
                    f"x = {grid}",
                    f"dx = convkern.global_{kind}_pool{r}d_backward(np.ones((1, 1), np.float32), x)",
                    "float(dx.sum())",
                ],
            )
        )
    ops += [
        Op(
            f"adaptive_avg_pool{r}d",
            ADAPTIVE_AVG,
            f"_adaptive_avg_pool({r}",
            f"Adaptive {r}-D average pooling: the output size is given, the windows follow from it.",
            "Output cell i of an axis averages input cells ``floor(i * in / out)`` to "
            "``ceil((i + 1) * in / out) - 1``.",
            f"y : ndarray\n    (N, C, {SPATIAL[r]}) in the input's layout (``out`` if given).",
            [f"x = {grid}", f"convkern.adaptive_avg_pool{r}d(x, 2).ravel().tolist()"],
            keyword_impl=("out",),
        ),
        Op(
            f"adaptive_avg_pool{r}d_backward",
            ADAPTIVE_AVG_BWD,
            f"_adaptive_avg_pool_backward({r}",
            f"Gradient of ``adaptive_avg_pool{r}d`` with respect to its input.",
            "",
            "grad_input : ndarray\n    The input's shape and layout.",
            [
                f"x = {grid}",
                f"dx = convkern.adaptive_avg_pool{r}d_backward(np.ones({cube('1, 1', 2)}, np.float32), x, 2)",
                "float(dx.sum())",
            ],
        ),
        Op(
            f"adaptive_max_pool{r}d",
            ADAPTIVE_MAX,
            f"_adaptive_max_pool({r}",
            f"Adaptive {r}-D max pooling: the output size is given, the windows follow from it.",
            "Output cell i of an axis is the maximum of input cells ``floor(i * in / out)`` to "
            "``ceil((i + 1) * in / out) - 1``; NaN propagates, ties go to the first cell.",
            f"y : ndarray\n    (N, C, {SPATIAL[r]}) in the input's layout (``out`` if given).\n"
            "indices : ndarray\n    Only with ``return_indices=True``: int64, the output's shape.",
            [
                f"x = {grid}",
                f"y, idx = convkern.adaptive_max_pool{r}d(x, 2, return_indices=True)",
                "idx.ravel().tolist()",
            ],
            overload=True,
            keyword_impl=("out",),
        ),
        Op(
            f"adaptive_max_pool{r}d_backward",
            ADAPTIVE_MAX_BWD,
            f"_adaptive_max_pool_backward({r}",
            f"Gradient of ``adaptive_max_pool{r}d`` with respect to its input.",
            "Each output's gradient goes to the cell its window selected.",
            "grad_input : ndarray\n    The input's shape and layout.",
            [
                f"x = {grid}",
                f"dx = convkern.adaptive_max_pool{r}d_backward(np.ones({cube('1, 1', 2)}, np.float32), x, 2)",
                "float(dx.sum())",
            ],
        ),
    ]
    return ops


def run_example(lines: List[str]) -> List[str]:
    """The doctest text of an example: each line run, and each expression's repr printed after it."""
    import convkern
    import numpy as np

    namespace = {"np": np, "convkern": convkern}
    text = []
    for line in lines:
        text.append(">>> " + line)
        try:
            code = compile(line, "<example>", "eval")
        except SyntaxError:
            exec(compile(line, "<example>", "exec"), namespace)
            continue
        value = eval(code, namespace)
        if value is not None:
            text.extend(repr(value).splitlines())
    return text


def signature(op: Op, r: int, return_indices: Optional[str] = None) -> Tuple[str, str]:
    """(the parameter list, the return annotation); return_indices picks an overload."""
    lines = []
    stub = return_indices is not None
    for key in op.params:
        if key == "*":
            lines.append("*")
            continue
        name = PUBLIC.get(key, key)
        annotation, default = PARAMS[key][0], DEFAULTS.get(key)
        if name == "return_indices" and return_indices == "true_kw":
            annotation, default = "Literal[True]", None
        elif name == "return_indices" and return_indices == "false":
            annotation = "Literal[False]"
        if default is None:
            lines.append(f"{name}: {annotation}")
        else:
            lines.append(f"{name}: {annotation} = {'...' if stub else default}")
    if return_indices == "true_kw":
        # Literal[True] has no default, so it and every parameter after it become keyword-only.
        i = lines.index(next(entry for entry in lines if entry.startswith("return_indices")))
        lines = lines[:i] + ["*"] + [entry for entry in lines[i:] if entry != "*"]
    if op.name.endswith("_backward") and op.name.startswith("conv"):
        ret = "tuple[Array | None, Array | None, Array | None]"
    elif return_indices == "false":
        ret = "Array"
    elif return_indices == "true_kw":
        ret = "tuple[Array, Array]"
    elif op.overload:
        ret = "Array | tuple[Array, Array]"
    else:
        ret = "Array"
    return ",\n    ".join(lines), ret


def docstring(op: Op, r: int) -> str:
    parts = [op.summary]
    if op.body:
        # Docstring lines stay within the line length: long prose lines are wrapped.
        parts.append("\n".join(textwrap.fill(line, 100) if len(line) > 100 else line for line in op.body.splitlines()))
    params = []
    for key in op.params:
        if key == "*":
            continue
        _, numpy_type, description = PARAMS[key]
        params.append(f"{PUBLIC.get(key, key)} : {numpy_type}")
        params.append(textwrap.indent(textwrap.fill(fmt(description, r), 96), "    "))
    parts.append("Parameters\n----------\n" + "\n".join(params))
    parts.append("Returns\n-------\n" + op.returns)
    parts.append("Raises\n------\n" + RAISES)
    parts.append("Examples\n--------\n>>> import numpy as np, convkern\n" + "\n".join(run_example(op.example)))
    return textwrap.indent("\n\n".join(parts), "    ").lstrip()


def call(op: Op, ret: str) -> str:
    """The body: the implementation's result (typed Any, as it may be a CuPy array) cast to the annotation."""
    args = []
    for key in op.params:
        if key == "*":
            continue
        name = PUBLIC.get(key, key)
        args.append(f"{name}={name}" if name in op.keyword_impl else name)
    return f'return cast("{ret}", {op.impl}, ' + ", ".join(args) + "))"


def render_op(op: Op, r: int) -> str:
    out = []
    if op.overload:
        for variant in ("false", "true_kw", "bool"):
            params, ret = signature(op, r, variant)
            out.append(f"@overload\ndef {op.name}(\n    {params},\n) -> {ret}: ...\n")
    params, ret = signature(op, r)
    body = textwrap.fill(
        call(op, ret), 112, subsequent_indent="        ", break_long_words=False, break_on_hyphens=False
    )
    out.append(f'def {op.name}(\n    {params},\n) -> {ret}:\n    """{docstring(op, r)}\n    """\n    {body}\n')
    return "\n\n".join(out)


HEADER = '''"""convkern's operators: convolution and pooling, forward and backward, in 1-D, 2-D and 3-D.

Each function is a thin, typed entry point over one rank-generic implementation
(``_conv_ops``/``_pool_ops``): parse the arguments, check them and size the result through the
shared shape rules, allocate, and run the kernel with the GIL released. Nothing is allocated or
written before every check has passed.

The semantics are PyTorch's (``torch.nn.functional``), with these additions: TensorFlow's
``"same"`` padding at any stride, asymmetric padding, min pooling, global pooling, ``out=``,
Keras's layouts and kernel formats (``data_format="channels_last"``, ``weight_format="HWIO"``),
and NumPy arrays in and out, or CUDA arrays (CuPy, or anything with ``__cuda_array_interface__``
or ``__dlpack__`` on a GPU), computed by convkern's CUDA kernels and returned as CuPy arrays on the
input's device.

This file is written by ``tools/gen_functional.py``; edit that, then run it.
"""
# fmt: off
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Optional, Union, cast, overload

from numpy.typing import ArrayLike, NDArray

from ._conv_ops import _conv, _conv_backward, _conv_transpose, _conv_transpose_backward
from ._pool_ops import (
    _adaptive_avg_pool,
    _adaptive_avg_pool_backward,
    _adaptive_max_pool,
    _adaptive_max_pool_backward,
    _avg_pool,
    _avg_pool_backward,
    _extremum_pool,
    _extremum_pool_backward,
    _global_pool,
    _global_pool_backward,
)

#: What the operators return: a NumPy array (a CuPy array on the input's device for CUDA inputs).
Array = NDArray[Any]
#: One int for every spatial axis, or one per axis.
IntOrTuple = Union[int, Sequence[int]]
#: A convolution's padding: an int, one int or (before, after) pair per axis, "same" or "valid".
ConvPadding = Union[int, str, Sequence[Union[int, tuple[int, int]]]]
#: A pooling's padding: an int, one int per axis, "same" or "valid".
PoolPadding = Union[int, str, Sequence[int]]
#: An adaptive pooling's output size: an int, or one int or None (keep the input's) per axis.
OutputSize = Union[int, None, Sequence[Optional[int]]]

'''


def render() -> str:
    names: List[str] = []
    bodies: List[str] = []
    for r in (1, 2, 3):
        bodies.append(f"# {'-' * 40} {r}-D\n")
        for op in ops_for_rank(r):
            names.append(op.name)
            bodies.append(render_op(op, r))
    all_list = "__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]\n"
    return HEADER + all_list + "\n\n" + "\n\n".join(bodies)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if functional.py is stale")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "python"))
    with contextlib.redirect_stdout(io.StringIO()):
        text = render()
    if args.check:
        if TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python tools/gen_functional.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
