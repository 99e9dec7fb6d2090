// Mask pasting on CUDA with detectron2's CPU rule; the geometry, the bilinear arithmetic and the
// thresholding are common/paste_masks_geometry.h, shared with the CPU kernels. One thread per image
// pixel: paste_masks writes the float values, paste_masks_in_image the thresholded bytes (bool, or
// uint8 for threshold < 0); pixels outside a mask's pasting region are written 0 by the same thread.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <type_traits>

#include "common/checks.h"
#include "common/paste_masks_geometry.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

// How a pasted value is stored: as is, as a 0/1 mask byte, or as detectron2's visualisation byte.
enum class Store { kValue, kMask, kVisualisation };

template <typename T, typename Out, Store store>
__global__ void paste_masks_kernel(int64_t total, const T* masks, const T* boxes, int64_t mask_size, int64_t height,
                                   int64_t width, T threshold, Out* images) {
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t px = index % width;
    const int64_t py = (index / width) % height;
    const int64_t n = index / width / height;
    const T* box = boxes + 4 * n;
    const common::PasteRegion region = common::paste_region(box, height, width);
    if (px < region.x_begin || px >= region.x_end || py < region.y_begin || py >= region.y_end) {
      images[index] = Out(0);
      continue;
    }
    const auto y = common::mask_axis_sample<T>(py, box[1], box[3], mask_size);
    const auto x = common::mask_axis_sample<T>(px, box[0], box[2], mask_size);
    const T value = common::mask_bilinear<T>(masks + n * mask_size * mask_size, mask_size, y, x);
    if constexpr (store == Store::kValue) {
      images[index] = value;
    } else if constexpr (store == Store::kMask) {
      images[index] = common::mask_pixel(value, threshold);
    } else {
      images[index] = common::visualisation_pixel(value);
    }
  }
}

// images: (N, height, width) of the masks' dtype for kValue, one byte per pixel otherwise.
template <Store store>
void launch(const at::Tensor& masks, const at::Tensor& boxes, double threshold, at::Tensor& images) {
  c10::cuda::CUDAGuard device_guard(masks.device());
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(masks.scalar_type(), "maskrcnn_multi::paste_masks (CUDA)", [&] {
    using kernel_out = std::conditional_t<store == Store::kValue, scalar_t, uint8_t>;
    paste_masks_kernel<scalar_t, kernel_out, store>
        <<<cuda_helpers::blocks_for(images.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
            images.numel(), masks_c.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), masks.size(1),
            images.size(1), images.size(2), static_cast<scalar_t>(threshold),
            static_cast<kernel_out*>(images.data_ptr()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

namespace cuda {

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  common::check_device("paste_masks", at::kCUDA, {masks, boxes});
  common::check_paste_masks_args("paste_masks", masks, boxes, height, width);
  at::Tensor images = at::empty({masks.size(0), height, width}, masks.options());
  if (images.numel() == 0) {
    return images;
  }
  if (masks.size(1) == 0) {
    return images.zero_();
  }
  launch<Store::kValue>(masks, boxes, 0.0, images);
  return images;
}

at::Tensor paste_masks_in_image(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
                                double threshold) {
  common::check_device("paste_masks_in_image", at::kCUDA, {masks, boxes});
  common::check_paste_masks_args("paste_masks_in_image", masks, boxes, height, width);
  at::Tensor images =
      at::empty({masks.size(0), height, width}, masks.options().dtype(threshold >= 0 ? at::kBool : at::kByte));
  if (images.numel() == 0) {
    return images;
  }
  if (masks.size(1) == 0) {
    return images.zero_();
  }
  // bool and uint8 are both one byte; mask_pixel gives 0 / 1 for bool masks.
  if (threshold >= 0) {
    launch<Store::kMask>(masks, boxes, threshold, images);
  } else {
    launch<Store::kVisualisation>(masks, boxes, threshold, images);
  }
  return images;
}

}  // namespace cuda
}  // namespace maskrcnn_multi
