// Pairwise IoU on CUDA with the CPU kernel's (torchvision's) arithmetic and no fused multiply-adds,
// so results are bit-identical to the CPU's, NaN for 0 / 0 included.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
__global__ void box_iou_kernel(const T* boxes1, const T* boxes2, int64_t num_boxes1, int64_t num_boxes2, T* iou) {
  using cuda_helpers::exact_mul;
  const int64_t total = num_boxes1 * num_boxes2;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const T* a = boxes1 + 4 * (index / num_boxes2);
    const T* b = boxes2 + 4 * (index % num_boxes2);
    const T area_a = exact_mul(a[2] - a[0], a[3] - a[1]);
    const T area_b = exact_mul(b[2] - b[0], b[3] - b[1]);
    const T width = max(min(a[2], b[2]) - max(a[0], b[0]), static_cast<T>(0));
    const T height = max(min(a[3], b[3]) - max(a[1], b[1]), static_cast<T>(0));
    const T inter = exact_mul(width, height);
    iou[index] = inter / (area_a + area_b - inter);
  }
}

}  // namespace

namespace cuda {

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.is_cuda() && boxes2.is_cuda(), "box_iou: boxes1 and boxes2 must be CUDA tensors");
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 4, "box_iou: boxes1 must be (N, 4), got ", boxes1.sizes());
  TORCH_CHECK(boxes2.dim() == 2 && boxes2.size(1) == 4, "box_iou: boxes2 must be (M, 4), got ", boxes2.sizes());
  TORCH_CHECK(boxes1.scalar_type() == boxes2.scalar_type(), "box_iou: boxes1 (", boxes1.scalar_type(),
              ") and boxes2 (", boxes2.scalar_type(), ") must have the same dtype");
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
