// RoIAlign forward and backward on CUDA, with the rules of torchvision's kernels (see
// csrc/cpu/roi_align.cpp): samples outside [-1, H] x [-1, W] contribute 0, others are clamped;
// sampling_ratio <= 0 is adaptive; aligned shifts by -0.5 and keeps the roi size as is.
// One thread per pooled value; the backward scatters with atomics since rois overlap.
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
struct Corners {
  int64_t offsets[4];
  T weights[4];
  bool inside;
};

template <typename T>
__device__ Corners<T> bilinear_corners(int64_t height, int64_t width, T y, T x) {
  Corners<T> corners = {{0, 0, 0, 0}, {0, 0, 0, 0}, false};
  if (y < -1.0 || y > height || x < -1.0 || x > width) {
    return corners;
  }
  y = max(y, static_cast<T>(0));
  x = max(x, static_cast<T>(0));
  int64_t y_low = static_cast<int64_t>(y), x_low = static_cast<int64_t>(x);
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
  const T hy = static_cast<T>(1) - ly, hx = static_cast<T>(1) - lx;
  corners.offsets[0] = y_low * width + x_low;
  corners.offsets[1] = y_low * width + x_high;
  corners.offsets[2] = y_high * width + x_low;
  corners.offsets[3] = y_high * width + x_high;
  corners.weights[0] = hy * hx;
  corners.weights[1] = hy * lx;
  corners.weights[2] = ly * hx;
  corners.weights[3] = ly * lx;
  corners.inside = true;
  return corners;
}

// The geometry of one roi's bin (ph, pw): where its samples start and how many it averages.
template <typename T>
struct BinGeometry {
  int64_t batch_index;
  T start_h, start_w, bin_h, bin_w;
  int64_t grid_h, grid_w;
  T count;
};

template <typename T>
__device__ BinGeometry<T> bin_geometry(const T* roi, T spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                       int64_t sampling_ratio, bool aligned) {
  BinGeometry<T> geometry;
  geometry.batch_index = static_cast<int64_t>(roi[0]);
  const T offset = aligned ? static_cast<T>(0.5) : static_cast<T>(0.0);
  geometry.start_w = roi[1] * spatial_scale - offset;
  geometry.start_h = roi[2] * spatial_scale - offset;
  T roi_width = roi[3] * spatial_scale - offset - geometry.start_w;
  T roi_height = roi[4] * spatial_scale - offset - geometry.start_h;
  if (!aligned) {
    roi_width = max(roi_width, static_cast<T>(1.));
    roi_height = max(roi_height, static_cast<T>(1.));
  }
  geometry.bin_h = roi_height / static_cast<T>(pooled_height);
  geometry.bin_w = roi_width / static_cast<T>(pooled_width);
  geometry.grid_h = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(ceil(roi_height / pooled_height));
  geometry.grid_w = sampling_ratio > 0 ? sampling_ratio : static_cast<int64_t>(ceil(roi_width / pooled_width));
  const int64_t samples = geometry.grid_h * geometry.grid_w;
  geometry.count = static_cast<T>(samples > 1 ? samples : 1);
  return geometry;
}

template <typename T>
__global__ void roi_align_forward_kernel(int64_t total, const T* features, const T* rois, T spatial_scale,
                                         int64_t batch_size, int64_t channels, int64_t height, int64_t width, int64_t pooled_height,
                                         int64_t pooled_width, int64_t sampling_ratio, bool aligned, T* pooled) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t pw = index % pooled_width;
    const int64_t ph = (index / pooled_width) % pooled_height;
    const int64_t c = (index / pooled_width / pooled_height) % channels;
    const int64_t n = index / pooled_width / pooled_height / channels;
    const auto geometry = bin_geometry<T>(rois + 5 * n, spatial_scale, pooled_height, pooled_width,
                                          sampling_ratio, aligned);
    // rois[:, 0] outside [0, N) would read another image's memory; the CPU kernel raises on it
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < batch_size);
    const T* plane = features + (geometry.batch_index * channels + c) * height * width;
    T value = 0;
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const T y = geometry.start_h + ph * geometry.bin_h +
                  static_cast<T>(iy + .5f) * geometry.bin_h / static_cast<T>(geometry.grid_h);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const T x = geometry.start_w + pw * geometry.bin_w +
                    static_cast<T>(ix + .5f) * geometry.bin_w / static_cast<T>(geometry.grid_w);
        const auto corners = bilinear_corners<T>(height, width, y, x);
        if (corners.inside) {
          value += corners.weights[0] * plane[corners.offsets[0]] + corners.weights[1] * plane[corners.offsets[1]] +
                   corners.weights[2] * plane[corners.offsets[2]] + corners.weights[3] * plane[corners.offsets[3]];
        }
      }
    }
    pooled[index] = value / geometry.count;
  }
}

template <typename T>
__global__ void roi_align_backward_kernel(int64_t total, const T* grad_pooled, const T* rois, T spatial_scale,
                                          int64_t batch_size, int64_t channels, int64_t height, int64_t width, int64_t pooled_height,
                                          int64_t pooled_width, int64_t sampling_ratio, bool aligned,
                                          T* grad_features) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t pw = index % pooled_width;
    const int64_t ph = (index / pooled_width) % pooled_height;
    const int64_t c = (index / pooled_width / pooled_height) % channels;
    const int64_t n = index / pooled_width / pooled_height / channels;
    const auto geometry = bin_geometry<T>(rois + 5 * n, spatial_scale, pooled_height, pooled_width,
                                          sampling_ratio, aligned);
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < batch_size);
    T* plane = grad_features + (geometry.batch_index * channels + c) * height * width;
    const T grad_bin = grad_pooled[index];
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const T y = geometry.start_h + ph * geometry.bin_h +
                  static_cast<T>(iy + .5f) * geometry.bin_h / static_cast<T>(geometry.grid_h);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const T x = geometry.start_w + pw * geometry.bin_w +
                    static_cast<T>(ix + .5f) * geometry.bin_w / static_cast<T>(geometry.grid_w);
        const auto corners = bilinear_corners<T>(height, width, y, x);
        if (!corners.inside) {
          continue;
        }
        for (int corner = 0; corner < 4; ++corner) {
          gpuAtomicAdd(plane + corners.offsets[corner], grad_bin * corners.weights[corner] / geometry.count);
        }
      }
    }
  }
}

void check_args(const char* op, const at::Tensor& values, const at::Tensor& rois, int64_t pooled_height,
                int64_t pooled_width) {
  TORCH_CHECK(values.is_cuda() && rois.is_cuda(), op, ": tensors must be on a CUDA device");
  TORCH_CHECK(values.device() == rois.device(), op, ": rois are on ", rois.device(), ", features on ",
              values.device());
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op, ": rois must be (K, 5), got ", rois.sizes());
  TORCH_CHECK(values.scalar_type() == rois.scalar_type(), op, ": rois (", rois.scalar_type(),
              ") must have the dtype of the features (", values.scalar_type(), ")");
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, op, ": pooled size must be positive, got (", pooled_height,
              ", ", pooled_width, ")");
}

}  // namespace

namespace cuda {

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                     int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be (N, C, H, W), got ", input.sizes());
  check_args("roi_align", input, rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width}, input.options());
  if (output.numel() == 0) {
    return output;
  }
  c10::cuda::CUDAGuard device_guard(input.device());
  const at::Tensor input_c = input.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "maskrcnn_multi::roi_align (CUDA)", [&] {
    roi_align_forward_kernel<scalar_t>
        <<<cuda_helpers::blocks_for(output.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            output.numel(), input_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
            static_cast<scalar_t>(spatial_scale), input.size(0), channels, input.size(2), input.size(3), pooled_height,
            pooled_width, sampling_ratio, aligned, output.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                              int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  check_args("roi_align_backward", grad, rois, pooled_height, pooled_width);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == rois.size(0) && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "roi_align_backward: grad must be (", rois.size(0), ", ", channels, ", ", pooled_height, ", ",
              pooled_width, "), got ", grad.sizes());
  at::Tensor grad_input = at::zeros({batch_size, channels, height, width}, grad.options());
  if (grad.numel() == 0 || grad_input.numel() == 0) {
    return grad_input;
  }
  c10::cuda::CUDAGuard device_guard(grad.device());
  const at::Tensor grad_c = grad.contiguous();
  const at::Tensor rois_c = rois.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "maskrcnn_multi::roi_align_backward (CUDA)", [&] {
    roi_align_backward_kernel<scalar_t>
        <<<cuda_helpers::blocks_for(grad.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            grad.numel(), grad_c.data_ptr<scalar_t>(), rois_c.data_ptr<scalar_t>(),
            static_cast<scalar_t>(spatial_scale), batch_size, channels, height, width, pooled_height, pooled_width,
            sampling_ratio, aligned, grad_input.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_input;
}

}  // namespace cuda
}  // namespace maskrcnn_multi
