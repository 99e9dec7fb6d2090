"""ROIPooler: FPN level assignment and pooling from the right map."""
import pytest
import torch

from maskrcnn_multi.modeling.poolers import ROIPooler, assign_boxes_to_levels, convert_boxes_to_pooler_format
from maskrcnn_multi.ops import roi_align
from maskrcnn_multi.structures import Boxes


def _square(side, x0=0.0):
    return [x0, 0.0, x0 + side, side]


def test_canonical_level_rule():
    boxes = Boxes(torch.tensor([_square(224), _square(112), _square(56), _square(20), _square(1000), _square(447)]))
    levels = assign_boxes_to_levels([boxes], min_level=2, max_level=5, canonical_box_size=224, canonical_level=4)
    # 224 -> P4, 112 -> P3, 56 -> P2, 20 clamps to P2, 1000 clamps to P5, 447 < 448 stays P4
    assert levels.tolist() == [2, 1, 0, 0, 3, 2]


def test_pooler_format_prepends_image_index():
    rois = convert_boxes_to_pooler_format([Boxes(torch.ones(2, 4)), Boxes(torch.zeros(0, 4)), Boxes(torch.ones(1, 4))])
    assert rois[:, 0].tolist() == [0.0, 0.0, 2.0]


def test_each_box_is_pooled_from_its_level():
    torch.manual_seed(0)
    features = [torch.rand(2, 3, 64, 64), torch.rand(2, 3, 32, 32)]  # strides 4 and 8
    pooler = ROIPooler(output_size=4, scales=(1 / 4, 1 / 8), sampling_ratio=0, pooler_type="ROIAlignV2",
                       canonical_box_size=224, canonical_level=4)
    assert (pooler.min_level, pooler.max_level) == (2, 3)
    small, large = _square(40, 10), _square(150, 30)  # 40 -> level 2 (index 0), 150 -> level 3 (index 1)
    box_lists = [Boxes(torch.tensor([small, large])), Boxes(torch.tensor([large]))]
    pooled = pooler(features, box_lists)
    assert pooled.shape == (3, 3, 4, 4)
    torch.testing.assert_close(pooled[0], roi_align(features[0], torch.tensor([[0.0] + small]), (4, 4), 0.25, 0, True)[0])
    torch.testing.assert_close(pooled[1], roi_align(features[1], torch.tensor([[0.0] + large]), (4, 4), 0.125, 0, True)[0])
    torch.testing.assert_close(pooled[2], roi_align(features[1], torch.tensor([[1.0] + large]), (4, 4), 0.125, 0, True)[0])


def test_bad_scales_are_reported():
    with pytest.raises(ValueError, match="powers of 1/2"):
        ROIPooler(7, scales=(1 / 3,), sampling_ratio=0, pooler_type="ROIAlignV2")
    with pytest.raises(ValueError, match="pooler type 'ROIPool'"):
        ROIPooler(7, scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIPool")


def test_half_precision_features_keep_full_precision_box_coordinates():
    """Under AMP the features are bf16; the boxes must not be rounded to bf16 before pooling."""
    from maskrcnn_multi.modeling.poolers import ROIAlign

    # features oscillate along x, so a box shifted by a pixel pools visibly different values
    features = torch.sin(torch.arange(1000, dtype=torch.float32) * 1.3).expand(2, 1, 8, 1000).contiguous()
    rois = torch.tensor([[1.0, 801.3, 1.0, 803.7, 5.0]])  # bf16 would round 801.3 and 803.7 to 800 and 804
    pooler = ROIAlign((2, 2), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    exact = pooler(features, rois)
    pooled = pooler(features.bfloat16(), rois)
    assert pooled.dtype == torch.bfloat16
    torch.testing.assert_close(pooled.float(), exact, rtol=1e-2, atol=0.0)
