// Argument checks shared by every device's kernels (host code only). The Python wrappers in
// maskrcnn_multi/ops check user input first and name the argument; these guard the schemas themselves
// (a direct torch.ops.maskrcnn_multi call) and name the op, the argument and the offending value.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include "common/deform_conv_geometry.h"

namespace maskrcnn_multi {
namespace common {

inline void check_same_dtype(const char* op, const char* name_a, const at::Tensor& a, const char* name_b,
                             const at::Tensor& b) {
  TORCH_CHECK(a.scalar_type() == b.scalar_type(), op, ": ", name_a, " (", a.scalar_type(), ") and ", name_b, " (",
              b.scalar_type(), ") must have the same dtype");
}

// Every tensor on the device type the kernel serves, and all on one device.
inline void check_device(const char* op, c10::DeviceType device_type, std::initializer_list<at::Tensor> tensors) {
  const at::Tensor& first = *tensors.begin();
  for (const at::Tensor& tensor : tensors) {
    TORCH_CHECK(tensor.device().type() == device_type, op, ": tensors must be on ", device_type, ", got one on ",
                tensor.device());
    TORCH_CHECK(tensor.device() == first.device(), op, ": tensors on ", first.device(), " and ", tensor.device());
  }
}

inline void check_nms_args(const at::Tensor& boxes, const at::Tensor& scores) {
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, "nms: boxes must be (N, 4), got ", boxes.sizes());
  TORCH_CHECK(scores.dim() == 1 && scores.size(0) == boxes.size(0),
              "nms: scores must be (N,) with N = boxes.size(0) = ", boxes.size(0), ", got ", scores.sizes());
  check_same_dtype("nms", "boxes", boxes, "scores", scores);
}

inline void check_box_iou_args(const at::Tensor& boxes1, const at::Tensor& boxes2) {
  TORCH_CHECK(boxes1.dim() == 2 && boxes1.size(1) == 4, "box_iou: boxes1 must be (N, 4), got ", boxes1.sizes());
  TORCH_CHECK(boxes2.dim() == 2 && boxes2.size(1) == 4, "box_iou: boxes2 must be (M, 4), got ", boxes2.sizes());
  check_same_dtype("box_iou", "boxes1", boxes1, "boxes2", boxes2);
}

// rois are read in the kernels' accumulation type (float for half-precision features), whatever
// floating dtype they come in: the Python wrapper passes them in that type already.
inline void check_roi_align_args(const char* op, const at::Tensor& rois, int64_t pooled_height,
                                 int64_t pooled_width) {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5, op, ": rois must be (K, 5), got ", rois.sizes());
  TORCH_CHECK(rois.is_floating_point(), op, ": rois must be floating point, got ", rois.scalar_type());
  TORCH_CHECK(pooled_height > 0 && pooled_width > 0, op, ": pooled size must be positive, got (", pooled_height,
              ", ", pooled_width, ")");
}

inline void check_roi_align_input(const at::Tensor& input) {
  TORCH_CHECK(input.dim() == 4, "roi_align: input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(input.is_floating_point(), "roi_align: input must be floating point, got ", input.scalar_type());
}

inline void check_roi_align_grad(const at::Tensor& grad, int64_t num_rois, int64_t channels, int64_t pooled_height,
                                 int64_t pooled_width) {
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == num_rois && grad.size(1) == channels &&
                  grad.size(2) == pooled_height && grad.size(3) == pooled_width,
              "roi_align_backward: grad must be (", num_rois, ", ", channels, ", ", pooled_height, ", ",
              pooled_width, "), got ", grad.sizes());
}

// Rejects a roi naming an image outside the batch before a kernel reads memory with it. `rois` must be
// host memory: device kernels assert instead (a check here would cost a synchronisation).
template <typename T>
void check_batch_indices(const char* op, const T* rois, int64_t num_rois, int64_t batch_size) {
  for (int64_t n = 0; n < num_rois; ++n) {
    const int64_t batch_index = static_cast<int64_t>(rois[5 * n]);
    TORCH_CHECK(batch_index >= 0 && batch_index < batch_size, op, ": rois[", n, ", 0] = ", rois[5 * n],
                " is not a batch index in [0, ", batch_size, ")");
  }
}

// `op` is paste_masks or paste_masks_in_image (same arguments, plus the latter's threshold).
inline void check_paste_masks_args(const char* op, const at::Tensor& masks, const at::Tensor& boxes,
                                   int64_t height, int64_t width) {
  TORCH_CHECK(masks.dim() == 3 && masks.size(1) == masks.size(2), op, ": masks must be (N, M, M), got ",
              masks.sizes());
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4 && boxes.size(0) == masks.size(0), op,
              ": boxes must be (N, 4) with N = ", masks.size(0), ", got ", boxes.sizes());
  check_same_dtype(op, "masks", masks, "boxes", boxes);
  TORCH_CHECK(height >= 0 && width >= 0, op, ": image size must be non-negative, got (", height, ", ", width, ")");
}

// deform_conv2d's (and its backward's) tensors against each other; returns the geometry the kernels
// walk. mask and bias may be undefined (no modulation, no bias).
inline DeformConvShape check_deform_conv_args(const char* op, const at::Tensor& input, const at::Tensor& weight,
                                              const at::Tensor& offset, const at::Tensor& mask,
                                              const at::Tensor& bias, int64_t stride_h, int64_t stride_w,
                                              int64_t pad_h, int64_t pad_w, int64_t dilation_h,
                                              int64_t dilation_w, int64_t groups, int64_t offset_groups) {
  TORCH_CHECK(input.dim() == 4, op, ": input must be (N, C, H, W), got ", input.sizes());
  TORCH_CHECK(input.is_floating_point(), op, ": input must be floating point, got ", input.scalar_type());
  TORCH_CHECK(weight.dim() == 4, op, ": weight must be (C_out, C / groups, kh, kw), got ", weight.sizes());
  TORCH_CHECK(offset.dim() == 4, op, ": offset must be (N, 2 * offset_groups * kh * kw, oh, ow), got ",
              offset.sizes());
  TORCH_CHECK(stride_h > 0 && stride_w > 0, op, ": stride must be positive, got (", stride_h, ", ", stride_w, ")");
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, op, ": padding must be non-negative, got (", pad_h, ", ", pad_w, ")");
  TORCH_CHECK(dilation_h > 0 && dilation_w > 0, op, ": dilation must be positive, got (", dilation_h, ", ",
              dilation_w, ")");
  TORCH_CHECK(groups > 0 && offset_groups > 0, op, ": groups (", groups, ") and offset_groups (", offset_groups,
              ") must be positive");
  DeformConvShape shape;
  shape.channels = input.size(1);
  shape.height = input.size(2);
  shape.width = input.size(3);
  shape.out_channels = weight.size(0);
  shape.kernel_height = weight.size(2);
  shape.kernel_width = weight.size(3);
  shape.stride_h = stride_h;
  shape.stride_w = stride_w;
  shape.pad_h = pad_h;
  shape.pad_w = pad_w;
  shape.dilation_h = dilation_h;
  shape.dilation_w = dilation_w;
  shape.groups = groups;
  shape.offset_groups = offset_groups;
  shape.out_height = (shape.height + 2 * pad_h - (dilation_h * (shape.kernel_height - 1) + 1)) / stride_h + 1;
  shape.out_width = (shape.width + 2 * pad_w - (dilation_w * (shape.kernel_width - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(shape.out_height > 0 && shape.out_width > 0, op, ": the output would be empty (",
              shape.out_height, ", ", shape.out_width, ") for input ", input.sizes(), " and weight ", weight.sizes());
  TORCH_CHECK(shape.channels % groups == 0 && shape.out_channels % groups == 0 &&
                  weight.size(1) * groups == shape.channels,
              op, ": weight ", weight.sizes(), " does not fit input channels ", shape.channels, " in ", groups,
              " groups");
  TORCH_CHECK(shape.channels % offset_groups == 0, op, ": input channels ", shape.channels,
              " are not divisible by offset_groups ", offset_groups);
  TORCH_CHECK(offset.size(0) == input.size(0) && offset.size(1) == 2 * offset_groups * shape.taps() &&
                  offset.size(2) == shape.out_height && offset.size(3) == shape.out_width,
              op, ": offset must be (", input.size(0), ", ", 2 * offset_groups * shape.taps(), ", ", shape.out_height,
              ", ", shape.out_width, "), got ", offset.sizes());
  check_same_dtype(op, "input", input, "offset", offset);
  check_same_dtype(op, "input", input, "weight", weight);
  if (mask.defined()) {
    TORCH_CHECK(mask.dim() == 4 && mask.size(0) == input.size(0) && mask.size(1) == offset_groups * shape.taps() &&
                    mask.size(2) == shape.out_height && mask.size(3) == shape.out_width,
                op, ": mask must be (", input.size(0), ", ", offset_groups * shape.taps(), ", ", shape.out_height,
                ", ", shape.out_width, "), got ", mask.sizes());
    check_same_dtype(op, "input", input, "mask", mask);
  }
  if (bias.defined()) {
    TORCH_CHECK(bias.dim() == 1 && bias.size(0) == shape.out_channels, op, ": bias must be (", shape.out_channels,
                ",), got ", bias.sizes());
    check_same_dtype(op, "input", input, "bias", bias);
  }
  return shape;
}

}  // namespace common
}  // namespace maskrcnn_multi
