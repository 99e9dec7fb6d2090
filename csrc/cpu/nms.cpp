// Greedy non-maximum suppression on the CPU, with torchvision's arithmetic (common/box_overlap.h,
// shared with CUDA): IoU computed in the boxes' dtype, compared with the threshold in double, ties in
// score kept in input order.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>

#include "common/box_overlap.h"
#include "common/checks.h"
#include "ops.h"

#include <vector>

namespace maskrcnn_multi {
namespace {

template <typename scalar_t>
at::Tensor nms_kernel(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  const int64_t num_boxes = boxes.size(0);
  // Stable so equal scores keep their input order, as torchvision's kernel does.
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  const scalar_t* box = sorted_boxes.data_ptr<scalar_t>();
  const int64_t* order_ptr = order.data_ptr<int64_t>();

  std::vector<scalar_t> areas(num_boxes);
  for (int64_t i = 0; i < num_boxes; ++i) {
    areas[i] = common::box_area(box + 4 * i);
  }

  std::vector<uint8_t> suppressed(num_boxes, 0);
  std::vector<int64_t> keep;
  keep.reserve(num_boxes);
  for (int64_t i = 0; i < num_boxes; ++i) {
    if (suppressed[i]) {
      continue;
    }
    keep.push_back(order_ptr[i]);
    for (int64_t j = i + 1; j < num_boxes; ++j) {
      if (suppressed[j]) {
        continue;
      }
      const scalar_t inter = common::intersection_area(box + 4 * i, box + 4 * j);
      if (inter == 0 && iou_threshold >= 0) {
        continue;  // IoU is 0 (or NaN for two empty boxes): exact shortcut past the division
      }
      // Zero-area pairs give 0 / 0 = NaN, which never exceeds the threshold: both are kept.
      if (static_cast<double>(common::iou_from_areas(inter, areas[i], areas[j])) > iou_threshold) {
        suppressed[j] = 1;
      }
    }
  }
  at::Tensor keep_tensor = at::empty({static_cast<int64_t>(keep.size())}, boxes.options().dtype(at::kLong));
  std::copy(keep.begin(), keep.end(), keep_tensor.data_ptr<int64_t>());
  return keep_tensor;
}

}  // namespace

namespace cpu {

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  common::check_nms_args(boxes, scores);
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  at::Tensor keep;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "maskrcnn_multi::nms (CPU)", [&] {
    keep = nms_kernel<scalar_t>(boxes, scores, iou_threshold);
  });
  return keep;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
