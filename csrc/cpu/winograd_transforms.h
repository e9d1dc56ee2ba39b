// winograd_transforms.h — what the channels-first (conv_winograd.cpp) and channels-last
// (conv_winograd_nhwc.cpp) Winograd F(4x4, 3x3) kernels share: the 1-D transforms, written once
// for any vector type, and the checks and weight preparations that do not depend on the layout.
#pragma once

#include "../shape.h"

namespace convkern::cpu::winograd {

constexpr int kM = 4;  // output tile: 4 x 4
constexpr int kA = kM + 2;  // input tile / transform size: 6 x 6
constexpr int kA2 = kA * kA;  // alpha points: 36 GEMMs

// 1-D transforms of F(4, 3) for the interpolation points 0, +-3/2, +-2/3 and infinity, rows
// scaled to small integers (exact in float) and the scale folded into G:
//   B^T = [36   0 -97   0  36  0]     G = [1/36      0      0   ]     A^T = [1  8   8  27  27 0]
//         [ 0 -12  -8  27  18  0]         [1/1170  1/780  1/520 ]           [0 12 -12  18 -18 0]
//         [ 0  12  -8 -27  18  0]         [1/1170 -1/780  1/520 ]           [0 18  18  12  12 0]
//         [ 0 -18 -27   8  12  0]         [-1/520 -1/780 -1/1170]           [0 27 -27   8  -8 1]
//         [ 0  18 -27  -8  12  0]         [-1/520  1/780 -1/1170]
//         [ 0  36   0 -97   0 36]         [0        0      1/36 ]
// The symmetric point pairs make each pair of rows one sum and one difference.
template <class V>
inline void input_1d(const V* d, V* o) {
  const V e1 = d[4] * 18.f - d[2] * 8.f, f1 = d[3] * 27.f - d[1] * 12.f;
  const V e3 = d[4] * 12.f - d[2] * 27.f, f3 = d[3] * 8.f - d[1] * 18.f;
  o[0] = (d[0] + d[4]) * 36.f - d[2] * 97.f;
  o[1] = e1 + f1;
  o[2] = e1 - f1;
  o[3] = e3 + f3;
  o[4] = e3 - f3;
  o[5] = (d[1] + d[5]) * 36.f - d[3] * 97.f;
}

template <class V>
inline void output_1d(const V* m, V* y) {
  const V sp = m[1] + m[2], sm = m[1] - m[2], tp = m[3] + m[4], tm = m[3] - m[4];
  y[0] = m[0] + sp * 8.f + tp * 27.f;
  y[1] = sm * 12.f + tm * 18.f;
  y[2] = sp * 18.f + tp * 12.f;
  y[3] = sm * 27.f + tm * 8.f + m[5];
}

template <class V>
inline void weight_1d(const V* g, V* u) {
  const V e = g[0] * (1.f / 1170) + g[2] * (1.f / 520), o = g[1] * (1.f / 780);
  const V e2 = g[0] * (1.f / 520) + g[2] * (1.f / 1170);
  u[0] = g[0] * (1.f / 36);
  u[1] = e + o;
  u[2] = e - o;
  u[3] = -(e2 + o);
  u[4] = o - e2;
  u[5] = g[2] * (1.f / 36);
}

// The transposes of output_1d and weight_1d, for the weight gradient: grad_output tiles go
// through A (4 -> 6: m = A y), the summed products back through G^T (6 -> 3).
template <class V>
inline void output_grad_1d(const V* y, V* m) {
  const V e1 = y[0] * 8.f + y[2] * 18.f, o1 = y[1] * 12.f + y[3] * 27.f;
  const V e3 = y[0] * 27.f + y[2] * 12.f, o3 = y[1] * 18.f + y[3] * 8.f;
  m[0] = y[0];
  m[1] = e1 + o1;
  m[2] = e1 - o1;
  m[3] = e3 + o3;
  m[4] = e3 - o3;
  m[5] = y[3];
}

template <class V>
inline void weight_grad_1d(const V* u, V* g) {
  const V s12 = u[1] + u[2], s34 = u[3] + u[4];
  g[0] = u[0] * (1.f / 36) + s12 * (1.f / 1170) - s34 * (1.f / 520);
  g[1] = (u[1] - u[2] - u[3] + u[4]) * (1.f / 780);
  g[2] = s12 * (1.f / 520) - s34 * (1.f / 1170) + u[5] * (1.f / 36);
}

// `floats` rounded up to an odd number of 64-byte lines: the stride between the 36 alpha points'
// blocks, so that their streams never share one L1 set (multiples of 4 KiB would).
inline i64 odd_lines(i64 floats) { return (ceil_div(floats, 16) | 1) * 16; }

// Whether sums of `terms` products a*b, each operand transformed by B^T . B (or A . A^T), stay
// finite in float: the transforms mix every value of a tile into every transformed value, so one
// Inf or NaN would spread over its whole output tile, and values near the float range overflow
// where the direct sum does not. Callers take the direct (implicit GEMM) route otherwise.
bool transforms_stay_finite(const float* a, i64 na, const float* b, i64 nb, double terms);

// The convolution whose forward pass is the backward-data pass of g (a 3x3 stride-1 layer with
// padding at most 2): grad_output correlated with the kernel rotated by 180 degrees, input and
// output channels swapped, padded by 2 - p on each side; its output is grad_input. False when a
// padding is above 2 (the transposed layer would need cropping).
bool transposed_geometry(const ConvGeometry& g, ConvGeometry& t);

// The transposed layer's weights: wt[c][k][i][j] = w[k][c][2 - i][2 - j].
void rotated_weights(const ConvGeometry& g, const float* w, float* wt);

// The weight gradient from its transformed sums: dw[k][c] = G^T dU[alpha][k][c] G, where dU holds
// the 36 alpha points `du_as` floats apart, each K rows of ldu (>= C) floats.
void weights_from_transformed(const ConvGeometry& g, const float* dU, i64 du_as, i64 ldu, float* dw);

}  // namespace convkern::cpu::winograd
