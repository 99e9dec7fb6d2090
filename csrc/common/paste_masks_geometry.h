// Mask pasting geometry, shared by the CPU and CUDA kernels: detectron2's rule (layers/mask_ops.py,
// its CPU path). A pixel centre (px + 0.5) maps into the box, is normalised to [-1, 1], and grid_sample's
// bilinear interpolation (align_corners=False, zero padding) reads the (M, M) mask there. Pixels outside
// [floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1), clipped to the image, are not pasted.
// The arithmetic follows ATen's vectorised CPU grid sampler as compiled, so values match F.grid_sample
// bit for bit: its multiply-adds are fused where ATen's kernel is built with FMA (AVX2 / AVX-512, the
// default kFused = true) and not where it is not (x86's default capability: kFused = false).
#pragma once

#include "common/host_device.h"

namespace maskrcnn_multi {
namespace common {

// The pixels a box is pasted into, end exclusive; empty when begin >= end.
struct PasteRegion {
  int64_t x_begin, y_begin, x_end, y_end;
};

// `box` points at one x0, y0, x1, y1 row.
template <typename T>
MRCNN_HOST_DEVICE inline PasteRegion paste_region(const T* box, int64_t height, int64_t width) {
  PasteRegion region;
  region.x_begin = max_of<int64_t>(static_cast<int64_t>(floor_of(box[0]) - 1), 0);
  region.y_begin = max_of<int64_t>(static_cast<int64_t>(floor_of(box[1]) - 1), 0);
  region.x_end = min_of<int64_t>(static_cast<int64_t>(ceil_of(box[2]) + 1), width);
  region.y_end = min_of<int64_t>(static_cast<int64_t>(ceil_of(box[3]) + 1), height);
  return region;
}

// Where image pixel `pixel` reads along one mask axis: the two mask cells around it, their weights, and
// whether each cell is inside the mask (zero padding outside). `low`, `high`: the box's extent.
template <typename T>
struct MaskAxisSample {
  int64_t low;  // the high cell is low + 1
  T low_weight, high_weight;
  bool low_inside, high_inside;
};

template <typename T, bool kFused = true>
MRCNN_HOST_DEVICE inline MaskAxisSample<T> mask_axis_sample(int64_t pixel, T low, T high, int64_t mask_size) {
  // The grid coordinate of the pixel centre in the box, then grid_sample's source index
  // ((g + 1) * size / 2 - 0.5).
  const T grid = (static_cast<T>(pixel) + static_cast<T>(0.5) - low) / (high - low) * 2 - 1;
  const T source = multiply_add<kFused>(grid + 1, static_cast<T>(mask_size) / 2, static_cast<T>(-0.5));
  const T source_floor = floor_of(source);
  MaskAxisSample<T> sample;
  sample.high_weight = source - source_floor;
  sample.low_weight = 1 - sample.high_weight;
  sample.low = static_cast<int64_t>(source_floor);
  sample.low_inside = sample.low >= 0 && sample.low < mask_size;
  sample.high_inside = sample.low + 1 >= 0 && sample.low + 1 < mask_size;
  return sample;
}

// The bilinear combination of a pixel's four mask cells (0 for cells outside the mask), in the order
// and with the roundings of ATen's CPU grid sampler.
template <typename T, bool kFused = true>
MRCNN_HOST_DEVICE inline T bilinear_combine(T north_west, T north_east, T south_west, T south_east, T north_weight,
                                            T south_weight, T west_weight, T east_weight) {
  T value = mul_rn(north_west, mul_rn(north_weight, west_weight));
  value = multiply_add<kFused>(north_east, mul_rn(north_weight, east_weight), value);
  value = multiply_add<kFused>(south_west, mul_rn(south_weight, west_weight), value);
  return multiply_add<kFused>(south_east, mul_rn(south_weight, east_weight), value);
}

// The bilinear value of the (mask_size, mask_size) row-major `mask` at one pixel.
template <typename T>
MRCNN_HOST_DEVICE inline T mask_bilinear(const T* mask, int64_t mask_size, const MaskAxisSample<T>& y,
                                         const MaskAxisSample<T>& x) {
  const T north_west = y.low_inside && x.low_inside ? mask[y.low * mask_size + x.low] : static_cast<T>(0);
  const T north_east = y.low_inside && x.high_inside ? mask[y.low * mask_size + x.low + 1] : static_cast<T>(0);
  const T south_west = y.high_inside && x.low_inside ? mask[(y.low + 1) * mask_size + x.low] : static_cast<T>(0);
  const T south_east =
      y.high_inside && x.high_inside ? mask[(y.low + 1) * mask_size + x.low + 1] : static_cast<T>(0);
  return bilinear_combine(north_west, north_east, south_west, south_east, y.low_weight, y.high_weight, x.low_weight,
                          x.high_weight);
}

// What paste_masks_in_image stores for a pasted value (detectron2's rule). For threshold >= 0 a bool
// mask: value >= threshold, compared in T (as torch compares a tensor with a Python float). For
// threshold < 0 the byte value * 255, truncated and wrapped as torch's float -> uint8 conversion does
// (detectron2's visualisation mode). Pixels outside the pasting region are 0 either way.
template <typename T>
MRCNN_HOST_DEVICE inline uint8_t mask_pixel(T value, T threshold) {
  return value >= threshold ? 1 : 0;
}

template <typename T>
MRCNN_HOST_DEVICE inline uint8_t visualisation_pixel(T value) {
  const T scaled = value * static_cast<T>(255);
  return scaled != scaled ? 0 : static_cast<uint8_t>(static_cast<int64_t>(scaled));
}

}  // namespace common
}  // namespace maskrcnn_multi
