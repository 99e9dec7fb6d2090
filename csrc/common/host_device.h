// What lets one header serve both the CPU (.cpp, g++) and the CUDA (.cu, nvcc) kernels: functions
// marked MRCNN_HOST_DEVICE compile for the host and, under nvcc, for the device too. The arithmetic
// helpers say exactly where a product is rounded on its own and where a fused multiply-add is meant,
// because the kernels reproduce their references (torchvision's and ATen's CPU code) bit for bit and
// nvcc would otherwise contract a * b + c into an FMA by itself.
#pragma once

#include <cmath>
#include <cstdint>

#ifdef __CUDACC__
#define MRCNN_HOST_DEVICE __host__ __device__
#else
#define MRCNN_HOST_DEVICE
#endif

namespace maskrcnn_multi {
namespace common {

// a * b rounded to T, never fused into a following addition.
MRCNN_HOST_DEVICE inline float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
MRCNN_HOST_DEVICE inline double mul_rn(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// a * b + c with one rounding, where the reference computes one (ATen's CPU grid sampler).
MRCNN_HOST_DEVICE inline float fused_mul_add(float a, float b, float c) { return ::fmaf(a, b, c); }
MRCNN_HOST_DEVICE inline double fused_mul_add(double a, double b, double c) { return ::fma(a, b, c); }

// a * b + c with one rounding (kFused) or two, as the reference compiled for a given ISA computes it:
// ATen's vectorised CPU kernels are built with FMA for AVX2 / AVX-512 and without for x86's default
// capability, and GCC contracts their a * b + c accordingly.
template <bool kFused, typename T>
MRCNN_HOST_DEVICE inline T multiply_add(T a, T b, T c) {
  if constexpr (kFused) {
    return fused_mul_add(a, b, c);
  } else {
    return mul_rn(a, b) + c;
  }
}

// std::floor / std::ceil on the host, CUDA's overloads of the same name on the device (float stays
// float on both).
template <typename T>
MRCNN_HOST_DEVICE inline T floor_of(T x) {
#ifdef __CUDA_ARCH__
  return ::floor(x);
#else
  return std::floor(x);
#endif
}
template <typename T>
MRCNN_HOST_DEVICE inline T ceil_of(T x) {
#ifdef __CUDA_ARCH__
  return ::ceil(x);
#else
  return std::ceil(x);
#endif
}

// std::max / std::min's exact semantics (the first argument wins ties and NaN comparisons), which
// CUDA's fmax/fmin do not share, so both devices treat NaN coordinates alike.
template <typename T>
MRCNN_HOST_DEVICE inline T max_of(T a, T b) {
  return a < b ? b : a;
}
template <typename T>
MRCNN_HOST_DEVICE inline T min_of(T a, T b) {
  return b < a ? b : a;
}

}  // namespace common
}  // namespace maskrcnn_multi
