"""detector_postprocess: back to the original image's size."""
import torch

from maskrcnn_multi.modeling.postprocessing import detector_postprocess
from maskrcnn_multi.structures import Boxes, Instances


def test_boxes_scale_clip_and_masks_paste():
    results = Instances((50, 100))
    results.pred_boxes = Boxes(torch.tensor([[10.0, 10.0, 30.0, 20.0], [90.0, 40.0, 120.0, 60.0],
                                             [60.0, 50.0, 70.0, 55.0]]))
    results.scores = torch.tensor([0.9, 0.8, 0.7])
    results.pred_classes = torch.tensor([0, 1, 2])
    results.pred_masks = torch.ones(3, 1, 28, 28)
    output = detector_postprocess(results, 100, 200)
    assert output.image_size == (100, 200)
    # the third box lies below the image: it clips to zero height at the bottom edge and is dropped
    assert len(output) == 2
    torch.testing.assert_close(output.scores, torch.tensor([0.9, 0.8]))
    torch.testing.assert_close(output.pred_boxes.tensor[:2], torch.tensor([[20.0, 20.0, 60.0, 40.0],
                                                                           [180.0, 80.0, 200.0, 100.0]]))
    assert output.pred_masks.shape == (len(output), 100, 200) and output.pred_masks.dtype == torch.bool
    assert output.pred_masks[0, 20:40, 20:60].all() and not output.pred_masks[0, 50:, :].any()
