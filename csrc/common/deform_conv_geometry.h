// Deformable convolution's geometry, shared by the CPU and CUDA kernels: where output position
// (oy, ox) and kernel tap (i, j) sample the input, the four bilinear neighbours of that point, and the
// derivatives of the bilinear value w.r.t. the point (what the offsets' gradient is made of).
// torchvision's rules (its deform_conv2d kernels):
// - y = oy * stride_h - pad_h + i * dilation_h + offset_y, x likewise;
// - a neighbour outside [0, H) x [0, W) contributes 0; a point with y <= -1, y >= H, x <= -1 or x >= W
//   thus samples 0;
// - value = hy*hx * v00 + hy*lx * v01 + ly*hx * v10 + ly*lx * v11 in that order (l = fraction, h = 1 - l);
// - d value / dy = lx * (v11 - v01) + (1 - lx) * (v10 - v00), d value / dx = ly * (v11 - v10) +
//   (1 - ly) * (v01 - v00), the neighbours being read with the same validity rule.
// A neighbour outside the map has weight 0 and valid false; it is never read. The input's gradient
// scatters with the same four weights.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace maskrcnn_multi {
namespace common {

struct DeformConvShape {
  int64_t channels, height, width;           // input's, per image
  int64_t out_channels, out_height, out_width;
  int64_t kernel_height, kernel_width;
  int64_t stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t groups, offset_groups;

  MRCNN_HOST_DEVICE int64_t taps() const { return kernel_height * kernel_width; }
  MRCNN_HOST_DEVICE int64_t points() const { return out_height * out_width; }
  MRCNN_HOST_DEVICE int64_t channels_per_offset_group() const { return channels / offset_groups; }
};

// Elements per image of the input, the offsets and the mask (each tensor contiguous).
struct DeformImageSizes {
  int64_t image, offset, mask;
};

MRCNN_HOST_DEVICE inline DeformImageSizes image_sizes(const DeformConvShape& shape) {
  const int64_t samples = shape.offset_groups * shape.taps() * shape.points();
  return {shape.channels * shape.height * shape.width, 2 * samples, samples};
}

// The four neighbours of one sampling point: element offsets into a (H, W) plane and their bilinear
// weights, in the order (y0, x0), (y0, x1), (y1, x0), (y1, x1); the fractions ly, lx for the derivatives.
template <typename T>
struct DeformSample {
  int64_t offsets[4];
  T weights[4];
  T ly, lx;
  bool valid[4];
};

// The point of offset group g's tap `tap` at output position (oy, ox); `offset` points at the image's
// (2 * offset_groups * K, oh, ow) offsets.
template <typename T, typename offset_t>
MRCNN_HOST_DEVICE inline void deform_point(const DeformConvShape& shape, const offset_t* offset, int64_t g,
                                           int64_t tap, int64_t oy, int64_t ox, T& y, T& x) {
  const int64_t i = tap / shape.kernel_width, j = tap % shape.kernel_width;
  const int64_t channel = 2 * (g * shape.taps() + tap);
  const int64_t position = oy * shape.out_width + ox;
  const T offset_y = static_cast<T>(offset[channel * shape.points() + position]);
  const T offset_x = static_cast<T>(offset[(channel + 1) * shape.points() + position]);
  y = static_cast<T>(oy * shape.stride_h - shape.pad_h + i * shape.dilation_h) + offset_y;
  x = static_cast<T>(ox * shape.stride_w - shape.pad_w + j * shape.dilation_w) + offset_x;
}

template <typename T>
MRCNN_HOST_DEVICE inline DeformSample<T> deform_sample(T y, T x, int64_t height, int64_t width) {
  DeformSample<T> sample;
  for (int corner = 0; corner < 4; ++corner) {
    sample.offsets[corner] = 0;
    sample.weights[corner] = 0;
    sample.valid[corner] = false;
  }
  sample.ly = 0;
  sample.lx = 0;
  // Beyond one pixel from the map every neighbour is outside (NaN fails the test too); this also keeps
  // the integer conversion below defined for huge offsets.
  if (!(y > static_cast<T>(-2) && y < static_cast<T>(height + 1) && x > static_cast<T>(-2) &&
        x < static_cast<T>(width + 1))) {
    return sample;
  }
  const T y_floor = floor_of(y), x_floor = floor_of(x);
  const int64_t y0 = static_cast<int64_t>(y_floor), x0 = static_cast<int64_t>(x_floor);
  const T ly = y - y_floor, lx = x - x_floor;
  const T hy = static_cast<T>(1) - ly, hx = static_cast<T>(1) - lx;
  const int64_t rows[2] = {y0, y0 + 1};
  const int64_t columns[2] = {x0, x0 + 1};
  const T row_weights[2] = {hy, ly};
  const T column_weights[2] = {hx, lx};
  for (int r = 0; r < 2; ++r) {
    for (int c = 0; c < 2; ++c) {
      const int corner = 2 * r + c;
      const bool valid = rows[r] >= 0 && rows[r] < height && columns[c] >= 0 && columns[c] < width;
      sample.valid[corner] = valid;
      if (valid) {
        sample.offsets[corner] = rows[r] * width + columns[c];
        sample.weights[corner] = mul_rn(row_weights[r], column_weights[c]);
      }
    }
  }
  sample.ly = ly;
  sample.lx = lx;
  return sample;
}

// The bilinear value of a plane at the sample, in acc_t. Neighbours outside the map add 0 without
// being read (as torchvision, so a NaN or inf at the map's first element stays out of them).
template <typename acc_t, typename scalar_t>
MRCNN_HOST_DEVICE inline acc_t deform_value(const DeformSample<acc_t>& sample, const scalar_t* plane) {
  acc_t value = 0;
  for (int corner = 0; corner < 4; ++corner) {
    const acc_t term = sample.valid[corner]
                           ? mul_rn(sample.weights[corner], static_cast<acc_t>(plane[sample.offsets[corner]]))
                           : static_cast<acc_t>(0);
    value = value + term;
  }
  return value;
}

// d value / dy and d value / dx of a plane at the sample, and (when `value` is not null) the value
// itself, exactly as deform_value computes it, from one read of the four neighbours.
template <typename acc_t, typename scalar_t>
MRCNN_HOST_DEVICE inline void deform_value_gradient(const DeformSample<acc_t>& sample, const scalar_t* plane,
                                                    acc_t& grad_y, acc_t& grad_x, acc_t* value = nullptr) {
  acc_t v[4];
  for (int corner = 0; corner < 4; ++corner) {
    v[corner] = sample.valid[corner] ? static_cast<acc_t>(plane[sample.offsets[corner]]) : static_cast<acc_t>(0);
  }
  const acc_t one = 1;
  grad_y = mul_rn(sample.lx, v[3] - v[1]) + mul_rn(one - sample.lx, v[2] - v[0]);
  grad_x = mul_rn(sample.ly, v[3] - v[2]) + mul_rn(one - sample.ly, v[1] - v[0]);
  if (value != nullptr) {
    acc_t sum = 0;
    for (int corner = 0; corner < 4; ++corner) {
      sum = sum + (sample.valid[corner] ? mul_rn(sample.weights[corner], v[corner]) : static_cast<acc_t>(0));
    }
    *value = sum;
  }
}

}  // namespace common
}  // namespace maskrcnn_multi
