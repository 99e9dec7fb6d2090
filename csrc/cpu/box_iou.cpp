// Pairwise IoU on the CPU with torchvision's arithmetic (common/box_overlap.h, shared with CUDA), so
// results are bit-identical to torchvision.ops.box_iou, NaN for 0 / 0 included.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include "common/box_overlap.h"
#include "common/checks.h"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename scalar_t>
void box_iou_kernel(const scalar_t* boxes1, const scalar_t* boxes2, int64_t num_boxes1, int64_t num_boxes2,
                    scalar_t* iou) {
  at::parallel_for(0, num_boxes1, /*grain_size=*/16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const scalar_t* a = boxes1 + 4 * i;
      const scalar_t area_a = common::box_area(a);
      for (int64_t j = 0; j < num_boxes2; ++j) {
        const scalar_t* b = boxes2 + 4 * j;
        const scalar_t inter = common::intersection_area(a, b);
        iou[i * num_boxes2 + j] = common::iou_from_areas(inter, area_a, common::box_area(b));
      }
    }
  });
}

}  // namespace

namespace cpu {

at::Tensor box_iou(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  common::check_box_iou_args(boxes1, boxes2);
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
