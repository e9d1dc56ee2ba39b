"""examples/classic_cnns.py: LeNet-5, AlexNet, VGG-16 and ResNet-18 from convkern's torch layers have
the parameter counts of the published models and of the same networks built from torch.nn, and one
training step gives torch.nn's gradients."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.torch

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "classic_cnns.py"

# torchvision's reference models (1000 classes); LeNet-5 as LeCun et al. describe it.
PUBLISHED = {"lenet5": 61_706, "alexnet": 61_100_840, "vgg16": 138_357_544, "resnet18": 11_689_512}


@pytest.fixture(scope="module")
def example():
    spec = importlib.util.spec_from_file_location("classic_cnns", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_on_meta(build, layers) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in build(layers=layers).parameters())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_counts(example, name):
    build, full_shape, _ = example.NETWORKS[name]
    ours = _count_on_meta(build, example.ckt.nn)
    assert ours == _count_on_meta(build, torch.nn)
    assert ours == PUBLISHED[name]
    rows, total = example.layer_table(build, full_shape)
    assert total == ours and sum(count for *_, count in rows) == ours
    assert rows[-1][2] == (1, 10 if name == "lenet5" else 1000)


def test_layer_table_shapes(example):
    rows, _ = example.layer_table(example.alexnet, (3, 224, 224))
    shapes = {name: shape for name, _, shape, _ in rows}
    assert shapes["features.0"] == (1, 64, 55, 55)
    assert shapes["features.12"] == (1, 256, 6, 6)
    assert shapes["classifier.1"] == (1, 4096)
    rows, _ = example.layer_table(example.resnet18, (3, 224, 224))
    shapes = {name: shape for name, _, shape, _ in rows}
    assert shapes["maxpool"] == (1, 64, 56, 56)
    assert shapes["layer4.1.conv2"] == (1, 512, 7, 7)


# VGG-16's step is slow here for its size, not its compute: two copies of 138 M parameters to
# initialise, copy and differentiate (its 25088x4096 dense layer alone is 103 M).
@pytest.mark.parametrize(
    "name", [n if n != "vgg16" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(PUBLISHED)]
)
def test_training_step_matches_torch_nn(example, name):
    build, _, small_shape = example.NETWORKS[name]
    torch.manual_seed(0)
    ours = build()
    theirs = build(layers=torch.nn)
    theirs.load_state_dict(ours.state_dict())
    assert any(type(m).__module__ == "convkern.torch.nn" for m in ours.modules())
    assert not any(type(m).__module__ == "convkern.torch.nn" for m in theirs.modules())
    images, labels = example.random_batch(small_shape, 2, 10 if name == "lenet5" else 1000)
    # Dropout draws the same masks in both: same seed, same order of random draws.
    torch.manual_seed(1)
    loss_ours = example.training_step(ours, images, labels)
    torch.manual_seed(1)
    loss_theirs = example.training_step(theirs, images, labels)
    assert loss_ours == pytest.approx(loss_theirs, rel=1e-4)
    for (pname, p), q in zip(ours.named_parameters(), theirs.parameters()):
        # float32 through up to 18 layers: a tolerance relative to the gradient's own scale.
        scale = float(q.grad.abs().max()) + 1e-12
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=2e-4 * scale, msg=pname)
        torch.testing.assert_close(p.detach(), q.detach(), rtol=1e-4, atol=1e-5, msg=pname)


def test_example_runs(tmp_path):
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), "--small", "--only", "lenet5", "--only", "resnet18"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "11,689,512" in done.stdout and "61,706" in done.stdout
    assert "resnet18: one training step on 2 x 3x64x64" in done.stdout
