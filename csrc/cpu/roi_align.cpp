// RoIAlign forward on the CPU. The geometry is common/roi_align_geometry.h (shared with CUDA), tabulated
// per roi by roi_align_samples.h. Features are read where they lie, in any layout and in float, double,
// bf16 or fp16 (no copy of the feature map), with float accumulation for the half types (double for
// double); the output has the input's dtype and layout (channels_last in, channels_last out).
// Rois are independent, so threads split them.
//
// Two ways through a roi, bit-identical to each other and to torchvision's kernel in float:
// - channels innermost (channels_last): each sample adds four weighted channel vectors into a bin's
//   accumulator, a loop compiled for the best ISA of the host (isa.h);
// - otherwise (NCHW): channel plane by channel plane, four scalar reads per sample.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>

#include "common/checks.h"
#include "cpu/isa.h"
#include "cpu/roi_align_samples.h"
#include "ops.h"

#include <vector>

namespace maskrcnn_multi {
namespace cpu {
namespace {

// One roi's pooling job: where its image's features start, its samples, and where its (C, PH, PW)
// output goes (element strides of the output's channel, row and column).
template <typename scalar_t, typename acc_t>
struct PoolJob {
  const scalar_t* image;
  int64_t channels, channel_stride;
  const RoiSamples<acc_t>* table;
  int64_t bins, pooled_width;
  acc_t* accumulator;  // `channels` scratch values (channel-vector path only)
  scalar_t* out;
  int64_t out_channel_stride, out_row_stride, out_column_stride;
};

template <typename scalar_t, typename acc_t>
MRCNN_ALWAYS_INLINE void pool_channel_vectors_body(const PoolJob<scalar_t, acc_t>& job) {
  const int64_t channels = job.channels;
  acc_t* __restrict__ accumulator = job.accumulator;
  const common::BilinearSample<acc_t>* samples = job.table->samples.data();
  int64_t s = 0;
  for (int64_t bin = 0; bin < job.bins; ++bin) {
    for (int64_t c = 0; c < channels; ++c) {
      accumulator[c] = 0;
    }
    for (const int64_t end = job.table->bin_end[bin]; s < end; ++s) {
      const common::BilinearSample<acc_t>& sample = samples[s];
      const scalar_t* __restrict__ v0 = job.image + sample.offsets[0];
      const scalar_t* __restrict__ v1 = job.image + sample.offsets[1];
      const scalar_t* __restrict__ v2 = job.image + sample.offsets[2];
      const scalar_t* __restrict__ v3 = job.image + sample.offsets[3];
      const acc_t w0 = sample.weights[0], w1 = sample.weights[1], w2 = sample.weights[2], w3 = sample.weights[3];
      for (int64_t c = 0; c < channels; ++c) {
        // torchvision's summation order, so float results are its results
        accumulator[c] += w0 * static_cast<acc_t>(v0[c]) + w1 * static_cast<acc_t>(v1[c]) +
                          w2 * static_cast<acc_t>(v2[c]) + w3 * static_cast<acc_t>(v3[c]);
      }
    }
    scalar_t* out = job.out + (bin / job.pooled_width) * job.out_row_stride +
                    (bin % job.pooled_width) * job.out_column_stride;
    for (int64_t c = 0; c < channels; ++c) {
      out[c * job.out_channel_stride] = static_cast<scalar_t>(accumulator[c] / job.table->count);
    }
  }
}

#if MRCNN_HAVE_X86_TARGETS
template <typename scalar_t, typename acc_t>
MRCNN_TARGET_AVX512 void pool_channel_vectors_avx512(const PoolJob<scalar_t, acc_t>& job) {
  pool_channel_vectors_body(job);
}
template <typename scalar_t, typename acc_t>
MRCNN_TARGET_AVX2 void pool_channel_vectors_avx2(const PoolJob<scalar_t, acc_t>& job) {
  pool_channel_vectors_body(job);
}
#endif

template <typename scalar_t, typename acc_t>
void pool_channel_vectors(const PoolJob<scalar_t, acc_t>& job) {
#if MRCNN_HAVE_X86_TARGETS
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return pool_channel_vectors_avx512(job);
    case Isa::kAvx2:
      return pool_channel_vectors_avx2(job);
    default:
      break;
  }
#endif
  pool_channel_vectors_body(job);
}

template <typename scalar_t, typename acc_t>
void pool_planes(const PoolJob<scalar_t, acc_t>& job) {
  const common::BilinearSample<acc_t>* samples = job.table->samples.data();
  for (int64_t c = 0; c < job.channels; ++c) {
    const scalar_t* plane = job.image + c * job.channel_stride;
    scalar_t* out_plane = job.out + c * job.out_channel_stride;
    int64_t s = 0;
    for (int64_t bin = 0; bin < job.bins; ++bin) {
      acc_t value = 0;
      for (const int64_t end = job.table->bin_end[bin]; s < end; ++s) {
        const common::BilinearSample<acc_t>& sample = samples[s];
        value += sample.weights[0] * static_cast<acc_t>(plane[sample.offsets[0]]) +
                 sample.weights[1] * static_cast<acc_t>(plane[sample.offsets[1]]) +
                 sample.weights[2] * static_cast<acc_t>(plane[sample.offsets[2]]) +
                 sample.weights[3] * static_cast<acc_t>(plane[sample.offsets[3]]);
      }
      out_plane[(bin / job.pooled_width) * job.out_row_stride + (bin % job.pooled_width) * job.out_column_stride] =
          static_cast<scalar_t>(value / job.table->count);
    }
  }
}

}  // namespace

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale, int64_t pooled_height,
                     int64_t pooled_width, int64_t sampling_ratio, bool aligned) {
  common::check_roi_align_input(input);
  common::check_roi_align_args("roi_align", rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0), channels = input.size(1);
  const int64_t height = input.size(2), width = input.size(3);
  const bool vectors = channels_innermost(input);
  // Every bin is written below (0 when a roi samples nothing), so no zero fill is needed.
  at::Tensor output = at::empty({num_rois, channels, pooled_height, pooled_width},
                                input.options().memory_format(memory_format_like(input)));
  if (output.numel() == 0) {
    return output;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "maskrcnn_multi::roi_align (CPU)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::Tensor rois_acc = rois.to(c10::CppTypeToScalarType<acc_t>::value).contiguous();
    const acc_t* roi_data = rois_acc.data_ptr<acc_t>();
    common::check_batch_indices("roi_align", roi_data, num_rois, input.size(0));
    // An NCHW map read by many samples is pooled faster from a channels_last copy (same results).
    const bool convert = !vectors && channels_last_pays(count_samples<acc_t>(roi_data, num_rois,
        static_cast<acc_t>(spatial_scale), pooled_height, pooled_width, sampling_ratio, aligned),
        input.size(0) * height * width, kForwardMinSamplesPerCell);
    const at::Tensor source = convert ? input.contiguous(at::MemoryFormat::ChannelsLast) : input;
    const bool use_vectors = vectors || convert;
    const scalar_t* features = source.data_ptr<scalar_t>();
    scalar_t* pooled = output.data_ptr<scalar_t>();
    at::parallel_for(0, num_rois, /*grain_size=*/1, [&](int64_t begin, int64_t end) {
      RoiSamples<acc_t> table;
      std::vector<acc_t> accumulator(use_vectors ? channels : 0);
      for (int64_t n = begin; n < end; ++n) {
        collect_roi_samples<acc_t>(roi_data + 5 * n, static_cast<acc_t>(spatial_scale), pooled_height, pooled_width,
                                   sampling_ratio, aligned, height, width, source.stride(2), source.stride(3), table);
        const PoolJob<scalar_t, acc_t> job{features + table.batch_index * source.stride(0),
                                           channels,
                                           source.stride(1),
                                           &table,
                                           pooled_height * pooled_width,
                                           pooled_width,
                                           accumulator.data(),
                                           pooled + n * output.stride(0),
                                           output.stride(1),
                                           output.stride(2),
                                           output.stride(3)};
        if (use_vectors) {
          pool_channel_vectors(job);
        } else {
          pool_planes(job);
        }
      }
    });
  });
  return output;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
