"""
convkern's CUDA kernels (private: use the convkern package)
"""

from __future__ import annotations

import collections.abc
import typing

__all__: list[str] = [
    "ConvArgs",
    "adaptive_avg_pool_backward",
    "adaptive_avg_pool_forward",
    "adaptive_max_pool_backward",
    "adaptive_max_pool_forward",
    "architectures",
    "avg_pool_backward",
    "avg_pool_forward",
    "channel_sum",
    "conv_allow_tf32",
    "conv_backward_data",
    "conv_backward_weight",
    "conv_backward_weight_workspace",
    "conv_forward",
    "conv_kernel_version",
    "conv_kernel_version_default",
    "conv_kernel_version_latest",
    "device_count",
    "device_properties",
    "driver_version",
    "extremum_pool_backward",
    "extremum_pool_forward",
    "pool_index_check_bytes",
    "runtime_version",
    "set_conv_allow_tf32",
    "set_conv_kernel_version",
    "synchronize",
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
    grad_output: typing.Any,
    grad_input: typing.Any,
    output_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def adaptive_avg_pool_forward(
    input: typing.Any,
    out: typing.Any,
    output_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def adaptive_max_pool_backward(
    grad_output: typing.Any,
    indices: typing.Any,
    grad_input: typing.Any,
    workspace: typing.Any,
    output_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def adaptive_max_pool_forward(
    input: typing.Any,
    out: typing.Any,
    indices: typing.Any,
    output_size: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def architectures() -> list[str]:
    """
    The CUDA architectures this module was compiled for.
    """

def avg_pool_backward(
    grad_output: typing.Any,
    grad_input: typing.Any,
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    count_include_pad: bool,
    divisor_override: typing.SupportsInt | typing.SupportsIndex,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def avg_pool_forward(
    input: typing.Any,
    out: typing.Any,
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    count_include_pad: bool,
    divisor_override: typing.SupportsInt | typing.SupportsIndex,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def channel_sum(
    grad_output: typing.Any, out: typing.Any, channels_last: bool, stream: typing.SupportsInt | typing.SupportsIndex = 0
) -> None: ...
def conv_allow_tf32() -> bool:
    """
    Whether TF32 is allowed for float32 convolutions.
    """

def conv_backward_data(
    grad_output: typing.Any,
    weight: typing.Any,
    grad_input: typing.Any,
    args: typing.Any,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
    bias: typing.Any = None,
) -> None: ...
def conv_backward_weight(
    grad_output: typing.Any,
    input: typing.Any,
    grad_weight: typing.Any,
    workspace: typing.Any,
    args: typing.Any,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def conv_backward_weight_workspace(input: typing.Any, grad_weight: typing.Any, args: typing.Any) -> int:
    """
    Bytes of device scratch conv_backward_weight needs (0: pass None).
    """

def conv_forward(
    input: typing.Any,
    weight: typing.Any,
    bias: typing.Any,
    out: typing.Any,
    args: typing.Any,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def conv_kernel_version() -> int:
    """
    The convolution GEMM kernel generation in use.
    """

def device_count() -> int:
    """
    Visible CUDA devices (0 without a driver or a device).
    """

def device_properties(device: typing.SupportsInt | typing.SupportsIndex) -> dict[str, typing.Any]: ...
def driver_version() -> int:
    """
    Highest CUDA version the driver supports (0: no driver).
    """

def extremum_pool_backward(
    grad_output: typing.Any,
    indices: typing.Any,
    grad_input: typing.Any,
    workspace: typing.Any,
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None:
    """
    workspace: None trusts the indices (they came from the forward); a device buffer of pool_index_check_bytes validates them first (synchronises the stream).
    """

def extremum_pool_forward(
    input: typing.Any,
    out: typing.Any,
    indices: typing.Any,
    kernel: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    stride: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_before: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    pad_after: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    dilation: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(3)"],
    ceil_mode: bool,
    same_or_valid: bool,
    is_min: bool,
    rank: typing.SupportsInt | typing.SupportsIndex,
    channels_last: bool = False,
    stream: typing.SupportsInt | typing.SupportsIndex = 0,
) -> None: ...
def runtime_version() -> int:
    """
    CUDA runtime version, e.g. 13000 for 13.0.
    """

def set_conv_allow_tf32(allow: bool) -> None:
    """
    Whether kernel version 3 may compute float32 convolutions as TF32 on tensor cores (default False).
    """

def set_conv_kernel_version(version: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Selects the generation of the convolution GEMM kernels for the whole process: 1, 2 (the default; float and float16, float64 stays on 1) or 3 (2 with the forward on tensor cores). For tests and benchmarks that compare them.
    """

def synchronize() -> None:
    """
    Waits for all work on the current device (tests and benchmarks).
    """

conv_kernel_version_default: int = 2
conv_kernel_version_latest: int = 3
pool_index_check_bytes: int = 16
