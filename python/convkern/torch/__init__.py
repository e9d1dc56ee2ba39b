"""convkern inside PyTorch: operators with autograd, drop-in layers, and a model converter.

    >>> import torch, convkern.torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
    ...                             torch.nn.MaxPool2d(2))
    >>> model = convkern.torch.replace_modules(model)   # same parameters, convkern's kernels
    >>> type(model[0]).__module__, model(torch.randn(1, 3, 8, 8)).shape
    ('convkern.torch.nn', torch.Size([1, 8, 4, 4]))

- ``convkern.torch.functional``: ``conv2d``, ``max_pool2d``, ... on tensors, with
  ``torch.nn.functional``'s arguments;
- ``torch.ops.convkern.<op>``: the registered operators behind them (forward and ``<op>_backward``),
  which autograd, ``torch.compile(fullgraph=True)`` and ``torch.export`` see as single nodes;
- ``convkern.torch.nn``: ``Conv2d``, ``MaxPool2d``, ... — subclasses of ``torch.nn``'s layers with
  the same arguments and ``state_dict`` keys;
- ``replace_modules(model)``: swaps the supported ``torch.nn`` layers of a model for those.

Importing this module imports torch; ``import convkern`` alone never does.
"""

import torch

if not hasattr(torch.library, "custom_op"):  # added in PyTorch 2.4
    raise ImportError(
        f"convkern.torch needs PyTorch 2.4 or newer (torch.library.custom_op); this is PyTorch {torch.__version__}"
    )

from . import functional, nn  # noqa: E402
from ._ops import OPERATORS  # noqa: E402

__all__ = ["functional", "nn", "replace_modules", "OPERATORS"]


def replace_modules(model: torch.nn.Module) -> torch.nn.Module:
    """Swaps every supported ``torch.nn`` layer of `model` (Conv1d/2d/3d, ConvTranspose1d/2d/3d,
    MaxPool, AvgPool, AdaptiveAvgPool, AdaptiveMaxPool in 1-D/2-D/3-D) for convkern's, in place,
    and returns the model.

    The new layers take over the old ones' state: the same ``Parameter`` objects (an optimizer
    built before the swap keeps updating them), buffers, hooks and train/eval mode; so the
    ``state_dict`` is unchanged. Layers of other types, and subclasses of the supported ones
    (which may override ``forward``), are left as they are. When `model` itself is a supported
    layer, the replacement is returned (a module cannot replace itself in place).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    replacement = _replacement(model)
    if replacement is not None:
        return replacement
    for parent in list(model.modules()):
        for name, child in list(parent._modules.items()):
            new = _replacement(child) if child is not None else None
            if new is not None:
                parent._modules[name] = new
    return model


def _replacement(module: torch.nn.Module):
    cls = nn.REPLACEMENTS.get(type(module))
    if cls is None:
        return None
    new = cls.__new__(cls)
    # The convkern classes add no state of their own: the old layer's attributes (parameters,
    # buffers, hooks, hyper-parameters, training flag) are all the new one needs.
    new.__dict__.update(module.__dict__)
    return new
