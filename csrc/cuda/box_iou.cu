// Pairwise IoU on CUDA with the arithmetic of common/box_overlap.h (torchvision's, no fused
// multiply-adds), shared with the CPU kernel, so results are bit-identical to the CPU's, NaN included.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "common/box_overlap.h"
#include "common/checks.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
__global__ void box_iou_kernel(const T* boxes1, const T* boxes2, int64_t num_boxes1, int64_t num_boxes2, T* iou) {
  const int64_t total = num_boxes1 * num_boxes2;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const T* a = boxes1 + 4 * (index / num_boxes2);
    const T* b = boxes2 + 4 * (index % num_boxes2);
    iou[index] = common::iou_from_areas(common::intersection_area(a, b), common::box_area(a), common::box_area(b));
  }
}

}  // namespace

namespace cuda {

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  common::check_device("box_iou", at::kCUDA, {boxes1, boxes2});
  common::check_box_iou_args(boxes1, boxes2);
  at::Tensor iou = at::empty({boxes1.size(0), boxes2.size(0)}, boxes1.options());
  if (iou.numel() == 0) {
    return iou;
  }
  c10::cuda::CUDAGuard device_guard(boxes1.device());
  const at::Tensor boxes1_c = boxes1.contiguous();
  const at::Tensor boxes2_c = boxes2.contiguous();
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes1.scalar_type(), "maskrcnn_multi::box_iou (CUDA)", [&] {
    box_iou_kernel<scalar_t><<<cuda_helpers::blocks_for(iou.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
        boxes1_c.data_ptr<scalar_t>(), boxes2_c.data_ptr<scalar_t>(), boxes1.size(0), boxes2.size(0),
        iou.data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return iou;
}

}  // namespace cuda
}  // namespace maskrcnn_multi
