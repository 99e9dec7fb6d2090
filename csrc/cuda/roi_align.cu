// RoIAlign forward and backward on CUDA. The geometry (bins, sample positions, bilinear corners) is
// common/roi_align_geometry.h, shared with the CPU kernels. One thread per pooled value; the backward
// scatters with atomics since rois overlap.
#include <ATen/Dispatch.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/checks.h"
#include "common/roi_align_geometry.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

// The roi, channel and bin of pooled element `index` of a (K, C, ph, pw) contiguous tensor.
struct PooledIndex {
  int64_t n, c, ph, pw;
};

__device__ inline PooledIndex pooled_index(int64_t index, int64_t channels, int64_t pooled_height,
                                           int64_t pooled_width) {
  PooledIndex at;
  at.pw = index % pooled_width;
  at.ph = (index / pooled_width) % pooled_height;
  at.c = (index / pooled_width / pooled_height) % channels;
  at.n = index / pooled_width / pooled_height / channels;
  return at;
}

template <typename T>
__global__ void roi_align_forward_kernel(int64_t total, const T* features, const T* rois, T spatial_scale,
                                         int64_t batch_size, int64_t channels, int64_t height, int64_t width,
                                         int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                                         bool aligned, T* pooled) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const PooledIndex at = pooled_index(index, channels, pooled_height, pooled_width);
    const auto geometry = common::roi_geometry<T>(rois + 5 * at.n, spatial_scale, pooled_height, pooled_width,
                                                  sampling_ratio, aligned);
    // rois[:, 0] outside [0, N) would read another image's memory; the CPU kernel raises on it
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < batch_size);
    const T* plane = features + (geometry.batch_index * channels + at.c) * height * width;
    T value = 0;
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const auto y = common::axis_sample<T>(
          common::sample_position(geometry.start_h, geometry.bin_h, at.ph, iy, geometry.grid_h), height);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const auto x = common::axis_sample<T>(
            common::sample_position(geometry.start_w, geometry.bin_w, at.pw, ix, geometry.grid_w), width);
        const auto sample = common::bilinear_sample<T>(y, x, width, 1);
        if (sample.inside) {
          value += sample.weights[0] * plane[sample.offsets[0]] + sample.weights[1] * plane[sample.offsets[1]] +
                   sample.weights[2] * plane[sample.offsets[2]] + sample.weights[3] * plane[sample.offsets[3]];
        }
      }
    }
    pooled[index] = value / geometry.count;
  }
}

template <typename T>
__global__ void roi_align_backward_kernel(int64_t total, const T* grad_pooled, const T* rois, T spatial_scale,
                                          int64_t batch_size, int64_t channels, int64_t height, int64_t width,
                                          int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                                          bool aligned, T* grad_features) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const PooledIndex at = pooled_index(index, channels, pooled_height, pooled_width);
    const auto geometry = common::roi_geometry<T>(rois + 5 * at.n, spatial_scale, pooled_height, pooled_width,
                                                  sampling_ratio, aligned);
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < batch_size);
    T* plane = grad_features + (geometry.batch_index * channels + at.c) * height * width;
    const T grad_bin = grad_pooled[index];
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const auto y = common::axis_sample<T>(
          common::sample_position(geometry.start_h, geometry.bin_h, at.ph, iy, geometry.grid_h), height);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const auto x = common::axis_sample<T>(
            common::sample_position(geometry.start_w, geometry.bin_w, at.pw, ix, geometry.grid_w), width);
        const auto sample = common::bilinear_sample<T>(y, x, width, 1);
        if (!sample.inside) {
          continue;
        }
        for (int corner = 0; corner < 4; ++corner) {
          gpuAtomicAdd(plane + sample.offsets[corner], grad_bin * sample.weights[corner] / geometry.count);
        }
      }
    }
  }
}

}  // namespace

namespace cuda {

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                     int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  common::check_roi_align_input(input);
  common::check_device("roi_align", at::kCUDA, {input, rois});
  common::check_roi_align_args("roi_align", input, rois, pooled_height, pooled_width);
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
            static_cast<scalar_t>(spatial_scale), input.size(0), channels, input.size(2), input.size(3),
            pooled_height, pooled_width, sampling_ratio, aligned, output.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                              int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  common::check_device("roi_align_backward", at::kCUDA, {grad, rois});
  common::check_roi_align_args("roi_align_backward", grad, rois, pooled_height, pooled_width);
  common::check_roi_align_grad(grad, rois.size(0), channels, pooled_height, pooled_width);
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
