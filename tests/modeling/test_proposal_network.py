"""ProposalNetwork (detectron2's RPN-only meta-architecture, rpn_R_50_{C4,FPN}_1x): RPN losses in
training, per image ``{"proposals": Instances}`` in the requested output size at inference."""
import torch

from rcnn_helpers import make_random_batch, make_small_c4_cfg, make_small_cfg
from maskrcnn_multi.modeling import ProposalNetwork, build_model


def _rpn_only(cfg):
    cfg.MODEL.META_ARCHITECTURE = "ProposalNetwork"
    cfg.MODEL.MASK_ON = False
    return cfg


def test_trains_with_rpn_losses_only():
    model = build_model(_rpn_only(make_small_c4_cfg())).train()
    assert isinstance(model, ProposalNetwork) and not hasattr(model, "roi_heads")
    losses = model(make_random_batch(num_images=2))
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(value) for value in losses.values())
    sum(losses.values()).backward()
    assert model.proposal_generator.rpn_head.conv.weight.grad.abs().sum() > 0


def test_proposals_are_rescaled_to_the_output_size():
    for cfg in (_rpn_only(make_small_c4_cfg()), _rpn_only(make_small_cfg())):
        model = build_model(cfg).eval()
        batch = make_random_batch(num_images=2, height=96, width=128, with_targets=False)
        batch[1]["height"], batch[1]["width"] = 192, 256
        with torch.no_grad():
            outputs = model(batch)
            scaled = model(batch[1:])[0]["proposals"]
            unscaled = model([dict(batch[1], height=96, width=128)])[0]["proposals"]
        first, second = outputs[0]["proposals"], outputs[1]["proposals"]
        assert set(first.get_fields()) == {"proposal_boxes", "objectness_logits"}
        assert first.image_size == (96, 128) and second.image_size == (192, 256)
        assert 0 < len(first) <= cfg.MODEL.RPN.POST_NMS_TOPK_TEST
        boxes = second.proposal_boxes.tensor
        assert (boxes[:, 0::2] <= 256).all() and (boxes[:, 1::2] <= 192).all() and (boxes >= 0).all()
        # sorted by objectness, as detectron2 returns them
        assert (first.objectness_logits[:-1] >= first.objectness_logits[1:]).all()
        torch.testing.assert_close(scaled.proposal_boxes.tensor, unscaled.proposal_boxes.tensor * 2)
        torch.testing.assert_close(scaled.objectness_logits, unscaled.objectness_logits)
