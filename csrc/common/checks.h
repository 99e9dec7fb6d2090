// Argument checks shared by every device's kernels (host code only). The Python wrappers in
// maskrcnn_multi/ops check user input first and name the argument; these guard the schemas themselves
// (a direct torch.ops.maskrcnn_multi call) and name the op, the argument and the offending value.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

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

}  // namespace common
}  // namespace maskrcnn_multi
