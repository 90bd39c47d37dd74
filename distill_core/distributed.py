"""Training on several processes: torchrun and DistributedDataParallel, the standard PyTorch engine.

    torchrun --nproc_per_node 4 -m distill_core train --preset mtard-cifar10 --teacher ...   # one node, 4 GPUs
    torchrun --nnodes 2 --node_rank 0 --master_addr HOST --master_port 29500 --nproc_per_node 8 -m distill_core ...

torchrun starts one process per GPU (or per CPU worker) and gives each ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``. The CLI calls :func:`init_from_env`, which joins the process group (nccl on CUDA,
gloo on the CPU) and pins the process to GPU ``LOCAL_RANK``; the Trainer sees the group through
:func:`current` and then

- wraps the student in ``DistributedDataParallel`` (:func:`wrap`); teachers are replicated on every
  rank, frozen, and not wrapped;
- gives every rank the same seeded permutation, cuts each global batch of ``batch_size`` samples
  into ``world_size`` equal slices and trains rank r on slice r (``train.iterate_batches``):
  ``batch_size`` is the **global** batch and must be divisible by the number of processes, so a
  preset's learning rate and schedule mean the same on 1 or 8 GPUs;
- averages each step's loss over the ranks (:func:`all_reduce_sum`), so the stop token, the NaN
  guard and the logged loss agree everywhere;
- evaluates on a slice of the test set per rank and sums the counts;
- writes the run folder, logs and the progress bar on rank 0 only.

BatchNorm statistics: DDP is built without buffer broadcasts inside ``forward`` (so an attack's many
forward passes, or a method that runs an extra forward on one rank only, never wait on a
collective); each rank keeps running statistics of its own slices, and :func:`average_buffers`
averages them over the ranks at the end of every epoch and before the final evaluation.
Gradients are all-reduced only by ``loss.backward()``: the attacks inside methods take input
gradients with ``torch.autograd.grad``, which never fires DDP's parameter hooks.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from .device import DeviceChoice, choose_device

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the group; ``backend`` is empty when training on one process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def enabled(self) -> bool:
        return bool(self.backend)

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes the run folder and prints."""
        return self.rank == 0


def under_torchrun() -> bool:
    """Whether torchrun (or another launcher setting RANK / WORLD_SIZE / LOCAL_RANK) started this process."""
    return all(v in os.environ for v in ENV_VARS)


def init_from_env(device: str = "auto", timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group torchrun described in the environment; a single process when not under torchrun.

    ``device`` is the requested device (``"auto"``, ``"cuda"``, ``"cpu"`` ...): when it resolves to
    CUDA the backend is nccl and this process uses GPU ``LOCAL_RANK``, otherwise gloo on the CPU.
    """
    if not under_torchrun():
        return DistInfo()
    if not dist.is_initialized():
        local_rank = int(os.environ["LOCAL_RANK"])
        if choose_device(device).device.type == "cuda":
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
            dist.init_process_group("nccl", timeout=timedelta(seconds=timeout_s),
                                    device_id=torch.device("cuda", torch.cuda.current_device()))
        else:
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout_s))
    return current()


def current() -> DistInfo:
    """The process group this process belongs to (``DistInfo()`` when none is initialised)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())),
                    dist.get_backend())


def rank_device(choice: DeviceChoice, info: DistInfo) -> DeviceChoice:
    """Under DDP every CUDA request means this rank's own GPU, ``cuda:LOCAL_RANK``."""
    if not info.enabled or choice.device.type != "cuda":
        return choice
    index = info.local_rank % torch.cuda.device_count()
    return DeviceChoice(torch.device("cuda", index), choice.requested, choice.reason)


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel, without buffer broadcasts inside ``forward`` (see the module doc)."""
    no_forward_sync = ({"forward_sync_buffers": False}
                       if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters
                       else {"broadcast_buffers": False})
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, **no_forward_sync)


def all_reduce_sum(values: Sequence[float], device: torch.device) -> list[float]:
    """Sum a few numbers over all ranks (one collective); identity on a single process."""
    if not current().enabled:
        return [float(v) for v in values]
    t = torch.tensor([float(v) for v in values], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Average the floating-point buffers (BatchNorm running statistics) over all ranks, in place."""
    info = current()
    if not info.enabled:
        return
    for buf in model.buffers():
        if buf.is_floating_point():
            dist.all_reduce(buf)
            buf.div_(info.world_size)


def shutdown() -> None:
    """Wait for every rank, then leave the process group (the end of a distributed run)."""
    if current().enabled:
        dist.barrier()
        dist.destroy_process_group()
