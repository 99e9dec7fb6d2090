// Greedy NMS on CUDA. Boxes are sorted by score, a kernel builds the pairwise "suppresses" bit matrix
// (64 boxes per block, one uint64 word per 64 columns), and the greedy pass over that matrix runs on
// the host. IoUs use common/box_overlap.h, the CPU kernel's arithmetic (no fused multiply-adds),
// compared with the threshold in double, so keeps are identical on every device.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <ATen/ops/sort.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <vector>

#include "common/box_overlap.h"
#include "common/checks.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

constexpr int kBoxesPerWord = 64;

// Whether `kept` (the higher-scored box) suppresses `other`. 0 / 0 (two zero-area boxes) is NaN,
// which never exceeds the threshold.
template <typename T>
__device__ inline bool suppresses(const T* kept, const T* other, double iou_threshold) {
  const T iou = common::iou_from_areas(common::intersection_area(kept, other), common::box_area(kept),
                                       common::box_area(other));
  return static_cast<double>(iou) > iou_threshold;
}

// Block (col_block, row_block): bit i of mask[row * words + col_block] says box `row` suppresses box
// col_block * 64 + i. Only the upper triangle (col >= row) is filled; the host never reads the rest.
template <typename T>
__global__ void suppression_mask_kernel(int64_t num_boxes, double iou_threshold, const T* sorted_boxes,
                                        uint64_t* mask) {
  const int64_t row_block = blockIdx.y, col_block = blockIdx.x;
  if (row_block > col_block) {
    return;
  }
  const int64_t words = (num_boxes + kBoxesPerWord - 1) / kBoxesPerWord;
  const int row_count = static_cast<int>(min(num_boxes - row_block * kBoxesPerWord, (int64_t)kBoxesPerWord));
  const int col_count = static_cast<int>(min(num_boxes - col_block * kBoxesPerWord, (int64_t)kBoxesPerWord));

  __shared__ T column_boxes[kBoxesPerWord * 4];
  if (threadIdx.x < col_count) {
    for (int k = 0; k < 4; ++k) {
      column_boxes[threadIdx.x * 4 + k] = sorted_boxes[(col_block * kBoxesPerWord + threadIdx.x) * 4 + k];
    }
  }
  __syncthreads();
  if (threadIdx.x >= row_count) {
    return;
  }
  const int64_t row = row_block * kBoxesPerWord + threadIdx.x;
  const T* row_box = sorted_boxes + row * 4;
  uint64_t bits = 0;
  const int first = row_block == col_block ? threadIdx.x + 1 : 0;
  for (int i = first; i < col_count; ++i) {
    if (suppresses(row_box, column_boxes + i * 4, iou_threshold)) {
      bits |= 1ULL << i;
    }
  }
  mask[row * words + col_block] = bits;
}

}  // namespace

namespace cuda {

at::Tensor nms(const at::Tensor& boxes, const at::Tensor& scores, double iou_threshold) {
  common::check_device("nms", at::kCUDA, {boxes, scores});
  common::check_nms_args(boxes, scores);
  const int64_t num_boxes = boxes.size(0);
  if (num_boxes == 0) {
    return at::empty({0}, boxes.options().dtype(at::kLong));
  }
  c10::cuda::CUDAGuard device_guard(boxes.device());
  const at::Tensor order = std::get<1>(scores.sort(/*stable=*/true, /*dim=*/0, /*descending=*/true));
  const at::Tensor sorted_boxes = boxes.index_select(0, order).contiguous();
  const int64_t words = (num_boxes + kBoxesPerWord - 1) / kBoxesPerWord;
  at::Tensor mask = at::empty({num_boxes * words}, boxes.options().dtype(at::kLong));
  const dim3 blocks(words, words);
  const dim3 threads(kBoxesPerWord);
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "maskrcnn_multi::nms (CUDA)", [&] {
    suppression_mask_kernel<scalar_t><<<blocks, threads, 0, stream>>>(
        num_boxes, iou_threshold, sorted_boxes.data_ptr<scalar_t>(),
        reinterpret_cast<uint64_t*>(mask.data_ptr<int64_t>()));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();

  // The greedy pass is sequential; over the bit matrix it is cheap enough for the host.
  const at::Tensor mask_host = mask.to(at::kCPU);
  const uint64_t* mask_bits = reinterpret_cast<const uint64_t*>(mask_host.data_ptr<int64_t>());
  std::vector<uint64_t> removed(words, 0);
  std::vector<int64_t> kept_positions;
  for (int64_t i = 0; i < num_boxes; ++i) {
    const int64_t word = i / kBoxesPerWord;
    if (removed[word] & (1ULL << (i % kBoxesPerWord))) {
      continue;
    }
    kept_positions.push_back(i);
    const uint64_t* row = mask_bits + i * words;
    for (int64_t j = word; j < words; ++j) {
      removed[j] |= row[j];
    }
  }
  const at::Tensor kept_host =
      at::from_blob(kept_positions.data(), {static_cast<int64_t>(kept_positions.size())}, at::kLong);
  // A blocking copy: kept_positions must outlive it.
  return order.index_select(0, kept_host.to(boxes.device()));
}

}  // namespace cuda
}  // namespace maskrcnn_multi
