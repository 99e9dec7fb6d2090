// Deformable convolution forward and backward on CUDA, the CPU kernel's algorithm (csrc/cpu/deform_conv.cpp)
// with the same geometry (common/deform_conv_geometry.h): per image, one thread per deformable column
// element samples the input, a grouped matrix product (cuBLAS through at::bmm) gives the output; the
// backward multiplies back to the columns' gradient, scatters it into an accumulation-type buffer with
// atomics (samples of different points share neighbours), and reduces the offsets' and mask's
// gradients with one thread per sampling point. float and double compute in their type, bf16 and fp16 in
// float; results come back in each tensor's dtype.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/cuda/Atomic.cuh>
#include <ATen/ops/bmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <tuple>

#include "common/checks.h"
#include "common/deform_conv_geometry.h"
#include "cuda_helpers.cuh"
#include "ops.h"

namespace maskrcnn_multi {
namespace {

using common::DeformConvShape;
using common::DeformSample;

// The sample of column element (row = c * K + tap, point) and the index of its (g, tap, point) entry
// in the offsets' per-point layout ((g * K + tap) * L + point).
template <typename acc_t, typename scalar_t>
__device__ inline DeformSample<acc_t> column_sample(const DeformConvShape& shape, const scalar_t* offset,
                                                    int64_t g, int64_t tap, int64_t point) {
  acc_t y, x;
  common::deform_point(shape, offset, g, tap, point / shape.out_width, point % shape.out_width, y, x);
  return common::deform_sample(y, x, shape.height, shape.width);
}

template <typename scalar_t, typename acc_t>
__global__ void sample_columns_kernel(DeformConvShape shape, const scalar_t* image, const scalar_t* offset,
                                      const scalar_t* mask, acc_t* columns) {
  const int64_t points = shape.points(), taps = shape.taps();
  const int64_t total = shape.channels * taps * points;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t point = index % points, row = index / points;
    const int64_t c = row / taps, tap = row % taps, g = c / shape.channels_per_offset_group();
    const DeformSample<acc_t> sample = column_sample<acc_t>(shape, offset, g, tap, point);
    const acc_t value = common::deform_value<acc_t>(sample, image + c * shape.height * shape.width);
    columns[index] = mask != nullptr ? static_cast<acc_t>(mask[(g * taps + tap) * points + point]) * value : value;
  }
}

template <typename scalar_t, typename acc_t>
__global__ void scatter_to_input_kernel(DeformConvShape shape, const scalar_t* offset, const scalar_t* mask,
                                        const acc_t* grad_columns, acc_t* grad_input) {
  const int64_t points = shape.points(), taps = shape.taps();
  const int64_t total = shape.channels * taps * points;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t point = index % points, row = index / points;
    const int64_t c = row / taps, tap = row % taps, g = c / shape.channels_per_offset_group();
    const DeformSample<acc_t> sample = column_sample<acc_t>(shape, offset, g, tap, point);
    const acc_t modulation =
        mask != nullptr ? static_cast<acc_t>(mask[(g * taps + tap) * points + point]) : static_cast<acc_t>(1);
    acc_t* plane = grad_input + c * shape.height * shape.width;
    for (int corner = 0; corner < 4; ++corner) {
      if (sample.valid[corner]) {
        gpuAtomicAdd(plane + sample.offsets[corner], modulation * sample.weights[corner] * grad_columns[index]);
      }
    }
  }
}

template <typename scalar_t, typename acc_t>
__global__ void offset_and_mask_gradients_kernel(DeformConvShape shape, const scalar_t* image, const scalar_t* offset,
                                                 const scalar_t* mask, const acc_t* grad_columns, acc_t* grad_offset,
                                                 acc_t* grad_mask) {
  const int64_t points = shape.points(), taps = shape.taps(), plane_size = shape.height * shape.width;
  const int64_t channels_per_group = shape.channels_per_offset_group();
  const int64_t total = shape.offset_groups * taps * points;
  for (int64_t index = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; index < total;
       index += (int64_t)blockDim.x * gridDim.x) {
    const int64_t point = index % points, tap = (index / points) % taps, g = index / (points * taps);
    const DeformSample<acc_t> sample = column_sample<acc_t>(shape, offset, g, tap, point);
    const acc_t modulation = mask != nullptr ? static_cast<acc_t>(mask[index]) : static_cast<acc_t>(1);
    acc_t grad_y = 0, grad_x = 0, grad_modulation = 0;
    for (int64_t c = g * channels_per_group; c < (g + 1) * channels_per_group; ++c) {
      const scalar_t* plane = image + c * plane_size;
      const acc_t grad_column = grad_columns[(c * taps + tap) * points + point];
      acc_t value_grad_y, value_grad_x, value;
      common::deform_value_gradient(sample, plane, value_grad_y, value_grad_x, grad_mask != nullptr ? &value : nullptr);
      grad_y += modulation * value_grad_y * grad_column;
      grad_x += modulation * value_grad_x * grad_column;
      if (grad_mask != nullptr) {
        grad_modulation += grad_column * value;
      }
    }
    const int64_t pair = 2 * (g * taps + tap);
    grad_offset[pair * points + point] = grad_y;
    grad_offset[(pair + 1) * points + point] = grad_x;
    if (grad_mask != nullptr) {
      grad_mask[index] = grad_modulation;
    }
  }
}

struct DeformInputs {
  DeformConvShape shape;
  at::Tensor input, weight, offset, mask, bias;
};

DeformInputs prepare(const char* op, const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                     const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias, int64_t stride_h,
                     int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                     int64_t groups, int64_t offset_groups) {
  DeformInputs prepared;
  prepared.mask = mask.has_value() ? mask->contiguous() : at::Tensor();
  prepared.bias = bias.has_value() ? *bias : at::Tensor();
  prepared.shape = common::check_deform_conv_args(op, input, weight, offset, prepared.mask, prepared.bias, stride_h,
                                                  stride_w, pad_h, pad_w, dilation_h, dilation_w, groups,
                                                  offset_groups);
  common::check_device(op, at::kCUDA, {input, weight, offset});
  for (const at::Tensor& optional : {prepared.mask, prepared.bias}) {
    if (optional.defined()) {
      common::check_device(op, at::kCUDA, {input, optional});
    }
  }
  prepared.input = input.contiguous();
  prepared.weight = weight.contiguous();
  prepared.offset = offset.contiguous();
  return prepared;
}

at::Tensor grouped_weight(const DeformInputs& inputs, at::ScalarType acc_type) {
  const DeformConvShape& shape = inputs.shape;
  return inputs.weight.to(acc_type).reshape(
      {shape.groups, shape.out_channels / shape.groups, shape.channels / shape.groups * shape.taps()});
}

template <typename T>
const T* optional_data(const at::Tensor& tensor, int64_t image, int64_t image_size) {
  return tensor.defined() ? tensor.const_data_ptr<T>() + image * image_size : nullptr;
}

}  // namespace

namespace cuda {

at::Tensor deform_conv2d(const at::Tensor& input, const at::Tensor& weight, const at::Tensor& offset,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& bias,
                         int64_t stride_h, int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                         int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  const DeformInputs inputs = prepare("deform_conv2d", input, weight, offset, mask, bias, stride_h, stride_w, pad_h,
                                      pad_w, dilation_h, dilation_w, groups, offset_groups);
  const DeformConvShape& shape = inputs.shape;
  const common::DeformImageSizes sizes = common::image_sizes(shape);
  const int64_t batch = input.size(0), points = shape.points(), taps = shape.taps();
  c10::cuda::CUDAGuard device_guard(input.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::ScalarType acc_type = at::toOpMathType(input.scalar_type());
  at::Tensor output = at::empty({batch, shape.out_channels, shape.out_height, shape.out_width},
                                input.options().dtype(acc_type));
  const at::Tensor weight_groups = grouped_weight(inputs, acc_type);
  at::Tensor columns = at::empty({shape.channels * taps, points}, output.options());
  const at::Tensor column_groups = columns.view({shape.groups, shape.channels / shape.groups * taps, points});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "maskrcnn_multi::deform_conv2d (CUDA)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t n = 0; n < batch; ++n) {
      sample_columns_kernel<scalar_t, acc_t>
          <<<cuda_helpers::blocks_for(columns.numel()), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
              shape, inputs.input.const_data_ptr<scalar_t>() + n * sizes.image,
              inputs.offset.const_data_ptr<scalar_t>() + n * sizes.offset,
              optional_data<scalar_t>(inputs.mask, n, sizes.mask), columns.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
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
  const DeformInputs inputs = prepare("deform_conv2d_backward", input, weight, offset, mask, bias, stride_h,
                                      stride_w, pad_h, pad_w, dilation_h, dilation_w, groups, offset_groups);
  const DeformConvShape& shape = inputs.shape;
  const common::DeformImageSizes sizes = common::image_sizes(shape);
  const int64_t batch = input.size(0), points = shape.points(), taps = shape.taps();
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == batch && grad.size(1) == shape.out_channels &&
                  grad.size(2) == shape.out_height && grad.size(3) == shape.out_width,
              "deform_conv2d_backward: grad must be (", batch, ", ", shape.out_channels, ", ", shape.out_height, ", ",
              shape.out_width, "), got ", grad.sizes());
  common::check_device("deform_conv2d_backward", at::kCUDA, {input, grad});
  c10::cuda::CUDAGuard device_guard(input.device());
  cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
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
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(),
                                  "maskrcnn_multi::deform_conv2d_backward (CUDA)", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    for (int64_t n = 0; n < batch; ++n) {
      const scalar_t* image = inputs.input.const_data_ptr<scalar_t>() + n * sizes.image;
      const scalar_t* image_offset = inputs.offset.const_data_ptr<scalar_t>() + n * sizes.offset;
      const scalar_t* image_mask = optional_data<scalar_t>(inputs.mask, n, sizes.mask);
      const int64_t blocks = cuda_helpers::blocks_for(columns.numel());
      sample_columns_kernel<scalar_t, acc_t><<<blocks, cuda_helpers::kThreadsPerBlock, 0, stream>>>(
          shape, image, image_offset, image_mask, columns.data_ptr<acc_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const at::Tensor grad_groups = grad_output[n].view({shape.groups, shape.out_channels / shape.groups, points});
      at::bmm_out(grad_column_groups, weight_t, grad_groups);
      grad_weight.baddbmm_(grad_groups, column_groups.transpose(1, 2));
      scatter_to_input_kernel<scalar_t, acc_t><<<blocks, cuda_helpers::kThreadsPerBlock, 0, stream>>>(
          shape, image_offset, image_mask, grad_columns.const_data_ptr<acc_t>(),
          grad_input.data_ptr<acc_t>() + n * sizes.image);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      offset_and_mask_gradients_kernel<scalar_t, acc_t>
          <<<cuda_helpers::blocks_for(sizes.mask), cuda_helpers::kThreadsPerBlock, 0, stream>>>(
              shape, image, image_offset, image_mask, grad_columns.const_data_ptr<acc_t>(),
              grad_offset.data_ptr<acc_t>() + n * sizes.offset,
              grad_mask.defined() ? grad_mask.data_ptr<acc_t>() + n * sizes.mask : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  const at::Tensor grad_bias = inputs.bias.defined() ? grad_output.sum({0, 2, 3}).to(inputs.bias.scalar_type())
                                                     : at::empty({0}, input.options());
  return {grad_input.to(input.scalar_type()), grad_weight.view(weight.sizes()).to(weight.scalar_type()),
          grad_offset.to(offset.scalar_type()),
          grad_mask.defined() ? grad_mask.to(inputs.mask.scalar_type()) : at::empty({0}, input.options()), grad_bias};
}

}  // namespace cuda
}  // namespace maskrcnn_multi
