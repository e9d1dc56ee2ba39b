"""Distributed data-parallel training with convkern's layers: examples/ddp_train.py under torchrun with
2 processes (gloo, this machine) ends with bitwise-identical parameters on both, and matches a
single-process run over the same global batches."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
pytestmark = pytest.mark.torch
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with the gloo backend is not available", allow_module_level=True)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "ddp_train.py"
STEPS, GLOBAL_BATCH, PROCESSES = 4, 8, 2


def _load_example():
    spec = importlib.util.spec_from_file_location("ddp_train", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    # One thread per process: 2 processes on 2 cores.
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={PROCESSES}",
        str(EXAMPLE),
        "--steps",
        str(STEPS),
        "--global-batch",
        str(GLOBAL_BATCH),
        "--threads",
        "1",
        "--save",
        str(out),
    ]
    # Its own session, so that a hang is ended whole (torchrun and both ranks) and leaves no
    # process behind to load the rest of the suite.
    runner = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = runner.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(runner.pid, signal.SIGKILL)
        stdout, stderr = runner.communicate()
        pytest.fail(
            f"torchrun did not finish in 180 s (a normal run takes under 10):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    done = subprocess.CompletedProcess(command, runner.returncode, stdout, stderr)
    assert done.returncode == 0, f"torchrun failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert f"{STEPS} steps of {GLOBAL_BATCH} images on {PROCESSES} processes (gloo)" in done.stdout, done.stdout
    return [torch.load(out / f"rank{r}.pt") for r in range(PROCESSES)]


def test_every_rank_ends_with_bitwise_identical_parameters(ranks):
    first = ranks[0]["parameters"]
    assert first, "no parameters saved"
    for other in ranks[1:]:
        assert other["parameters"].keys() == first.keys()
        for name, p in first.items():
            assert torch.equal(other["parameters"][name], p), name  # bitwise, not approximately
        assert other["losses"] == ranks[0]["losses"]


def test_matches_a_single_process_run_over_the_same_global_batch(ranks):
    example = _load_example()
    torch.manual_seed(0)
    model = example.build_model()
    optimizer = example.make_optimizer(model)
    losses = []
    for step in range(STEPS):
        images, labels = example.synthetic_batch(step, GLOBAL_BATCH, 0)
        loss = example.mean_shard_loss(model, images, labels, shards=PROCESSES)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    # float32; the sums of the gradient average are ordered differently, nothing else differs.
    assert losses == pytest.approx(ranks[0]["losses"], rel=1e-5, abs=1e-6)
    for name, p in model.named_parameters():
        torch.testing.assert_close(p.detach(), ranks[0]["parameters"][name], rtol=1e-4, atol=1e-5, msg=name)
