// Pastes (N, M, M) mask probabilities into (N, H, W) images on the CPU with detectron2's CPU rule; the
// geometry and the bilinear arithmetic (bit-identical to F.grid_sample) are
// common/paste_masks_geometry.h, shared with the CUDA kernel. Here: the row sample is computed once per
// image row, and only the pasting region of each mask is visited.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/zeros.h>

#include "common/checks.h"
#include "common/paste_masks_geometry.h"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

template <typename T>
void paste_one_row(const T* mask, int64_t mask_size, const T* box, int64_t py, int64_t x_begin, int64_t x_end,
                   T* image_row) {
  const auto y = common::mask_axis_sample<T>(py, box[1], box[3], mask_size);
  for (int64_t px = x_begin; px < x_end; ++px) {
    const auto x = common::mask_axis_sample<T>(px, box[0], box[2], mask_size);
    image_row[px] = common::mask_bilinear<T>(mask, mask_size, y, x);
  }
}

}  // namespace

namespace cpu {

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  common::check_paste_masks_args(masks, boxes, height, width);
  const int64_t num_masks = masks.size(0), mask_size = masks.size(1);
  at::Tensor images = at::zeros({num_masks, height, width}, masks.options());
  if (images.numel() == 0 || mask_size == 0) {
    return images;
  }
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(masks.scalar_type(), "maskrcnn_multi::paste_masks (CPU)", [&] {
    const scalar_t* mask_data = masks_c.data_ptr<scalar_t>();
    const scalar_t* box_data = boxes_c.data_ptr<scalar_t>();
    scalar_t* image_data = images.data_ptr<scalar_t>();
    // Image rows of all masks are independent: split them over the threads.
    at::parallel_for(0, num_masks * height, /*grain_size=*/32, [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        const int64_t n = row / height, py = row % height;
        const scalar_t* box = box_data + 4 * n;
        const common::PasteRegion region = common::paste_region(box, height, width);
        if (py < region.y_begin || py >= region.y_end) {
          continue;
        }
        paste_one_row<scalar_t>(mask_data + n * mask_size * mask_size, mask_size, box, py, region.x_begin,
                                region.x_end, image_data + row * width);
      }
    });
  });
  return images;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
