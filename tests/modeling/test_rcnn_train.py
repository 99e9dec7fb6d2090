"""GeneralizedRCNN end to end on random data: Mask R-CNN and Faster R-CNN, training and inference."""
import pytest
import torch

from rcnn_helpers import make_random_batch, make_small_cfg
from maskrcnn_multi.modeling import GeneralizedRCNN, build_model

MASK_LOSSES = {"loss_rpn_cls", "loss_rpn_loc", "loss_cls", "loss_box_reg", "loss_mask"}


def test_mask_rcnn_training_step_gives_finite_losses_and_gradients():
    model = build_model(make_small_cfg(mask_on=True))
    assert isinstance(model, GeneralizedRCNN)
    model.train()
    losses = model(make_random_batch())
    assert set(losses) == MASK_LOSSES
    for name, value in losses.items():
        assert value.dim() == 0 and torch.isfinite(value), f"{name} = {value}"
    sum(losses.values()).backward()
    for name in ("proposal_generator.rpn_head.conv.weight", "roi_heads.box_predictor.cls_score.weight",
                 "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.mask_head.predictor.weight",
                 "backbone.fpn_output2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0, name


def test_faster_rcnn_trains_and_predicts():
    cfg = make_small_cfg(mask_on=False)
    model = build_model(cfg)
    assert not any(name.startswith("roi_heads.mask_head") for name, _ in model.named_parameters())
    losses = model.train()(make_random_batch(seed=1))
    assert set(losses) == MASK_LOSSES - {"loss_mask"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()

    model.eval()
    cfg_scores = model.roi_heads.box_predictor
    cfg_scores.test_score_thresh = 0.0  # random weights: keep whatever comes out
    with torch.no_grad():
        outputs = model(make_random_batch(num_images=1, height=96, width=120, with_targets=False))
    instances = outputs[0]["instances"]
    assert instances.image_size == (96, 120)
    assert not instances.has("pred_masks")
    assert len(instances) <= cfg.TEST.DETECTIONS_PER_IMAGE
    assert instances.pred_boxes.tensor.shape == (len(instances), 4)


def test_mask_rcnn_inference_rescales_to_requested_size():
    model = build_model(make_small_cfg(mask_on=True)).eval()
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    batch = make_random_batch(num_images=2, with_targets=False)
    batch[1]["height"], batch[1]["width"] = 256, 320  # the original was twice the input's size
    with torch.no_grad():
        outputs = model(batch)
    first, second = outputs[0]["instances"], outputs[1]["instances"]
    assert first.image_size == (128, 160) and second.image_size == (256, 320)
    assert second.pred_masks.shape[1:] == (256, 320) and second.pred_masks.dtype == torch.bool
    assert len(second) > 0 and second.pred_boxes.tensor[:, 2].max() <= 320
    assert set(second.get_fields()) == {"pred_boxes", "scores", "pred_classes", "pred_masks"}


def test_image_without_ground_truth_still_trains():
    model = build_model(make_small_cfg(mask_on=True)).train()
    batch = make_random_batch(num_images=2)
    batch[1]["instances"] = batch[1]["instances"][torch.zeros(len(batch[1]["instances"]), dtype=torch.bool)]
    losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())


@pytest.mark.parametrize("key,value,message", [
    ("META_ARCHITECTURE", "Nope", "MODEL.META_ARCHITECTURE 'Nope'"),
    ("ROI_HEADS.NAME", "NoSuchROIHeads", "MODEL.ROI_HEADS.NAME 'NoSuchROIHeads'"),
    ("PROPOSAL_GENERATOR.NAME", "RRPN", "MODEL.PROPOSAL_GENERATOR.NAME 'RRPN'"),
])
def test_unknown_component_name_is_a_one_line_error(key, value, message):
    cfg = make_small_cfg()
    node = cfg.MODEL
    *parents, leaf = key.split(".")
    for parent in parents:
        node = node[parent]
    node[leaf] = value
    with pytest.raises(ValueError, match=message.replace(".", r"\.") + r".*choose from"):
        build_model(cfg)


def test_static_shape_inputs_keep_their_unpadded_size():
    """INPUT.FIX_SHAPE pads in the data layer; "image_size" must still bound proposals and scale outputs."""
    model = build_model(make_small_cfg(mask_on=True)).eval()
    image = torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)
    padded = torch.zeros(3, 160, 192, dtype=torch.uint8)
    padded[:, :96, :128] = image
    batched = [{"image": padded, "image_size": (96, 128), "height": 192, "width": 256}]
    assert model.preprocess_image(batched).image_sizes == [(96, 128)]
    with torch.no_grad():
        instances = model(batched)[0]["instances"]
    assert instances.image_size == (192, 256)
    boxes = instances.pred_boxes.tensor
    assert (boxes[:, 0::2] <= 256).all() and (boxes[:, 1::2] <= 192).all()
    assert instances.pred_masks.shape[1:] == (192, 256)


def test_class_agnostic_box_and_mask_train_and_predict():
    """ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG and ROI_MASK_HEAD.CLS_AGNOSTIC_MASK: one box and one mask per RoI."""
    cfg = make_small_cfg(mask_on=True)
    cfg.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = True
    cfg.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = True
    model = build_model(cfg)
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4
    assert model.roi_heads.mask_head.predictor.out_channels == 1
    losses = model.train()(make_random_batch(seed=2))
    assert set(losses) == MASK_LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    model.roi_heads.box_predictor.test_score_thresh = 0.0
    with torch.no_grad():
        instances = model(make_random_batch(num_images=1, with_targets=False))[0]["instances"]
    assert len(instances) > 0 and instances.pred_masks.shape == (len(instances), 128, 160)
    # every class of one RoI shares its box: detections of one RoI with different classes coincide
    boxes, classes = instances.pred_boxes.tensor, instances.pred_classes
    same_box = (boxes[:, None] == boxes[None]).all(dim=-1) & (classes[:, None] != classes[None])
    assert len(instances) > cfg.MODEL.ROI_HEADS.NUM_CLASSES and same_box.any()
