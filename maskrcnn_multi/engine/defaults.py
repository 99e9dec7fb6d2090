"""``DefaultPredictor``: one BGR image in, detections out (detectron2's, same behaviour), and a batch
call: a list of images in, a list of outputs out, run as one padded batch."""
import logging
from typing import Dict, List, Sequence, Union

import numpy as np
import torch

from maskrcnn_multi.backends import Backend, get_backend
from maskrcnn_multi.config.errors import UserError
from maskrcnn_multi.checkpoint import DetectionCheckpointer
from maskrcnn_multi.data.transforms import ResizeShortestEdge
from maskrcnn_multi.modeling import build_model

from .inference import for_inference
from .runtime import apply_device_settings

__all__ = ["DefaultPredictor", "prepare_device"]

logger = logging.getLogger(__name__)


def prepare_device(device: str) -> Backend:
    """The backend of MODEL.DEVICE: validates the name and loads what the device needs (torch_npu)."""
    return get_backend(device)


class DefaultPredictor:
    """Build the model from ``cfg`` in eval mode, load ``cfg.MODEL.WEIGHTS``, and predict single images.

    Call it with an ``np.ndarray[H, W, 3]`` uint8 image in BGR order (as ``cv2.imread`` gives); it resizes
    with ResizeShortestEdge(INPUT.MIN_SIZE_TEST, INPUT.MAX_SIZE_TEST), converts to INPUT.FORMAT and returns
    the model's dict for that image: ``{"instances": Instances}`` in the original image's coordinates.

    Called with a list of such images (any sizes), it runs them as one batch and returns a list with
    one dict per image, in order; ``predictor.batch(images)`` is the same call. The batch is padded
    to its largest image (README, "Batched inference": detections equal the single-image ones up to
    rounding unless the images' padded sizes differ).
    """

    def __init__(self, cfg):
        self.cfg = cfg.clone()
        if self.cfg.INPUT.FORMAT not in ("RGB", "BGR"):
            raise UserError(f"DefaultPredictor: INPUT.FORMAT '{self.cfg.INPUT.FORMAT}' (choose from: RGB, BGR)")
        self.backend = prepare_device(self.cfg.MODEL.DEVICE)
        apply_device_settings(self.cfg, self.backend, training=False)
        self.model = build_model(self.cfg)
        self.model.eval()
        self.input_format = self.cfg.INPUT.FORMAT
        DetectionCheckpointer(self.model).load(self.cfg.MODEL.WEIGHTS)
        self._inference_model = None
        min_size = self.cfg.INPUT.MIN_SIZE_TEST
        self.aug = ResizeShortestEdge([min_size, min_size], self.cfg.INPUT.MAX_SIZE_TEST)

    def __call__(self, original_image: Union[np.ndarray, Sequence[np.ndarray]]) -> Union[Dict, List[Dict]]:
        """original_image: np.ndarray[H, W, 3] uint8, BGR -> ``{"instances": Instances}``; a list of
        them -> a list of such dicts (``batch``)."""
        if isinstance(original_image, (list, tuple)):
            return self.batch(original_image)
        return self._run([self._model_input(original_image)])[0]

    def batch(self, original_images: Sequence[np.ndarray]) -> List[Dict]:
        """A list of np.ndarray[H, W, 3] uint8 BGR images -> one ``{"instances": Instances}`` per image,
        in the order given, each in its own image's coordinates; one forward pass for all of them."""
        inputs = [self._model_input(image, f" (image {index} of the batch)") for index, image in enumerate(original_images)]
        return self._run(inputs) if inputs else []

    def _run(self, inputs: List[Dict]) -> List[Dict]:
        with torch.no_grad():
            return self.inference_model(inputs)

    def _model_input(self, original_image: np.ndarray, where: str = "") -> Dict:
        """One image as the model takes it: resized, in INPUT.FORMAT, CHW float32, with its original size."""
        if not isinstance(original_image, np.ndarray) or original_image.ndim != 3 or original_image.shape[2] != 3:
            shape = getattr(original_image, "shape", None)
            raise ValueError(f"DefaultPredictor expects an HxWx3 BGR np.ndarray, got {type(original_image).__name__} "
                             f"of shape {shape}{where}")
        if self.input_format == "RGB":
            original_image = original_image[:, :, ::-1]
        height, width = original_image.shape[:2]
        image = self.aug.get_transform(original_image).apply_image(original_image)
        image = torch.as_tensor(np.ascontiguousarray(image.astype("float32").transpose(2, 0, 1)))
        return {"image": image, "height": height, "width": width}

    @property
    def inference_model(self):
        """What runs: ``self.model`` as inference runs it (``engine.inference``: the fused graph in the
        configured precision and layout; ``self.model`` itself is unchanged). Replacing ``self.model``
        (as detectron2's users may) is honoured; a plain callable is called as it is."""
        if not isinstance(self.model, torch.nn.Module):
            return self.model
        if self._inference_model is None or self._inference_model.model is not self.model:
            self._inference_model = for_inference(self.model, self.cfg, self.backend)
        return self._inference_model
