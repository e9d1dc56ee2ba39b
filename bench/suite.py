"""The benchmark suite: its rows, their shapes, their napkin math, their inputs.

Only NumPy and the standard library are imported here, because every worker process (convkern,
PyTorch, NumPy) imports this module and no two OpenMP runtimes may share a process.

Phases: a convolution is timed as three separate calls — forward (y), backward-data (grad_input
only) and backward-weight (grad_weight only; no bias: the suite's layers have none, they are
followed by batch norm) — so each kernel is measured on its own; "backward (data + weight)", the
pass the backward target is set for, is derived from them (report.py). Pooling: forward and backward.

Layouts: every case runs channels-first ("NCHW": NCW / NCHW / NCDHW by rank) and channels-last
("NHWC": NWC / NHWC / NDHWC). Both get the same values (the inputs of a case do not depend on
the layout, only their memory order does), so one reference result serves both; every library
hands its results back channels-first for the comparison.

Napkin math, the denominators of the report:

* Convolution FLOPs = 2 · N · K · out_elements_per_map · (C/groups) · kernel_volume for each of
  the three phases (backward-data and backward-weight are each one product of the same size as the
  forward's). The bias gradient is not computed.
* Pooling bytes = every operand read once + every result written once, in its own dtype:
  forward x + y; backward grad_output + grad_input, plus the int64 argmax indices for max pooling
  (the backward is given the indices its forward saved, as autograd does).
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np

FORWARD = "forward"
BACKWARD_DATA = "backward_data"  # convolution: grad_input only
BACKWARD_WEIGHT = "backward_weight"  # convolution: grad_weight only
BACKWARD = "backward"  # pooling: grad_input
CONV_PHASES = (FORWARD, BACKWARD_DATA, BACKWARD_WEIGHT)
POOL_PHASES = (FORWARD, BACKWARD)
# Derived, not timed: per row, the sum of the backward-data and backward-weight medians.
BACKWARD_DATA_WEIGHT = "backward_data+weight"

CHANNELS_FIRST = "NCHW"  # the layout labels of the report; each rank's data_format below
CHANNELS_LAST = "NHWC"
LAYOUTS = (CHANNELS_FIRST, CHANNELS_LAST)
DATA_FORMATS = {CHANNELS_FIRST: {1: "NCW", 2: "NCHW", 3: "NCDHW"}, CHANNELS_LAST: {1: "NWC", 2: "NHWC", 3: "NDHWC"}}


def data_format(row, layout: str) -> str:
    """The data_format string of `layout` for this row's rank ("NWC" for a 1-D row in NHWC)."""
    return DATA_FORMATS[layout][row.rank]


def to_layout(array: np.ndarray, layout: str) -> np.ndarray:
    """A channels-first (N, C, *spatial) array in `layout`, C-contiguous: (N, *spatial, C) for NHWC."""
    if layout == CHANNELS_FIRST:
        return array
    return np.ascontiguousarray(np.moveaxis(array, 1, -1))


def to_channels_first(array: np.ndarray, layout: str) -> np.ndarray:
    """The inverse of to_layout (a view): an (N, *spatial, C) array back as (N, C, *spatial)."""
    return array if layout == CHANNELS_FIRST else np.moveaxis(array, -1, 1)


def _out_size(size: int, kernel: int, stride: int, pad: int) -> int:
    return (size + 2 * pad - kernel) // stride + 1


@dataclass(frozen=True)
class ConvRow:
    """One convolution layer of the suite (dilation 1, symmetric zero padding, NC + spatial layout)."""

    name: str
    batch_cpu: int
    batch_gpu: int
    in_channels: int
    spatial: Tuple[int, ...]  # (W,), (H, W) or (D, H, W): the rank is len(spatial)
    out_channels: int
    kernel: Tuple[int, ...]
    stride: int
    padding: int
    groups: int = 1

    kind = "conv"

    @property
    def rank(self) -> int:
        return len(self.spatial)

    @property
    def kernel_volume(self) -> int:
        return math.prod(self.kernel)

    def out_spatial(self) -> Tuple[int, ...]:
        return tuple(_out_size(i, k, self.stride, self.padding) for i, k in zip(self.spatial, self.kernel))

    def x_shape(self, batch: int) -> Tuple[int, ...]:
        return (batch, self.in_channels) + self.spatial

    def w_shape(self) -> Tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups) + self.kernel

    def y_shape(self, batch: int) -> Tuple[int, ...]:
        return (batch, self.out_channels) + self.out_spatial()

    phases = CONV_PHASES

    def flops(self, phase: str, batch: int) -> float:
        """One phase's FLOPs: each of forward, backward-data, backward-weight is the same product;
        the derived backward (data + weight) counts two."""
        one_product = (
            2.0
            * batch
            * self.out_channels
            * math.prod(self.out_spatial())
            * (self.in_channels // self.groups)
            * self.kernel_volume
        )
        return 2.0 * one_product if phase == BACKWARD_DATA_WEIGHT else one_product

    def describe(self) -> str:
        shape = "x".join(map(str, self.spatial))
        kernel = "x".join(map(str, self.kernel))
        text = f"C{self.in_channels} {shape} K{self.out_channels} k{kernel} s{self.stride} p{self.padding}"
        return text + (f" g{self.groups}" if self.groups > 1 else "")


@dataclass(frozen=True)
class PoolRow:
    """One pooling layer of the suite: op is "max", "avg" or "global_avg" (2-D, NCHW)."""

    name: str
    batch_cpu: int
    batch_gpu: int
    channels: int
    spatial: Tuple[int, int]
    op: str
    kernel: int = 0  # unused for global pooling
    stride: int = 0
    padding: int = 0

    kind = "pool"
    rank = 2
    phases = POOL_PHASES

    def out_spatial(self) -> Tuple[int, ...]:
        if self.op == "global_avg":
            return ()
        return tuple(_out_size(i, self.kernel, self.stride, self.padding) for i in self.spatial)

    def x_shape(self, batch: int) -> Tuple[int, ...]:
        return (batch, self.channels) + self.spatial

    def y_shape(self, batch: int) -> Tuple[int, ...]:
        return (batch, self.channels) + self.out_spatial()  # global pooling: (N, C)

    def bytes_moved(self, phase: str, batch: int) -> float:
        x_bytes = 4.0 * math.prod(self.x_shape(batch))
        y_bytes = 4.0 * math.prod(self.y_shape(batch))
        if phase == FORWARD:
            return x_bytes + y_bytes
        index_bytes = 2.0 * y_bytes if self.op == "max" else 0.0  # int64 beside float32
        return y_bytes + index_bytes + x_bytes

    def describe(self) -> str:
        shape = "x".join(map(str, self.spatial))
        if self.op == "global_avg":
            return f"C{self.channels} {shape} global avg"
        return f"C{self.channels} {shape} {self.op} k{self.kernel} s{self.stride} p{self.padding}"


CONV_ROWS: List[ConvRow] = [
    ConvRow("resnet50.conv1", 8, 32, 3, (224, 224), 64, (7, 7), 2, 3),
    ConvRow("resnet50.l1.1x1", 8, 32, 64, (56, 56), 256, (1, 1), 1, 0),
    ConvRow("resnet50.l1.3x3", 8, 32, 64, (56, 56), 64, (3, 3), 1, 1),
    ConvRow("resnet50.l2.3x3s2", 8, 32, 128, (56, 56), 128, (3, 3), 2, 1),
    ConvRow("resnet50.l2.3x3", 8, 32, 128, (28, 28), 128, (3, 3), 1, 1),
    ConvRow("resnet50.l3.3x3", 8, 32, 256, (14, 14), 256, (3, 3), 1, 1),
    ConvRow("resnet50.l3.1x1", 8, 32, 1024, (14, 14), 256, (1, 1), 1, 0),
    ConvRow("resnet50.l4.3x3", 8, 32, 512, (7, 7), 512, (3, 3), 1, 1),
    ConvRow("vgg16.conv3_2", 8, 32, 256, (56, 56), 256, (3, 3), 1, 1),
    ConvRow("mobilenet.dw3x3", 8, 32, 256, (28, 28), 256, (3, 3), 1, 1, groups=256),
    ConvRow("lenet5.conv1", 64, 256, 1, (32, 32), 6, (5, 5), 1, 0),
    ConvRow("lenet5.conv2", 64, 256, 6, (14, 14), 16, (5, 5), 1, 0),
    ConvRow("audio.conv1d", 8, 32, 64, (16000,), 64, (9,), 1, 4),
    ConvRow("video.conv3d", 2, 8, 64, (8, 56, 56), 64, (3, 3, 3), 1, 1),
]

POOL_ROWS: List[PoolRow] = [
    PoolRow("resnet50.maxpool", 8, 32, 64, (112, 112), "max", 3, 2, 1),
    PoolRow("vgg.maxpool", 8, 32, 128, (112, 112), "max", 2, 2, 0),
    PoolRow("inception.avgpool", 8, 32, 192, (28, 28), "avg", 3, 1, 1),
    PoolRow("resnet50.gap", 8, 32, 2048, (7, 7), "global_avg"),
]

ROWS = CONV_ROWS + POOL_ROWS
ROWS_BY_NAME: Dict[str, object] = {row.name: row for row in ROWS}


def select_rows(filter_text: str | None) -> list:
    """Rows matching any of the comma-separated patterns (all rows if none). A pattern matches a
    name that contains it starting at one of its dot-separated parts: "lenet" selects lenet5.*
    but not mobilenet.*, "maxpool" selects resnet50.maxpool and vgg.maxpool."""
    return [row for row in ROWS if name_selected(row.name, filter_text)]


def name_selected(name: str, filter_text: str | None) -> bool:
    """Whether a row name matches the --filter text (select_rows's rule; True without a filter)."""
    if not filter_text:
        return True
    parts = name.split(".")
    patterns = [p.strip() for p in filter_text.split(",") if p.strip()]
    return any(".".join(parts[i:]).startswith(p) for p in patterns for i in range(len(parts)))


def make_inputs(row, phase: str, batch: int, layout: str = CHANNELS_FIRST) -> Dict[str, np.ndarray]:
    """Fresh, reproducible float32 operands, uniform in [-1, 1) (never zeros): every process
    that asks for the same (row, phase, batch) gets bit-identical values, in `layout`'s memory
    order (x and dy; the weight is (K, C/groups, *kernel) in both layouts, as in convkern)."""
    seed = zlib.crc32(f"{row.name}/{phase}/{batch}".encode())
    rng = np.random.default_rng(seed)

    def uniform(shape):
        return rng.uniform(-1.0, 1.0, size=shape).astype(np.float32)

    arrays = {"x": uniform(row.x_shape(batch))}
    if row.kind == "conv":
        arrays["w"] = uniform(row.w_shape())
    if phase != FORWARD:
        arrays["dy"] = uniform(row.y_shape(batch))
    if row.kind == "pool" and row.op == "global_avg":
        return {name: a if name == "dy" else to_layout(a, layout) for name, a in arrays.items()}  # dy: (N, C)
    return {name: a if name == "w" else to_layout(a, layout) for name, a in arrays.items()}


# ---------------------------------------------------------------------------------------------
# The oracle: what each (row, phase) must produce, from convkern.reference (float64)
# ---------------------------------------------------------------------------------------------

OUTPUT_NAMES = {FORWARD: "y", BACKWARD_DATA: "grad_input", BACKWARD_WEIGHT: "grad_weight", BACKWARD: "grad_input"}


def output_name(phase: str) -> str:
    """The one result each timed phase produces."""
    return OUTPUT_NAMES[phase]


def reference_output(reference, row, phase: str, arrays: Dict[str, np.ndarray]) -> np.ndarray:
    """The float64 result of `reference` (the convkern.reference module) on channels-first
    float32 `arrays`."""
    x = arrays["x"]
    if row.kind == "conv":
        geometry = dict(stride=row.stride, padding=row.padding, groups=row.groups)
        if phase == FORWARD:
            return getattr(reference, f"conv{row.rank}d")(x, arrays["w"], **geometry)
        grad_input, grad_weight, _ = getattr(reference, f"conv{row.rank}d_backward")(
            arrays["dy"], x, arrays["w"], **geometry
        )
        return grad_input if phase == BACKWARD_DATA else grad_weight
    return _reference_pool(reference, row, phase, x, arrays.get("dy"))


def _reference_pool(reference, row, phase: str, x: np.ndarray, dy) -> np.ndarray:
    if row.op == "global_avg":
        if phase == FORWARD:
            return reference.global_avg_pool2d(x)
        return reference.global_avg_pool2d_backward(dy, x)
    window = (row.kernel, row.stride, row.padding)
    if phase == FORWARD:
        return getattr(reference, f"{row.op}_pool2d")(x, *window)
    return getattr(reference, f"{row.op}_pool2d_backward")(dy, x, *window)


def tolerance(row, phase: str, batch: int) -> Tuple[float, float]:
    """(rtol, atol) of a phase's result: rtol 1e-4, atol 1e-5 · sqrt(length of the reduction
    behind one element), as in tests/ (float32 rounding grows about as the square root of a
    sum's length)."""
    rtol = 1e-4
    if row.kind == "pool":
        window = row.spatial[0] * row.spatial[1] if row.op == "global_avg" else row.kernel**2
        return rtol, 1e-5 * math.sqrt(window)
    if phase == FORWARD:
        return rtol, 1e-5 * math.sqrt(row.in_channels // row.groups * row.kernel_volume)
    if phase == BACKWARD_DATA:
        return rtol, 1e-5 * math.sqrt(row.out_channels // row.groups * row.kernel_volume)
    return rtol, 1e-5 * math.sqrt(batch * math.prod(row.out_spatial()))  # grad_weight


def error_ratio(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> float:
    """max |got - want| / (atol + rtol |want|): at most 1 passes; NaN (an unwritten, poisoned
    element) and a shape mismatch give infinity."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return math.inf
    ratio = np.abs(got - want) / (atol + rtol * np.abs(want))
    if not np.all(np.isfinite(ratio)):
        return math.inf
    return float(ratio.max()) if ratio.size else 0.0


def describe_mismatch(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> str:
    """Where a failed comparison is worst, for the failure message."""
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    nan_count = int(np.isnan(got).sum())
    ratio = np.where(np.isnan(got), np.inf, np.abs(got - want) / (atol + rtol * np.abs(want)))
    worst = np.unravel_index(int(np.argmax(ratio)), ratio.shape)
    text = f"worst at {tuple(map(int, worst))}: got {got[worst]:.7g}, expected {want[worst]:.7g}"
    return text + (f"; {nan_count} NaN (unwritten) elements" if nan_count else "")
