// Greedy non-maximum suppression on the CPU, with torchvision's arithmetic (common/box_overlap.h,
// shared with CUDA): IoU computed in the boxes' dtype, compared with the threshold as a double, ties
// in score kept in input order. The keeps are torchvision's exactly.
//
// Blocked greedy: boxes, sorted by score, are taken 256 at a time. Within a block the greedy pass runs
// box by box; then the block's kept boxes suppress every later box still alive, a vectorised loop
// (isa.h) split over threads when there is enough of it; the survivors are compacted, so each block
// only looks at boxes nothing has suppressed yet. This is the sequential greedy's outcome: a box is
// dropped iff a kept, higher-scored box overlaps it by more than the threshold.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/sort.h>

#include "common/box_overlap.h"
#include "common/checks.h"
#include "cpu/isa.h"
#include "ops.h"

#include <cmath>
#include <limits>
#include <vector>

namespace maskrcnn_multi {
namespace cpu {
namespace {

constexpr int64_t kBlock = 256;
// IoUs per thread below which splitting the suppression over threads costs more than it saves.
constexpr int64_t kMinIousPerThread = 1 << 15;

// Boxes still alive, in score order, as separate coordinate arrays (what the vector loop reads).
template <typename T>
struct AliveBoxes {
  std::vector<T> x0, y0, x1, y1, area;
  std::vector<int64_t> position;  // in score order

  int64_t size() const { return static_cast<int64_t>(position.size()); }
};

// `threshold` in T such that, for every T value v, v > result exactly when double(v) > threshold: the
// largest T not above it. Lets the vector loop compare in T and still decide as torchvision does.
template <typename T>
T threshold_in(double threshold) {
  T rounded = static_cast<T>(threshold);
  if (static_cast<double>(rounded) > threshold) {
    rounded = std::nextafter(rounded, -std::numeric_limits<T>::infinity());
  }
  return rounded;
}

// suppressed[j] |= IoU(kept box k, alive box j) > threshold for j in [begin, end).
template <typename T>
MRCNN_ALWAYS_INLINE void suppress_body(const AliveBoxes<T>& boxes, int64_t k, int64_t begin, int64_t end,
                                       T threshold, uint8_t* suppressed) {
  const T kx0 = boxes.x0[k], ky0 = boxes.y0[k], kx1 = boxes.x1[k], ky1 = boxes.y1[k], karea = boxes.area[k];
  const T* x0 = boxes.x0.data();
  const T* y0 = boxes.y0.data();
  const T* x1 = boxes.x1.data();
  const T* y1 = boxes.y1.data();
  const T* area = boxes.area.data();
  for (int64_t j = begin; j < end; ++j) {
    const T inter = common::intersection_area(kx0, ky0, kx1, ky1, x0[j], y0[j], x1[j], y1[j]);
    // Zero-area pairs give 0 / 0 = NaN, which never exceeds the threshold: both are kept.
    suppressed[j] |= static_cast<uint8_t>(common::iou_from_areas(inter, karea, area[j]) > threshold);
  }
}

#if MRCNN_HAVE_X86_TARGETS
template <typename T>
MRCNN_TARGET_AVX512 void suppress_avx512(const AliveBoxes<T>& boxes, int64_t k, int64_t begin, int64_t end,
                                         T threshold, uint8_t* suppressed) {
  suppress_body(boxes, k, begin, end, threshold, suppressed);
}
template <typename T>
MRCNN_TARGET_AVX2 void suppress_avx2(const AliveBoxes<T>& boxes, int64_t k, int64_t begin, int64_t end,
                                     T threshold, uint8_t* suppressed) {
  suppress_body(boxes, k, begin, end, threshold, suppressed);
}
#endif

template <typename T>
void suppress(const AliveBoxes<T>& boxes, int64_t k, int64_t begin, int64_t end, T threshold, uint8_t* suppressed) {
#if MRCNN_HAVE_X86_TARGETS
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return suppress_avx512(boxes, k, begin, end, threshold, suppressed);
    case Isa::kAvx2:
      return suppress_avx2(boxes, k, begin, end, threshold, suppressed);
    default:
      break;
  }
#endif
  suppress_body(boxes, k, begin, end, threshold, suppressed);
}

// Keeps the alive boxes not suppressed, in order (suppressed is indexed like `boxes`).
template <typename T>
void compact(AliveBoxes<T>& boxes, const std::vector<uint8_t>& suppressed, int64_t begin) {
  int64_t out = 0;
  for (int64_t j = begin; j < boxes.size(); ++j) {
    if (suppressed[j]) {
      continue;
    }
    boxes.x0[out] = boxes.x0[j];
    boxes.y0[out] = boxes.y0[j];
    boxes.x1[out] = boxes.x1[j];
    boxes.y1[out] = boxes.y1[j];
    boxes.area[out] = boxes.area[j];
    boxes.position[out] = boxes.position[j];
    ++out;
  }
  for (auto* values : {&boxes.x0, &boxes.y0, &boxes.x1, &boxes.y1, &boxes.area}) {
    values->resize(out);
  }
  boxes.position.resize(out);
}

template <typename T>
std::vector<int64_t> kept_positions(const T* sorted_boxes, int64_t num_boxes, double iou_threshold) {
  AliveBoxes<T> boxes;
  for (int64_t i = 0; i < num_boxes; ++i) {
    const T* box = sorted_boxes + 4 * i;
    boxes.x0.push_back(box[0]);
    boxes.y0.push_back(box[1]);
    boxes.x1.push_back(box[2]);
    boxes.y1.push_back(box[3]);
    boxes.area.push_back(common::box_area(box));
    boxes.position.push_back(i);
  }
  const T threshold = threshold_in<T>(iou_threshold);
  std::vector<int64_t> kept;
  std::vector<int64_t> kept_in_block;
  std::vector<uint8_t> suppressed;
  while (boxes.size() > 0) {
    const int64_t alive = boxes.size(), block_end = std::min(kBlock, alive);
    suppressed.assign(alive, 0);
    kept_in_block.clear();
    for (int64_t i = 0; i < block_end; ++i) {
      if (suppressed[i]) {
        continue;
      }
      kept_in_block.push_back(i);
      kept.push_back(boxes.position[i]);
      suppress(boxes, i, i + 1, block_end, threshold, suppressed.data());
    }
    const int64_t grain = std::max<int64_t>(kBlock, kMinIousPerThread / static_cast<int64_t>(kept_in_block.size()));
    at::parallel_for(block_end, alive, grain, [&](int64_t begin, int64_t end) {
      for (const int64_t k : kept_in_block) {
        suppress(boxes, k, begin, end, threshold, suppressed.data());
      }
    });
    compact(boxes, suppressed, block_end);
  }
  return kept;
}

}  // namespace

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  common::check_nms_args(boxes, scores);
  if (boxes.size(0) == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  // Stable so equal scores keep their input order, as torchvision's kernel does.
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  std::vector<int64_t> kept;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "maskrcnn_multi::nms (CPU)", [&] {
    kept = kept_positions<scalar_t>(sorted_boxes.data_ptr<scalar_t>(), boxes.size(0), iou_threshold);
  });
  const int64_t* order_data = order.data_ptr<int64_t>();
  at::Tensor keep = at::empty({static_cast<int64_t>(kept.size())}, boxes.options().dtype(at::kLong));
  int64_t* keep_data = keep.data_ptr<int64_t>();
  for (size_t i = 0; i < kept.size(); ++i) {
    keep_data[i] = order_data[kept[i]];
  }
  return keep;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
