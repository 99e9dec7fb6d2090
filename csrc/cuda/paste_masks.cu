// Pastes (N, M, M) masks into (N, H, W) images on CUDA with detectron2's CPU rule; the geometry and
// the bilinear arithmetic are common/paste_masks_geometry.h, shared with the CPU kernel. One thread
// per image pixel.
#include <ATen/Dispatch.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/checks.h"
#include "common/paste_masks_geometry.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
__global__ void paste_masks_kernel(int64_t total, const T* masks, const T* boxes, int64_t mask_size, int64_t height,
                                   int64_t width, T* images) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t px = index % width;
    const int64_t py = (index / width) % height;
    const int64_t n = index / width / height;
    const T* box = boxes + 4 * n;
    const common::PasteRegion region = common::paste_region(box, height, width);
    if (px < region.x_begin || px >= region.x_end || py < region.y_begin || py >= region.y_end) {
      continue;  // images are zero-initialised
    }
    const auto y = common::mask_axis_sample<T>(py, box[1], box[3], mask_size);
    const auto x = common::mask_axis_sample<T>(px, box[0], box[2], mask_size);
    images[index] = common::mask_bilinear<T>(masks + n * mask_size * mask_size, mask_size, y, x);
  }
}

}  // namespace

namespace cuda {

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  common::check_device("paste_masks", at::kCUDA, {masks, boxes});
  common::check_paste_masks_args(masks, boxes, height, width);
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
