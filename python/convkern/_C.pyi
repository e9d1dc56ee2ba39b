"""
convkern's compiled kernels (private: use the convkern package)
"""

from __future__ import annotations

import collections.abc
import typing

import numpy

__all__: list[str] = [
    "ConvArgs",
    "adaptive_avg_pool_backward",
    "adaptive_avg_pool_forward",
    "adaptive_max_pool_backward",
    "adaptive_max_pool_forward",
    "adaptive_pool_output_shape",
    "avg_pool_backward",
    "avg_pool_forward",
    "channel_sum",
    "conv_backward_data",
    "conv_backward_weight",
    "conv_forward",
    "conv_output_shape",
    "conv_transpose_plan",
    "cpu_isa",
    "effective_num_threads",
    "extremum_pool_backward",
    "extremum_pool_forward",
    "get_num_threads",
    "hardware_threads",
    "isa_choice",
    "isa_levels",
    "openmp",
    "pool_output_shape",
    "release_scratch",
    "reset_scratch_peak",
    "same_padding",
    "scratch_stats",
    "set_num_threads",
    "set_scratch_cache_limit",
]

class ConvArgs:
    """
    Geometry arguments of one convolution (3 spatial axes).
    """
    def __init__(
        self,
        stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
        pad_before: typing.Annotated[
            collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"
        ],
        pad_after: typing.Annotated[
            collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"
        ],
        dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
        groups: typing.SupportsInt | typing.SupportsIndex,
        rank: typing.SupportsInt | typing.SupportsIndex,
        channels_last: bool,
    ) -> None: ...
    @property
    def channels_last(self) -> bool: ...
    @property
    def dilation(self) -> typing.Annotated[list[int], "FixedSize(3)"]: ...
    @property
    def groups(self) -> int: ...
    @property
    def pad_after(self) -> typing.Annotated[list[int], "FixedSize(3)"]: ...
    @property
    def pad_before(self) -> typing.Annotated[list[int], "FixedSize(3)"]: ...
    @property
    def rank(self) -> int: ...
    @property
    def stride(self) -> typing.Annotated[list[int], "FixedSize(3)"]: ...

def adaptive_avg_pool_backward(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def adaptive_avg_pool_forward(
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def adaptive_max_pool_backward(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    indices: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def adaptive_max_pool_forward(
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    indices: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def adaptive_pool_output_shape(
    rank: typing.SupportsInt | typing.SupportsIndex,
    batch: typing.SupportsInt | typing.SupportsIndex,
    channels: typing.SupportsInt | typing.SupportsIndex,
    in_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    output_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
) -> typing.Annotated[list[int], "FixedSize(3)"]: ...
def avg_pool_backward(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    count_include_pad: bool,
    divisor_override: typing.SupportsInt | typing.SupportsIndex,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def avg_pool_forward(
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    count_include_pad: bool,
    divisor_override: typing.SupportsInt | typing.SupportsIndex,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def channel_sum(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    channels_last: bool,
) -> None: ...
def conv_backward_data(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    weight: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    args: ConvArgs,
) -> None: ...
def conv_backward_weight(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_weight: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    args: ConvArgs,
) -> None: ...
def conv_forward(
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    weight: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    bias: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None,
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    args: ConvArgs,
) -> None: ...
def conv_output_shape(
    input_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    weight_shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    args: ConvArgs,
) -> list[int]:
    """
    Logical (N, K, oD, oH, oW) of a convolution; validates it.
    """

def conv_transpose_plan(
    rank: typing.SupportsInt | typing.SupportsIndex,
    in_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    padding: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    output_padding: typing.Annotated[
        collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"
    ],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
) -> tuple[typing.Any, ...]:
    """
    (out, pad_after, in_extended) of a transposed convolution computed as a convolution's backward.
    """

def cpu_isa() -> str: ...
def effective_num_threads() -> int:
    """
    Threads a call from this thread would use now: the setting capped by this thread's OpenMP limit.
    """

def extremum_pool_backward(
    grad_output: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    indices: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    grad_input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def extremum_pool_forward(
    input: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    out: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]],
    indices: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]] | None,
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    is_min: bool,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool,
) -> None: ...
def get_num_threads() -> int: ...
def hardware_threads() -> int: ...
def isa_choice() -> dict[str, typing.Any]:
    """
    The kernel set in use, the widest this CPU runs, and CONVKERN_ISA as given.
    """

def openmp() -> bool: ...
def pool_output_shape(
    rank: typing.SupportsInt | typing.SupportsIndex,
    batch: typing.SupportsInt | typing.SupportsIndex,
    channels: typing.SupportsInt | typing.SupportsIndex,
    in_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
) -> typing.Annotated[list[int], "FixedSize(3)"]: ...
def release_scratch() -> int:
    """
    Frees the scratch cache's idle blocks; returns the bytes freed.
    """

def reset_scratch_peak() -> None: ...
def same_padding(
    in_size: typing.SupportsInt | typing.SupportsIndex,
    kernel: typing.SupportsInt | typing.SupportsIndex,
    stride: typing.SupportsInt | typing.SupportsIndex,
    dilation: typing.SupportsInt | typing.SupportsIndex,
) -> tuple[int, int]: ...
def scratch_stats() -> dict[str, typing.Any]:
    """
    Kernel scratch memory: allocated now (in use plus cached), peak since reset_scratch_peak, cached, cache limit.
    """

def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None: ...
def set_scratch_cache_limit(bytes: typing.SupportsInt | typing.SupportsIndex) -> None: ...

isa_levels: str = "generic,avx2,avx512"
