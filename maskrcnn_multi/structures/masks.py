"""Instance masks: polygons, full-image bitmaps, and per-box inference masks (detectron2's)."""
from __future__ import annotations

import copy
import itertools
from typing import Any, Iterator, List, Sequence, Union

import numpy as np
import pycocotools.mask as mask_util
import torch

from .boxes import Boxes


def polygon_area(x: np.ndarray, y: np.ndarray) -> float:
    """Shoelace area of one polygon given its x and y coordinate arrays."""
    return 0.5 * np.abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


def polygons_to_bitmask(polygons: List[np.ndarray], height: int, width: int) -> np.ndarray:
    """Rasterize one instance's polygons (each a flat ``[x0, y0, x1, y1, ...]``) with pycocotools.

    Returns a bool ``ndarray[height, width]``.
    """
    if len(polygons) == 0:
        # COCOAPI does not support empty polygons
        return np.zeros((height, width)).astype(bool)
    if not all(np.isfinite(np.asarray(polygon, dtype=np.float64)).all() for polygon in polygons):
        raise ValueError("polygons_to_bitmask: a polygon has NaN or infinite coordinates")
    rles = mask_util.frPyObjects(polygons, height, width)
    rle = mask_util.merge(rles)
    return mask_util.decode(rle).astype(bool)


def rasterize_polygons_within_box(polygons: List[np.ndarray], box: np.ndarray, mask_size: int) -> torch.Tensor:
    """Rasterize polygons into a ``mask_size x mask_size`` grid spanning ``box = [x0, y0, x1, y1]``.

    Same arithmetic as detectron2 (shift by the box corner, scale by ``mask_size / max(side, 0.1)``,
    rasterize with pycocotools). Returns a bool ``Tensor[mask_size, mask_size]``.
    """
    w, h = box[2] - box[0], box[3] - box[1]
    polygons = copy.deepcopy(polygons)
    for p in polygons:
        p[0::2] = p[0::2] - box[0]
        p[1::2] = p[1::2] - box[1]
    # max() to avoid division by a tiny side
    ratio_h = mask_size / max(h, 0.1)
    ratio_w = mask_size / max(w, 0.1)
    if ratio_h == ratio_w:
        for p in polygons:
            p *= ratio_h
    else:
        for p in polygons:
            p[0::2] *= ratio_w
            p[1::2] *= ratio_h
    return torch.from_numpy(polygons_to_bitmask(polygons, mask_size, mask_size))


def _boxes_tensor(boxes: Union[Boxes, torch.Tensor]) -> torch.Tensor:
    return boxes.tensor if isinstance(boxes, Boxes) else boxes


class BitMasks:
    """Full-image masks: a bool ``Tensor[N, H, W]``."""

    def __init__(self, tensor: Union[torch.Tensor, np.ndarray]):
        if isinstance(tensor, torch.Tensor):
            tensor = tensor.to(torch.bool)
        else:
            tensor = torch.as_tensor(tensor, dtype=torch.bool)
        if tensor.dim() != 3:
            raise ValueError(f"BitMasks expects a Tensor[N, H, W], got shape {tuple(tensor.shape)}")
        self.image_size = tensor.shape[1:]
        self.tensor = tensor

    def to(self, *args: Any, **kwargs: Any) -> "BitMasks":
        return BitMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "BitMasks":
        if isinstance(item, int):
            return BitMasks(self.tensor[item].unsqueeze(0))
        selected = self.tensor[item]
        if selected.dim() != 3:
            raise IndexError(f"indexing BitMasks with {item} gave shape {tuple(selected.shape)}, not (K, H, W)")
        return BitMasks(selected)

    def __iter__(self) -> Iterator[torch.Tensor]:
        yield from self.tensor

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __repr__(self) -> str:
        return f"BitMasks(num_instances={len(self)})"

    def nonempty(self) -> torch.Tensor:
        """``BoolTensor[N]``: True for masks with at least one set pixel."""
        return self.tensor.flatten(1).any(dim=1)

    def area(self) -> torch.Tensor:
        """``Tensor[N]`` int64 count of set pixels."""
        return self.tensor.sum(dim=(1, 2))

    @staticmethod
    def from_polygon_masks(
        polygon_masks: Union["PolygonMasks", List[List[np.ndarray]]], height: int, width: int
    ) -> "BitMasks":
        """Rasterize every instance's polygons into a ``height x width`` bitmap."""
        if isinstance(polygon_masks, PolygonMasks):
            polygon_masks = polygon_masks.polygons
        masks = [polygons_to_bitmask(p, height, width) for p in polygon_masks]
        if len(masks):
            return BitMasks(torch.stack([torch.from_numpy(m) for m in masks]))
        return BitMasks(torch.empty(0, height, width, dtype=torch.bool))

    def crop_and_resize(self, boxes: Union[Boxes, torch.Tensor], mask_size: int) -> torch.Tensor:
        """Crop mask i to ``boxes[i]`` and resample to ``mask_size x mask_size``.

        ``boxes``: ``Tensor[N, 4]`` (or Boxes) in image coordinates. Uses ``ops.roi_align`` with
        ``aligned=True, sampling_ratio=0`` then ``>= 0.5``, as detectron2. Returns a bool ``Tensor[N, M, M]``.
        """
        from maskrcnn_multi.ops import roi_align

        boxes = _boxes_tensor(boxes)
        if len(boxes) != len(self):
            raise ValueError(f"BitMasks.crop_and_resize: {len(boxes)} boxes for {len(self)} masks")
        device = self.tensor.device
        if len(self) == 0:
            return torch.empty(0, mask_size, mask_size, dtype=torch.bool, device=device)
        batch_inds = torch.arange(len(boxes), device=device).to(dtype=boxes.dtype)[:, None]
        rois = torch.cat([batch_inds, boxes.to(device=device)], dim=1)
        bit_masks = self.tensor.to(dtype=torch.float32)
        rois = rois.to(dtype=torch.float32)
        output = roi_align(
            bit_masks[:, None, :, :], rois, (mask_size, mask_size), spatial_scale=1.0, sampling_ratio=0, aligned=True
        ).squeeze(1)
        return output >= 0.5

    def get_bounding_boxes(self) -> Boxes:
        """Tight boxes around each mask (``x1 = last set column + 1``); empty masks give zeros."""
        boxes = torch.zeros(self.tensor.shape[0], 4, dtype=torch.float32)
        x_any = torch.any(self.tensor, dim=1)
        y_any = torch.any(self.tensor, dim=2)
        for idx in range(self.tensor.shape[0]):
            x = torch.where(x_any[idx, :])[0]
            y = torch.where(y_any[idx, :])[0]
            if len(x) > 0 and len(y) > 0:
                boxes[idx, :] = torch.as_tensor([x[0], y[0], x[-1] + 1, y[-1] + 1], dtype=torch.float32)
        return Boxes(boxes)

    @staticmethod
    def cat(bitmasks_list: List["BitMasks"]) -> "BitMasks":
        if len(bitmasks_list) == 0 or not all(isinstance(b, BitMasks) for b in bitmasks_list):
            raise TypeError("BitMasks.cat expects a non-empty list of BitMasks")
        return BitMasks(torch.cat([bm.tensor for bm in bitmasks_list], dim=0))


class PolygonMasks:
    """Polygon masks: ``polygons[i]`` is the list of polygons of instance i, each a float64
    ``ndarray[2K]`` of ``x0, y0, x1, y1, ...`` in image coordinates (K >= 3)."""

    def __init__(self, polygons: List[List[Union[torch.Tensor, np.ndarray, Sequence[float]]]]):
        if not isinstance(polygons, list):
            raise ValueError(f"PolygonMasks expects a list of lists of polygons, got {type(polygons).__name__}")

        def process_polygon(polygon: Any) -> np.ndarray:
            if isinstance(polygon, torch.Tensor):
                polygon = polygon.detach().cpu().numpy()
            polygon = np.asarray(polygon).astype("float64")
            if len(polygon) % 2 != 0 or len(polygon) < 6:
                raise ValueError(f"a polygon needs an even number >= 6 of coordinates, got {len(polygon)}")
            if not np.isfinite(polygon).all():
                # pycocotools would rasterize it over a near-infinite extent (memory grows until killed)
                raise ValueError(f"a polygon has NaN or infinite coordinates: {polygon.tolist()[:8]}")
            return polygon

        def process_instance(polygons_per_instance: Any) -> List[np.ndarray]:
            if not isinstance(polygons_per_instance, list):
                raise ValueError(
                    f"PolygonMasks: each instance must be a list of polygons, got {type(polygons_per_instance).__name__}"
                )
            return [process_polygon(p) for p in polygons_per_instance]

        self.polygons: List[List[np.ndarray]] = [process_instance(p) for p in polygons]

    def to(self, *args: Any, **kwargs: Any) -> "PolygonMasks":
        """Polygons live on the host as numpy arrays; ``to`` is a no-op kept for Instances.to."""
        return self

    @property
    def device(self) -> torch.device:
        return torch.empty(0).device

    def get_bounding_boxes(self) -> Boxes:
        """Tight ``Boxes`` around each instance's polygons (float32)."""
        boxes = torch.zeros(len(self.polygons), 4, dtype=torch.float32)
        for idx, polygons_per_instance in enumerate(self.polygons):
            minxy = torch.as_tensor([float("inf"), float("inf")], dtype=torch.float32)
            maxxy = torch.zeros([2], dtype=torch.float32)
            for polygon in polygons_per_instance:
                coords = torch.from_numpy(polygon).view(-1, 2).to(dtype=torch.float32)
                minxy = torch.min(minxy, torch.min(coords, dim=0).values)
                maxxy = torch.max(maxxy, torch.max(coords, dim=0).values)
            boxes[idx, :2] = minxy
            boxes[idx, 2:] = maxxy
        return Boxes(boxes)

    def nonempty(self) -> torch.Tensor:
        """``BoolTensor[N]``: True for instances with at least one polygon."""
        return torch.from_numpy(np.asarray([len(p) > 0 for p in self.polygons], dtype=bool))

    def __getitem__(self, item: Union[int, slice, List[int], torch.Tensor]) -> "PolygonMasks":
        """Index with an int, a slice, a list of ints, a BoolTensor[N] or an int64 index tensor."""
        if isinstance(item, int):
            selected = [self.polygons[item]]
        elif isinstance(item, slice):
            selected = self.polygons[item]
        elif isinstance(item, list):
            selected = [self.polygons[i] for i in item]
        elif isinstance(item, torch.Tensor):
            if item.dtype == torch.bool:
                if item.dim() != 1:
                    raise IndexError(f"PolygonMasks: a bool index must be 1-D, got shape {tuple(item.shape)}")
                item = item.nonzero().squeeze(1).cpu().numpy().tolist()
            elif item.dtype in (torch.int32, torch.int64):
                item = item.cpu().numpy().tolist()
            else:
                raise IndexError(f"PolygonMasks: unsupported index tensor dtype {item.dtype}")
            selected = [self.polygons[i] for i in item]
        else:
            raise IndexError(f"PolygonMasks: unsupported index type {type(item).__name__}")
        return PolygonMasks(selected)

    def __iter__(self) -> Iterator[List[np.ndarray]]:
        return iter(self.polygons)

    def __repr__(self) -> str:
        return f"PolygonMasks(num_instances={len(self.polygons)})"

    def __len__(self) -> int:
        return len(self.polygons)

    def crop_and_resize(self, boxes: Union[Boxes, torch.Tensor], mask_size: int) -> torch.Tensor:
        """Rasterize instance i's polygons inside ``boxes[i]`` on a ``mask_size x mask_size`` grid.

        ``boxes``: ``Tensor[N, 4]`` (or Boxes) in image coordinates. Rasterization runs on the host
        (pycocotools) and the result comes back on ``boxes``' device. Returns a bool ``Tensor[N, M, M]``.
        """
        boxes = _boxes_tensor(boxes)
        if len(boxes) != len(self):
            raise ValueError(f"PolygonMasks.crop_and_resize: {len(boxes)} boxes for {len(self)} masks")
        device = boxes.device
        # polygons are many small arrays: the host is the right place to rasterize them
        host_boxes = boxes.detach().cpu()
        results = [
            rasterize_polygons_within_box(poly, box.numpy(), mask_size) for poly, box in zip(self.polygons, host_boxes)
        ]
        if len(results) == 0:
            return torch.empty(0, mask_size, mask_size, dtype=torch.bool, device=device)
        return torch.stack(results, dim=0).to(device=device)

    def area(self) -> torch.Tensor:
        """``Tensor[N]`` float: summed shoelace area of each instance's polygons."""
        areas = []
        for polygons_per_instance in self.polygons:
            area_per_instance = 0
            for p in polygons_per_instance:
                area_per_instance += polygon_area(p[0::2], p[1::2])
            areas.append(area_per_instance)
        return torch.tensor(areas)

    @staticmethod
    def cat(polymasks_list: List["PolygonMasks"]) -> "PolygonMasks":
        if len(polymasks_list) == 0 or not all(isinstance(p, PolygonMasks) for p in polymasks_list):
            raise TypeError("PolygonMasks.cat expects a non-empty list of PolygonMasks")
        return PolygonMasks(list(itertools.chain.from_iterable(pm.polygons for pm in polymasks_list)))


class ROIMasks:
    """Per-box masks from the mask head at inference: ``Tensor[N, M, M]`` float probabilities, each
    covering its box. ``to_bitmasks`` pastes them into the image."""

    def __init__(self, tensor: torch.Tensor):
        if tensor.dim() != 3:
            raise ValueError(f"ROIMasks expects a Tensor[N, M, M], got shape {tuple(tensor.shape)}")
        self.tensor = tensor

    def to(self, *args: Any, **kwargs: Any) -> "ROIMasks":
        return ROIMasks(self.tensor.to(*args, **kwargs))

    @property
    def device(self) -> torch.device:
        return self.tensor.device

    def __len__(self) -> int:
        return self.tensor.shape[0]

    def __getitem__(self, item: Union[int, slice, torch.Tensor]) -> "ROIMasks":
        selected = self.tensor[item]
        if selected.dim() != 3:
            raise IndexError(f"indexing ROIMasks with {item} gave shape {tuple(selected.shape)}, not (K, M, M)")
        return ROIMasks(selected)

    def __repr__(self) -> str:
        return f"ROIMasks(num_instances={len(self)})"

    def to_bitmasks(self, boxes: Union[Boxes, torch.Tensor], height: int, width: int, threshold: float = 0.5) -> BitMasks:
        """Paste mask i into box i of a ``height x width`` image and threshold (detectron2's
        ``paste_masks_in_image``). ``boxes``: ``Tensor[N, 4]`` or Boxes. Returns ``BitMasks`` [N, H, W]."""
        from maskrcnn_multi.ops import paste_masks_in_image

        bitmasks = paste_masks_in_image(self.tensor, _boxes_tensor(boxes), (height, width), threshold=threshold)
        return BitMasks(bitmasks)
