// Which vector instructions the CPU kernels' hot loops are compiled for, chosen at run time.
//
// The extension is built for the baseline ISA (it must load on any x86-64 or aarch64 host), so a hot
// loop is written once as an always-inline template (MRCNN_ALWAYS_INLINE) and called from thin wrappers
// compiled for AVX2 and AVX-512 with target attributes (MRCNN_TARGET_*), where the compiler vectorises
// it for that ISA; a dispatcher switches on `cpu_isa()`, which follows ATen's own choice
// (at::get_cpu_capability(), which honours ATEN_CPU_CAPABILITY=default|avx2|avx512), so our kernels
// and ATen's vectorise alike. setup.py builds with -ffp-contract=off: the wider targets offer FMA, and
// a contracted a * b + c would break the kernels' bit-exactness with their references.
#pragma once

#include <ATen/Version.h>

#include <string>

namespace maskrcnn_multi {
namespace cpu {

enum class Isa { kDefault, kAvx2, kAvx512 };

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define MRCNN_HAVE_X86_TARGETS 1
#define MRCNN_TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MRCNN_TARGET_AVX512 \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c,prefer-vector-width=512")))
#else
#define MRCNN_HAVE_X86_TARGETS 0
#endif

#if defined(__GNUC__) || defined(__clang__)
#define MRCNN_ALWAYS_INLINE inline __attribute__((always_inline))
#else
#define MRCNN_ALWAYS_INLINE inline
#endif

// The ISA the wrappers below dispatch to, decided once per process.
inline Isa cpu_isa() {
  static const Isa isa = [] {
#if MRCNN_HAVE_X86_TARGETS
    const std::string capability = at::get_cpu_capability();
    if (capability == "AVX512") {
      return Isa::kAvx512;
    }
    if (capability == "AVX2") {
      return Isa::kAvx2;
    }
#endif
    return Isa::kDefault;
  }();
  return isa;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
