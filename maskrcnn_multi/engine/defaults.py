"""``DefaultPredictor``: one BGR image in, detections out (detectron2's, same behaviour)."""
import logging
from typing import Dict

import numpy as np
import torch

from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.checkpoint import DetectionCheckpointer
from maskrcnn_multi.data.transforms import ResizeShortestEdge
from maskrcnn_multi.modeling import build_model

__all__ = ["DefaultPredictor", "prepare_device"]

logger = logging.getLogger(__name__)


def prepare_device(device: str) -> None:
    """Validate MODEL.DEVICE and load what the device needs (e.g. torch_npu) through the backend registry."""
    try:
        from maskrcnn_multi.backends import get_backend
    except ImportError:  # the backends package predates this helper on some checkouts
        logger.debug("maskrcnn_multi.backends.get_backend not available; using MODEL.DEVICE '%s' as is", device)
        return
    get_backend(device)


class DefaultPredictor:
    """Build the model from ``cfg`` in eval mode, load ``cfg.MODEL.WEIGHTS``, and predict single images.

    Call it with an ``np.ndarray[H, W, 3]`` uint8 image in BGR order (as ``cv2.imread`` gives); it resizes
    with ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST), converts to INPUT.FORMAT and returns
    the model's dict for that image: ``{"instances": Instances}`` in the original image's coordinates.
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        if self.cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise UserError(f"DefaultPredictor: INPUT.FORMAT '{self.cfg.INPUT.FORMAT}' (choose from: RGB, BGR)")
        prepare_device(self.cfg.MODEL.DEVICE)
        self.model = build_model(self.cfg)
        self.model.eval()
        self.input_format = self.cfg.INPUT.FORMAT
        DetectionCheckpointer(self.model).load(self.cfg.MODEL.WEIGHTS)
        min_size = self.cfg.INPUT.MIN_SIZE_TEST
        self.aug = ResizeShortestEdge([min_size, min_size], self.cfg.INPUT.MAX_SIZE_TEST)

    def __call__(self, original_image: np.ndarray) -> Dict:
        """original_image: np.ndarray[H, W, 3] uint8, BGR -> ``{"instances": Instances}``."""
        if not isinstance(original_image, np.ndarray) or original_image.ndim != 3 or original_image.shape[2] != 3:
            shape = getattr(original_image, "shape", None)
            raise ValueError(f"DefaultPredictor expects an HxWx3 BGR np.ndarray, got {type(original_image).__name__} "
                             f"of shape {shape}")
        with torch.no_grad():
            if self.input_format == "RGB":
                original_image = original_image[:, :, ::-1]
            height, width = original_image.shape[:2]
            image = self.aug.get_transform(original_image).apply_image(original_image)
            image = torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))
            inputs = {"image": image, "height": height, "width": width}
            return self.model([inputs])[0]
