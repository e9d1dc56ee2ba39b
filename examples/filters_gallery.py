"""The classic image kernels of the course, applied to a real photograph with convkern.filters.

    python examples/filters_gallery.py            # writes examples/output/filters_gallery.png
    python examples/filters_gallery.py --quick    # a smaller crop (smoke test)

The photograph is the Summer Palace picture that scikit-learn ships ("china.jpg"), so nothing
is downloaded. Kernels whose weights sum to 1 (identity, sharpen, blurs) keep the brightness of
flat regions and are applied to the colour image, channel by channel. The detectors (edges, lines,
corners) have weights that sum to 0 or less, so flat regions give 0 or a negative response; they
are applied to the grey image and drawn as a CNN's first layer would pass them on, after a ReLU:
max(response, 0), white where the feature is strong, black where it is absent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from convkern import filters


def load_photo(quick: bool) -> np.ndarray:
    """A square crop (H×W×3, uint8) around the pagoda of scikit-learn's sample photograph."""
    from sklearn.datasets import load_sample_image

    photo = load_sample_image("china.jpg")  # 427×640×3 uint8
    crop = photo[20:380, 40:400]
    return crop[::3, ::3] if quick else crop


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """Luma (ITU-R BT.601 weights), float in [0, 255]."""
    return rgb @ np.array([0.299, 0.587, 0.114])


def for_display(response: np.ndarray, is_detector: bool) -> np.ndarray:
    """What imshow draws: colour results as uint8 RGB; detector responses as a feature map after
    ReLU, in [0, 1]."""
    if not is_detector:
        return np.clip(response, 0, 255).astype(np.uint8)
    feature_map = np.maximum(response, 0)
    # The 99.5th percentile as white, so that a few extreme pixels do not make the rest black.
    return np.clip(feature_map / max(np.percentile(feature_map, 99.5), 1e-9), 0, 1)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--boundary",
        default="reflect",
        choices=sorted(filters.BOUNDARIES),
        help="how the image is extended past its edges",
    )
    parser.add_argument("--quick", action="store_true", help="a smaller crop, for a fast smoke test")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")  # draw to files only: no display needed
    import matplotlib.pyplot as plt

    photo = load_photo(args.quick)
    grey = to_grey(photo)
    panels = [("original", photo), ("grey (what the detectors see)", grey / 255)]
    for name, k in filters.KERNELS.items():
        is_detector = not np.isclose(k.sum(), 1.0)
        image = grey if is_detector else photo
        result = filters.filter2d(image, k, boundary=args.boundary)
        panels.append((name, for_display(result, is_detector)))
    # Sobel's two gradients combine into the gradient's length: edges in every direction.
    gx = filters.filter2d(grey, "sobel_x", boundary=args.boundary)
    gy = filters.filter2d(grey, "sobel_y", boundary=args.boundary)
    panels.append(("sobel magnitude sqrt(x²+y²)", for_display(np.hypot(gx, gy), True)))

    cols = 5
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.2 * rows))
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, image) in zip(axes.flat, panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1)  # cmap and range apply to the grey panels only
        ax.set_title(title, fontsize=10)
    fig.suptitle(f"convkern.filters.filter2d, boundary={args.boundary!r}", fontsize=13)
    fig.tight_layout()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "filters_gallery.png"
    fig.savefig(path, dpi=60 if args.quick else 100)
    plt.close(fig)
    print(f"applied {len(filters.KERNELS)} kernels to a {photo.shape[0]}×{photo.shape[1]} photograph; wrote {path}")


if __name__ == "__main__":
    main()
