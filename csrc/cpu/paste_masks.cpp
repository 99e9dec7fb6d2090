// Mask pasting on the CPU with detectron2's CPU rule; the geometry, the bilinear arithmetic
// (bit-identical to F.grid_sample) and the thresholding are common/paste_masks_geometry.h, shared with
// the CUDA kernels.
// - paste_masks: the float values (pre-threshold), what tests compare with grid_sample;
// - paste_masks_in_image: the thresholded masks written directly (bool, or uint8 for threshold < 0),
//   computing only inside each mask's pasting region.
// Each output element is written once: rows outside a mask's region and the margins beside it are
// zero filled as the row is produced. A mask is copied into a zero-bordered table and its column
// samples are tabulated once for all its rows, so the pixel loop has no branches and is compiled for
// the host's vector ISA (isa.h).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include "common/checks.h"
#include "common/paste_masks_geometry.h"
#include "cpu/isa.h"
#include "ops.h"

#include <algorithm>
#include <vector>

namespace maskrcnn_multi {
namespace cpu {
namespace {

// One mask prepared for pasting: its cells in a (M + 2, M + 2) table with a zero border (so reads
// outside the mask find 0 without a test), and per column of its pasting region the table columns
// of the two cells read and their weights.
template <typename T>
struct PreparedMask {
  int64_t side = 0;  // M + 2
  std::vector<T> table;
  std::vector<int64_t> west, east;
  std::vector<T> west_weight, east_weight;
};

// A mask cell index (any integer) -> its table index; everything outside the mask lands on the border.
inline int64_t table_index(int64_t cell, int64_t mask_size) {
  return std::min<int64_t>(std::max<int64_t>(cell, -1), mask_size) + 1;
}

template <typename T, bool kFused>
void prepare_mask(const T* mask, int64_t mask_size, const T* box, const common::PasteRegion& region,
                  PreparedMask<T>& prepared) {
  prepared.side = mask_size + 2;
  prepared.table.assign(prepared.side * prepared.side, T(0));
  for (int64_t row = 0; row < mask_size; ++row) {
    std::copy(mask + row * mask_size, mask + (row + 1) * mask_size,
              prepared.table.begin() + (row + 1) * prepared.side + 1);
  }
  prepared.west.clear();
  prepared.east.clear();
  prepared.west_weight.clear();
  prepared.east_weight.clear();
  for (int64_t px = region.x_begin; px < region.x_end; ++px) {
    const auto x = common::mask_axis_sample<T, kFused>(px, box[0], box[2], mask_size);
    prepared.west.push_back(table_index(x.low, mask_size));
    prepared.east.push_back(table_index(x.low + 1, mask_size));
    prepared.west_weight.push_back(x.low_weight);
    prepared.east_weight.push_back(x.high_weight);
  }
}

// One image row inside a region: `count` pixels from the region's first column.
template <typename T, bool kFused, typename Out, typename Emit>
MRCNN_ALWAYS_INLINE void paste_span_body(const PreparedMask<T>& mask, const common::MaskAxisSample<T>& y,
                                         int64_t mask_size, int64_t count, Out* out, const Emit& emit) {
  const T* north = mask.table.data() + table_index(y.low, mask_size) * mask.side;
  const T* south = mask.table.data() + table_index(y.low + 1, mask_size) * mask.side;
  const int64_t* west = mask.west.data();
  const int64_t* east = mask.east.data();
  const T* west_weight = mask.west_weight.data();
  const T* east_weight = mask.east_weight.data();
  for (int64_t i = 0; i < count; ++i) {
    out[i] = emit(common::bilinear_combine<T, kFused>(north[west[i]], north[east[i]], south[west[i]], south[east[i]],
                                           y.low_weight, y.high_weight, west_weight[i], east_weight[i]));
  }
}

#if MRCNN_HAVE_X86_TARGETS
template <typename T, bool kFused, typename Out, typename Emit>
MRCNN_TARGET_AVX512 void paste_span_avx512(const PreparedMask<T>& mask, const common::MaskAxisSample<T>& y,
                                           int64_t mask_size, int64_t count, Out* out, const Emit& emit) {
  paste_span_body<T, kFused>(mask, y, mask_size, count, out, emit);
}
template <typename T, bool kFused, typename Out, typename Emit>
MRCNN_TARGET_AVX2 void paste_span_avx2(const PreparedMask<T>& mask, const common::MaskAxisSample<T>& y,
                                       int64_t mask_size, int64_t count, Out* out, const Emit& emit) {
  paste_span_body<T, kFused>(mask, y, mask_size, count, out, emit);
}
#endif

template <typename T, bool kFused, typename Out, typename Emit>
void paste_span(const PreparedMask<T>& mask, const common::MaskAxisSample<T>& y, int64_t mask_size, int64_t count,
                Out* out, const Emit& emit) {
#if MRCNN_HAVE_X86_TARGETS
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return paste_span_avx512<T, kFused>(mask, y, mask_size, count, out, emit);
    case Isa::kAvx2:
      return paste_span_avx2<T, kFused>(mask, y, mask_size, count, out, emit);
    default:
      break;
  }
#endif
  paste_span_body<T, kFused>(mask, y, mask_size, count, out, emit);
}

// Writes the (num_masks, height, width) images row by row; `emit(value)` is what a pasted value
// becomes in `Out`.
template <typename T, bool kFused, typename Out, typename Emit>
void paste_rows_with(const T* masks, const T* boxes, int64_t num_masks, int64_t mask_size, int64_t height,
                     int64_t width, Out* images, const Emit& emit) {
  // A row costs a few hundred pixels at most; 64 rows amortise a task.
  at::parallel_for(0, num_masks * height, /*grain_size=*/64, [&](int64_t begin, int64_t end) {
    PreparedMask<T> prepared;
    int64_t prepared_mask = -1;  // the mask `prepared` holds
    for (int64_t row = begin; row < end; ++row) {
      const int64_t n = row / height, py = row % height;
      Out* image_row = images + row * width;
      const T* box = boxes + 4 * n;
      const common::PasteRegion region = common::paste_region(box, height, width);
      if (py < region.y_begin || py >= region.y_end || region.x_begin >= region.x_end) {
        std::fill(image_row, image_row + width, Out(0));
        continue;
      }
      if (prepared_mask != n) {
        prepare_mask<T, kFused>(masks + n * mask_size * mask_size, mask_size, box, region, prepared);
        prepared_mask = n;
      }
      std::fill(image_row, image_row + region.x_begin, Out(0));
      paste_span<T, kFused>(prepared, common::mask_axis_sample<T, kFused>(py, box[1], box[3], mask_size),
                            mask_size, region.x_end - region.x_begin, image_row + region.x_begin, emit);
      std::fill(image_row + region.x_end, image_row + width, Out(0));
    }
  });
}

// paste_rows_with, with F.grid_sample's roundings on this host: ATen's grid sampler fuses its
// multiply-adds where it is built with FMA, which on x86 is every capability but the default.
template <typename T, typename Out, typename Emit>
void paste_rows(const T* masks, const T* boxes, int64_t num_masks, int64_t mask_size, int64_t height, int64_t width,
                Out* images, const Emit& emit) {
#if MRCNN_HAVE_X86_TARGETS
  if (cpu_isa() == Isa::kDefault) {
    return paste_rows_with<T, false>(masks, boxes, num_masks, mask_size, height, width, images, emit);
  }
#endif
  paste_rows_with<T, true>(masks, boxes, num_masks, mask_size, height, width, images, emit);
}

// The stores of a pasted value (lambdas would do, but named types keep the ISA wrappers' symbols short).
template <typename T>
struct StoreValue {
  T operator()(T value) const { return value; }
};
template <typename T>
struct StoreMask {
  T threshold;
  uint8_t operator()(T value) const { return common::mask_pixel(value, threshold); }
};
template <typename T>
struct StoreVisualisation {
  uint8_t operator()(T value) const { return common::visualisation_pixel(value); }
};

}  // namespace

at::Tensor paste_masks(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width) {
  common::check_paste_masks_args("paste_masks", masks, boxes, height, width);
  const int64_t num_masks = masks.size(0), mask_size = masks.size(1);
  at::Tensor images = at::empty({num_masks, height, width}, masks.options());
  if (images.numel() == 0) {
    return images;
  }
  if (mask_size == 0) {
    return images.zero_();
  }
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(masks.scalar_type(), "maskrcnn_multi::paste_masks (CPU)", [&] {
    paste_rows<scalar_t>(masks_c.data_ptr<scalar_t>(), boxes_c.data_ptr<scalar_t>(), num_masks, mask_size, height,
                         width, images.data_ptr<scalar_t>(), StoreValue<scalar_t>{});
  });
  return images;
}

at::Tensor paste_masks_in_image(const at::Tensor& masks, const at::Tensor& boxes, int64_t height, int64_t width,
                                double threshold) {
  common::check_paste_masks_args("paste_masks_in_image", masks, boxes, height, width);
  const int64_t num_masks = masks.size(0), mask_size = masks.size(1);
  at::Tensor images =
      at::empty({num_masks, height, width}, masks.options().dtype(threshold >= 0 ? at::kBool : at::kByte));
  if (images.numel() == 0) {
    return images;
  }
  if (mask_size == 0) {
    return images.zero_();
  }
  const at::Tensor masks_c = masks.contiguous();
  const at::Tensor boxes_c = boxes.contiguous();
  // bool and uint8 are both one byte; mask_pixel gives 0 / 1 for bool masks.
  uint8_t* image_data = static_cast<uint8_t*>(images.data_ptr());
  AT_DISPATCH_FLOATING_TYPES(masks.scalar_type(), "maskrcnn_multi::paste_masks_in_image (CPU)", [&] {
    const scalar_t* mask_data = masks_c.data_ptr<scalar_t>();
    const scalar_t* box_data = boxes_c.data_ptr<scalar_t>();
    if (threshold < 0) {
      paste_rows<scalar_t>(mask_data, box_data, num_masks, mask_size, height, width, image_data,
                           StoreVisualisation<scalar_t>{});
    } else {
      paste_rows<scalar_t>(mask_data, box_data, num_masks, mask_size, height, width, image_data,
                           StoreMask<scalar_t>{static_cast<scalar_t>(threshold)});
    }
  });
  return images;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
