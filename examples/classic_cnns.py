"""The classic convolutional networks — LeNet-5, AlexNet, VGG-16, ResNet-18 — built from convkern's
PyTorch layers: each one's layer table (output shape and parameters of every layer) and one
training step.

    python examples/classic_cnns.py                  # tables at the networks' own input sizes, one step each
    python examples/classic_cnns.py --small          # the training steps on small images (AlexNet and
                                                     # ResNet-18 64x64, VGG-16 32x32): seconds on 2 cores
    python examples/classic_cnns.py --only resnet18

The architectures are those of the papers as PyTorch's model zoo (torchvision) defines them, with
1000 classes, so their parameter counts are the published ones: AlexNet (Krizhevsky et al. 2012,
torchvision's single-tower variant), VGG-16 (Simonyan & Zisserman 2014, configuration D), ResNet-18
(He et al. 2015), and LeNet-5 (LeCun et al. 1998: 32x32 grey input, 5x5 convolutions, 2x2
subsampling by averaging, 120-84-10 dense layers, tanh).

Each builder takes ``layers``: the module that provides Conv2d, MaxPool2d, AvgPool2d and
AdaptiveAvgPool2d — ``convkern.torch.nn`` (the default) or ``torch.nn``, for the same network on
PyTorch's kernels. BatchNorm, ReLU, Dropout, Linear and the residual adds are always PyTorch's.
The tables are computed on the ``meta`` device (shapes only, nothing allocated), so printing
VGG-16's costs nothing; AlexNet and VGG-16 end in an adaptive average pool, so they also run on
small images.
"""

from __future__ import annotations

import argparse
import sys
import time
from types import ModuleType
from typing import Callable, Dict, List, Tuple

import convkern.torch as ckt
import torch
from torch import nn

# --------------------------------------------------------------------------------------------
# The networks
# --------------------------------------------------------------------------------------------


def lenet5(layers: ModuleType = ckt.nn, num_classes: int = 10) -> nn.Module:
    """LeNet-5: 1x32x32 -> conv 5x5 (6) -> avg pool 2 -> conv 5x5 (16) -> avg pool 2 -> 120 -> 84 -> 10."""
    return nn.Sequential(
        layers.Conv2d(1, 6, 5),
        nn.Tanh(),
        layers.AvgPool2d(2),
        layers.Conv2d(6, 16, 5),
        nn.Tanh(),
        layers.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


def alexnet(layers: ModuleType = ckt.nn, num_classes: int = 1000) -> nn.Module:
    """AlexNet as torchvision defines it: five convolutions, three max pools, a 6x6 adaptive
    average pool, three dense layers with dropout."""
    model = nn.Sequential()
    model.features = nn.Sequential(
        layers.Conv2d(3, 64, 11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        layers.MaxPool2d(3, stride=2),
        layers.Conv2d(64, 192, 5, padding=2),
        nn.ReLU(inplace=True),
        layers.MaxPool2d(3, stride=2),
        layers.Conv2d(192, 384, 3, padding=1),
        nn.ReLU(inplace=True),
        layers.Conv2d(384, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        layers.Conv2d(256, 256, 3, padding=1),
        nn.ReLU(inplace=True),
        layers.MaxPool2d(3, stride=2),
    )
    model.avgpool = layers.AdaptiveAvgPool2d((6, 6))
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(
        nn.Dropout(0.5),
        nn.Linear(256 * 6 * 6, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    return model


VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16(layers: ModuleType = ckt.nn, num_classes: int = 1000) -> nn.Module:
    """VGG-16 (configuration D): thirteen 3x3 convolutions in five stages, each stage ending in a
    2x2 max pool; a 7x7 adaptive average pool; three dense layers with dropout."""
    features: List[nn.Module] = []
    channels = 3
    for v in VGG16_CONFIG:
        if v == "M":
            features.append(layers.MaxPool2d(2, stride=2))
        else:
            features += [layers.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    model = nn.Sequential()
    model.features = nn.Sequential(*features)
    model.avgpool = layers.AdaptiveAvgPool2d((7, 7))
    model.flatten = nn.Flatten()
    model.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, 4096),
        nn.ReLU(inplace=True),
        nn.Dropout(0.5),
        nn.Linear(4096, num_classes),
    )
    return model


class BasicBlock(nn.Module):
    """ResNet's basic block: 3x3 conv, BN, ReLU, 3x3 conv, BN, plus the input (through a strided
    1x1 convolution and BN where the shape changes), ReLU."""

    def __init__(self, layers: ModuleType, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = layers.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = layers.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                layers.Conv2d(in_channels, channels, 1, stride=stride, bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class ResNet18(nn.Module):
    """ResNet-18: 7x7/2 stem and 3x3/2 max pool, four stages of two basic blocks (64, 128, 256,
    512 channels; stages 2-4 start with stride 2), global average pool, dense classifier."""

    def __init__(self, layers: ModuleType = ckt.nn, num_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = layers.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = layers.MaxPool2d(3, stride=2, padding=1)
        stages, channels = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(layers, channels, width, stride), BasicBlock(layers, width, width)))
            channels = width
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = layers.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(512, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):  # convkern's Conv2d is one too
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet18(layers: ModuleType = ckt.nn, num_classes: int = 1000) -> nn.Module:
    return ResNet18(layers, num_classes)


# name -> (builder, input shape of one image at the network's own size, at the --small size)
NETWORKS: Dict[str, Tuple[Callable[..., nn.Module], Tuple[int, ...], Tuple[int, ...]]] = {
    "lenet5": (lenet5, (1, 32, 32), (1, 32, 32)),
    "alexnet": (alexnet, (3, 224, 224), (3, 64, 64)),
    "vgg16": (vgg16, (3, 224, 224), (3, 32, 32)),
    # ResNet-18 at 64x64, not 32x32: its last BatchNorms would normalise over 1x1 maps, i.e. over
    # the batch alone, whose tiny variance turns float rounding into visible differences.
    "resnet18": (resnet18, (3, 224, 224), (3, 64, 64)),
}


# --------------------------------------------------------------------------------------------
# Layer tables and a training step
# --------------------------------------------------------------------------------------------


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def layer_table(build: Callable[..., nn.Module], image_shape: Tuple[int, ...]) -> Tuple[list, int]:
    """(name, type, output shape, parameters) of every layer without sub-layers, in call order, for a
    batch of one image, and the model's parameter count; computed on the meta device (shapes only)."""
    with torch.device("meta"):
        model = build()
    rows: List[Tuple[str, str, tuple, int]] = []
    hooks = []
    for name, module in model.named_modules():
        if next(module.children(), None) is None:

            def record(module, inputs, output, name=name):
                own = sum(p.numel() for p in module.parameters(recurse=False))
                rows.append((name, type(module).__name__, tuple(output.shape), own))

            hooks.append(module.register_forward_hook(record))
    with torch.no_grad():
        model.eval()(torch.empty((1,) + image_shape, device="meta"))
    for h in hooks:
        h.remove()
    return rows, parameter_count(model)


def format_table(title: str, rows: List[Tuple[str, str, tuple, int]], total: int) -> str:
    lines = [title, f"{'layer':<26}{'type':<20}{'output shape':<22}{'parameters':>14}", "-" * 82]
    lines += [f"{name:<26}{kind:<20}{str(shape):<22}{count:>14,}" for name, kind, shape, count in rows]
    lines += ["-" * 82, f"{'total parameters':<68}{total:>14,}"]
    return "\n".join(lines)


def training_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, lr: float = 0.01) -> float:
    """One SGD step on cross-entropy; returns the loss before the step. Leaves the gradients in .grad."""
    model.train()
    model.zero_grad()
    loss = nn.functional.cross_entropy(model(images), labels)
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= lr * p.grad
    return loss.item()


def random_batch(image_shape: Tuple[int, ...], batch: int, num_classes: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((batch,) + image_shape, generator=g), torch.randint(0, num_classes, (batch,), generator=g)


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=sorted(NETWORKS), action="append", help="networks to show (repeatable)")
    parser.add_argument("--small", action="store_true", help="training steps on small images")
    parser.add_argument("--batch", type=int, default=2, help="images per training step")
    parser.add_argument("--no-tables", action="store_true")
    args = parser.parse_args(argv)

    for name in args.only or list(NETWORKS):
        build, full_shape, small_shape = NETWORKS[name]
        if not args.no_tables:
            rows, total = layer_table(build, full_shape)
            print(format_table(f"\n{name} on a {'x'.join(map(str, full_shape))} image", rows, total))
        torch.manual_seed(0)
        model = build()
        shape = small_shape if args.small else full_shape
        num_classes = 10 if name == "lenet5" else 1000
        images, labels = random_batch(shape, args.batch, num_classes)
        start = time.perf_counter()
        loss = training_step(model, images, labels)
        print(
            f"{name}: one training step on {args.batch} x {'x'.join(map(str, shape))}: loss {loss:.4f}, "
            f"{time.perf_counter() - start:.2f} s",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
