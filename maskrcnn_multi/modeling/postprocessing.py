"""Map detections from the network's input size back to the original image (detectron2's)."""
from maskrcnn_multi.ops import paste_masks_in_image
from maskrcnn_multi.structures import Instances

__all__ = ["detector_postprocess"]


def detector_postprocess(results: Instances, output_height: int, output_width: int,
                         mask_threshold: float = 0.5) -> Instances:
    """Rescale ``results`` (predicted on the resized input) to an ``output_height x output_width`` image.

    Boxes are scaled and clipped; boxes left empty are dropped; ``pred_masks`` Tensor[R, 1, M, M]
    (probabilities in box coordinates) become BoolTensor[R, H, W] pasted into the full image.
    Returns a new Instances of image size (output_height, output_width).
    """
    scale_x = output_width / results.image_size[1]
    scale_y = output_height / results.image_size[0]
    results = Instances((output_height, output_width), **results.get_fields())

    if results.has("pred_boxes"):
        output_boxes = results.pred_boxes
    elif results.has("proposal_boxes"):
        output_boxes = results.proposal_boxes
    else:
        output_boxes = None

    if output_boxes is not None:
        output_boxes.scale(scale_x, scale_y)
        output_boxes.clip(results.image_size)
        results = results[output_boxes.nonempty()]

    if results.has("pred_masks"):
        masks = results.pred_masks
        if masks.dim() == 4:
            masks = masks[:, 0, :, :]
        results.pred_masks = paste_masks_in_image(masks, results.pred_boxes.tensor,
                                                  (output_height, output_width), threshold=mask_threshold)
    return results
