// RoIAlign forward and backward on the CPU, following torchvision's C++ kernel rule for rule (its
// output is the reference, see /work/shared/reference/README.md):
// - a sample at y < -1, y > H, x < -1 or x > W contributes 0; otherwise it is clamped into the map;
// - sampling_ratio <= 0 takes ceil(roi_size / pooled_size) samples per bin side;
// - aligned shifts the roi by -0.5 pixel and does not force its size to be at least 1.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "ops.h"

#include <cmath>
#include <vector>

namespace maskrcnn_multi {
namespace {

// One bilinear sample: four offsets into a (height, width) plane and their weights.
template <typename T>
struct BilinearSample {
  int64_t offsets[4];
  T weights[4];
};

// Where a roi's bins lie on the feature map and how many samples each bin averages.
template <typename T>
struct RoiGeometry {
  int64_t batch_index;
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T count;
};

template <typename T>
RoiGeometry<T> roi_geometry(const T* roi, T spatial_scale, int64_t pooled_height, int64_t pooled_width,
                            int64_t sampling_ratio, bool aligned) {
  RoiGeometry<T> geometry;
  geometry.batch_index = static_cast<int64_t>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
  geometry.start_w = roi[1] * spatial_scale - offset;
  geometry.start_h = roi[2] * spatial_scale - offset;
  T roi_width = roi[3] * spatial_scale - offset - geometry.start_w;
  T roi_height = roi[4] * spatial_scale - offset - geometry.start_h;
  if (!aligned) {
    // The legacy (non-aligned) mode forces malformed rois to be 1x1.
    roi_width = std::max(roi_width, static_cast<T>(1.));
    roi_height = std::max(roi_height, static_cast<T>(1.));
  }
  geometry.bin_h = roi_height / static_cast<T>(pooled_height);
  geometry.bin_w = roi_width / static_cast<T>(pooled_width);
  geometry.grid_h = sampling_ratio > 0 ? sampling_ratio
                                       : static_cast<int64_t>(std::ceil(roi_height / static_cast<T>(pooled_height)));
  geometry.grid_w = sampling_ratio > 0 ? sampling_ratio
                                       : static_cast<int64_t>(std::ceil(roi_width / static_cast<T>(pooled_width)));
  geometry.count = static_cast<T>(std::max<int64_t>(geometry.grid_h * geometry.grid_w, 1));
  // A negative-sized aligned roi samples nothing (torchvision's loops run zero times).
  geometry.grid_h = std::max<int64_t>(geometry.grid_h, 0);
  geometry.grid_w = std::max<int64_t>(geometry.grid_w, 0);
  return geometry;
}

template <typename T>
BilinearSample<T> bilinear_sample(int64_t height, int64_t width, T y, T x) {
  BilinearSample<T> sample = {{0, 0, 0, 0}, {0, 0, 0, 0}};
  if (y < -1.0 || y > height || x < -1.0 || x > width) {
    return sample;  // outside the map: contributes nothing
  }
  y = std::max(y, static_cast<T>(0));
  x = std::max(x, static_cast<T>(0));
  int64_t y_low = static_cast<int64_t>(y);
  int64_t x_low = static_cast<int64_t>(x);
  int64_t y_high, x_high;
  if (y_low >= height - 1) {
    y_high = y_low = height - 1;
    y = static_cast<T>(y_low);
  } else {
    y_high = y_low + 1;
  }
  if (x_low >= width - 1) {
    x_high = x_low = width - 1;
    x = static_cast<T>(x_low);
  } else {
    x_high = x_low + 1;
  }
  const T ly = y - y_low, lx = x - x_low;
  const T hy = 1. - ly, hx = 1. - lx;
  sample.offsets[0] = y_low * width + x_low;
  sample.offsets[1] = y_low * width + x_high;
  sample.offsets[2] = y_high * width + x_low;
  sample.offsets[3] = y_high * width + x_high;
  sample.weights[0] = hy * hx;
  sample.weights[1] = hy * lx;
  sample.weights[2] = ly * hx;
  sample.weights[3] = ly * lx;
  return sample;
}

// Fills `samples` with grid_h * grid_w samples per bin, bins in (ph, pw) order, samples in (iy, ix).
template <typename T>
void collect_samples(const RoiGeometry<T>& geometry, int64_t height, int64_t width, int64_t pooled_height,
                     int64_t pooled_width, std::vector<BilinearSample<T>>& samples) {
  samples.clear();
  for (int64_t ph = 0; ph < pooled_height; ++ph) {
    for (int64_t pw = 0; pw < pooled_width; ++pw) {
      for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
        const T y = geometry.start_h + ph * geometry.bin_h +
                    static_cast<T>(iy + .5f) * geometry.bin_h / static_cast<T>(geometry.grid_h);
        for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
          const T x = geometry.start_w + pw * geometry.bin_w +
                      static_cast<T>(ix + .5f) * geometry.bin_w / static_cast<T>(geometry.grid_w);
          samples.push_back(bilinear_sample<T>(height, width, y, x));
        }
      }
    }
  }
}

void check_roi_align_args(const char* op, const at::Tensor& features, const at::Tensor& rois,
                          int64_t pooled_height, int64_t pooled_width) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op, ": rois must be (K, 5), got ", rois.sizes());
  TORCH_CHECK(features.scalar_type() == rois.scalar_type(), op, ": rois (", rois.scalar_type(),
              ") must have the dtype of the features (", features.scalar_type(), ")");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, op, ": pooled size must be positive, got (",
              pooled_height, ", ", pooled_width, ")");
}

// Rejects a roi naming an image outside the batch before any thread reads memory with it.
template <typename T>
void check_batch_indices(const char* op, const T* rois, int64_t num_rois, int64_t batch_size) {
  for (int64_t n = 0; n < num_rois; ++n) {
    const int64_t batch_index = static_cast<int64_t>(rois[5 * n]);
    TORCH_CHECK(batch_index >= 0 && batch_index < batch_size, op, ": rois[", n, ", 0] = ", rois[5 * n],
                " is not a batch index in [0, ", batch_size, ")");
  }
}

}  // namespace

namespace cpu {

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                                 int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                                 bool aligned) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be (N, C, H, W), got ", input.sizes());
  check_roi_align_args("roi_align", input, rois, pooled_height, pooled_width);
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
    check_batch_indices("roi_align", roi_data, num_rois, input.size(0));
    const int64_t plane = height * width, bins = pooled_height * pooled_width;
    // Rois are independent, so each thread pools whole rois (their samples are shared by channels).
    at::parallel_for(0, num_rois, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
      std::vector<BilinearSample<scalar_t>> samples;
      for (int64_t n = begin; n < end; ++n) {
        const auto geometry = roi_geometry<scalar_t>(roi_data + 5 * n, static_cast<scalar_t>(spatial_scale),
                                                     pooled_height, pooled_width, sampling_ratio, aligned);
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
                                  int64_t pooled_height, int64_t pooled_width, int64_t batch_size,
                                  int64_t channels, int64_t height, int64_t width, int64_t sampling_ratio,
                                  bool aligned) {
  check_roi_align_args("roi_align_backward", grad, rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == num_rois && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "roi_align_backward: grad must be (", num_rois, ", ", channels, ", ", pooled_height, ", ",
              pooled_width, "), got ", grad.sizes());
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
    check_batch_indices("roi_align_backward", roi_data, num_rois, batch_size);
    const int64_t plane = height * width, bins = pooled_height * pooled_width;
    // Rois overlap, so threads split channels instead: each owns disjoint grad_input planes and no
    // atomics are needed. Each thread recomputes the (cheap) sample positions of every roi.
    at::parallel_for(0, channels, /*grain_size=*/1, [&](int64_t channel_begin, int64_t channel_end) {
      std::vector<BilinearSample<scalar_t>> samples;
      for (int64_t n = 0; n < num_rois; ++n) {
        const auto geometry = roi_geometry<scalar_t>(roi_data + 5 * n, static_cast<scalar_t>(spatial_scale),
                                                     pooled_height, pooled_width, sampling_ratio, aligned);
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
