// Pairwise IoU on the CPU with torchvision's arithmetic (union = area1 + area2 - inter, then
// inter / union), so results are bit-identical to torchvision.ops.box_iou, NaN for 0 / 0 included.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename scalar_t>
void box_iou_kernel(const scalar_t* boxes1, const scalar_t* boxes2, int64_t num_boxes1, int64_t num_boxes2,
                    scalar_t* iou) {
  at::parallel_for(0, num_boxes1, /*grain_size=*/16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* a = boxes1 + 4 * i;
      const scalar_t area_a = (a[2] - a[0]) * (a[3] - a[1]);
      for (int64_t j = 0; j < num_boxes2; ++j) {
        const scalar_t* b = boxes2 + 4 * j;
        const scalar_t area_b = (b[2] - b[0]) * (b[3] - b[1]);
        const scalar_t width = std::max(static_cast<scalar_t>(0), std::min(a[2], b[2]) - std::max(a[0], b[0]));
        const scalar_t height = std::max(static_cast<scalar_t>(0), std::min(a[3], b[3]) - std::max(a[1], b[1]));
        const scalar_t inter = width * height;
        iou[i * num_boxes2 + j] = inter / (area_a + area_b - inter);
      }
    }
  });
}

}  // namespace

namespace cpu {

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 4, "box_iou: boxes1 must be (N, 4), got ", boxes1.sizes());
  TORCH_CHECK(boxes2.dim() == 2 && boxes2.size(1) == 4, "box_iou: boxes2 must be (M, 4), got ", boxes2.sizes());
  TORCH_CHECK(boxes1.scalar_type() == boxes2.scalar_type(), "box_iou: boxes1 (", boxes1.scalar_type(),
              ") and boxes2 (", boxes2.scalar_type(), ") must have the same dtype");
  const at::Tensor boxes1_c = boxes1.contiguous();
  const at::Tensor boxes2_c = boxes2.contiguous();
  at::Tensor iou = at::empty({boxes1.size(0), boxes2.size(0)}, boxes1.options());
  if (iou.numel() == 0) {
    return iou;
  }
  AT_DISPATCH_FLOATING_TYPES(boxes1.scalar_type(), "maskrcnn_multi::box_iou (CPU)", [&] {
    box_iou_kernel<scalar_t>(boxes1_c.data_ptr<scalar_t>(), boxes2_c.data_ptr<scalar_t>(), boxes1.size(0),
                             boxes2.size(0), iou.data_ptr<scalar_t>());
  });
  return iou;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
