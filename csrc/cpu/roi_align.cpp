// RoIAlign forward and backward on the CPU. The geometry (bins, sample positions, bilinear corners)
// is common/roi_align_geometry.h, shared with the CUDA kernels; here is only how the CPU walks it:
// each roi's samples are computed once and reused by every channel.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "common/checks.h"
#include "common/roi_align_geometry.h"
#include "ops.h"

#include <vector>

namespace maskrcnn_multi {
namespace {

using common::BilinearSample;
using common::RoiGeometry;

// Fills `samples` with grid_h * grid_w samples per bin, bins in (ph, pw) order, samples in (iy, ix).
template <typename T>
void collect_samples(const RoiGeometry<T>& geometry, int64_t height, int64_t width, int64_t pooled_height,
                     int64_t pooled_width, std::vector<BilinearSample<T>>& samples) {
  samples.clear();
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
        const auto y = common::axis_sample<T>(
            common::sample_position(geometry.start_h, geometry.bin_h, ph, iy, geometry.grid_h), height);
        for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
          const auto x = common::axis_sample<T>(
              common::sample_position(geometry.start_w, geometry.bin_w, pw, ix, geometry.grid_w), width);
          samples.push_back(common::bilinear_sample<T>(y, x, width, 1));
        }
      }
    }
  }
}

}  // namespace

namespace cpu {

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                     int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  common::check_roi_align_input(input);
  common::check_roi_align_args("roi_align", input, rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  // Every bin is written below (0 when a roi samples nothing), so no zero fill is needed.
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "maskrcnn_multi::roi_align (CPU)", [&] {
    const scalar_t* features = input_c.data_ptr<scalar_t>();
    const scalar_t* roi_data = rois_c.data_ptr<scalar_t>();
    scalar_t* pooled = output.data_ptr<scalar_t>();
    common::check_batch_indices("roi_align", roi_data, num_rois, input.size(0));
    const int64_t plane = height * width, bins = pooled_height * pooled_width;
    // Rois are independent, so each thread pools whole rois (their samples are shared by channels).
    at::parallel_for(0, num_rois, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
      std::vector<BilinearSample<scalar_t>> samples;
      for (int64_t n = begin; n < end; ++n) {
        const auto geometry = common::roi_geometry<scalar_t>(
            roi_data + 5 * n, static_cast<scalar_t>(spatial_scale), pooled_height, pooled_width, sampling_ratio,
            aligned);
        collect_samples(geometry, height, width, pooled_height, pooled_width, samples);
        const int64_t samples_per_bin = geometry.grid_h * geometry.grid_w;
        for (int64_t c = 0; c < channels; ++c) {
          const scalar_t* feature_plane = features + (geometry.batch_index * channels + c) * plane;
          scalar_t* pooled_plane = pooled + (n * channels + c) * bins;
          const BilinearSample<scalar_t>* sample = samples.data();
          for (int64_t bin = 0; bin < bins; ++bin) {
            scalar_t value = 0;
            for (int64_t s = 0; s < samples_per_bin; ++s, ++sample) {
              value += sample->weights[0] * feature_plane[sample->offsets[0]] +
                       sample->weights[1] * feature_plane[sample->offsets[1]] +
                       sample->weights[2] * feature_plane[sample->offsets[2]] +
                       sample->weights[3] * feature_plane[sample->offsets[3]];
            }
            pooled_plane[bin] = value / geometry.count;
          }
        }
      }
    });
  });
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                              int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  common::check_roi_align_args("roi_align_backward", grad, rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0);
  common::check_roi_align_grad(grad, num_rois, channels, pooled_height, pooled_width);
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "maskrcnn_multi::roi_align_backward (CPU)", [&] {
    const scalar_t* grad_pooled = grad_c.data_ptr<scalar_t>();
    const scalar_t* roi_data = rois_c.data_ptr<scalar_t>();
    scalar_t* grad_features = grad_input.data_ptr<scalar_t>();
    common::check_batch_indices("roi_align_backward", roi_data, num_rois, batch_size);
    const int64_t plane = height * width, bins = pooled_height * pooled_width;
    // Rois overlap, so threads split channels instead: each owns disjoint grad_input planes and no
    // atomics are needed. Each thread recomputes the (cheap) sample positions of every roi.
    at::parallel_for(0, channels, /*grain_size=*/1, [&](int64_t channel_begin, int64_t channel_end) {
      std::vector<BilinearSample<scalar_t>> samples;
      for (int64_t n = 0; n < num_rois; ++n) {
        const auto geometry = common::roi_geometry<scalar_t>(
            roi_data + 5 * n, static_cast<scalar_t>(spatial_scale), pooled_height, pooled_width, sampling_ratio,
            aligned);
        collect_samples(geometry, height, width, pooled_height, pooled_width, samples);
        const int64_t samples_per_bin = geometry.grid_h * geometry.grid_w;
        for (int64_t c = channel_begin; c < channel_end; ++c) {
          scalar_t* grad_plane = grad_features + (geometry.batch_index * channels + c) * plane;
          const scalar_t* grad_bins = grad_pooled + (n * channels + c) * bins;
          const BilinearSample<scalar_t>* sample = samples.data();
          for (int64_t bin = 0; bin < bins; ++bin) {
            const scalar_t grad_bin = grad_bins[bin];
            for (int64_t s = 0; s < samples_per_bin; ++s, ++sample) {
              for (int corner = 0; corner < 4; ++corner) {
                grad_plane[sample->offsets[corner]] += grad_bin * sample->weights[corner] / geometry.count;
              }
            }
          }
        }
      }
    });
  });
  return grad_input;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
