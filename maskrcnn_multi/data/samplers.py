"""Samplers: an infinite, seeded, rank-sharded stream for training; exact once-each shards for inference."""
import itertools
import math
from collections import defaultdict
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

__all__ = ["TrainingSampler", "RepeatFactorTrainingSampler", "TrainingBatchSampler", "InferenceSampler", "rank_and_world_size", "shared_random_seed"]


def rank_and_world_size() -> Tuple[int, int]:
    """(rank, world size) of torch.distributed when initialised, else (0, 1)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def shared_random_seed() -> int:
    """A random seed drawn on rank 0 and shared by every rank (so all shuffle alike)."""
    seed = int(torch.randint(2**31, (1,)).item())
    _, world_size = rank_and_world_size()
    if world_size > 1:
        holder: List[Optional[int]] = [seed]
        dist.broadcast_object_list(holder, src=0)
        seed = int(holder[0])
    return seed


class TrainingSampler(Sampler):
    """Yields dataset indices forever: each pass is a fresh permutation (or 0..size-1 without shuffle)
    drawn from a generator seeded with ``seed``; rank r of W takes items r, r+W, r+2W, ...

    Every rank must use the same ``seed`` (``None`` draws one shared across ranks).
    """

    def __init__(self, size: int, shuffle: bool = True, seed: Optional[int] = None):
        if not isinstance(size, int) or size <= 0:
            raise ValueError(f"TrainingSampler needs a positive dataset size, got {size!r}")
        self._size = size
        self._shuffle = shuffle
        self._seed = int(seed) if seed is not None else shared_random_seed()
        self._rank, self._world_size = rank_and_world_size()

    @property
    def seed(self) -> int:
        return self._seed

    def __iter__(self) -> Iterator[int]:
        return (index for _, index in self.positioned())

    def positioned(self) -> Iterator[Tuple[int, int]]:
        """This rank's share of the stream as (position in the whole stream, dataset index): the
        position names a draw the same way on every rank and in every run."""
        return itertools.islice(enumerate(self._infinite_indices()), self._rank, None, self._world_size)

    def _infinite_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            if self._shuffle:
                yield from torch.randperm(self._size, generator=generator).tolist()
            else:
                yield from range(self._size)


class RepeatFactorTrainingSampler(TrainingSampler):
    """A TrainingSampler whose passes repeat image i ``repeat_factors[i]`` times on average (detectron2's
    sampler for LVIS: rare categories' images are seen more often).

    Each pass repeats image i ``floor(r_i)`` times, plus once more with probability ``frac(r_i)``,
    drawn from the seeded generator, then shuffles the pass.
    """

    def __init__(self, repeat_factors: torch.Tensor, shuffle: bool = True, seed: Optional[int] = None):
        repeat_factors = torch.as_tensor(repeat_factors, dtype=torch.float32)
        super().__init__(len(repeat_factors), shuffle=shuffle, seed=seed)
        self._int_part = torch.trunc(repeat_factors)
        self._frac_part = repeat_factors - self._int_part

    @staticmethod
    def repeat_factors_from_category_frequency(dataset_dicts: Sequence[dict], repeat_thresh: float,
                                               sqrt: bool = True) -> torch.Tensor:
        """r_i = max over image i's categories c of max(1, t / f(c)) (its square root with ``sqrt``),
        f(c) the fraction of images holding c; an image without annotations has r = 1."""
        image_counts = defaultdict(int)
        for record in dataset_dicts:
            for category in {ann["category_id"] for ann in record.get("annotations", ())}:
                image_counts[category] += 1
        category_repeat = {}
        for category, count in image_counts.items():
            ratio = repeat_thresh / (count / len(dataset_dicts))
            category_repeat[category] = max(1.0, math.sqrt(ratio) if sqrt else ratio)
        factors = [max((category_repeat[ann["category_id"]] for ann in record.get("annotations", ())), default=1.0)
                   for record in dataset_dicts]
        return torch.tensor(factors, dtype=torch.float32)

    def _pass_indices(self, generator: torch.Generator) -> torch.Tensor:
        repeats = self._int_part + (torch.rand(len(self._frac_part), generator=generator) < self._frac_part).float()
        return torch.repeat_interleave(torch.arange(len(repeats)), repeats.long())

    def _infinite_indices(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self._seed)
        while True:
            indices = self._pass_indices(generator)
            if self._shuffle:
                indices = indices[torch.randperm(len(indices), generator=generator)]
            yield from indices.tolist()


class TrainingBatchSampler:
    """Batches of ``(position, index)`` keys from a TrainingSampler's rank share.

    With ``group_ids`` (one per dataset index) each batch holds one group, filled in stream order,
    as detectron2's AspectRatioGroupedDataset fills its buckets; without them, consecutive draws.
    Everything is decided from indices, so ``skip_to(n)`` starts at batch n without reading or
    mapping a single image: that is how a resumed run finds its place in the data.
    """

    def __init__(self, sampler: TrainingSampler, batch_size: int, group_ids: Optional[Sequence[int]] = None):
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.group_ids = list(group_ids) if group_ids is not None else None
        self._start = 0

    def skip_to(self, batches: int) -> None:
        """The next iterator starts with batch number ``batches`` (0-based) of the stream."""
        if batches < 0:
            raise ValueError(f"cannot skip a negative number of batches ({batches})")
        self._start = batches

    def __iter__(self) -> Iterator[List[Tuple[int, int]]]:
        return itertools.islice(self._batches(), self._start, None)

    def _batches(self) -> Iterator[List[Tuple[int, int]]]:
        keys = self.sampler.positioned()
        if self.group_ids is None:
            while True:
                yield list(itertools.islice(keys, self.batch_size))
        buckets = {}
        for key in keys:
            bucket = buckets.setdefault(self.group_ids[key[1]], [])
            bucket.append(key)
            if len(bucket) == self.batch_size:
                yield bucket[:]
                bucket.clear()


class InferenceSampler(Sampler):
    """Splits 0..size-1 into contiguous shards, one per rank, so every index is seen exactly once.

    The first ``size % world_size`` ranks get one extra index.
    """

    def __init__(self, size: int):
        if not isinstance(size, int) or size < 0:
            raise ValueError(f"InferenceSampler needs a non-negative dataset size, got {size!r}")
        self._size = size
        rank, world_size = rank_and_world_size()
        self._local_indices = range(*self._shard_bounds(size, rank, world_size))

    @staticmethod
    def _shard_bounds(size: int, rank: int, world_size: int) -> Tuple[int, int]:
        base, extra = divmod(size, world_size)
        shard_sizes = [base + int(r < extra) for r in range(world_size)]
        begin = sum(shard_sizes[:rank])
        return begin, begin + shard_sizes[rank]

    def __iter__(self) -> Iterator[int]:
        yield from self._local_indices

    def __len__(self) -> int:
        return len(self._local_indices)
