"""Data parallelism for the stages that need many devices at paper scale (ViT training, K-FAC factors).

A job launched by torchrun (`torchrun --nproc-per-node N -m curvmem <rule> ...`) runs N ranks of
the same stage: each rank reads its share of the data, the sums (K-FAC) or the gradients (training)
are all-reduced, and rank 0 alone writes the outputs. Without torchrun (WORLD_SIZE unset) a job is
rank 0 of 1 and nothing here communicates. The backend is NCCL when every rank has a GPU and gloo
otherwise, so the tests run the same code with several processes on a CPU.

How batches are shared: the data is cut into global batches exactly as one process would cut it,
and rank r takes global batches r, r + N, r + 2N, ... (`own_batches`). Anything random that depends
on a batch is seeded by the batch's global index (`batch_seed`), so N ranks compute what one does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def ranks() -> Ranks:
    """This process's place among the ranks of the job (rank 0 of 1 without torch.distributed)."""
    if dist.is_available() and dist.is_initialized():
        return Ranks(dist.get_rank(), dist.get_world_size())
    return Ranks()


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env() -> Ranks:
    """Join the process group torchrun describes in the environment; a no-op for a single process.
    Each rank gets its own GPU (LOCAL_RANK) when there are GPUs."""
    if not launched_by_torchrun() or dist.is_initialized():
        return ranks()
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return ranks()


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensors: list[torch.Tensor]) -> None:
    """Sum each tensor over the ranks, in place (a no-op for a single process)."""
    if ranks().size == 1:
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def own_batches(n_items: int, batch_size: int, place: Ranks | None = None) -> list[tuple[int, np.ndarray]]:
    """(global batch index, item indices) of this rank's global batches: the items 0..n_items-1 cut
    into batches of `batch_size` in order (the last may be short), every `size`-th from `rank` on."""
    place = place or ranks()
    starts = range(0, n_items, batch_size)
    return [(i, np.arange(s, min(s + batch_size, n_items))) for i, s in enumerate(starts)
            if i % place.size == place.rank]


def batch_seed(seed: int, batch_index: int) -> int:
    """A seed for what is drawn for one global batch: independent across batches, the same on any
    number of ranks."""
    return int(np.random.SeedSequence([seed, batch_index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def rank_slice(n_items: int, place: Ranks | None = None) -> slice:
    """This rank's contiguous part of one global batch of `n_items` (sizes differ by at most one;
    a rank may get none when the batch is smaller than the number of ranks)."""
    place = place or ranks()
    bounds = np.linspace(0, n_items, place.size + 1).round().astype(int)
    return slice(int(bounds[place.rank]), int(bounds[place.rank + 1]))
