"""What the trained digits network looks at: its first-layer filters and its feature maps.

    python examples/train_digits.py        # trains, writes examples/output/digits_lenet.npz
    python examples/digits_features.py     # reads it, writes examples/output/digits_features.png

The picture has three parts: the 16 learned 3×3 filters of the first convolution (compare them
with the hand-made kernels of examples/filters_gallery.py: several become edge and stroke
detectors); one test digit with the 16 feature maps that those filters make of it, after ReLU;
and the 32 smaller feature maps of the second convolution, which combine the first ones.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from convkern import nn
from train_digits import lenet5, load_digits_split  # the same network and the same test split

OUTPUT = Path(__file__).parent / "output"


def feature_maps(model: nn.Sequential, image: np.ndarray) -> list:
    """The output of every layer for one (1, 8, 8) image, in eval mode."""
    model.eval()
    x, outputs = image[None], []
    for layer in model:
        x = layer(x)
        outputs.append(x[0])
    return outputs


def draw_grid(fig, maps: np.ndarray, title: str, cols: int, signed: bool) -> None:
    """One small image per map, in rows of `cols`, on a matplotlib subfigure.

    Signed maps (weights) share one scale centred on 0: red positive, blue negative. Feature
    maps after ReLU are >= 0 and each gets its own scale, black 0 to white at its maximum, so
    that weak maps still show their pattern.
    """
    rows = -(-len(maps) // cols)
    axes = fig.subplots(rows, cols, squeeze=False)
    limit = np.abs(maps).max() or 1.0
    for ax, m in zip(axes.flat, maps):
        if signed:
            ax.imshow(m, cmap="RdBu_r", vmin=-limit, vmax=limit)
        else:
            ax.imshow(m, cmap="gray", vmin=0, vmax=m.max() or 1.0)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle(title, fontsize=11)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--weights", type=Path, default=OUTPUT / "digits_lenet.npz", help="weights written by train_digits.py"
    )
    parser.add_argument("--index", type=int, default=0, help="which test image to show")
    parser.add_argument("--seed", type=int, default=0, help="the seed train_digits.py split the data with")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if not args.weights.exists():
        raise SystemExit(f"{args.weights} not found: run examples/train_digits.py first")

    import matplotlib

    matplotlib.use("Agg")  # draw to files only: no display needed
    import matplotlib.pyplot as plt

    model = lenet5().load(args.weights)
    _, _, x_test, y_test = load_digits_split(args.seed)
    image, label = x_test[args.index], int(y_test[args.index])
    outputs = feature_maps(model, image)
    predicted = int(outputs[-1].argmax())
    first_filters = model[0].weight.data[:, 0]  # (16, 3, 3): one input channel

    fig = plt.figure(figsize=(10, 9))
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1, 1.25, 2])
    draw_grid(top, first_filters, "First convolution: the 16 learned 3×3 filters (red +, blue −)", 8, signed=True)
    digit_fig, maps_fig = middle.subfigures(1, 2, width_ratios=[1, 4])
    ax = digit_fig.subplots()
    ax.imshow(image[0], cmap="gray_r")
    ax.set_title(f"test digit: {label}\npredicted: {predicted}", fontsize=10)
    ax.axis("off")
    draw_grid(maps_fig, outputs[1], "its 16 feature maps after conv1 + ReLU (8×8)", 8, signed=False)
    draw_grid(
        bottom, outputs[4], "32 feature maps after conv2 + ReLU (4×4), from the pooled 4×4 maps above", 8, signed=False
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "digits_features.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    print(f"test digit {label}, predicted {predicted}; wrote {path}")


if __name__ == "__main__":
    main()
