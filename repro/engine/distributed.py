"""Data-parallel training across processes (``torchrun --nproc_per_node K -m repro train ...``).

* :func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``) and starts a process group: ``nccl`` on GPU, ``gloo`` on CPU.
* Sampling is a pure function of ``(seed, epoch)`` and the *global* position in the epoch:
  :func:`epoch_permutation` gives every process the same order; :class:`TrainBatchSampler`
  hands each process its slice of every global batch, together with a per-sample seed (so
  random augmentation does not depend on the number of processes, the DataLoader workers,
  or on where a run was interrupted and resumed).  ``batch_size`` is the *global* batch, as
  the papers state it (e.g. TSN's 256 over 8 GPUs).
* Evaluation shards the videos without padding (:func:`eval_shard`), so no video is counted
  twice; the meters all-reduce sums of counts (:mod:`repro.engine.metrics`).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Iterator

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "init_distributed",
    "shutdown_distributed",
    "dist_info",
    "epoch_permutation",
    "sample_seed",
    "TrainBatchSampler",
    "eval_shard",
    "broadcast_object",
    "broadcast_flag",
    "all_reduce_sum",
    "all_reduce_sums",
    "barrier",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def dist_info() -> DistInfo:
    """Rank and world size of the running process group (single process if there is none)."""
    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    return DistInfo()


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistInfo:
    """Start the process group torchrun described in the environment; no-op for one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return DistInfo()
    if dist.is_initialized():
        return dist_info()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.barrier()
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (identity without a process group)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def _collective_device() -> torch.device:
    """Where the process group's collectives run: the current GPU under NCCL, else the CPU."""
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


def broadcast_flag(flag: bool, src: int = 0) -> bool:
    """Rank ``src``'s boolean on every rank, as one small tensor (cheap enough for every step)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = torch.tensor([1 if flag else 0], dtype=torch.int32, device=_collective_device())
    dist.broadcast(box, src=src)
    return bool(box.item())


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``tensor`` over all processes, as a new CPU tensor (call on every
    rank; ``tensor`` itself without a process group).  Sums of counts and of per-sample values
    reduce to exactly the single-process figures (integers; float64 sums in rank order)."""
    if not dist_info().enabled:
        return tensor
    flat = tensor.detach().to(_collective_device(), copy=True)
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    return flat.cpu()


def all_reduce_sums(values: dict[str, float]) -> dict[str, float]:
    """:func:`all_reduce_sum` of named floats (float64), keys in sorted order on every rank."""
    if not dist_info().enabled:
        return dict(values)
    keys = sorted(values)
    flat = all_reduce_sum(torch.tensor([values[k] for k in keys], dtype=torch.float64))
    return dict(zip(keys, flat.tolist()))


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The training order of ``epoch``: a permutation drawn from a generator seeded by
    ``(seed, epoch)`` only, identical on every process and after a resume."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Augmentation seed of the sample at global ``position`` of ``epoch`` (fits in 63 bits)."""
    return ((seed * 1_000_003 + epoch) * 1_000_000_007 + position) & 0x7FFF_FFFF_FFFF_FFFF


class TrainBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Batches of ``(dataset index, augmentation seed)`` for this process, one epoch.

    Global batches of ``batch_size`` are cut from :func:`epoch_permutation` (the last,
    incomplete one dropped); process ``rank`` gets positions ``rank, rank + world, ...`` of
    each global batch.  ``start_batch`` skips the batches a resumed run has already done.
    """

    def __init__(self, num_samples: int, batch_size: int, *, seed: int, epoch: int, rank: int = 0,
                 world_size: int = 1, start_batch: int = 0):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the {world_size} processes")
        if num_samples < batch_size:
            raise ValueError(f"the training set has {num_samples} samples, fewer than one batch of {batch_size}")
        self.num_samples, self.batch_size, self.seed, self.epoch = num_samples, batch_size, seed, epoch
        self.rank, self.world_size, self.start_batch = rank, world_size, start_batch

    @staticmethod
    def batches_per_epoch(num_samples: int, batch_size: int) -> int:
        return num_samples // batch_size

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch(self.num_samples, self.batch_size) - self.start_batch)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = epoch_permutation(self.num_samples, self.seed, self.epoch).tolist()
        for b in range(self.start_batch, self.batches_per_epoch(self.num_samples, self.batch_size)):
            positions = range(b * self.batch_size + self.rank, (b + 1) * self.batch_size, self.world_size)
            yield [(order[p], sample_seed(self.seed, self.epoch, p)) for p in positions]


def eval_shard(num_samples: int, rank: int, world_size: int) -> list[int]:
    """Indices evaluated by ``rank``: every ``world_size``-th video, no padding, no repeats."""
    return list(range(rank, num_samples, world_size))
