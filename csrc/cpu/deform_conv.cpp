// Deformable convolution (torchvision's deform_conv2d, modulated when a mask is given) on the CPU,
// forward and backward. Per image: the sampling points' bilinear neighbours are tabulated once per
// (offset group, tap, output position) with common/deform_conv_geometry.h (shared with CUDA), the
// deformable columns (C * K, oh * ow) are sampled from them, and a grouped matrix product with the
// weight gives the output. The backward goes back through the same product; the columns' gradient is
// scattered into the input channel by channel (each thread owns its channels: no atomics) and reduced
// into the offsets' and mask's gradients point by point (each thread owns its points).
// float and double compute in their own type; bf16 and fp16 are read as they are and computed in float,
// every result returned in its tensor's dtype.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "common/checks.h"
#include "common/deform_conv_geometry.h"
#include "ops.h"

namespace maskrcnn_multi {
namespace cpu {
namespace {

using common::DeformConvShape;
using common::DeformSample;

constexpr const char* kForward = "deform_conv2d";
constexpr const char* kBackward = "deform_conv2d_backward";

// The neighbours of every sampling point of one image, indexed ((g * K + tap) * L + point).
template <typename acc_t, typename scalar_t>
void tabulate_samples(const DeformConvShape& shape, const scalar_t* offset, std::vector<DeformSample<acc_t>>& table) {
  const int64_t points = shape.points(), taps = shape.taps();
  table.resize(shape.offset_groups * taps * points);
  at::parallel_for(0, static_cast<int64_t>(table.size()), 1024, [&](int64_t begin, int64_t end) {
    for (int64_t index = begin; index < end; ++index) {
      const int64_t point = index % points, tap = (index / points) % taps, g = index / (points * taps);
      acc_t y, x;
      common::deform_point(shape, offset, g, tap, point / shape.out_width, point % shape.out_width, y, x);
      table[index] = common::deform_sample(y, x, shape.height, shape.width);
    }
  });
}

// The deformable columns (C * K, L) of one image: row c * K + tap holds channel c sampled at its
// offset group's points for that tap, times the mask when there is one.
template <typename acc_t, typename scalar_t>
void sample_columns(const DeformConvShape& shape, const scalar_t* image, const std::vector<DeformSample<acc_t>>& table,
                    const scalar_t* mask, acc_t* columns) {
  const int64_t points = shape.points(), taps = shape.taps(), plane_size = shape.height * shape.width;
  const int64_t channels_per_group = shape.channels_per_offset_group();
  at::parallel_for(0, shape.channels * taps, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t c = row / taps, tap = row % taps;
      const int64_t base = (c / channels_per_group * taps + tap) * points;
      const scalar_t* plane = image + c * plane_size;
      acc_t* out = columns + row * points;
      for (int64_t point = 0; point < points; ++point) {
        const acc_t value = common::deform_value<acc_t>(table[base + point], plane);
        out[point] = mask != nullptr ? static_cast<acc_t>(mask[base + point]) * value : value;
      }
    }
  });
}

// grad_input (C, H, W) of one image += the columns' gradient scattered back to the neighbours.
template <typename acc_t, typename scalar_t>
void scatter_to_input(const DeformConvShape& shape, const std::vector<DeformSample<acc_t>>& table,
                      const scalar_t* mask, const acc_t* grad_columns, acc_t* grad_input) {
  const int64_t points = shape.points(), taps = shape.taps(), plane_size = shape.height * shape.width;
  const int64_t channels_per_group = shape.channels_per_offset_group();
  at::parallel_for(0, shape.channels, 1, [&](int64_t begin, int64_t end) {
    for (int64_t c = begin; c < end; ++c) {
      acc_t* plane = grad_input + c * plane_size;
      for (int64_t tap = 0; tap < taps; ++tap) {
        const int64_t base = (c / channels_per_group * taps + tap) * points;
        const acc_t* grad_row = grad_columns + (c * taps + tap) * points;
        for (int64_t point = 0; point < points; ++point) {
          const DeformSample<acc_t>& sample = table[base + point];
          const acc_t modulation = mask != nullptr ? static_cast<acc_t>(mask[base + point]) : static_cast<acc_t>(1);
          for (int corner = 0; corner < 4; ++corner) {
            if (sample.valid[corner]) {
              plane[sample.offsets[corner]] += modulation * sample.weights[corner] * grad_row[point];
            }
          }
        }
      }
    }
  });
}

// The offsets' (2 * G * K, L) and mask's (G * K, L) gradients of one image, each point reducing over
// the channels of its offset group. Threads split each (group, tap)'s points into chunks and walk the
// channels' gradient rows in memory order, accumulating into the chunk's rows of the results.
// grad_mask is null without a mask.
template <typename acc_t, typename scalar_t>
void offset_and_mask_gradients(const DeformConvShape& shape, const scalar_t* image,
                               const std::vector<DeformSample<acc_t>>& table, const scalar_t* mask,
                               const acc_t* grad_columns, acc_t* grad_offset, acc_t* grad_mask) {
  const int64_t points = shape.points(), taps = shape.taps(), plane_size = shape.height * shape.width;
  const int64_t channels_per_group = shape.channels_per_offset_group();
  constexpr int64_t kChunk = 256;
  const int64_t chunks = (points + kChunk - 1) / kChunk;
  at::parallel_for(0, shape.offset_groups * taps * chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t job = begin; job < end; ++job) {
      const int64_t group_tap = job / chunks, g = group_tap / taps, tap = group_tap % taps;
      const int64_t first = (job % chunks) * kChunk, last = std::min(points, first + kChunk);
      const int64_t base = group_tap * points;
      acc_t* grad_y = grad_offset + 2 * group_tap * points;
      acc_t* grad_x = grad_y + points;
      acc_t* grad_modulation = grad_mask != nullptr ? grad_mask + base : nullptr;
      for (int64_t point = first; point < last; ++point) {
        grad_y[point] = 0;
        grad_x[point] = 0;
        if (grad_modulation != nullptr) grad_modulation[point] = 0;
      }
      for (int64_t c = g * channels_per_group; c < (g + 1) * channels_per_group; ++c) {
        const scalar_t* plane = image + c * plane_size;
        const acc_t* grad_row = grad_columns + (c * taps + tap) * points;
        for (int64_t point = first; point < last; ++point) {
          const acc_t modulation = mask != nullptr ? static_cast<acc_t>(mask[base + point]) : static_cast<acc_t>(1);
          acc_t value_grad_y, value_grad_x, value;
          common::deform_value_gradient(table[base + point], plane, value_grad_y, value_grad_x,
                                        grad_modulation != nullptr ? &value : nullptr);
          grad_y[point] += modulation * value_grad_y * grad_row[point];
          grad_x[point] += modulation * value_grad_x * grad_row[point];
          if (grad_modulation != nullptr) {
            grad_modulation[point] += grad_row[point] * value;
          }
        }
      }
    }
  });
}

// Everything both directions read: the checked geometry and contiguous inputs.
struct DeformInputs {
  DeformConvShape shape;
  at::Tensor input, weight, offset, mask, bias;
};

DeformInputs prepare(const char* op, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                     const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
                     int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                     int64_t groups, int64_t offset_groups) {
  const at::Tensor mask_tensor = mask.has_value() ? *mask : at::Tensor();
  const at::Tensor bias_tensor = bias.has_value() ? *bias : at::Tensor();
  DeformInputs prepared;
  prepared.shape = common::check_deform_conv_args(op, input, weight, offset, mask_tensor, bias_tensor, stride_h,
                                                  stride_w, pad_h, pad_w, dilation_h, dilation_w, groups,
                                                  offset_groups);
  std::vector<at::Tensor> tensors = {input, weight, offset};
  if (mask_tensor.defined()) tensors.push_back(mask_tensor);
  if (bias_tensor.defined()) tensors.push_back(bias_tensor);
  for (const at::Tensor& tensor : tensors) {
    TORCH_CHECK(tensor.device().is_cpu(), op, ": tensors must be on the CPU, got one on ", tensor.device());
  }
  prepared.input = input.contiguous();
  prepared.weight = weight.contiguous();
  prepared.offset = offset.contiguous();
  prepared.mask = mask_tensor.defined() ? mask_tensor.contiguous() : mask_tensor;
  prepared.bias = bias_tensor;
  return prepared;
}

// The weight as (groups, C_out / groups, C / groups * K) in the accumulation type.
at::Tensor grouped_weight(const DeformInputs& inputs, at::ScalarType acc_type) {
  const DeformConvShape& shape = inputs.shape;
  return inputs.weight.to(acc_type).reshape(
      {shape.groups, shape.out_channels / shape.groups, shape.channels / shape.groups * shape.taps()});
}

}  // namespace

at::Tensor deform_conv2d(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                         int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  const DeformInputs inputs = prepare(kForward, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                                      dilation_h, dilation_w, groups, offset_groups);
  const DeformConvShape& shape = inputs.shape;
  const int64_t batch = input.size(0), points = shape.points(), taps = shape.taps();
  const common::DeformImageSizes sizes = common::image_sizes(shape);
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  at::Tensor output = at::empty({batch, shape.out_channels, shape.out_height, shape.out_width},
                                input.options().dtype(acc_type));
  const at::Tensor weight_groups = grouped_weight(inputs, acc_type);
  at::Tensor columns = at::empty({shape.channels * taps, points}, output.options());
  const at::Tensor column_groups = columns.view({shape.groups, shape.channels / shape.groups * taps, points});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<DeformSample<acc_t>> table;
    const scalar_t* mask_data = inputs.mask.defined() ? inputs.mask.const_data_ptr<scalar_t>() : nullptr;
    for (int64_t n = 0; n < batch; ++n) {
      tabulate_samples(shape, inputs.offset.const_data_ptr<scalar_t>() + n * sizes.offset, table);
      sample_columns(shape, inputs.input.const_data_ptr<scalar_t>() + n * sizes.image, table,
                     mask_data == nullptr ? nullptr : mask_data + n * sizes.mask, columns.data_ptr<acc_t>());
      at::Tensor output_groups = output[n].view({shape.groups, shape.out_channels / shape.groups, points});
      at::bmm_out(output_groups, weight_groups, column_groups);
    }
  });
  if (inputs.bias.defined()) {
    output.add_(inputs.bias.to(acc_type).view({1, shape.out_channels, 1, 1}));
  }
  return output.to(input.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> deform_conv2d_backward(
    const at::Tensor& grad, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w, int64_t groups,
    int64_t offset_groups) {
  const DeformInputs inputs = prepare(kBackward, input, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,
                                      dilation_h, dilation_w, groups, offset_groups);
  const DeformConvShape& shape = inputs.shape;
  const int64_t batch = input.size(0), points = shape.points(), taps = shape.taps();
  const common::DeformImageSizes sizes = common::image_sizes(shape);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == batch && grad.size(1) == shape.out_channels &&
                  grad.size(2) == shape.out_height && grad.size(3) == shape.out_width,
              kBackward, ": grad must be (", batch, ", ", shape.out_channels, ", ", shape.out_height, ", ",
              shape.out_width, "), got ", grad.sizes());
  TORCH_CHECK(grad.device().is_cpu(), kBackward, ": grad must be on the CPU, got ", grad.device());
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  const at::TensorOptions acc_options = input.options().dtype(acc_type);
  const at::Tensor grad_output = grad.to(acc_type).contiguous();
  const int64_t group_rows = shape.channels / shape.groups * taps;
  const at::Tensor weight_t = grouped_weight(inputs, acc_type).transpose(1, 2);
  at::Tensor grad_input = at::zeros(input.sizes(), acc_options);
  at::Tensor grad_offset = at::empty(offset.sizes(), acc_options);
  at::Tensor grad_mask = inputs.mask.defined() ? at::empty(inputs.mask.sizes(), acc_options) : at::Tensor();
  at::Tensor grad_weight = at::zeros({shape.groups, shape.out_channels / shape.groups, group_rows}, acc_options);
  at::Tensor columns = at::empty({shape.channels * taps, points}, acc_options);
  at::Tensor grad_columns = at::empty({shape.channels * taps, points}, acc_options);
  const at::Tensor column_groups = columns.view({shape.groups, group_rows, points});
  at::Tensor grad_column_groups = grad_columns.view({shape.groups, group_rows, points});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "deform_conv2d_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    std::vector<DeformSample<acc_t>> table;
    const scalar_t* mask_data = inputs.mask.defined() ? inputs.mask.const_data_ptr<scalar_t>() : nullptr;
    for (int64_t n = 0; n < batch; ++n) {
      const scalar_t* image = inputs.input.const_data_ptr<scalar_t>() + n * sizes.image;
      const scalar_t* image_mask = mask_data == nullptr ? nullptr : mask_data + n * sizes.mask;
      tabulate_samples(shape, inputs.offset.const_data_ptr<scalar_t>() + n * sizes.offset, table);
      sample_columns(shape, image, table, image_mask, columns.data_ptr<acc_t>());
      const at::Tensor grad_groups = grad_output[n].view({shape.groups, shape.out_channels / shape.groups, points});
      at::bmm_out(grad_column_groups, weight_t, grad_groups);
      grad_weight.baddbmm_(grad_groups, column_groups.transpose(1, 2));
      scatter_to_input(shape, table, image_mask, grad_columns.const_data_ptr<acc_t>(),
                       grad_input.data_ptr<acc_t>() + n * sizes.image);
      offset_and_mask_gradients(shape, image, table, image_mask, grad_columns.const_data_ptr<acc_t>(),
                                grad_offset.data_ptr<acc_t>() + n * sizes.offset,
                                grad_mask.defined() ? grad_mask.data_ptr<acc_t>() + n * sizes.mask : nullptr);
    }
  });
  // Absent mask and bias get empty gradients (the schema returns five tensors).
  const at::Tensor grad_bias = inputs.bias.defined() ? grad_output.sum({0, 2, 3}).to(inputs.bias.scalar_type())
                                                     : at::empty({0}, input.options());
  return {grad_input.to(input.scalar_type()), grad_weight.view(weight.sizes()).to(weight.scalar_type()),
          grad_offset.to(offset.scalar_type()),
          grad_mask.defined() ? grad_mask.to(inputs.mask.scalar_type()) : at::empty({0}, input.options()), grad_bias};
}

}  // namespace cpu
}  // namespace maskrcnn_multi
