"""Loaders and samplers: batching, orientation groups, rank shards, seeding, bad-image handling."""
import itertools
import logging
import os

import numpy as np
import pytest
import torch

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data import (
    BadImageError,
    DatasetCatalog,
    DatasetError,
    DatasetMapper,
    InferenceSampler,
    MetadataCatalog,
    TrainingSampler,
    UnknownDatasetError,
    build_detection_test_loader,
    build_detection_train_loader,
    load_coco_json,
    register_coco_instances,
)
from maskrcnn_multi.data import build as build_module
from maskrcnn_multi.data import samplers as samplers_module


def _cfg(num_workers=0, grouping=True, batch=2):
    cfg = get_cfg()
    cfg.MODEL.MASK_ON = True
    cfg.MODEL.ROI_HEADS.NUM_CLASSES = 3  # the shapes set's categories
    cfg.INPUT.MIN_SIZE_TRAIN = (96,)
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.DATALOADER.NUM_WORKERS = num_workers
    cfg.DATALOADER.ASPECT_RATIO_GROUPING = grouping
    cfg.SOLVER.IMS_PER_BATCH = batch
    cfg.SEED = 3
    return cfg


def _train_dicts(shapes_root):
    return load_coco_json(os.path.join(shapes_root, "annotations", "instances_train.json"),
                          os.path.join(shapes_root, "train"))


def _fake_world(monkeypatch, rank, world_size):
    for module in (samplers_module, build_module):
        monkeypatch.setattr(module, "rank_and_world_size", lambda: (rank, world_size))


def test_training_sampler_is_seeded_infinite_and_sharded(monkeypatch):
    first = list(itertools.islice(iter(TrainingSampler(5, seed=11)), 12))
    assert first == list(itertools.islice(iter(TrainingSampler(5, seed=11)), 12))
    assert sorted(first[:5]) == list(range(5)) and sorted(first[5:10]) == list(range(5))
    _fake_world(monkeypatch, 1, 2)
    rank1 = list(itertools.islice(iter(TrainingSampler(5, seed=11)), 6))
    assert rank1 == first[1::2][:6]


@pytest.mark.parametrize("size, world_size", [(10, 3), (2, 4), (7, 1)])
def test_inference_sampler_covers_each_index_once(monkeypatch, size, world_size):
    shards = []
    for rank in range(world_size):
        _fake_world(monkeypatch, rank, world_size)
        shards.append(list(InferenceSampler(size)))
    assert list(itertools.chain(*shards)) == list(range(size))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1


@pytest.mark.parametrize("num_workers", [0, 2])
def test_train_loader_batches_of_one_orientation(shapes_root, num_workers):
    loader = build_detection_train_loader(_cfg(num_workers), dataset_dicts=_train_dicts(shapes_root))
    for batch in itertools.islice(iter(loader), 4):
        assert len(batch) == 2
        orientations = {image["image"].shape[2] > image["image"].shape[1] for image in batch}
        assert len(orientations) == 1
        assert all(len(image["instances"]) > 0 for image in batch)


def test_train_loader_without_grouping_is_reproducible(shapes_root):
    def file_names():
        loader = build_detection_train_loader(_cfg(grouping=False), dataset_dicts=_train_dicts(shapes_root))
        return [[d["file_name"] for d in batch] for batch in itertools.islice(iter(loader), 3)]

    assert file_names() == file_names()


def test_batch_size_must_divide_over_ranks(shapes_root, monkeypatch):
    _fake_world(monkeypatch, 0, 4)
    with pytest.raises(ValueError, match=r"SOLVER.IMS_PER_BATCH \(6\) must be a positive multiple .* \(4\)"):
        build_detection_train_loader(_cfg(batch=6), dataset_dicts=_train_dicts(shapes_root))


def test_training_skips_a_corrupt_image_with_a_warning(shapes_root, tmp_path, caplog):
    dicts = _train_dicts(shapes_root)
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8 truncated")
    dicts[0] = dict(dicts[0], file_name=str(tmp_path / "corrupt.jpg"))
    loader = build_detection_train_loader(_cfg(grouping=False, batch=1), dataset_dicts=dicts)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.build"):
        seen = [batch[0]["file_name"] for batch in itertools.islice(iter(loader), 2 * len(dicts))]
    assert str(tmp_path / "corrupt.jpg") not in seen
    warnings = [r.getMessage() for r in caplog.records if "corrupt.jpg" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("skipping image in training: cannot read image")


def test_test_loader_yields_every_image_once_and_names_a_missing_one(shapes_root, temporary_dataset_names):
    name = "unit_shapes_val"
    temporary_dataset_names.append(name)
    register_coco_instances(name, {}, os.path.join(shapes_root, "annotations", "instances_val.json"),
                            os.path.join(shapes_root, "val"))
    batches = list(build_detection_test_loader(_cfg(), name))
    assert [len(batch) for batch in batches] == [1, 1, 1]
    assert [batch[0]["image_id"] for batch in batches] == [1, 2, 3]
    loader = build_detection_test_loader(_cfg(), name)
    loader.dataset._dataset_dicts[1] = dict(loader.dataset._dataset_dicts[1], file_name="/nonexistent/gone.jpg")
    with pytest.raises(BadImageError, match="image not found: /nonexistent/gone.jpg"):
        list(loader)


def _batches(loader, count):
    return list(itertools.islice(iter(loader), count))


def _same_batches(first, second):
    assert [[d["file_name"] for d in batch] for batch in first] == [[d["file_name"] for d in batch] for batch in second]
    for batch_a, batch_b in zip(first, second):
        for a, b in zip(batch_a, batch_b):
            assert torch.equal(a["image"], b["image"])
            assert torch.equal(a["instances"].gt_boxes.tensor, b["instances"].gt_boxes.tensor)


def test_skip_to_starts_at_that_batch_without_reading_an_image(shapes_root):
    dicts = _train_dicts(shapes_root)
    cfg = _cfg(batch=3)
    cfg.INPUT.MIN_SIZE_TRAIN = (80, 96, 112)  # random sizes and flips: the augmentations must match too
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
    expected = _batches(build_detection_train_loader(cfg, dataset_dicts=dicts), 7)

    mapped = []
    mapper = DatasetMapper.from_config(cfg, is_train=True)

    def counting_mapper(record):
        mapped.append(record["file_name"])
        return mapper(record)

    loader = build_detection_train_loader(cfg, mapper=counting_mapper, dataset_dicts=dicts)
    loader.batch_sampler.skip_to(5)
    resumed = _batches(loader, 2)
    assert len(mapped) == 6  # the two batches it yielded, nothing for the five it skipped
    _same_batches(resumed, expected[5:])


def test_augmentations_do_not_depend_on_the_number_of_workers(shapes_root):
    dicts = _train_dicts(shapes_root)
    cfg = _cfg(num_workers=0)
    cfg.INPUT.MIN_SIZE_TRAIN = (80, 112)
    cfg.INPUT.MIN_SIZE_TRAIN_SAMPLING = "range"
    in_process = _batches(build_detection_train_loader(cfg, dataset_dicts=dicts), 4)
    cfg.DATALOADER.NUM_WORKERS = 2
    _same_batches(_batches(build_detection_train_loader(cfg, dataset_dicts=dicts), 4), in_process)
    assert len({tuple(d["image"].shape) for batch in in_process for d in batch}) > 1


def test_the_mapper_leaves_the_callers_numpy_state_alone(shapes_root):
    np_state = np.random.get_state()
    _batches(build_detection_train_loader(_cfg(), dataset_dicts=_train_dicts(shapes_root)), 2)
    assert np.array_equal(np.random.get_state()[1], np_state[1])


def test_num_classes_must_match_the_datasets_categories(shapes_root, temporary_dataset_names):
    name = "unit_shapes_classes"
    temporary_dataset_names.append(name)
    register_coco_instances(name, {}, os.path.join(shapes_root, "annotations", "instances_train.json"),
                            os.path.join(shapes_root, "train"))
    cfg = _cfg()
    cfg.DATASETS.TRAIN = (name,)
    for num_classes in (2, 80):
        cfg.MODEL.ROI_HEADS.NUM_CLASSES = num_classes
        message = (rf"MODEL.ROI_HEADS.NUM_CLASSES is {num_classes} but dataset '{name}' has 3 categories "
                   r"\(rectangle, ellipse, triangle\): set MODEL.ROI_HEADS.NUM_CLASSES 3")
        with pytest.raises(DatasetError, match=message):
            build_detection_train_loader(cfg)
        with pytest.raises(DatasetError, match=message):
            build_detection_test_loader(cfg, name)
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"  # no box classes to match
    build_detection_train_loader(cfg)


def test_category_ids_beyond_num_classes_are_named(shapes_root):
    dicts = _train_dicts(shapes_root)
    dicts[0]["annotations"][0] = dict(dicts[0]["annotations"][0], category_id=7)
    with pytest.raises(DatasetError, match=r"has category_id 7, outside 0..2 of MODEL.ROI_HEADS.NUM_CLASSES 3"):
        build_detection_train_loader(_cfg(), dataset_dicts=dicts)


def test_datasets_with_different_categories_are_refused(temporary_dataset_names):
    for name, classes in (("unit_a", ["cat", "dog"]), ("unit_b", ["dog", "cat"])):
        temporary_dataset_names.append(name)
        DatasetCatalog.register(name, lambda: [{"file_name": "x.jpg", "annotations": [{"iscrowd": 0}]}])
        MetadataCatalog.get(name).set(thing_classes=classes)
    cfg = _cfg()
    cfg.DATASETS.TRAIN = ("unit_a", "unit_b")
    with pytest.raises(DatasetError, match=r"datasets 'unit_a' and 'unit_b' have different categories"):
        build_detection_train_loader(cfg)


def test_unregistered_dataset_names_the_config_key():
    cfg = _cfg()
    cfg.DATASETS.TRAIN = ("nope_train",)
    with pytest.raises(UnknownDatasetError, match=r"DATASETS.TRAIN names dataset 'nope_train', which is not registered"):
        build_detection_train_loader(cfg)
    with pytest.raises(UnknownDatasetError, match=r"DATASETS.TEST names dataset 'nope_val'"):
        build_detection_test_loader(cfg, "nope_val")


def test_every_training_image_unreadable_is_one_error(shapes_root, tmp_path, caplog):
    dicts = _train_dicts(shapes_root)
    for index, record in enumerate(dicts):
        (tmp_path / f"bad{index}.jpg").write_bytes(b"not an image")
        record["file_name"] = str(tmp_path / f"bad{index}.jpg")
    loader = build_detection_train_loader(_cfg(grouping=False), dataset_dicts=dicts)
    with caplog.at_level(logging.WARNING, logger="maskrcnn_multi.data.build"):
        with pytest.raises(DatasetError, match=r"none of the 6 training images can be read .*the last: cannot read image"):
            next(iter(loader))
    assert len([r for r in caplog.records if "skipping image in training" in r.getMessage()]) == 6


def test_test_loader_batches_test_ims_per_batch_images_in_order(shapes_root, temporary_dataset_names):
    name = "unit_shapes_val_batched"
    temporary_dataset_names.append(name)
    register_coco_instances(name, {}, os.path.join(shapes_root, "annotations", "instances_val.json"),
                            os.path.join(shapes_root, "val"))
    cfg = _cfg()
    cfg.TEST.IMS_PER_BATCH = 2
    batches = list(build_detection_test_loader(cfg, name))
    assert [[record["image_id"] for record in batch] for batch in batches] == [[1, 2], [3]]
    assert [len(batch) for batch in build_detection_test_loader(cfg, name, batch_size=3)] == [3]


@pytest.mark.parametrize("value", [0, -2, True])
def test_test_ims_per_batch_must_be_a_positive_integer(shapes_root, value):
    cfg = _cfg()
    cfg.TEST.IMS_PER_BATCH = value
    with pytest.raises(UserError, match=r"TEST.IMS_PER_BATCH must be a positive integer .* got"):
        build_module.test_batch_size(cfg)
