// The layout rule every device's RoIAlign kernels follow (host code only): a (N, C, H, W) tensor whose
// channels are its innermost dimension (channels_last, or a view of it) is read as channel vectors and
// yields a channels_last result; anything else yields a contiguous (NCHW) one. The autograd glue in
// maskrcnn_multi/backends/native.py applies the same rule to pick the pooled gradient's layout.
#pragma once

#include <ATen/core/Tensor.h>

namespace maskrcnn_multi {
namespace common {

inline bool channels_innermost(const at::Tensor& tensor) {
  return tensor.size(1) > 1 && tensor.stride(1) == 1;
}

inline c10::MemoryFormat memory_format_like(const at::Tensor& tensor) {
  return channels_innermost(tensor) ? c10::MemoryFormat::ChannelsLast : c10::MemoryFormat::Contiguous;
}

}  // namespace common
}  // namespace maskrcnn_multi
