"""Data loaders: dataset dicts from the catalog -> mapped, batched model inputs (plain torch.utils.data).

Training: infinite, seeded, rank-sharded; per-rank batch = SOLVER.IMS_PER_BATCH // world size, batches
of one orientation with DATALOADER.ASPECT_RATIO_GROUPING; an unreadable image is skipped with a
warning naming it. Inference: every image exactly once across ranks, one per batch, errors propagate.
"""
import logging
import random
from typing import Callable, Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset

from ..config.errors import UserError
from .catalog import DatasetCatalog, MetadataCatalog
from .dataset_mapper import DatasetMapper
from .detection_utils import BadImageError
from .samplers import (
    InferenceSampler, RepeatFactorTrainingSampler, TrainingBatchSampler, TrainingSampler, rank_and_world_size,
)
from .validation import DatasetError, UnknownDatasetError

__all__ = [
    "get_detection_dataset_dicts",
    "check_dataset_names",
    "check_num_classes",
    "filter_images_without_annotations",
    "MapDataset",
    "orientation_groups",
    "build_detection_train_loader",
    "build_detection_test_loader",
    "test_batch_size",
    "trivial_batch_collator",
]

logger = logging.getLogger(__name__)


def filter_images_without_annotations(dataset_dicts: List[dict]) -> List[dict]:
    """Keep images with at least one non-crowd annotation; logs how many were removed."""
    kept = [d for d in dataset_dicts if any(a.get("iscrowd", 0) == 0 for a in d.get("annotations", []))]
    removed = len(dataset_dicts) - len(kept)
    logger.info("Removed %d images with no usable annotations. %d images left.", removed, len(kept))
    return kept


def get_detection_dataset_dicts(names: Sequence[str], filter_empty: bool = True) -> List[dict]:
    """Concatenate the dicts of the named datasets; with ``filter_empty`` drop images without annotations.

    Raises DatasetError naming the dataset when one is not registered, is empty, or nothing is left
    after filtering.
    """
    if isinstance(names, str):
        names = [names]
    if len(names) == 0:
        raise DatasetError("no dataset named (DATASETS.TRAIN / DATASETS.TEST is empty)")
    dataset_dicts: List[dict] = []
    for name in names:
        dicts = DatasetCatalog.get(name)
        if len(dicts) == 0:
            raise DatasetError(f"dataset '{name}' is empty (no images)")
        dataset_dicts.extend(dicts)
    has_annotations = "annotations" in dataset_dicts[0]
    if filter_empty and has_annotations:
        dataset_dicts = filter_images_without_annotations(dataset_dicts)
        if len(dataset_dicts) == 0:
            files = [MetadataCatalog.get(name).get("json_file") for name in names]
            named = ", ".join(f"{name} ({file})" if file else name for name, file in zip(names, files))
            raise DatasetError(
                f"dataset(s) {named} have no image with annotations left to train on "
                "(see the warnings above for what was dropped)"
            )
    return dataset_dicts


def check_dataset_names(names: Sequence[str], key: str) -> None:
    """Raise UnknownDatasetError when config key ``key`` (DATASETS.TRAIN / DATASETS.TEST) names a
    dataset nobody registered."""
    for name in names:
        if name not in DatasetCatalog:
            raise UnknownDatasetError(
                f"{key} names dataset '{name}', which is not registered (registered: "
                f"{', '.join(DatasetCatalog.list()) or 'none'}; train_net registers a COCO-format set "
                "with --dataset NAME JSON IMAGE_ROOT)"
            )


def _thing_classes(names: Sequence[str]) -> Optional[List[str]]:
    """The datasets' common thing_classes (None when none records them); DatasetError when two
    datasets disagree (detectron2's check_metadata_consistency)."""
    found = [(name, MetadataCatalog.get(name).get("thing_classes")) for name in names]
    found = [(name, classes) for name, classes in found if classes is not None]
    for name, classes in found[1:]:
        if list(classes) != list(found[0][1]):
            raise DatasetError(
                f"datasets '{found[0][0]}' and '{name}' have different categories "
                f"({len(found[0][1])}: {_short_list(found[0][1])} vs {len(classes)}: {_short_list(classes)})"
            )
    return list(found[0][1]) if found else None


def _short_list(items: Sequence, shown: int = 5) -> str:
    text = ", ".join(str(item) for item in list(items)[:shown])
    return text + (f", ... ({len(items) - shown} more)" if len(items) > shown else "")


def check_num_classes(cfg, names: Sequence[str], dataset_dicts: Optional[List[dict]] = None) -> None:
    """MODEL.ROI_HEADS.NUM_CLASSES must equal the category count of the datasets ``names`` (their
    thing_classes metadata), and exceed every ``category_id`` in ``dataset_dicts``; else a
    DatasetError naming both. A smaller head cannot represent some categories (an IndexError in the
    losses, or silently wrong labels); a larger one, or another set's count, is a forgotten override.
    A model without box classes (MODEL.META_ARCHITECTURE ProposalNetwork) is not checked."""
    if cfg.MODEL.META_ARCHITECTURE == "ProposalNetwork":
        return
    num_classes = cfg.MODEL.ROI_HEADS.NUM_CLASSES
    where = ", ".join(f"'{name}'" for name in names)
    classes = _thing_classes(names)
    if classes is not None and len(classes) != num_classes:
        raise DatasetError(
            f"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but dataset {where} has {len(classes)} categories "
            f"({_short_list(classes)}): set MODEL.ROI_HEADS.NUM_CLASSES {len(classes)}"
        )
    category_ids = [
        annotation.get("category_id") for record in dataset_dicts or () for annotation in record.get("annotations", ())
    ]
    category_ids = [category_id for category_id in category_ids if isinstance(category_id, int)]
    if category_ids and not 0 <= min(category_ids) <= max(category_ids) < num_classes:
        culprit = max(category_ids) if max(category_ids) >= num_classes else min(category_ids)
        raise DatasetError(
            f"dataset {where or '(given dicts)'} has category_id {culprit}, outside 0..{num_classes - 1} of "
            f"MODEL.ROI_HEADS.NUM_CLASSES {num_classes}"
        )


class MapDataset(Dataset):
    """``mapper(dataset_dicts[i])``; with ``skip_bad_images`` an unreadable image is skipped (warning
    naming it, remembered) and the next index is mapped instead.

    With ``seed`` the keys are ``(position, index)`` from a TrainingBatchSampler and numpy's global
    RNG, which the augmentations draw from, is seeded from (seed, position) for that one call: a
    draw's augmentation is the same whichever worker maps it, with any NUM_WORKERS, in a resumed run
    and on any number of ranks. The caller's numpy RNG state is put back afterwards.
    """

    def __init__(self, dataset_dicts: List[dict], mapper: Callable[[dict], dict], skip_bad_images: bool = False,
                 seed: Optional[int] = None):
        self._dataset_dicts = dataset_dicts
        self._mapper = mapper
        self._skip_bad_images = skip_bad_images
        self._seed = seed
        self._bad_indices = set()
        self._last_error: Optional[BadImageError] = None

    def __len__(self) -> int:
        return len(self._dataset_dicts)

    def __getitem__(self, key) -> dict:
        if self._seed is None:
            return self._map_from(key)
        position, index = key
        saved = np.random.get_state()
        np.random.seed([self._seed, position])
        try:
            return self._map_from(index)
        finally:
            np.random.set_state(saved)

    def _map_from(self, index: int) -> dict:
        if not self._skip_bad_images:
            return self._mapper(self._dataset_dicts[index])
        for offset in range(len(self)):
            current = (index + offset) % len(self)
            if current in self._bad_indices:
                continue
            try:
                return self._mapper(self._dataset_dicts[current])
            except BadImageError as error:
                self._bad_indices.add(current)
                self._last_error = error
                logger.warning("skipping image in training: %s", error)
        raise DatasetError(
            f"none of the {len(self)} training images can be read (each was named in a warning above; "
            f"the last: {self._last_error})"
        )


def orientation_groups(dataset_dicts: List[dict]) -> List[int]:
    """Group id per image for ASPECT_RATIO_GROUPING: 0 if wider than tall, else 1 (from the dicts'
    width / height, which resizing and flipping keep). Images without both sizes join group 1."""
    sized = [record.get("width") is not None and record.get("height") is not None for record in dataset_dicts]
    groups = [0 if has_size and record["width"] > record["height"] else 1
              for record, has_size in zip(dataset_dicts, sized)]
    unsized = len(sized) - sum(sized)
    if unsized:
        logger.warning("%d training images have no width/height: they are batched as if taller than wide", unsized)
    return groups


def trivial_batch_collator(batch: List[dict]) -> List[dict]:
    """Batches are lists of dicts; the model pads them (ImageList)."""
    return batch


def _seed_worker(worker_id: int) -> None:
    """numpy and random in a worker follow torch's per-worker seed (distinct, reproducible)."""
    seed = torch.initial_seed() % 2**31
    np.random.seed(seed)
    random.seed(seed)


def per_rank_batch_size(total_batch_size: int) -> int:
    """SOLVER.IMS_PER_BATCH split over ranks; must divide evenly."""
    _, world_size = rank_and_world_size()
    if total_batch_size <= 0 or total_batch_size % world_size != 0:
        raise UserError(
            f"SOLVER.IMS_PER_BATCH ({total_batch_size}) must be a positive multiple of the number of "
            f"processes ({world_size})"
        )
    return total_batch_size // world_size


def check_segmentations(names: Sequence[str], dataset_dicts: List[dict]) -> None:
    """A mask model trains on instances with masks: refuse (naming the files) non-crowd annotations
    without a segmentation, before the first batch meets one."""
    missing = [(record, annotation) for record in dataset_dicts for annotation in record.get("annotations", ())
               if not annotation.get("iscrowd", 0) and "segmentation" not in annotation]
    if not missing:
        return
    files = [MetadataCatalog.get(name).get("json_file") for name in names]
    record, _ = missing[0]
    raise DatasetError(
        f"MODEL.MASK_ON is set but {len(missing)} annotation(s) of {', '.join(str(f) for f in files if f) or ', '.join(names)} "
        f"have no segmentation (the first on {record['file_name']}): add masks, or train with MODEL.MASK_ON False"
    )


TRAINING_SAMPLERS = ("TrainingSampler", "RepeatFactorTrainingSampler")


def _training_sampler(cfg, dataset_dicts: List[dict], seed: Optional[int]) -> TrainingSampler:
    """DATALOADER.SAMPLER_TRAIN: every image once per pass, or repeated by its rarest category's
    frequency (DATALOADER.REPEAT_THRESHOLD, REPEAT_SQRT)."""
    name = cfg.DATALOADER.SAMPLER_TRAIN
    if name == "TrainingSampler":
        return TrainingSampler(len(dataset_dicts), shuffle=True, seed=seed)
    if name == "RepeatFactorTrainingSampler":
        factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(
            dataset_dicts, cfg.DATALOADER.REPEAT_THRESHOLD, sqrt=cfg.DATALOADER.REPEAT_SQRT)
        logger.info("RepeatFactorTrainingSampler: %.1f images per pass on average (of %d)",
                    float(factors.sum()), len(dataset_dicts))
        return RepeatFactorTrainingSampler(factors, shuffle=True, seed=seed)
    raise UserError(f"unknown DATALOADER.SAMPLER_TRAIN {name!r} (choose from: {', '.join(TRAINING_SAMPLERS)})")


def build_detection_train_loader(
    cfg,
    mapper: Optional[Callable[[dict], dict]] = None,
    dataset_dicts: Optional[List[dict]] = None,
    seed: Optional[int] = None,
) -> Iterator[List[dict]]:
    """An infinite iterable of training batches (lists of mapped dicts), per-rank size
    SOLVER.IMS_PER_BATCH // world size, from DATASETS.TRAIN with DATALOADER.* settings.

    ``seed`` defaults to cfg.SEED when it is >= 0 (else one random seed shared by the ranks).
    MODEL.ROI_HEADS.NUM_CLASSES is checked against the data first (``check_num_classes``).
    """
    names: Sequence[str] = ()
    if dataset_dicts is None:
        names = cfg.DATASETS.TRAIN
        check_dataset_names(names, "DATASETS.TRAIN")
        dataset_dicts = get_detection_dataset_dicts(
            cfg.DATASETS.TRAIN, filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS
        )
    check_num_classes(cfg, names, dataset_dicts)
    if cfg.MODEL.MASK_ON:
        check_segmentations(names, dataset_dicts)
    mapper = mapper if mapper is not None else DatasetMapper.from_config(cfg, is_train=True)
    if seed is None and cfg.get("SEED", -1) >= 0:
        seed = cfg.SEED
    sampler = _training_sampler(cfg, dataset_dicts, seed)
    dataset = MapDataset(dataset_dicts, mapper, skip_bad_images=True, seed=sampler.seed)
    batch_size = per_rank_batch_size(cfg.SOLVER.IMS_PER_BATCH)
    num_workers = cfg.DATALOADER.NUM_WORKERS
    logger.info("Training loader: %d images, %d per batch on this rank, %d workers", len(dataset), batch_size, num_workers)
    group_ids = orientation_groups(dataset_dicts) if cfg.DATALOADER.ASPECT_RATIO_GROUPING else None
    return DataLoader(
        dataset,
        batch_sampler=TrainingBatchSampler(sampler, batch_size, group_ids),
        num_workers=num_workers,
        collate_fn=trivial_batch_collator,
        worker_init_fn=_seed_worker,
    )


def test_batch_size(cfg) -> int:
    """TEST.IMS_PER_BATCH, images per test batch on each rank; a positive integer or a UserError."""
    batch_size = cfg.TEST.get("IMS_PER_BATCH", 1)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"TEST.IMS_PER_BATCH must be a positive integer (images per test batch on each process), "
                        f"got {batch_size!r}")
    return batch_size


def build_detection_test_loader(cfg, dataset_name: str, mapper: Optional[Callable[[dict], dict]] = None,
                                batch_size: Optional[int] = None) -> DataLoader:
    """Batches of ``batch_size`` (default TEST.IMS_PER_BATCH) mapped dicts per rank, in dataset order,
    each image of ``dataset_name`` seen exactly once across ranks (the last batch may be smaller).
    The model pads a batch's images to the largest of them (see README, batched inference). An
    unreadable image raises an error naming it; MODEL.ROI_HEADS.NUM_CLASSES must match the dataset's
    categories (``check_num_classes``)."""
    batch_size = test_batch_size(cfg) if batch_size is None else batch_size
    check_dataset_names([dataset_name], "DATASETS.TEST")
    dataset_dicts = get_detection_dataset_dicts([dataset_name], filter_empty=False)
    check_num_classes(cfg, [dataset_name])
    mapper = mapper if mapper is not None else DatasetMapper.from_config(cfg, is_train=False)
    dataset = MapDataset(dataset_dicts, mapper, skip_bad_images=False)
    return DataLoader(
        dataset,
        batch_sampler=BatchSampler(InferenceSampler(len(dataset)), batch_size, drop_last=False),
        num_workers=cfg.DATALOADER.NUM_WORKERS,
        collate_fn=trivial_batch_collator,
    )
