// Pastes (N, M, M) masks into (N, H, W) images on CUDA with the arithmetic of csrc/cpu/paste_masks.cpp
// (detectron2's CPU path: pixel centres mapped into the box, grid_sample's bilinear interpolation with
// zero padding, nothing pasted outside the box grown by about a pixel). One thread per image pixel.
#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
__device__ inline T mask_source_index(int64_t pixel, T low, T high, int64_t mask_size) {
  const T grid = (static_cast<T>(pixel) + static_cast<T>(0.5) - low) / (high - low) * 2 - 1;
  return cuda_helpers::fused_mul_add(grid + 1, static_cast<T>(mask_size) / 2, static_cast<T>(-0.5));
}

template <typename T>
__device__ inline T mask_value(const T* mask, int64_t mask_size, int64_t row, int64_t col) {
  const bool inside = row >= 0 && row < mask_size && col >= 0 && col < mask_size;
  return inside ? mask[row * mask_size + col] : static_cast<T>(0);
}

template <typename T>
__global__ void paste_masks_kernel(int64_t total, const T* masks, const T* boxes, int64_t mask_size, int64_t height,
                                   int64_t width, T* images) {
  using cuda_helpers::fused_mul_add;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t px = index % width;
    const int64_t py = (index / width) % height;
    const int64_t n = index / width / height;
    const T* box = boxes + 4 * n;
    // detectron2 pastes only inside [floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1).
    const int64_t x_begin = max(static_cast<int64_t>(floor(box[0]) - 1), (int64_t)0);
    const int64_t y_begin = max(static_cast<int64_t>(floor(box[1]) - 1), (int64_t)0);
    const int64_t x_end = min(static_cast<int64_t>(ceil(box[2]) + 1), width);
    const int64_t y_end = min(static_cast<int64_t>(ceil(box[3]) + 1), height);
    if (px < x_begin || px >= x_end || py < y_begin || py >= y_end) {
      continue;  // images are zero-initialised
    }
    const T ix = mask_source_index<T>(px, box[0], box[2], mask_size);
    const T iy = mask_source_index<T>(py, box[1], box[3], mask_size);
    const T x_west = floor(ix), y_north = floor(iy);
    const T east_weight = ix - x_west, west_weight = static_cast<T>(1) - east_weight;
    const T south_weight = iy - y_north, north_weight = static_cast<T>(1) - south_weight;
    const int64_t col = static_cast<int64_t>(x_west), row = static_cast<int64_t>(y_north);
    const T* mask = masks + n * mask_size * mask_size;
    T value = mask_value(mask, mask_size, row, col) * (north_weight * west_weight);
    value = fused_mul_add(mask_value(mask, mask_size, row, col + 1), north_weight * east_weight, value);
    value = fused_mul_add(mask_value(mask, mask_size, row + 1, col), south_weight * west_weight, value);
    images[index] = fused_mul_add(mask_value(mask, mask_size, row + 1, col + 1), south_weight * east_weight, value);
  }
}

}  // namespace

namespace cuda {

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  TORCH_CHECK(masks.is_cuda() && boxes.is_cuda(), "paste_masks: masks and boxes must be CUDA tensors");
  TORCH_CHECK(masks.dim() == 3 && masks.size(1) == masks.size(2), "paste_masks: masks must be (N, M, M), got ",
              masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks: boxes must be (N, 4) with N = ", masks.size(0), ", got ", boxes.sizes());
  TORCH_CHECK(masks.scalar_type() == boxes.scalar_type(), "paste_masks: masks (", masks.scalar_type(),
              ") and boxes (", boxes.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: image size must be non-negative, got (", height, ", ",
              width, ")");
  at::Tensor images = at::zeros({masks.size(0), height, width}, masks.options());
  if (images.numel() == 0 || masks.size(1) == 0) {
    return images;
  }
  c10::cuda::CUDAGuard device_guard(masks.device());
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(masks.scalar_type(), "maskrcnn_multi::paste_masks (CUDA)", [&] {
    paste_masks_kernel<scalar_t>
        <<<cuda_helpers::blocks_for(images.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            images.numel(), masks_c.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), masks.size(1), height,
            width, images.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return images;
}

}  // namespace cuda
}  // namespace maskrcnn_multi
