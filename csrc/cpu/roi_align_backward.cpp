// RoIAlign's gradient w.r.t. the features on the CPU: each pooled gradient is spread back over its
// samples' bilinear corners (common/roi_align_geometry.h, tabulated by roi_align_samples.h). The pooled
// gradient is read in any layout; the result has its dtype and is channels_last when its channels are
// innermost (the autograd glue in backends/native.py hands it the features' layout, so the gradient
// comes back laid out like the features). Half-precision gradients accumulate in a float buffer.
//
// Rois overlap, so threads split channels instead: each owns a disjoint channel range of the gradient,
// no atomics are needed, and every cell receives its contributions in torchvision's order (roi, bin,
// sample, corner), so float results are torchvision's.
// - channels innermost: each corner adds a scaled vector of the thread's channels (isa.h loop);
// - otherwise (NCHW): plane by plane, four scalar updates per sample.
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

// One roi's scatter into the channels [0, width) of `image` (already offset to the roi's image and the
// thread's first channel); `grad_bins` holds the roi's pooled gradient as (bins, width).
template <typename acc_t>
struct ScatterJob {
  acc_t* image;
  const acc_t* grad_bins;
  int64_t width;
  const RoiSamples<acc_t>* table;
  int64_t bins;
};

template <typename acc_t>
MRCNN_ALWAYS_INLINE void scatter_channel_vectors_body(const ScatterJob<acc_t>& job) {
  const int64_t width = job.width;
  const acc_t count = job.table->count;
  const common::BilinearSample<acc_t>* samples = job.table->samples.data();
  int64_t s = 0;
  for (int64_t bin = 0; bin < job.bins; ++bin) {
    const acc_t* __restrict__ grad = job.grad_bins + bin * width;
    for (const int64_t end = job.table->bin_end[bin]; s < end; ++s) {
      const common::BilinearSample<acc_t>& sample = samples[s];
      // Corners may coincide at the map's edge: each corner's update completes before the next.
      for (int corner = 0; corner < 4; ++corner) {
        acc_t* __restrict__ target = job.image + sample.offsets[corner];
        const acc_t weight = sample.weights[corner];
        for (int64_t c = 0; c < width; ++c) {
          target[c] += grad[c] * weight / count;
        }
      }
    }
  }
}

#if MRCNN_HAVE_X86_TARGETS
template <typename acc_t>
MRCNN_TARGET_AVX512 void scatter_channel_vectors_avx512(const ScatterJob<acc_t>& job) {
  scatter_channel_vectors_body(job);
}
template <typename acc_t>
MRCNN_TARGET_AVX2 void scatter_channel_vectors_avx2(const ScatterJob<acc_t>& job) {
  scatter_channel_vectors_body(job);
}
#endif

template <typename acc_t>
void scatter_channel_vectors(const ScatterJob<acc_t>& job) {
#if MRCNN_HAVE_X86_TARGETS
  switch (cpu_isa()) {
    case Isa::kAvx512:
      return scatter_channel_vectors_avx512(job);
    case Isa::kAvx2:
      return scatter_channel_vectors_avx2(job);
    default:
      break;
  }
#endif
  scatter_channel_vectors_body(job);
}

// Element strides of a (N, C, H, W) or (K, C, PH, PW) tensor.
struct Strides {
  int64_t n, c, h, w;
  explicit Strides(const at::Tensor& tensor)
      : n(tensor.stride(0)), c(tensor.stride(1)), h(tensor.stride(2)), w(tensor.stride(3)) {}
};

template <typename scalar_t, typename acc_t>
void scatter_all(const scalar_t* grad, const Strides& grad_strides, const acc_t* roi_data, int64_t num_rois,
                 double spatial_scale, int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                 bool aligned, int64_t channels, int64_t height, int64_t width, acc_t* accumulator,
                 const Strides& strides, bool vectors) {
  const int64_t bins = pooled_height * pooled_width;
  // 16 channels at least per thread, so the vector loop has whole vectors to work on.
  at::parallel_for(0, channels, /*grain_size=*/vectors ? 16 : 1, [&](int64_t channel_begin, int64_t channel_end) {
    const int64_t range = channel_end - channel_begin;
    RoiSamples<acc_t> table;
    std::vector<acc_t> grad_bins(vectors ? bins * range : 0);
    for (int64_t n = 0; n < num_rois; ++n) {
      collect_roi_samples<acc_t>(roi_data + 5 * n, static_cast<acc_t>(spatial_scale), pooled_height, pooled_width,
                                 sampling_ratio, aligned, height, width, strides.h, strides.w, table);
      const scalar_t* roi_grad = grad + n * grad_strides.n;
      acc_t* image = accumulator + table.batch_index * strides.n;
      if (vectors) {
        for (int64_t c = 0; c < range; ++c) {
          const scalar_t* channel_grad = roi_grad + (channel_begin + c) * grad_strides.c;
          for (int64_t bin = 0; bin < bins; ++bin) {
            grad_bins[bin * range + c] = static_cast<acc_t>(
                channel_grad[(bin / pooled_width) * grad_strides.h + (bin % pooled_width) * grad_strides.w]);
          }
        }
        scatter_channel_vectors(ScatterJob<acc_t>{image + channel_begin, grad_bins.data(), range, &table, bins});
        continue;
      }
      const common::BilinearSample<acc_t>* samples = table.samples.data();
      for (int64_t c = channel_begin; c < channel_end; ++c) {
        acc_t* plane = image + c * strides.c;
        const scalar_t* channel_grad = roi_grad + c * grad_strides.c;
        int64_t s = 0;
        for (int64_t bin = 0; bin < bins; ++bin) {
          const acc_t grad_bin = static_cast<acc_t>(
              channel_grad[(bin / pooled_width) * grad_strides.h + (bin % pooled_width) * grad_strides.w]);
          for (const int64_t end = table.bin_end[bin]; s < end; ++s) {
            for (int corner = 0; corner < 4; ++corner) {
              plane[samples[s].offsets[corner]] += grad_bin * samples[s].weights[corner] / table.count;
            }
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor roi_align_backward(const at::Tensor& grad, const at::Tensor& rois, double spatial_scale,
                              int64_t pooled_height, int64_t pooled_width, int64_t batch_size, int64_t channels,
                              int64_t height, int64_t width, int64_t sampling_ratio, bool aligned) {
  common::check_roi_align_args("roi_align_backward", rois, pooled_height, pooled_width);
  const int64_t num_rois = rois.size(0);
  common::check_roi_align_grad(grad, num_rois, channels, pooled_height, pooled_width);
  TORCH_CHECK(grad.is_floating_point(), "roi_align_backward: grad must be floating point, got ", grad.scalar_type());
  const bool vectors = channels_innermost(grad);
  const c10::MemoryFormat memory_format = memory_format_like(grad);
  const auto options = grad.options().memory_format(memory_format);
  if (grad.numel() == 0 || batch_size * channels * height * width == 0) {
    return at::empty({batch_size, channels, height, width}, options).zero_();
  }
  at::Tensor grad_input;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, grad.scalar_type(),
                                  "maskrcnn_multi::roi_align_backward (CPU)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const at::ScalarType acc_type = c10::CppTypeToScalarType<acc_t>::value;
    const at::Tensor rois_acc = rois.to(acc_type).contiguous();
    const acc_t* roi_data = rois_acc.data_ptr<acc_t>();
    common::check_batch_indices("roi_align_backward", roi_data, num_rois, batch_size);
    // An NCHW gradient taking many samples per cell is gathered faster in a channels_last buffer and
    // converted once (same results: each cell still sums its contributions in the same order).
    const bool convert = !vectors && channels_last_pays(count_samples<acc_t>(roi_data, num_rois,
        static_cast<acc_t>(spatial_scale), pooled_height, pooled_width, sampling_ratio, aligned),
        batch_size * height * width, kBackwardMinSamplesPerCell);
    // Half-precision sums of many small terms would lose the gradient: add in acc_t, round once.
    // (at::zeros would drop the memory format.)
    const at::Tensor accumulator =
        at::empty({batch_size, channels, height, width},
                  options.dtype(acc_type).memory_format(convert ? at::MemoryFormat::ChannelsLast : memory_format))
            .zero_();
    scatter_all<scalar_t, acc_t>(grad.data_ptr<scalar_t>(), Strides(grad), roi_data, num_rois, spatial_scale,
                                 pooled_height, pooled_width, sampling_ratio, aligned, channels, height, width,
                                 accumulator.data_ptr<acc_t>(), Strides(accumulator), vectors || convert);
    // The same tensor when acc_t is scalar_t and no layout change was made.
    grad_input = accumulator.to(grad.scalar_type(), /*non_blocking=*/false, /*copy=*/false, memory_format);
  });
  return grad_input;
}

}  // namespace cpu
}  // namespace maskrcnn_multi
