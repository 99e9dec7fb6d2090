// RoIAlign's geometry, shared by the CPU and CUDA kernels: where a roi's bins lie on the feature map,
// where each bin's samples fall, and the bilinear corners and weights of a sample. The rules are those
// of torchvision's C++ kernel, whose outputs are the reference (../shared/reference/README.md):
// - a sample at y < -1, y > H, x < -1 or x > W contributes 0; otherwise it is clamped into the map;
// - sampling_ratio <= 0 takes ceil(roi_size / pooled_size) samples per bin side;
// - aligned shifts the roi by -0.5 pixel and does not force its size to be at least 1.
// The operation order follows torchvision's code, so float results are bit-identical to it on the CPU;
// products are rounded on their own (mul_rn) so sample positions are the same on every device.
#pragma once

#include "common/host_device.h"

namespace maskrcnn_multi {
namespace common {

// Where a roi's bins lie on the feature map and how many samples each bin averages.
template <typename T>
struct RoiGeometry {
  int64_t batch_index;
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;  // samples per bin side, >= 0
  T count;                 // samples per bin, >= 1 (the divisor of the average)
};

// `roi` points at one [batch_index, x0, y0, x1, y1] row.
template <typename T>
MRCNN_HOST_DEVICE inline RoiGeometry<T> roi_geometry(const T* roi, T spatial_scale, int64_t pooled_height,
                                                     int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  RoiGeometry<T> geometry;
  geometry.batch_index = static_cast<int64_t>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
  geometry.start_w = mul_rn(roi[1], spatial_scale) - offset;
  geometry.start_h = mul_rn(roi[2], spatial_scale) - offset;
  T roi_width = mul_rn(roi[3], spatial_scale) - offset - geometry.start_w;
  T roi_height = mul_rn(roi[4], spatial_scale) - offset - geometry.start_h;
  if (!aligned) {
    // The legacy (non-aligned) mode forces malformed rois to be 1x1.
    roi_width = max_of(roi_width, static_cast<T>(1.));
    roi_height = max_of(roi_height, static_cast<T>(1.));
  }
  geometry.bin_h = roi_height / static_cast<T>(pooled_height);
  geometry.bin_w = roi_width / static_cast<T>(pooled_width);
  geometry.grid_h = sampling_ratio > 0
                        ? sampling_ratio
                        : static_cast<int64_t>(ceil_of(roi_height / static_cast<T>(pooled_height)));
  geometry.grid_w = sampling_ratio > 0
                        ? sampling_ratio
                        : static_cast<int64_t>(ceil_of(roi_width / static_cast<T>(pooled_width)));
  const int64_t samples = geometry.grid_h * geometry.grid_w;
  geometry.count = static_cast<T>(samples > 1 ? samples : 1);
  // A negative-sized aligned roi samples nothing (torchvision's loops run zero times).
  geometry.grid_h = geometry.grid_h > 0 ? geometry.grid_h : 0;
  geometry.grid_w = geometry.grid_w > 0 ? geometry.grid_w : 0;
  return geometry;
}

// Position along one axis of sample `sample` (of `grid`) in bin `bin`, starting at `start`.
template <typename T>
MRCNN_HOST_DEVICE inline T sample_position(T start, T bin_size, int64_t bin, int64_t sample, int64_t grid) {
  return start + mul_rn(static_cast<T>(bin), bin_size) +
         mul_rn(static_cast<T>(sample + .5f), bin_size) / static_cast<T>(grid);
}

// A sample's two neighbouring indices along one axis of `size` cells and their weights; `inside` is
// false for a sample beyond [-1, size], which contributes nothing.
template <typename T>
struct AxisSample {
  int64_t low, high;
  T low_weight, high_weight;
  bool inside;
};

template <typename T>
MRCNN_HOST_DEVICE inline AxisSample<T> axis_sample(T position, int64_t size) {
  AxisSample<T> sample = {0, 0, static_cast<T>(0), static_cast<T>(0), false};
  if (position < -1.0 || position > size) {
    return sample;
  }
  position = max_of(position, static_cast<T>(0));
  sample.low = static_cast<int64_t>(position);
  if (sample.low >= size - 1) {
    sample.high = sample.low = size - 1;
    position = static_cast<T>(sample.low);
  } else {
    sample.high = sample.low + 1;
  }
  sample.high_weight = position - sample.low;
  sample.low_weight = 1. - sample.high_weight;  // in double, then rounded, as torchvision
  sample.inside = true;
  return sample;
}

// One bilinear sample: four element offsets into a feature plane and their weights, in torchvision's
// corner order (y_low x_low, y_low x_high, y_high x_low, y_high x_high). All zero outside the map.
template <typename T>
struct BilinearSample {
  int64_t offsets[4];
  T weights[4];
  bool inside;
};

template <typename T>
MRCNN_HOST_DEVICE inline BilinearSample<T> bilinear_sample(const AxisSample<T>& y, const AxisSample<T>& x,
                                                           int64_t row_stride, int64_t column_stride) {
  BilinearSample<T> sample = {{0, 0, 0, 0}, {0, 0, 0, 0}, false};
  if (!y.inside || !x.inside) {
    return sample;
  }
  sample.offsets[0] = y.low * row_stride + x.low * column_stride;
  sample.offsets[1] = y.low * row_stride + x.high * column_stride;
  sample.offsets[2] = y.high * row_stride + x.low * column_stride;
  sample.offsets[3] = y.high * row_stride + x.high * column_stride;
  sample.weights[0] = mul_rn(y.low_weight, x.low_weight);
  sample.weights[1] = mul_rn(y.low_weight, x.high_weight);
  sample.weights[2] = mul_rn(y.high_weight, x.low_weight);
  sample.weights[3] = mul_rn(y.high_weight, x.high_weight);
  sample.inside = true;
  return sample;
}

}  // namespace common
}  // namespace maskrcnn_multi
