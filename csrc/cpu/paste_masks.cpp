// Pastes (N, M, M) mask probabilities into (N, H, W) images on the CPU, reproducing detectron2's CPU
// path (layers/mask_ops.py): a pixel centre (px + 0.5) maps into the box, then grid_sample's bilinear
// interpolation (align_corners=False, zero padding) reads the mask. Pixels outside
// [floor(x0) - 1, ceil(x1) + 1) x [floor(y0) - 1, ceil(y1) + 1), where detectron2 pastes nothing,
// stay 0. The arithmetic follows ATen's vectorised CPU grid sampler as compiled (its multiply-adds are
// fused), so the values match F.grid_sample bit for bit; the explicit std::fma calls are why.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include "ops.h"

#include <cmath>

namespace maskrcnn_multi {
namespace {

// Grid coordinate of pixel `pixel` in a box spanning [low, high), then grid_sample's source index
// ((g + 1) * size / 2 - 0.5) in a mask of `mask_size` cells.
template <typename T>
T mask_source_index(int64_t pixel, T low, T high, int64_t mask_size) {
  const T grid = (static_cast<T>(pixel) + static_cast<T>(0.5) - low) / (high - low) * 2 - 1;
  return std::fma(grid + 1, static_cast<T>(mask_size) / 2, static_cast<T>(-0.5));
}

template <typename T>
void paste_one_row(const T* mask, int64_t mask_size, const T* box, int64_t py, int64_t x_begin, int64_t x_end,
                   T* image_row) {
  const T iy = mask_source_index<T>(py, box[1], box[3], mask_size);
  const T y_north = std::floor(iy);
  const T south_weight = iy - y_north, north_weight = 1 - south_weight;
  const int64_t row_north = static_cast<int64_t>(y_north), row_south = row_north + 1;
  const bool north_inside = row_north >= 0 && row_north < mask_size;
  const bool south_inside = row_south >= 0 && row_south < mask_size;
  for (int64_t px = x_begin; px < x_end; ++px) {
    const T ix = mask_source_index<T>(px, box[0], box[2], mask_size);
    const T x_west = std::floor(ix);
    const T east_weight = ix - x_west, west_weight = 1 - east_weight;
    const int64_t col_west = static_cast<int64_t>(x_west), col_east = col_west + 1;
    const bool west_inside = col_west >= 0 && col_west < mask_size;
    const bool east_inside = col_east >= 0 && col_east < mask_size;
    const T nw = north_inside && west_inside ? mask[row_north * mask_size + col_west] : T(0);
    const T ne = north_inside && east_inside ? mask[row_north * mask_size + col_east] : T(0);
    const T sw = south_inside && west_inside ? mask[row_south * mask_size + col_west] : T(0);
    const T se = south_inside && east_inside ? mask[row_south * mask_size + col_east] : T(0);
    T value = nw * (north_weight * west_weight);
    value = std::fma(ne, north_weight * east_weight, value);
    value = std::fma(sw, south_weight * west_weight, value);
    image_row[px] = std::fma(se, south_weight * east_weight, value);
  }
}

}  // namespace

namespace cpu {

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  TORCH_CHECK(masks.dim() == 3 && masks.size(1) == masks.size(2), "paste_masks: masks must be (N, M, M), got ",
              masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0),
              "paste_masks: boxes must be (N, 4) with N = ", masks.size(0), ", got ", boxes.sizes());
  TORCH_CHECK(masks.scalar_type() == boxes.scalar_type(), "paste_masks: masks (", masks.scalar_type(),
              ") and boxes (", boxes.scalar_type(), ") must have the same dtype");
  TORCH_CHECK(height >= 0 && width >= 0, "paste_masks: image size must be non-negative, got (", height, ", ",
              width, ")");
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
        const int64_t y_begin = std::max<int64_t>(static_cast<int64_t>(std::floor(box[1]) - 1), 0);
        const int64_t y_end = std::min<int64_t>(static_cast<int64_t>(std::ceil(box[3]) + 1), height);
        if (py < y_begin || py >= y_end) {
          continue;
        }
        const int64_t x_begin = std::max<int64_t>(static_cast<int64_t>(std::floor(box[0]) - 1), 0);
        const int64_t x_end = std::min<int64_t>(static_cast<int64_t>(std::ceil(box[2]) + 1), width);
        paste_one_row<scalar_t>(mask_data + n * mask_size * mask_size, mask_size, box, py, x_begin, x_end,
                                image_data + row * width);
      }
    });
  });
  return images;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
