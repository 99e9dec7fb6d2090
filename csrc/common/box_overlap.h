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

// The overlap of box a (a_x0, a_y0, a_x1, a_y1) with box b, a's coordinates winning ties and NaNs
// (a is the kept, higher-scored box in NMS).
template <typename T>
MRCNN_HOST_DEVICE inline T intersection_area(T a_x0, T a_y0, T a_x1, T a_y1, T b_x0, T b_y0, T b_x1, T b_y1) {
  const T width = max_of(static_cast<T>(0), min_of(a_x1, b_x1) - max_of(a_x0, b_x0));
  const T height = max_of(static_cast<T>(0), min_of(a_y1, b_y1) - max_of(a_y0, b_y0));
  return mul_rn(width, height);
}

template <typename T>
MRCNN_HOST_DEVICE inline T intersection_area(const T* a, const T* b) {
  return intersection_area(a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3]);
}

// NaN where two zero-area boxes meet (0 / 0), as torchvision.
template <typename T>
MRCNN_HOST_DEVICE inline T iou_from_areas(T intersection, T area_a, T area_b) {
  return intersection / (area_a + area_b - intersection);
}

}  // namespace common
}  // namespace maskrcnn_multi
