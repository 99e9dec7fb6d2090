// RoIAlign forward and backward on CUDA. The geometry (bins, sample positions, bilinear corners) is
// common/roi_align_geometry.h and the layout rule common/layout.h, both shared with the CPU kernels:
// features are read where they lie (any strides, channels_last included) in float, double, bf16 or
// fp16, accumulated in float for the half types; results have the input's dtype, and are
// channels_last when its channels are innermost. One thread per pooled value, threads walking the
// result in its memory order (channels fastest when channels_last, so reads and atomics coalesce);
// the backward scatters with atomics into an accumulation-type buffer since rois overlap.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/checks.h"
#include "common/layout.h"
#include "common/roi_align_geometry.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

// Element strides of a (N, C, H, W) or (K, C, PH, PW) tensor.
struct Strides {
  int64_t n, c, h, w;
};

Strides strides_of(const at::Tensor& tensor) {
  return {tensor.stride(0), tensor.stride(1), tensor.stride(2), tensor.stride(3)};
}

// The roi, channel and bin of the `index`-th pooled value in memory order: (n, ph, pw, c) when
// channels_last, (n, c, ph, pw) otherwise.
struct PooledIndex {
  int64_t n, c, ph, pw;
};

__device__ inline PooledIndex pooled_index(int64_t index, int64_t channels, int64_t pooled_height,
                                           int64_t pooled_width, bool channels_last) {
  PooledIndex at;
  if (channels_last) {
    at.c = index % channels;
    at.pw = (index / channels) % pooled_width;
    at.ph = (index / channels / pooled_width) % pooled_height;
    at.n = index / channels / pooled_width / pooled_height;
  } else {
    at.pw = index % pooled_width;
    at.ph = (index / pooled_width) % pooled_height;
    at.c = (index / pooled_width / pooled_height) % channels;
    at.n = index / pooled_width / pooled_height / channels;
  }
  return at;
}

// What both kernels share: the pooling settings and the map's size.
template <typename acc_t>
struct Pooling {
  const acc_t* rois;
  acc_t spatial_scale;
  int64_t batch_size, channels, height, width, pooled_height, pooled_width, sampling_ratio;
  bool aligned, channels_last;
};

template <typename scalar_t, typename acc_t>
__global__ void roi_align_forward_kernel(int64_t total, const scalar_t* features, Strides in, Pooling<acc_t> p,
                                         scalar_t* pooled) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const PooledIndex at = pooled_index(index, p.channels, p.pooled_height, p.pooled_width, p.channels_last);
    const auto geometry = common::roi_geometry<acc_t>(p.rois + 5 * at.n, p.spatial_scale, p.pooled_height,
                                                      p.pooled_width, p.sampling_ratio, p.aligned);
    // rois[:, 0] outside [0, N) would read another image's memory; the CPU kernel raises on it
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < p.batch_size);
    const scalar_t* plane = features + geometry.batch_index * in.n + at.c * in.c;
    acc_t value = 0;
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const auto y = common::axis_sample<acc_t>(
          common::sample_position(geometry.start_h, geometry.bin_h, at.ph, iy, geometry.grid_h), p.height);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const auto x = common::axis_sample<acc_t>(
            common::sample_position(geometry.start_w, geometry.bin_w, at.pw, ix, geometry.grid_w), p.width);
        const auto sample = common::bilinear_sample<acc_t>(y, x, in.h, in.w);
        if (sample.inside) {
          value += sample.weights[0] * static_cast<acc_t>(plane[sample.offsets[0]]) +
                   sample.weights[1] * static_cast<acc_t>(plane[sample.offsets[1]]) +
                   sample.weights[2] * static_cast<acc_t>(plane[sample.offsets[2]]) +
                   sample.weights[3] * static_cast<acc_t>(plane[sample.offsets[3]]);
        }
      }
    }
    pooled[index] = static_cast<scalar_t>(value / geometry.count);
  }
}

// `grad_features` is the accumulation buffer, dense in its memory format (strides `out`).
template <typename scalar_t, typename acc_t>
__global__ void roi_align_backward_kernel(int64_t total, const scalar_t* grad_pooled, Strides grad, Pooling<acc_t> p,
                                          acc_t* grad_features, Strides out) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const PooledIndex at = pooled_index(index, p.channels, p.pooled_height, p.pooled_width, p.channels_last);
    const auto geometry = common::roi_geometry<acc_t>(p.rois + 5 * at.n, p.spatial_scale, p.pooled_height,
                                                      p.pooled_width, p.sampling_ratio, p.aligned);
    CUDA_KERNEL_ASSERT(geometry.batch_index >= 0 && geometry.batch_index < p.batch_size);
    acc_t* plane = grad_features + geometry.batch_index * out.n + at.c * out.c;
    const acc_t grad_bin =
        static_cast<acc_t>(grad_pooled[at.n * grad.n + at.c * grad.c + at.ph * grad.h + at.pw * grad.w]);
    for (int64_t iy = 0; iy < geometry.grid_h; ++iy) {
      const auto y = common::axis_sample<acc_t>(
          common::sample_position(geometry.start_h, geometry.bin_h, at.ph, iy, geometry.grid_h), p.height);
      for (int64_t ix = 0; ix < geometry.grid_w; ++ix) {
        const auto x = common::axis_sample<acc_t>(
            common::sample_position(geometry.start_w, geometry.bin_w, at.pw, ix, geometry.grid_w), p.width);
        const auto sample = common::bilinear_sample<acc_t>(y, x, out.h, out.w);
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
  common::check_roi_align_args("roi_align", rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width},
                                input.options().memory_format(common::memory_format_like(input)));
  if (output.numel() == 0) {
    return output;
  }
  c10::cuda::CUDAGuard device_guard(input.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "maskrcnn_multi::roi_align (CUDA)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const Pooling<acc_t> pooling{rois_acc.data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale), input.size(0),
                                 channels, input.size(2), input.size(3), pooled_height, pooled_width, sampling_ratio,
                                 aligned, common::channels_innermost(input)};
    roi_align_forward_kernel<scalar_t, acc_t>
        <<<cuda_helpers::blocks_for(output.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            output.numel(), input.data_ptr<scalar_t>(), strides_of(input), pooling, output.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                              int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  common::check_device("roi_align_backward", at::kCUDA, {grad, rois});
  common::check_roi_align_args("roi_align_backward", rois, pooled_height, pooled_width);
  common::check_roi_align_grad(grad, rois.size(0), channels, pooled_height, pooled_width);
  TORCH_CHECK(grad.is_floating_point(), "roi_align_backward: grad must be floating point, got ", grad.scalar_type());
  const auto options = grad.options().memory_format(common::memory_format_like(grad));
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return at::empty({batch_size, channels, height, width}, options).zero_();
  }
  c10::cuda::CUDAGuard device_guard(grad.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  at::Tensor grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "maskrcnn_multi::roi_align_backward (CUDA)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::ScalarType acc_type = c10::CppTypeToScalarType<acc_t>::value;
    const at::Tensor rois_acc = rois.to(acc_type).contiguous();
    // Half-precision atomics would lose the small terms: accumulate in acc_t, round once after.
    // (at::zeros would drop the memory format.)
    const at::Tensor accumulator = at::empty({batch_size, channels, height, width}, options.dtype(acc_type)).zero_();
    const Pooling<acc_t> pooling{rois_acc.data_ptr<acc_t>(), static_cast<acc_t>(spatial_scale), batch_size,
                                 channels, height, width, pooled_height, pooled_width, sampling_ratio, aligned,
                                 common::channels_innermost(grad)};
    roi_align_backward_kernel<scalar_t, acc_t>
        <<<cuda_helpers::blocks_for(grad.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            grad.numel(), grad.data_ptr<scalar_t>(), strides_of(grad), pooling, accumulator.data_ptr<acc_t>(),
            strides_of(accumulator));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    grad_input = accumulator.to(grad.scalar_type());  // the same tensor when acc_t is scalar_t
  });
  return grad_input;
}

}  // namespace cuda
}  // namespace maskrcnn_multi
