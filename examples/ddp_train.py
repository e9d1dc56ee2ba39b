"""Data-parallel training of a small ResNet-style CNN whose convolutions and pooling are convkern's,
with PyTorch's DistributedDataParallel.

    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py            # 2 processes, this machine
    torchrun --standalone --nproc-per-node 2 examples/ddp_train.py --steps 5 --save out/

Each process trains the same model on its share of every global batch; DDP averages the
gradients over the processes (``gloo`` on CPUs, ``nccl`` on GPUs) after each backward, so every
process takes the same optimizer step and keeps the same parameters. The layers that compute
convolution and pooling are convkern's (``convkern.torch.nn``); BatchNorm, the residual adds,
the classifier, the loss and the optimizer are PyTorch's. Nothing here is specific to convkern:
any model that ``convkern.torch.replace_modules`` converted trains the same way.

Several machines: start the same command on each, with the rendezvous of the first:

    torchrun --nnodes 2 --node-rank 0 --master-addr HOST0 --master-port 29500 --nproc-per-node 2 \\
        examples/ddp_train.py            # on HOST0; --node-rank 1 on the second machine

GPUs: ``--device cuda`` gives each process the GPU of its local rank and the ``nccl`` backend
(``--nproc-per-node`` = GPUs per machine); convkern's CUDA kernels then run on PyTorch's stream.

The data are synthetic (nothing is downloaded): 16x16 RGB images whose class (one of 4) is
the quadrant holding a brighter square, plus noise, drawn from a seed and the step number, so
every process draws the same global batch and takes its own slice of it.

--save DIR writes DIR/rank<r>.pt (the parameters and the loss per step of each process); the
tests compare them between processes and with a single-process run.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import convkern
import convkern.torch as ckt
import torch
import torch.distributed as dist
from torch import nn

NUM_CLASSES = 4
IMAGE_SIZE = 16


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with BatchNorm, and the input added back (through
    a strided 1x1 convolution when the shape changes)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = ckt.nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = ckt.nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                ckt.nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


def build_model(width: int = 16) -> nn.Module:
    """stem (3x3 conv, BN, ReLU, 2x2 max pool) -> two basic blocks (the second strided) -> global
    average pool -> linear classifier."""
    return nn.Sequential(
        ckt.nn.Conv2d(3, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        ckt.nn.MaxPool2d(2),
        BasicBlock(width, width),
        BasicBlock(width, 2 * width, stride=2),
        ckt.nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, NUM_CLASSES),
    )


def synthetic_batch(step: int, batch_size: int, seed: int = 0) -> Tuple[torch.Tensor, torch.Tensor]:
    """The global batch of a step: the same on every process (drawn from seed and step)."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    labels = torch.randint(0, NUM_CLASSES, (batch_size,), generator=g)
    images = 0.5 * torch.randn(batch_size, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    half = IMAGE_SIZE // 2
    for i, label in enumerate(labels.tolist()):
        top, left = (label // 2) * half, (label % 2) * half
        images[i, :, top + 2 : top + half - 2, left + 2 : left + half - 2] += 1.0
    return images, labels


def mean_shard_loss(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, shards: int) -> torch.Tensor:
    """Cross-entropy averaged over `shards` equal slices, each through its own forward pass.

    A DDP process runs this with shards=1 on its slice; a single process reproduces a step of
    P processes with shards=P on the global batch: BatchNorm then normalises each slice on its
    own statistics, as every DDP process does on its slice (SyncBatchNorm, which pools them, is
    for GPUs), and the mean of the slices' losses has DDP's averaged gradient."""
    losses = [nn.functional.cross_entropy(model(x), y) for x, y in zip(images.chunk(shards), labels.chunk(shards))]
    return torch.stack(losses).mean()


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)


def parameters(model: nn.Module) -> Dict[str, torch.Tensor]:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def main(argv: List[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--global-batch", type=int, default=32, help="images per step over all processes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads per process for convkern and PyTorch (processes x threads <= cores)",
    )
    parser.add_argument("--save", type=Path, help="write <dir>/rank<r>.pt: parameters and losses")
    args = parser.parse_args(argv)

    if "RANK" not in os.environ:
        print(
            "start this script with torchrun, e.g.: torchrun --standalone --nproc-per-node 2 examples/ddp_train.py",
            file=sys.stderr,
        )
        return 2
    torch.set_num_threads(args.threads)
    convkern.set_num_threads(args.threads)
    if args.device == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    dist.init_process_group(backend)
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.global_batch % world:
        raise SystemExit(f"--global-batch {args.global_batch} must be a multiple of the {world} processes")

    torch.manual_seed(args.seed)  # the same initial weights everywhere (DDP also broadcasts rank 0's)
    model = build_model().to(device)
    ddp_model = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = make_optimizer(ddp_model)

    losses: List[float] = []
    start = time.perf_counter()
    for step in range(args.steps):
        images, labels = synthetic_batch(step, args.global_batch, args.seed)
        images, labels = images.chunk(world)[rank].to(device), labels.chunk(world)[rank].to(device)
        loss = mean_shard_loss(ddp_model, images, labels, shards=1)
        optimizer.zero_grad()
        loss.backward()  # DDP averages the gradients over the processes here
        optimizer.step()
        global_loss = loss.detach().clone()
        dist.all_reduce(global_loss)
        losses.append(global_loss.item() / world)
        if rank == 0 and (step % 10 == 0 or step == args.steps - 1):
            print(f"step {step:4d}  loss {losses[-1]:.4f}", flush=True)
    if rank == 0:
        print(
            f"{args.steps} steps of {args.global_batch} images on {world} processes ({backend}): "
            f"{time.perf_counter() - start:.1f} s",
            flush=True,
        )
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        torch.save(
            {"parameters": {k: v.cpu() for k, v in parameters(model).items()}, "losses": losses},
            args.save / f"rank{rank}.pt",
        )
    # DDP's reducer holds the process group. Were it the last holder, the group would be destroyed
    # with the reducer, with the GIL held, while gloo's worker threads may still need the GIL to
    # release the tensors of finished collectives: the process would hang at exit, now and then.
    # So the model goes first (collect: DDP's hooks make reference cycles), then the group.
    del ddp_model, optimizer
    gc.collect()
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
