"""CascadeROIHeads: detectron2's outputs from detectron2's weights, and the cascade's training rules.

Ground truth: ../shared/reference/d2_zoo/cascade_mask_rcnn_FPN (random-init thin Cascade Mask R-CNN,
detectron2's full config dump; matching rule of the reference README with score floor 0.0).
"""
import glob
import json
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from d2_matching import RUNNERS, compare, loaded_model, ours_as_detections, theirs_as_detections
from rcnn_helpers import make_random_batch, make_small_cfg
from d2_matching import _patch_has_kernel, native_kernels_available
from maskrcnn_multi.config import get_cfg
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.engine import DefaultPredictor
from maskrcnn_multi.modeling import CascadeROIHeads, build_model
from maskrcnn_multi.modeling.postprocessing import detector_postprocess
from maskrcnn_multi.modeling.roi_heads.cascade_rcnn import _ScaleGradient
from maskrcnn_multi.ops.reference.paste_masks import paste_masks
from maskrcnn_multi.structures import Boxes, Instances

SCORE_FLOOR = 0.0
STAGES = 3


@pytest.fixture(params=["native", pytest.param("reference", marks=pytest.mark.slow)])
def op_path(request, monkeypatch):
    """The compiled CPU kernels, or every op on its PyTorch reference (slow tier: about a minute per test)."""
    if request.param == "native" and not native_kernels_available():
        pytest.skip("native CPU kernels not built (maskrcnn_multi._C missing): python setup.py build_ext --inplace")
    if request.param == "reference":
        _patch_has_kernel(monkeypatch)
    return request.param


@pytest.fixture(scope="module")
def zoo_dir(reference_dir):
    return reference_dir / "d2_zoo" / "cascade_mask_rcnn_FPN"


def _zoo_cfg(zoo_dir):
    cfg = get_cfg()
    cfg.merge_from_file(str(zoo_dir / "config.yaml"))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = str(zoo_dir / "model_final.pkl")
    return cfg


def _small_cascade_cfg():
    cfg = make_small_cfg(mask_on=True)
    cfg.MODEL.ROI_HEADS.NAME = "CascadeROIHeads"
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    return cfg


def test_names_and_shapes_equal_the_detectron2_checkpoint(zoo_dir):
    model = build_model(_zoo_cfg(zoo_dir))
    assert isinstance(model.roi_heads, CascadeROIHeads) and model.roi_heads.num_cascade_stages == STAGES
    with open(zoo_dir / "model_final.pkl", "rb") as handle:
        checkpoint = pickle.load(handle, encoding="latin1")["model"]
    ours = model.state_dict()
    assert sorted(set(ours) - set(checkpoint)) == [] and sorted(set(checkpoint) - set(ours)) == []
    for name, value in checkpoint.items():
        assert tuple(ours[name].shape) == tuple(value.shape), name
    for stage in range(STAGES):
        assert f"roi_heads.box_head.{stage}.fc1.weight" in ours
        assert ours[f"roi_heads.box_predictor.{stage}.bbox_pred.weight"].shape[0] == 4  # class-agnostic


# The fused graph rounds differently (~1e-5): with random weights the mask probabilities sit near 0.5,
# and a pixel within this of the threshold may flip either way. Only the graph's comparison leaves those out.
MASK_TIE = 1e-3


def _detections_and_ties(model, image, height, width):
    """The model's postprocessed detections and BoolTensor[N, H, W] of pasted mask pixels within MASK_TIE
    of the 0.5 threshold."""
    raw = model.inference([{"image": image, "height": height, "width": width}], do_postprocess=False)[0]
    boxes = raw.pred_boxes.tensor.clone()
    boxes[:, 0::2] *= width / raw.image_size[1]
    boxes[:, 1::2] *= height / raw.image_size[0]
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, width)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    probabilities = paste_masks(raw.pred_masks[keep, 0].float(), boxes[keep], height, width)
    instances = detector_postprocess(raw, height, width)
    torch.testing.assert_close(instances.pred_boxes.tensor, boxes[keep])
    return instances, ((probabilities - 0.5).abs() < MASK_TIE).numpy()


@pytest.mark.parametrize("runner", RUNNERS)
def test_model_matches_detectron2(op_path, zoo_dir, runner):
    """From inputs.pt, the model as built (every pixel compared) and the fused inference graph
    (channels_last; mask pixels tying the threshold left out)."""
    cfg = _zoo_cfg(zoo_dir)
    model = loaded_model(cfg, runner)
    inputs = torch.load(zoo_dir / "inputs.pt", weights_only=True)
    expected = json.loads((zoo_dir / "outputs_model.json").read_text())
    problems, compared = [], 0
    for name, image in inputs.items():
        height, width = expected[name]["image_size"]
        with torch.no_grad():
            if runner == "model":
                instances, ties = model([{"image": image, "height": height, "width": width}])[0]["instances"], None
            else:
                instances, ties = _detections_and_ties(model, image, height, width)
        assert instances.image_size == (height, width)
        problems += compare(ours_as_detections(instances), theirs_as_detections(expected[name]), name, SCORE_FLOOR, ties)
        compared += len(expected[name]["scores"])
    assert compared > 0
    assert not problems, f"{op_path} path, {runner}: {len(problems)} mismatches:\n" + "\n".join(problems[:20])


@pytest.mark.slow
def test_predictor_matches_detectron2(op_path, zoo_dir):
    """DefaultPredictor on the original images (its own resize; the fused graph by default, so mask
    pixels tying the threshold are left out)."""
    predictor = DefaultPredictor(_zoo_cfg(zoo_dir))
    expected = json.loads((zoo_dir / "outputs_predictor.json").read_text())
    paths = sorted(glob.glob(str(zoo_dir / "images" / "*.jpg")))
    assert paths, f"no images in {zoo_dir / 'images'}"
    problems = []
    for path in paths:
        name = os.path.basename(path)
        original = cv2.imread(path, cv2.IMREAD_COLOR)  # BGR, the config's INPUT.FORMAT
        instances = predictor(original)["instances"]
        assert len(instances) == len(expected[name]["scores"])
        # the ties of the same graph on the same resized input
        resized = predictor.aug.get_transform(original).apply_image(original)
        image = torch.as_tensor(np.ascontiguousarray(resized.astype("float32").transpose(2, 0, 1)))
        with torch.no_grad():
            tied, ties = _detections_and_ties(predictor.inference_model.graph(), image, *original.shape[:2])
        torch.testing.assert_close(tied.pred_boxes.tensor, instances.pred_boxes.tensor)
        problems += compare(ours_as_detections(instances), theirs_as_detections(expected[name]), name, SCORE_FLOOR, ties)
    assert not problems, f"{op_path} path: {len(problems)} mismatches:\n" + "\n".join(problems[:20])


def test_training_step_gives_detectron2_loss_names_and_finite_gradients():
    model = build_model(_small_cascade_cfg()).train()
    losses = model(make_random_batch())
    expected = {"loss_rpn_cls", "loss_rpn_loc", "loss_mask"}
    expected |= {f"{name}_stage{stage}" for name in ("loss_cls", "loss_box_reg") for stage in range(STAGES)}
    assert set(losses) == expected
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f"{name} = {value}"
    sum(losses.values()).backward()
    parameters = dict(model.named_parameters())
    for stage in range(STAGES):
        for name in (f"roi_heads.box_head.{stage}.fc1.weight", f"roi_heads.box_predictor.{stage}.cls_score.weight"):
            grad = parameters[name].grad
            assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_the_features_receive_the_stage_gradients_scaled_by_one_over_the_stages():
    features = torch.randn(5, 3, requires_grad=True)
    _ScaleGradient.apply(features, 1.0 / STAGES).mul(2.0).sum().backward()
    torch.testing.assert_close(features.grad, torch.full_like(features, 2.0 / STAGES))
    assert torch.equal(_ScaleGradient.apply(features, 0.5), features)


def _heads(training: bool) -> CascadeROIHeads:
    model = build_model(_small_cascade_cfg())
    return model.roi_heads.train(training)


def test_next_stage_proposals_are_the_boxes_detached_clipped_and_nonempty_in_training():
    boxes = torch.tensor([[-5.0, 2.0, 30.0, 40.0], [10.0, 10.0, 10.0, 20.0], [0.0, 0.0, 200.0, 90.0]],
                         requires_grad=True)
    for training, kept in ((True, 2), (False, 3)):
        proposals = _heads(training)._create_proposals_from_boxes([boxes * 1.0], [(64, 100)])
        result = proposals[0].proposal_boxes.tensor
        assert len(result) == kept and not result.requires_grad and proposals[0].image_size == (64, 100)
        assert result[0].tolist() == [0.0, 2.0, 30.0, 40.0] and result[-1].tolist() == [0.0, 0.0, 100.0, 64.0]


def test_each_stage_labels_its_boxes_with_its_own_iou_threshold():
    """A box at IoU 0.65 with the ground truth is foreground for stage 1 (IoU 0.6), background for stage 2 (0.7)."""
    heads = _heads(training=True)
    targets = Instances((100, 100))
    targets.gt_boxes = Boxes(torch.tensor([[0.0, 0.0, 20.0, 20.0]]))
    targets.gt_classes = torch.tensor([2])
    proposals = Instances((100, 100))
    proposals.proposal_boxes = Boxes(torch.tensor([[0.0, 0.0, 20.0, 13.0], [50.0, 50.0, 60.0, 60.0]]))  # IoU 0.65, 0
    for stage, first_class in ((1, 2), (2, heads.num_classes)):
        labelled = heads._match_and_label_boxes([proposals[torch.arange(2)]], stage, [targets])[0]
        assert labelled.gt_classes.tolist() == [first_class, heads.num_classes]
        assert labelled.gt_boxes.tensor[0].tolist() == [0.0, 0.0, 20.0, 20.0]


def test_inference_averages_the_stage_scores_and_keeps_the_last_stage_boxes():
    """With NMS off, each detection's score is the mean of the three stages' probabilities for its RoI."""
    model = build_model(_small_cascade_cfg()).eval()
    heads = model.roi_heads
    for predictor in heads.box_predictor:
        predictor.test_score_thresh, predictor.test_nms_thresh, predictor.test_topk_per_image = -1.0, 1.0, -1
    batch = make_random_batch(num_images=1, with_targets=False)
    with torch.no_grad():
        images = model.preprocess_image(batch)
        features = model.backbone(images.tensor)
        proposals, _ = model.proposal_generator(images, features)
        detections = heads._forward_box(features, proposals)[0]
        stage_probs, stage_proposals, stage_boxes = [], proposals, None
        pooled_inputs = [features[name] for name in heads.box_in_features]
        for stage in range(STAGES):
            if stage > 0:
                stage_proposals = heads._create_proposals_from_boxes(stage_boxes, [proposals[0].image_size])
            predictions = heads._run_stage(pooled_inputs, stage_proposals, stage)
            stage_probs.append(heads.box_predictor[stage].predict_probs(predictions, stage_proposals)[0])
            stage_boxes = heads.box_predictor[stage].predict_boxes(predictions, stage_proposals)
    mean_probs = sum(stage_probs) / STAGES
    num_rois, num_classes = mean_probs.shape[0], heads.num_classes
    assert len(detections) == num_rois * num_classes
    expected_scores = mean_probs[:, :-1].flatten().sort(descending=True).values
    torch.testing.assert_close(detections.scores.sort(descending=True).values, expected_scores)
    final_boxes = stage_boxes[0].clone()
    final_boxes[:, 0::2] = final_boxes[:, 0::2].clamp(0, proposals[0].image_size[1])
    final_boxes[:, 1::2] = final_boxes[:, 1::2].clamp(0, proposals[0].image_size[0])
    for box in detections.pred_boxes.tensor[:5]:
        assert (final_boxes - box).abs().sum(dim=1).min() < 1e-4


@pytest.mark.parametrize("key, value, message", [
    ("MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG", False, "CLS_AGNOSTIC_BBOX_REG"),
    ("MODEL.ROI_BOX_CASCADE_HEAD.IOUS", (0.5, 0.6), "IOUS"),
    ("MODEL.ROI_BOX_CASCADE_HEAD.IOUS", (0.4, 0.6, 0.7), r"IOUS\[0\] 0.4"),
])
def test_inconsistent_cascade_config_names_the_key(key, value, message):
    cfg = _small_cascade_cfg()
    node = cfg
    *parents, leaf = key.split(".")
    for part in parents:
        node = node[part]
    node[leaf] = value
    with pytest.raises(UserError, match=message):
        build_model(cfg)


@pytest.mark.parametrize("dtype", [None, torch.bfloat16])
def test_inference_graph_fuses_every_stage_and_runs_in_half_precision(dtype):
    from maskrcnn_multi.modeling.inference_graph import FusedLinear, _Float32Layer, build_inference_graph

    model = build_model(_small_cascade_cfg()).eval()
    graph = build_inference_graph(model, dtype=dtype, memory_format=torch.channels_last)
    for stage in range(STAGES):
        assert isinstance(graph.roi_heads.box_head[stage].fc1, FusedLinear)
        if dtype is not None:  # the stage's scores and deltas stay float32
            assert isinstance(graph.roi_heads.box_predictor[stage].cls_score, _Float32Layer)
    assert isinstance(model.roi_heads.box_head[0].fc1, torch.nn.Linear)  # the model itself is untouched
    batch = make_random_batch(num_images=1, with_targets=False)
    with torch.no_grad():
        expected = model(batch)[0]["instances"]
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            instances = graph(batch)[0]["instances"]
    assert len(instances) > 0 and len(expected) > 0
    assert torch.isfinite(instances.scores).all() and torch.isfinite(instances.pred_boxes.tensor).all()
    if dtype is None:  # exact mode: the same detections up to rounding (bf16 moves scores across the threshold)
        assert len(instances) == len(expected)
        torch.testing.assert_close(instances.scores, expected.scores, rtol=1e-4, atol=1e-5)
