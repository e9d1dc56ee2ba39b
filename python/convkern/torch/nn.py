"""Drop-in ``torch.nn`` layers computed by convkern's kernels.

``convkern.torch.nn.Conv2d`` *is a* ``torch.nn.Conv2d`` (a subclass): same constructor arguments,
same parameters and ``state_dict`` keys, same initialisation, same ``repr``; only the computation
differs. So ``load_state_dict`` from a ``torch.nn`` model works unchanged, code that tests
``isinstance(m, torch.nn.Conv2d)`` (weight initialisers, fusers) keeps working, and autograd,
``torch.no_grad``, ``channels_last`` memory format, ``torch.compile`` and DDP treat them as they
treat PyTorch's layers.

A layer runs convkern where convkern has kernels for the call: float32/float64 tensors on the CPU,
and CUDA tensors when convkern was built with CUDA and CuPy is installed. Anything else (float16 or
bfloat16 on the CPU, autocast, another device) runs PyTorch's own implementation of the layer, so
swapping layers never breaks a model.

Beyond ``torch.nn``: ``MinPool1d/2d/3d`` (max pooling's arguments) and ``GlobalAvgPool``,
``GlobalMaxPool``, ``GlobalMinPool`` in 1-D, 2-D and 3-D (``(N, C, *spatial) -> (N, C)``, or with
unit spatial axes when ``keepdims=True``).
"""

from typing import Optional

import torch
from torch import Tensor

from . import functional as ckf

__all__ = [
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
    "MaxPool1d",
    "MaxPool2d",
    "MaxPool3d",
    "MinPool1d",
    "MinPool2d",
    "MinPool3d",
    "AvgPool1d",
    "AvgPool2d",
    "AvgPool3d",
    "AdaptiveAvgPool1d",
    "AdaptiveAvgPool2d",
    "AdaptiveAvgPool3d",
    "AdaptiveMaxPool1d",
    "AdaptiveMaxPool2d",
    "AdaptiveMaxPool3d",
    "GlobalAvgPool1d",
    "GlobalAvgPool2d",
    "GlobalAvgPool3d",
    "GlobalMaxPool1d",
    "GlobalMaxPool2d",
    "GlobalMaxPool3d",
    "GlobalMinPool1d",
    "GlobalMinPool2d",
    "GlobalMinPool3d",
    "runs_on_convkern",
]


_CUDA_USABLE: Optional[bool] = None  # _cuda_usable's answer, once known


@torch.compiler.assume_constant_result  # torch.compile calls it and keeps the answer: no graph break
def _cuda_usable() -> bool:
    """Whether convkern can run CUDA tensors here: a CUDA build of convkern, and CuPy to hand them over."""
    global _CUDA_USABLE
    if _CUDA_USABLE is None:
        import convkern

        try:
            import cupy  # noqa: F401

            _CUDA_USABLE = bool(convkern.info().get("cuda"))
        except ImportError:
            _CUDA_USABLE = False
    return _CUDA_USABLE


def runs_on_convkern(input: Tensor) -> bool:
    """Whether convkern's kernels compute a layer's call on `input` (else PyTorch's implementation does)."""
    if input.device.type == "cpu":
        return input.dtype in (torch.float32, torch.float64)
    if input.device.type == "cuda":
        return input.dtype in (torch.float32, torch.float64, torch.float16) and _cuda_usable()
    return False


# --------------------------------------------------------------------------------------------
# Convolutions: torch.nn's classes with their _conv_forward / forward computed by convkern
# --------------------------------------------------------------------------------------------


class _ConvMixin:
    _rank = 0

    def _conv_forward(self, input: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
        if not runs_on_convkern(input):
            return super()._conv_forward(input, weight, bias)  # type: ignore[misc]
        padding = self.padding
        if self.padding_mode != "zeros":
            # As torch.nn does: the mode's padding is an explicit copy (differentiable, by F.pad),
            # then a convolution without padding.
            input = torch.nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        conv = (ckf.conv1d, ckf.conv2d, ckf.conv3d)[self._rank - 1]
        return conv(input, weight, bias, self.stride, padding, self.dilation, self.groups)


class Conv1d(_ConvMixin, torch.nn.Conv1d):
    """torch.nn.Conv1d computed by convkern."""

    _rank = 1


class Conv2d(_ConvMixin, torch.nn.Conv2d):
    """torch.nn.Conv2d computed by convkern."""

    _rank = 2


class Conv3d(_ConvMixin, torch.nn.Conv3d):
    """torch.nn.Conv3d computed by convkern."""

    _rank = 3


class _ConvTransposeMixin:
    _rank = 0

    def forward(self, input: Tensor, output_size: Optional[list] = None) -> Tensor:
        if not runs_on_convkern(input):
            return super().forward(input, output_size)  # type: ignore[misc]
        if self.padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {type(self).__name__}")
        # torch.nn's own rule for the output_padding that yields a requested output_size.
        output_padding = self._output_padding(
            input, output_size, self.stride, self.padding, self.kernel_size, self._rank, self.dilation
        )
        conv_transpose = (ckf.conv_transpose1d, ckf.conv_transpose2d, ckf.conv_transpose3d)[self._rank - 1]
        return conv_transpose(
            input, self.weight, self.bias, self.stride, self.padding, output_padding, self.groups, self.dilation
        )


class ConvTranspose1d(_ConvTransposeMixin, torch.nn.ConvTranspose1d):
    """torch.nn.ConvTranspose1d computed by convkern."""

    _rank = 1


class ConvTranspose2d(_ConvTransposeMixin, torch.nn.ConvTranspose2d):
    """torch.nn.ConvTranspose2d computed by convkern."""

    _rank = 2


class ConvTranspose3d(_ConvTransposeMixin, torch.nn.ConvTranspose3d):
    """torch.nn.ConvTranspose3d computed by convkern."""

    _rank = 3


# --------------------------------------------------------------------------------------------
# Pooling
# --------------------------------------------------------------------------------------------


class _MaxPoolMixin:
    _rank = 0

    def forward(self, input: Tensor):
        if not runs_on_convkern(input):
            return super().forward(input)  # type: ignore[misc]
        pool = (ckf.max_pool1d, ckf.max_pool2d, ckf.max_pool3d)[self._rank - 1]
        return pool(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MaxPool1d(_MaxPoolMixin, torch.nn.MaxPool1d):
    """torch.nn.MaxPool1d computed by convkern."""

    _rank = 1


class MaxPool2d(_MaxPoolMixin, torch.nn.MaxPool2d):
    """torch.nn.MaxPool2d computed by convkern."""

    _rank = 2


class MaxPool3d(_MaxPoolMixin, torch.nn.MaxPool3d):
    """torch.nn.MaxPool3d computed by convkern."""

    _rank = 3


class _MinPoolNd(torch.nn.Module):
    """Min pooling: MaxPool's arguments and rules, the smallest value of each window."""

    _rank = 0

    def __init__(
        self, kernel_size, stride=None, padding=0, dilation=1, return_indices: bool = False, ceil_mode: bool = False
    ) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )

    def forward(self, input: Tensor):
        if not runs_on_convkern(input):
            # min(x) = -max(-x); the indices are the same cells.
            pool = (torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d, torch.nn.functional.max_pool3d)[
                self._rank - 1
            ]
            result = pool(
                -input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
            )
            return (-result[0], result[1]) if self.return_indices else -result
        pool = (ckf.min_pool1d, ckf.min_pool2d, ckf.min_pool3d)[self._rank - 1]
        return pool(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode, self.return_indices
        )


class MinPool1d(_MinPoolNd):
    """1-D min pooling."""

    _rank = 1


class MinPool2d(_MinPoolNd):
    """2-D min pooling."""

    _rank = 2


class MinPool3d(_MinPoolNd):
    """3-D min pooling."""

    _rank = 3


class _AvgPoolMixin:
    _rank = 0

    def forward(self, input: Tensor) -> Tensor:
        if not runs_on_convkern(input):
            return super().forward(input)  # type: ignore[misc]
        if self._rank == 1:
            return ckf.avg_pool1d(
                input, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
            )
        pool = ckf.avg_pool2d if self._rank == 2 else ckf.avg_pool3d
        return pool(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
            self.divisor_override,
        )


class AvgPool1d(_AvgPoolMixin, torch.nn.AvgPool1d):
    """torch.nn.AvgPool1d computed by convkern."""

    _rank = 1


class AvgPool2d(_AvgPoolMixin, torch.nn.AvgPool2d):
    """torch.nn.AvgPool2d computed by convkern."""

    _rank = 2


class AvgPool3d(_AvgPoolMixin, torch.nn.AvgPool3d):
    """torch.nn.AvgPool3d computed by convkern."""

    _rank = 3


class _AdaptiveAvgPoolMixin:
    _rank = 0

    def forward(self, input: Tensor) -> Tensor:
        if not runs_on_convkern(input):
            return super().forward(input)  # type: ignore[misc]
        pool = (ckf.adaptive_avg_pool1d, ckf.adaptive_avg_pool2d, ckf.adaptive_avg_pool3d)[self._rank - 1]
        return pool(input, self.output_size)


class AdaptiveAvgPool1d(_AdaptiveAvgPoolMixin, torch.nn.AdaptiveAvgPool1d):
    """torch.nn.AdaptiveAvgPool1d computed by convkern."""

    _rank = 1


class AdaptiveAvgPool2d(_AdaptiveAvgPoolMixin, torch.nn.AdaptiveAvgPool2d):
    """torch.nn.AdaptiveAvgPool2d computed by convkern."""

    _rank = 2


class AdaptiveAvgPool3d(_AdaptiveAvgPoolMixin, torch.nn.AdaptiveAvgPool3d):
    """torch.nn.AdaptiveAvgPool3d computed by convkern."""

    _rank = 3


class _AdaptiveMaxPoolMixin:
    _rank = 0

    def forward(self, input: Tensor):
        if not runs_on_convkern(input):
            return super().forward(input)  # type: ignore[misc]
        pool = (ckf.adaptive_max_pool1d, ckf.adaptive_max_pool2d, ckf.adaptive_max_pool3d)[self._rank - 1]
        return pool(input, self.output_size, self.return_indices)


class AdaptiveMaxPool1d(_AdaptiveMaxPoolMixin, torch.nn.AdaptiveMaxPool1d):
    """torch.nn.AdaptiveMaxPool1d computed by convkern."""

    _rank = 1


class AdaptiveMaxPool2d(_AdaptiveMaxPoolMixin, torch.nn.AdaptiveMaxPool2d):
    """torch.nn.AdaptiveMaxPool2d computed by convkern."""

    _rank = 2


class AdaptiveMaxPool3d(_AdaptiveMaxPoolMixin, torch.nn.AdaptiveMaxPool3d):
    """torch.nn.AdaptiveMaxPool3d computed by convkern."""

    _rank = 3


class _GlobalPoolNd(torch.nn.Module):
    """One number per (n, c): (N, C, *spatial) -> (N, C), or (N, C, 1, ...) with keepdims=True."""

    _rank = 0
    _kind = ""

    def __init__(self, keepdims: bool = False) -> None:
        super().__init__()
        self.keepdims = keepdims

    def extra_repr(self) -> str:
        return f"keepdims={self.keepdims}"

    def forward(self, input: Tensor) -> Tensor:
        if not runs_on_convkern(input):
            dims = tuple(range(-self._rank, 0))
            if self._kind == "avg":
                return input.mean(dim=dims, keepdim=self.keepdims)
            reduce = torch.amax if self._kind == "max" else torch.amin
            return reduce(input, dim=dims, keepdim=self.keepdims)
        return getattr(ckf, f"global_{self._kind}_pool{self._rank}d")(input, self.keepdims)


def _global(kind: str, rank: int) -> type:
    doc = f"Global {kind} pooling over the {rank}-D spatial axes: one number per (n, c)."
    return type(
        f"Global{kind.capitalize()}Pool{rank}d",
        (_GlobalPoolNd,),
        {"_rank": rank, "_kind": kind, "__doc__": doc, "__module__": __name__},
    )


GlobalAvgPool1d, GlobalAvgPool2d, GlobalAvgPool3d = (_global("avg", r) for r in (1, 2, 3))
GlobalMaxPool1d, GlobalMaxPool2d, GlobalMaxPool3d = (_global("max", r) for r in (1, 2, 3))
GlobalMinPool1d, GlobalMinPool2d, GlobalMinPool3d = (_global("min", r) for r in (1, 2, 3))


# torch.nn layer type -> the convkern layer that replaces it (replace_modules).
REPLACEMENTS = {
    torch.nn.Conv1d: Conv1d,
    torch.nn.Conv2d: Conv2d,
    torch.nn.Conv3d: Conv3d,
    torch.nn.ConvTranspose1d: ConvTranspose1d,
    torch.nn.ConvTranspose2d: ConvTranspose2d,
    torch.nn.ConvTranspose3d: ConvTranspose3d,
    torch.nn.MaxPool1d: MaxPool1d,
    torch.nn.MaxPool2d: MaxPool2d,
    torch.nn.MaxPool3d: MaxPool3d,
    torch.nn.AvgPool1d: AvgPool1d,
    torch.nn.AvgPool2d: AvgPool2d,
    torch.nn.AvgPool3d: AvgPool3d,
    torch.nn.AdaptiveAvgPool1d: AdaptiveAvgPool1d,
    torch.nn.AdaptiveAvgPool2d: AdaptiveAvgPool2d,
    torch.nn.AdaptiveAvgPool3d: AdaptiveAvgPool3d,
    torch.nn.AdaptiveMaxPool1d: AdaptiveMaxPool1d,
    torch.nn.AdaptiveMaxPool2d: AdaptiveMaxPool2d,
    torch.nn.AdaptiveMaxPool3d: AdaptiveMaxPool3d,
}
