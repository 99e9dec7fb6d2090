// How the CPU RoIAlign kernels walk common/roi_align_geometry.h: each roi's samples are tabulated once
// (per-axis positions first, since they are separable) and reused by every channel. Shared by
// csrc/cpu/roi_align.cpp and csrc/cpu/roi_align_backward.cpp; not an op.
#pragma once

#include <ATen/core/Tensor.h>

#include "common/layout.h"
#include "common/roi_align_geometry.h"

#include <vector>

namespace maskrcnn_multi {
namespace cpu {

// The samples of one roi that land on the feature map, bins in (ph, pw) order and samples in (iy, ix)
// order within a bin (torchvision's summation order). Samples off the map contribute nothing and are
// left out.
template <typename T>
struct RoiSamples {
  int64_t batch_index = 0;
  T count = 1;  // the divisor of each bin's average, off-map samples included
  std::vector<common::BilinearSample<T>> samples;
  std::vector<int64_t> bin_end;  // bin b's samples are [bin_end[b - 1] (0 for b = 0), bin_end[b])
  std::vector<common::AxisSample<T>> y_axis, x_axis;
};

using common::channels_innermost;
using common::memory_format_like;

// The number of samples the rois take (off-map ones included), to weigh a layout change against.
template <typename T>
int64_t count_samples(const T* rois, int64_t num_rois, T spatial_scale, int64_t pooled_height, int64_t pooled_width,
                      int64_t sampling_ratio, bool aligned) {
  int64_t samples = 0;
  for (int64_t n = 0; n < num_rois; ++n) {
    const auto geometry =
        common::roi_geometry<T>(rois + 5 * n, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
    samples += geometry.grid_h * geometry.grid_w;
  }
  return samples * pooled_height * pooled_width;
}

// Whether an NCHW map is better converted to channels_last before pooling (or its gradient gathered
// in a channels_last buffer and converted after): worth it when the rois take many samples per map
// cell, since a sample costs a scalar read per channel on planes and a fraction of that on channel
// vectors, while the conversion moves each cell once (twice for the gradient: zero fill and convert).
// Measured per FPN level with 256 channels, 1 thread (box head 512 and 1000 rois, mask head 100 rois):
// converting lost below about 1 sample per cell forward and 1.5 backward, and won above (e.g. P3 at
// 4.4 samples per cell: 101 -> 28 ms forward, 129 -> 45 ms backward).
constexpr double kForwardMinSamplesPerCell = 1.0;
constexpr double kBackwardMinSamplesPerCell = 1.5;

inline bool channels_last_pays(int64_t samples, int64_t map_cells, double min_samples_per_cell) {
  return static_cast<double>(samples) >= min_samples_per_cell * static_cast<double>(map_cells);
}

// Tabulates roi `roi` ([batch_index, x0, y0, x1, y1]) on a (height, width) map whose elements are
// `row_stride` and `column_stride` apart; sample offsets are in elements from the image's origin.
template <typename T>
void collect_roi_samples(const T* roi, T spatial_scale, int64_t pooled_height, int64_t pooled_width,
                         int64_t sampling_ratio, bool aligned, int64_t height, int64_t width, int64_t row_stride,
                         int64_t column_stride, RoiSamples<T>& table) {
  const auto geometry =
      common::roi_geometry<T>(roi, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
  table.batch_index = geometry.batch_index;
  table.count = geometry.count;
  table.y_axis.clear();
  table.x_axis.clear();
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      table.y_axis.push_back(common::axis_sample<T>(
          common::sample_position(geometry.start_h, geometry.bin_h, ph, iy, geometry.grid_h), height));
    }
  }
  for (int64_t pw = 0; pw < pooled_width; ++pw) {
    for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
      table.x_axis.push_back(common::axis_sample<T>(
          common::sample_position(geometry.start_w, geometry.bin_w, pw, ix, geometry.grid_w), width));
    }
  }
  table.samples.clear();
  table.bin_end.clear();
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
        const auto& y = table.y_axis[ph * geometry.grid_h + iy];
        for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
          const auto sample =
              common::bilinear_sample<T>(y, table.x_axis[pw * geometry.grid_w + ix], row_stride, column_stride);
          if (sample.inside) {
            table.samples.push_back(sample);
          }
        }
      }
      table.bin_end.push_back(static_cast<int64_t>(table.samples.size()));
    }
  }
}

}  // namespace cpu
}  // namespace maskrcnn_multi
