// Box overlap arithmetic shared by nms and box_iou on every device: torchvision's formula
// (union = area_a + area_b - intersection, then intersection / union), products rounded on their own,
// so IoUs, and hence NMS keeps, are bit-identical across devices. Boxes are x0, y0, x1, y1.
#pragma once

#include "common/host_device.h"

namespace maskrcnn_multi {
namespace common {

// Negative for an inverted box, as torchvision.
template <typename T>
MRCNN_HOST_DEVICE inline T box_area(const T* box) {
  return mul_rn(box[2] - box[0], box[3] - box[1]);
}

template <typename T>
MRCNN_HOST_DEVICE inline T intersection_area(const T* a, const T* b) {
  const T width = max_of(static_cast<T>(0), min_of(a[2], b[2]) - max_of(a[0], b[0]));
  const T height = max_of(static_cast<T>(0), min_of(a[3], b[3]) - max_of(a[1], b[1]));
  return mul_rn(width, height);
}

// NaN where two zero-area boxes meet (0 / 0), as torchvision.
template <typename T>
MRCNN_HOST_DEVICE inline T iou_from_areas(T intersection, T area_a, T area_b) {
  return intersection / (area_a + area_b - intersection);
}

}  // namespace common
}  // namespace maskrcnn_multi
