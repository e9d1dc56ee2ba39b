"""Train a LeNet-5-style network on scikit-learn's 8×8 handwritten digits, with convkern.

    python examples/train_digits.py                       # 20 epochs, a few seconds on 2 cores
    python examples/train_digits.py --epochs 1 --quick    # a smoke test on a slice of the data

The data set ships inside scikit-learn (1,797 grey 8×8 images of the digits 0-9, values 0..16),
so nothing is downloaded. The network is LeNet-5 (LeCun et al., 1998) scaled to 8×8 inputs:
two blocks of convolution -> ReLU -> 2×2 max pooling, then the dense layers 120 -> 84 -> 10.
The convolutions are 3×3 with padding 1, so that the small images do not shrink away, and have
16 and 32 filters (LeNet's 6 and 16 with 5×5 kernels learn these images less reliably). Adam's
learning rate follows a cosine from --lr down to 0 over the run, which settles the last epochs.

Writes, in --out (default: examples/output/):
  digits_curves.png   loss and accuracy per epoch, on the training and the test set
  digits_lenet.npz    the trained weights (model.save); examples/digits_features.py draws them
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
from convkern import nn, optim


def lenet5() -> nn.Sequential:
    """The network, shared with digits_features.py (which loads the trained weights into it)."""
    return nn.Sequential(
        nn.Conv2d(1, 16, kernel_size=3, padding=1),  # 1×8×8   -> 16×8×8
        nn.ReLU(),
        nn.MaxPool2d(2),  # 16×8×8  -> 16×4×4
        nn.Conv2d(16, 32, kernel_size=3, padding=1),  # 16×4×4  -> 32×4×4
        nn.ReLU(),
        nn.MaxPool2d(2),  # 32×4×4  -> 32×2×2
        nn.Flatten(),  # -> 128
        nn.Linear(128, 120),
        nn.ReLU(),
        nn.Dropout(0.25),  # active in training only (model.train())
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, 10),  # one score (logit) per digit
    )


def load_digits_split(seed: int, test_fraction: float = 0.2):
    """(x_train, y_train, x_test, y_test): images as float32 (N, 1, 8, 8) in [0, 1], labels int64."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # add the channel axis: NCHW
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


def progress_bar(prefix: str, done: int, total: int, suffix: str = "", width: int = 30) -> None:
    """Redraws one line: `prefix [#########.....] done/total suffix`."""
    filled = width * done // total
    line = f"\r{prefix} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} {suffix}"
    sys.stdout.write(line)
    sys.stdout.flush()


def evaluate(model: nn.Module, loss_fn: nn.CrossEntropyLoss, x, y, batch_size: int = 256):
    """Mean loss and accuracy over a data set, in eval mode (no dropout, nothing cached); then back
    to training mode."""
    model.eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        labels = y[start : start + batch_size]
        total_loss += loss_fn(logits, labels) * len(labels)
        correct += int((logits.argmax(axis=1) == labels).sum())
    model.train()
    return total_loss / len(x), correct / len(x)


def plot_curves(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # draw to files only: no display needed
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, history["train_loss"], "o-", label="training")
    ax_loss.plot(epochs, history["test_loss"], "s-", label="test")
    ax_loss.set(title="Cross-entropy loss", xlabel="epoch", ylabel="loss")
    ax_acc.plot(epochs, 100 * np.array(history["train_acc"]), "o-", label="training")
    ax_acc.plot(epochs, 100 * np.array(history["test_acc"]), "s-", label="test")
    ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy (%)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("LeNet-5-style CNN on the 8×8 digits (convkern)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="train and test on a small slice (smoke test)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "output")
    args = parser.parse_args(argv)

    nn.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load_digits_split(args.seed)
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:256], y_train[:256], x_test[:128], y_test[:128]
    print(f"{len(x_train)} training and {len(x_test)} test images of shape {x_train.shape[1:]}")

    model = lenet5()
    model.summary(x_train.shape[1:])
    loss_fn = nn.CrossEntropyLoss()
    opt = optim.Adam(model.parameters(), lr=args.lr)
    shuffle = np.random.default_rng(args.seed)
    history = {"train_loss": [], "train_acc": [], "test_loss": [], "test_acc": []}
    n_batches = -(-len(x_train) // args.batch_size)

    for epoch in range(1, args.epochs + 1):
        opt.lr = args.lr * 0.5 * (1 + math.cos(math.pi * (epoch - 1) / args.epochs))
        started = time.perf_counter()
        order = shuffle.permutation(len(x_train))
        running_loss = 0.0
        for i in range(n_batches):
            batch = order[i * args.batch_size : (i + 1) * args.batch_size]
            logits = model(x_train[batch])  # forward, keeping what backward needs
            loss = loss_fn(logits, y_train[batch])
            model.backward(loss_fn.backward())  # fills every parameter's .grad
            opt.step()
            opt.zero_grad()
            running_loss += loss
            progress_bar(f"epoch {epoch:2d}/{args.epochs}", i + 1, n_batches, f"loss {running_loss / (i + 1):.4f}")
        seconds = time.perf_counter() - started
        for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
            split_loss, split_acc = evaluate(model, loss_fn, x, y)
            history[f"{split}_loss"].append(split_loss)
            history[f"{split}_acc"].append(split_acc)
        print(
            f" - {seconds:.2f} s - test loss {history['test_loss'][-1]:.4f}, "
            f"test accuracy {100 * history['test_acc'][-1]:.2f}%"
        )

    args.out.mkdir(parents=True, exist_ok=True)
    plot_curves(history, args.out / "digits_curves.png")
    model.save(args.out / "digits_lenet.npz")
    print(f"test accuracy: {100 * history['test_acc'][-1]:.2f}%")
    print(f"wrote {args.out / 'digits_curves.png'} and {args.out / 'digits_lenet.npz'}")


if __name__ == "__main__":
    main()
