// The one place every native op of maskrcnn_multi is declared and every compiled kernel registered:
// the kernel files (csrc/cpu/, csrc/cuda/) only define the entry points declared in ops.h, and the
// TORCH_LIBRARY_IMPL blocks below bind them to the schemas. The schemas are the contract of
// docs/ARCHITECTURE.md, shared by every device: CPU kernels always, CUDA ones when built with WITH_CUDA,
// and the NPU backend registers PrivateUse1 kernels on the same schemas from Python
// (maskrcnn_multi/backends/npu_kernels.py). Autograd for roi_align and deform_conv2d is registered from Python
// (maskrcnn_multi/backends/native.py) so that it follows whichever device's kernels run.
#include <Python.h>

#include <torch/library.h>

#include "ops.h"

TORCH_LIBRARY(maskrcnn_multi, m) {
  // Indices into `boxes` (int64) kept by greedy NMS, sorted by decreasing score.
  m.def("nms(Tensor boxes, Tensor scores, float iou_threshold) -> Tensor");
  // Pairwise IoU (N, M); NaN where two zero-area boxes meet (0 / 0), as torchvision.
  m.def("box_iou(Tensor boxes1, Tensor boxes2) -> Tensor");
  // input (N, C, H, W) in any layout and floating dtype (half types accumulate in float); rois: (K, 5)
  // [batch_index, x0, y0, x1, y1], read in the accumulation type. Returns (K, C, pooled_height,
  // pooled_width) of input's dtype, channels_last when input's channels are innermost.
  m.def(
      "roi_align(Tensor input, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int sampling_ratio, bool aligned) -> Tensor");
  // Gradient w.r.t. roi_align's input: (batch_size, channels, height, width) of grad's dtype,
  // channels_last when grad's channels are innermost; grad in any layout.
  m.def(
      "roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, int pooled_height, "
      "int pooled_width, int batch_size, int channels, int height, int width, "
      "int sampling_ratio, bool aligned) -> Tensor");
  // masks (N, M, M) pasted into (N, height, width) float images, before thresholding.
  m.def("paste_masks(Tensor masks, Tensor boxes, int height, int width) -> Tensor");
  // detectron2's paste_masks_in_image: (N, height, width) bool masks (value >= threshold), or uint8
  // value * 255 when threshold < 0; 0 outside each mask's pasting region.
  m.def("paste_masks_in_image(Tensor masks, Tensor boxes, int height, int width, float threshold) -> Tensor");
  // torchvision's deform_conv2d: input (N, C, H, W), weight (C_out, C / groups, kh, kw), offset (N, 2 *
  // offset_groups * kh * kw, oh, ow) as (y, x) pairs per tap, mask (N, offset_groups * kh * kw, oh, ow)
  // for the modulated form, all of input's floating dtype (half types accumulate in float). Returns
  // (N, C_out, oh, ow) of input's dtype, contiguous.
  m.def(
      "deform_conv2d(Tensor input, Tensor weight, Tensor offset, Tensor? mask, Tensor? bias, int stride_h, "
      "int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, int groups, int offset_groups) -> Tensor");
  // Gradients of deform_conv2d w.r.t. (input, weight, offset, mask, bias); an absent mask or bias gets an
  // empty (0,) tensor.
  m.def(
      "deform_conv2d_backward(Tensor grad, Tensor input, Tensor weight, Tensor offset, Tensor? mask, "
      "Tensor? bias, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int groups, int offset_groups) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(maskrcnn_multi, CPU, m) {
  m.impl("nms", TORCH_FN(maskrcnn_multi::cpu::nms));
  m.impl("box_iou", TORCH_FN(maskrcnn_multi::cpu::box_iou));
  m.impl("roi_align", TORCH_FN(maskrcnn_multi::cpu::roi_align));
  m.impl("roi_align_backward", TORCH_FN(maskrcnn_multi::cpu::roi_align_backward));
  m.impl("paste_masks", TORCH_FN(maskrcnn_multi::cpu::paste_masks));
  m.impl("paste_masks_in_image", TORCH_FN(maskrcnn_multi::cpu::paste_masks_in_image));
  m.impl("deform_conv2d", TORCH_FN(maskrcnn_multi::cpu::deform_conv2d));
  m.impl("deform_conv2d_backward", TORCH_FN(maskrcnn_multi::cpu::deform_conv2d_backward));
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(maskrcnn_multi, CUDA, m) {
  m.impl("nms", TORCH_FN(maskrcnn_multi::cuda::nms));
  m.impl("box_iou", TORCH_FN(maskrcnn_multi::cuda::box_iou));
  m.impl("roi_align", TORCH_FN(maskrcnn_multi::cuda::roi_align));
  m.impl("roi_align_backward", TORCH_FN(maskrcnn_multi::cuda::roi_align_backward));
  m.impl("paste_masks", TORCH_FN(maskrcnn_multi::cuda::paste_masks));
  m.impl("paste_masks_in_image", TORCH_FN(maskrcnn_multi::cuda::paste_masks_in_image));
  m.impl("deform_conv2d", TORCH_FN(maskrcnn_multi::cuda::deform_conv2d));
  m.impl("deform_conv2d_backward", TORCH_FN(maskrcnn_multi::cuda::deform_conv2d_backward));
}
#endif

// `import maskrcnn_multi._C` loads this library, which runs the static registrations above. The module
// object carries only what the build was: `built_with_cuda` (bool), so callers and tests can tell
// whether CUDA kernels must be registered without asking torch what it could have been built with.
static PyModuleDef kNativeModule = {
    PyModuleDef_HEAD_INIT, "maskrcnn_multi._C",
    "Native kernels of maskrcnn_multi, reachable as torch.ops.maskrcnn_multi.*", -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) {
  PyObject* module = PyModule_Create(&kNativeModule);
  if (module == nullptr) {
    return nullptr;
  }
#ifdef WITH_CUDA
  PyObject* built_with_cuda = Py_True;
#else
  PyObject* built_with_cuda = Py_False;
#endif
  Py_INCREF(built_with_cuda);
  if (PyModule_AddObject(module, "built_with_cuda", built_with_cuda) < 0) {
    Py_DECREF(built_with_cuda);
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}
