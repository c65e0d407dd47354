// The fused DEE dilated convolution ("DeeConv"): the one operator both DEE branches reduce to.
//
// This header is the single description of the operator that every implementation follows
// (the PyTorch reference in deen/ops/dee_conv.py, the CPU kernel, the CUDA kernels, the ONNX
// Runtime custom op and the TensorRT plugin to come):
//
//   inputs   x       float32, N x C x H x W, NCHW contiguous
//            weight  float32, 25 x C x O, contiguous: weight[t][c][o], tap-major, output
//                    channel fastest (the layout the kernels stream without repacking)
//   output   y       float32, N x O x H x W:
//              y[n][o][h][w] = max(0, sum_t sum_c weight[t][c][o] * x[n][c][h + dy_t][w + dx_t])
//            with x read as zero outside the image (each dilation d pads by d, "same" output).
//   attributes: none.  ONNX: node "DeeConv" in domain "deen.ops", version 1.
//
// Taps t = 0..24: t = 0 is the centre (0, 0), shared by the three 3x3 patterns; then for each
// dilation d = 1, 2, 3 the eight off-centre taps of its 3x3 pattern in row-major order:
//   (dy, dx) = (-d,-d) (-d,0) (-d,d) (0,-d) (0,d) (d,-d) (d,0) (d,d).
// For a DEE module with C input channels, O = 2 * C/4: outputs [0, C/4) are branch 1 and
// [C/4, C/2) branch 2; the weight already holds the reference's division by 3.
#pragma once

#include <cstdint>

namespace deen {

constexpr int kDeeTaps = 25;
constexpr int kDeeMaxDilation = 3;

// Tap t's offsets, in the order above.
inline void dee_tap_offset(int t, int* dy, int* dx) {
  if (t == 0) {
    *dy = 0;
    *dx = 0;
    return;
  }
  const int d = (t - 1) / 8 + 1, k = (t - 1) % 8;
  const int cell = k < 4 ? k : k + 1;  // skip the centre of the 3x3 pattern
  *dy = (cell / 3 - 1) * d;
  *dx = (cell % 3 - 1) * d;
}

}  // namespace deen

extern "C" {
// CPU kernel. threads <= 0: one per hardware thread. Returns 0, or -1 on bad arguments.
__attribute__((visibility("default"))) int deen_dee_conv_f32(const float* x, const float* weight, float* y, int64_t n, int64_t c,
                      int64_t h, int64_t w, int64_t o, int threads);
}
