"""RepeatFactorTrainingSampler (DATALOADER.SAMPLER_TRAIN, REPEAT_THRESHOLD, REPEAT_SQRT), detectron2's LVIS sampler."""
import itertools
import math
import os

import pytest
import torch

from maskrcnn_multi.config import UserError, get_cfg
from maskrcnn_multi.data import RepeatFactorTrainingSampler, build_detection_train_loader, load_coco_json

# category 1 in every image, category 2 in one of four, one image without annotations
DICTS = [{"annotations": [{"category_id": 1}, {"category_id": 2}]}, {"annotations": [{"category_id": 1}]},
         {"annotations": [{"category_id": 1}]}, {"annotations": [{"category_id": 1}]}, {"annotations": []}]


def test_repeat_factors_follow_the_rarest_category_of_each_image():
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(DICTS, 0.5, sqrt=True)
    # f(1) = 4/5 -> max(1, sqrt(0.5 / 0.8)) = 1; f(2) = 1/5 -> sqrt(2.5)
    assert factors.tolist() == pytest.approx([math.sqrt(2.5), 1.0, 1.0, 1.0, 1.0])
    factors = RepeatFactorTrainingSampler.repeat_factors_from_category_frequency(DICTS, 0.5, sqrt=False)
    assert factors.tolist() == pytest.approx([2.5, 1.0, 1.0, 1.0, 1.0])


def test_each_pass_repeats_whole_factors_exactly_and_fractions_on_average():
    sampler = RepeatFactorTrainingSampler(torch.tensor([1.0, 2.0, 3.0]), seed=5)
    first_pass = list(itertools.islice(iter(sampler), 6))
    assert sorted(first_pass) == [0, 1, 1, 2, 2, 2]
    assert first_pass == list(itertools.islice(iter(RepeatFactorTrainingSampler(torch.tensor([1.0, 2.0, 3.0]), seed=5)), 6))
    sampler = RepeatFactorTrainingSampler(torch.tensor([1.5, 1.0]), seed=5)
    draws = list(itertools.islice(iter(sampler), 2500 * 2))  # about 2000 passes of 2.5 draws
    ratio = draws.count(0) / draws.count(1)
    assert ratio == pytest.approx(1.5, rel=0.05)


def test_the_loader_builds_the_configured_sampler_and_names_an_unknown_one(shapes_root):
    cfg = get_cfg()
    cfg.merge_from_list(["MODEL.ROI_HEADS.NUM_CLASSES", "3", "INPUT.MIN_SIZE_TRAIN", "(96,)", "SOLVER.IMS_PER_BATCH", "2",
                         "DATALOADER.NUM_WORKERS", "0", "SEED", "3",
                         "DATALOADER.SAMPLER_TRAIN", "RepeatFactorTrainingSampler", "DATALOADER.REPEAT_THRESHOLD", "0.9"])
    dicts = load_coco_json(os.path.join(shapes_root, "annotations", "instances_train.json"), os.path.join(shapes_root, "train"))
    loader = build_detection_train_loader(cfg, dataset_dicts=dicts)
    assert isinstance(loader.batch_sampler.sampler, RepeatFactorTrainingSampler)
    assert len(next(iter(loader))) == 2
    cfg.DATALOADER.SAMPLER_TRAIN = "RandomSampler"
    with pytest.raises(UserError, match="unknown DATALOADER.SAMPLER_TRAIN 'RandomSampler' .*RepeatFactorTrainingSampler"):
        build_detection_train_loader(cfg, dataset_dicts=dicts)
