// Small device helpers shared by the CUDA kernels (not an op).
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

// Products rounded on their own, never fused into a following add: nvcc would otherwise contract
// a * b + c into one FMA and results would differ from the CPU kernels' in the last bit, which
// matters where results must be bit-identical across devices (IoUs compared with a threshold).
__device__ inline float exact_mul(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double exact_mul(double a, double b) { return __dmul_rn(a, b); }

// An explicitly fused multiply-add where the reference computes one (ATen's CPU grid sampler).
__device__ inline float fused_mul_add(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double fused_mul_add(double a, double b, double c) { return fma(a, b, c); }

}  // namespace cuda_helpers
}  // namespace maskrcnn_multi
