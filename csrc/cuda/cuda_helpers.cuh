// Launch geometry shared by the CUDA kernels (not an op). Arithmetic shared with the CPU kernels lives
// in common/.
#pragma once

#include <cstdint>

namespace maskrcnn_multi {
namespace cuda_helpers {

constexpr int kThreadsPerBlock = 512;
constexpr int64_t kMaxBlocks = 4096;

inline int64_t blocks_for(int64_t num_elements) {
  const int64_t blocks = (num_elements + kThreadsPerBlock - 1) / kThreadsPerBlock;
  return blocks < kMaxBlocks ? (blocks > 0 ? blocks : 1) : kMaxBlocks;
}

}  // namespace cuda_helpers
}  // namespace maskrcnn_multi
