// conv_depthwise.cpp — direct kernels for depthwise convolution (groups == C_in, any channel
// multiplier K/C), both layouts, forward and both backward passes.
//
// Why not the GEMM path: with one input channel per group the GEMM has K/g rows (often 1) and a
// reduction of only kD*kH*kW, so a 12 x 32 micro-kernel would be 1/12 used and the packing would
// dominate. A depthwise layer is a stencil: per output cell, kvol multiply-adds.
//   channels-first: each (n, k) plane on its own; the inner loop runs along an output row, the
//                   input read with the layer's stride (unit stride vectorises directly).
//   channels-last:  the inner loop runs over contiguous channels at one position.
// Border handling clips each tap's range of output columns instead of testing every element.
//
// Determinism: every output element, input gradient and weight gradient is summed by one thread
// in a fixed order; weight gradients accumulate per-lane partial sums (no reassociation inside a
// lane) and reduce them in a fixed order at the end.
//
// Versions:
//   v1  direct stencils, planes (NCHW) or channel blocks (NHWC) in parallel.
#include <algorithm>
#include <vector>

#include "conv.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

// Output columns [lo, hi) whose tap at offset `off` (= kw*dilation - pad_before) lands inside
// [0, IW): iw = ow*stride + off.
inline void clip_columns(i64 OW, i64 IW, i64 stride, i64 off, i64& lo, i64& hi) {
  lo = off >= 0 ? 0 : ceil_div(-off, stride);
  hi = off >= IW ? 0 : std::min(OW, ceil_div(IW - off, stride));
  if (hi < lo) hi = lo;
}

struct Taps {
  i64 KD, KH, KW;
};

inline Taps taps_of(const ConvGeometry& g) { return {g.kernel[0], g.kernel[1], g.kernel[2]}; }

constexpr i64 kChannelBlock = 64;

}  // namespace

bool conv_is_depthwise(const ConvGeometry& g) { return g.C_per_group() == 1 && g.groups > 1; }

template <class T>
void depthwise_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const i64 Kg = g.K_per_group(), OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], kvol = g.kernel_volume();
  const Taps t = taps_of(g);
  parallel_for(g.N * g.K, [&](i64 plane, int) {
    const i64 n = plane / g.K, k = plane % g.K, c = k / Kg;
    const T* xp = x + (n * g.C + c) * ID * IH * IW;
    const T* wk = w + k * kvol;
    T* yp = y + plane * OD * OH * OW;
    const T b = bias ? bias[k] : T(0);
    for (i64 od = 0; od < OD; ++od)
      for (i64 oh = 0; oh < OH; ++oh) {
        T* yrow = yp + (od * OH + oh) * OW;
        std::fill(yrow, yrow + OW, b);
        for (i64 kd = 0; kd < t.KD; ++kd) {
          const i64 id = od * g.stride[0] - g.pad_before[0] + kd * g.dilation[0];
          if (id < 0 || id >= ID) continue;
          for (i64 kh = 0; kh < t.KH; ++kh) {
            const i64 ih = oh * g.stride[1] - g.pad_before[1] + kh * g.dilation[1];
            if (ih < 0 || ih >= IH) continue;
            const T* xrow = xp + (id * IH + ih) * IW;
            for (i64 kw = 0; kw < t.KW; ++kw) {
              const T wv = wk[(kd * t.KH + kh) * t.KW + kw];
              const i64 off = kw * g.dilation[2] - g.pad_before[2], s = g.stride[2];
              i64 lo, hi;
              clip_columns(OW, IW, s, off, lo, hi);
              if (s == 1) {
                const T* src = xrow + off;
                for (i64 ow = lo; ow < hi; ++ow) yrow[ow] += wv * src[ow];
              } else {
                for (i64 ow = lo; ow < hi; ++ow) yrow[ow] += wv * xrow[ow * s + off];
              }
            }
          }
        }
      }
  });
}

template <class T>
void depthwise_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  const i64 Kg = g.K_per_group(), OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], kvol = g.kernel_volume();
  const Taps t = taps_of(g);
  parallel_for(g.N * g.C, [&](i64 plane, int) {
    const i64 n = plane / g.C, c = plane % g.C;
    T* dxp = dx + plane * ID * IH * IW;
    std::fill(dxp, dxp + ID * IH * IW, T(0));
    for (i64 k = c * Kg; k < (c + 1) * Kg; ++k) {
      const T* dyp = dy + (n * g.K + k) * OD * OH * OW;
      const T* wk = w + k * kvol;
      for (i64 od = 0; od < OD; ++od)
        for (i64 oh = 0; oh < OH; ++oh) {
          const T* dyrow = dyp + (od * OH + oh) * OW;
          for (i64 kd = 0; kd < t.KD; ++kd) {
            const i64 id = od * g.stride[0] - g.pad_before[0] + kd * g.dilation[0];
            if (id < 0 || id >= ID) continue;
            for (i64 kh = 0; kh < t.KH; ++kh) {
              const i64 ih = oh * g.stride[1] - g.pad_before[1] + kh * g.dilation[1];
              if (ih < 0 || ih >= IH) continue;
              T* dxrow = dxp + (id * IH + ih) * IW;
              for (i64 kw = 0; kw < t.KW; ++kw) {
                const T wv = wk[(kd * t.KH + kh) * t.KW + kw];
                const i64 off = kw * g.dilation[2] - g.pad_before[2], s = g.stride[2];
                i64 lo, hi;
                clip_columns(OW, IW, s, off, lo, hi);
                if (s == 1) {
                  T* dst = dxrow + off;
                  for (i64 ow = lo; ow < hi; ++ow) dst[ow] += wv * dyrow[ow];
                } else {
                  for (i64 ow = lo; ow < hi; ++ow) dxrow[ow * s + off] += wv * dyrow[ow];
                }
              }
            }
          }
        }
    }
  });
}

template <class T>
void depthwise_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const i64 Kg = g.K_per_group(), OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], kvol = g.kernel_volume();
  const Taps t = taps_of(g);
  const int slots = scratch_slots(g.K);
  AlignedBuffer<T> lanes(slots * kvol * OW);
  parallel_for(g.K, [&](i64 k, int th) {
    const i64 c = k / Kg;
    // lane[tap][ow]: per-column partial sums over (n, od, oh), reduced in order at the end.
    T* lane = lanes.data() + th * kvol * OW;
    std::fill(lane, lane + kvol * OW, T(0));
    for (i64 n = 0; n < g.N; ++n) {
      const T* dyp = dy + (n * g.K + k) * OD * OH * OW;
      const T* xp = x + (n * g.C + c) * ID * IH * IW;
      for (i64 od = 0; od < OD; ++od)
        for (i64 oh = 0; oh < OH; ++oh) {
          const T* dyrow = dyp + (od * OH + oh) * OW;
          for (i64 kd = 0; kd < t.KD; ++kd) {
            const i64 id = od * g.stride[0] - g.pad_before[0] + kd * g.dilation[0];
            if (id < 0 || id >= ID) continue;
            for (i64 kh = 0; kh < t.KH; ++kh) {
              const i64 ih = oh * g.stride[1] - g.pad_before[1] + kh * g.dilation[1];
              if (ih < 0 || ih >= IH) continue;
              const T* xrow = xp + (id * IH + ih) * IW;
              for (i64 kw = 0; kw < t.KW; ++kw) {
                T* acc = lane + ((kd * t.KH + kh) * t.KW + kw) * OW;
                const i64 off = kw * g.dilation[2] - g.pad_before[2], s = g.stride[2];
                i64 lo, hi;
                clip_columns(OW, IW, s, off, lo, hi);
                if (s == 1) {
                  const T* src = xrow + off;
                  for (i64 ow = lo; ow < hi; ++ow) acc[ow] += dyrow[ow] * src[ow];
                } else {
                  for (i64 ow = lo; ow < hi; ++ow) acc[ow] += dyrow[ow] * xrow[ow * s + off];
                }
              }
            }
          }
        }
    }
    for (i64 tap = 0; tap < kvol; ++tap) {
      T s = 0;
      for (i64 ow = 0; ow < OW; ++ow) s += lane[tap * OW + ow];
      dw[k * kvol + tap] = s;
    }
  });
}

namespace {

// Weights as [tap][K]: the channels-last kernels read one tap's weights for all channels at once.
template <class T>
std::vector<T> taps_major(const ConvGeometry& g, const T* w) {
  const i64 kvol = g.kernel_volume();
  std::vector<T> wt(static_cast<size_t>(kvol * g.K));
  for (i64 k = 0; k < g.K; ++k)
    for (i64 tap = 0; tap < kvol; ++tap) wt[tap * g.K + k] = w[k * kvol + tap];
  return wt;
}

// Input cell (its channel 0) read by `tap` of output position (od, oh, ow), or -1 in padding.
inline i64 input_cell(const ConvGeometry& g, i64 od, i64 oh, i64 ow, i64 tap) {
  const i64 KH = g.kernel[1], KW = g.kernel[2];
  const i64 id = od * g.stride[0] - g.pad_before[0] + (tap / (KH * KW)) * g.dilation[0];
  const i64 ih = oh * g.stride[1] - g.pad_before[1] + ((tap / KW) % KH) * g.dilation[1];
  const i64 iw = ow * g.stride[2] - g.pad_before[2] + (tap % KW) * g.dilation[2];
  if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) return -1;
  return (id * g.in[1] + ih) * g.in[2] + iw;
}

}  // namespace

template <class T>
void depthwise_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume();
  const i64 OH = g.out[1], OW = g.out[2], rows = g.N * g.out[0] * OH;
  const std::vector<T> wt = taps_major(g, w);
  parallel_for(rows, [&](i64 row, int) {
    const i64 n = row / (g.out[0] * OH), od = (row / OH) % g.out[0], oh = row % OH;
    const T* xn = x + n * g.in_plane() * C;
    for (i64 ow = 0; ow < OW; ++ow) {
      T* yp = y + ((row * OW) + ow) * K;
      for (i64 k = 0; k < K; ++k) yp[k] = bias ? bias[k] : T(0);
      for (i64 tap = 0; tap < kvol; ++tap) {
        const i64 cell = input_cell(g, od, oh, ow, tap);
        if (cell < 0) continue;
        const T* xc = xn + cell * C;
        const T* wtap = wt.data() + tap * K;
        if (Kg == 1) {
          for (i64 k = 0; k < K; ++k) yp[k] += wtap[k] * xc[k];
        } else {
          for (i64 k = 0; k < K; ++k) yp[k] += wtap[k] * xc[k / Kg];
        }
      }
    }
  });
}

template <class T>
void depthwise_backward_data_channels_last(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume(), in_plane = g.in_plane();
  const i64 OH = g.out[1], OW = g.out[2], P = g.out_plane();
  const i64 cblocks = ceil_div(C, kChannelBlock);
  const std::vector<T> wt = taps_major(g, w);
  // Items own (image, channel block): the scatter below writes only their channels.
  parallel_for(g.N * cblocks, [&](i64 item, int) {
    const i64 n = item / cblocks, c0 = (item % cblocks) * kChannelBlock, cw = std::min(kChannelBlock, C - c0);
    T* dxn = dx + n * in_plane * C + c0;
    for (i64 s = 0; s < in_plane; ++s) std::fill(dxn + s * C, dxn + s * C + cw, T(0));
    for (i64 p = 0; p < P; ++p) {
      const i64 od = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
      const T* dyp = dy + (n * P + p) * K;
      for (i64 tap = 0; tap < kvol; ++tap) {
        const i64 cell = input_cell(g, od, oh, ow, tap);
        if (cell < 0) continue;
        T* d = dxn + cell * C;
        const T* wtap = wt.data() + tap * K;
        if (Kg == 1) {
          for (i64 c = 0; c < cw; ++c) d[c] += wtap[c0 + c] * dyp[c0 + c];
        } else {
          for (i64 c = 0; c < cw; ++c)
            for (i64 m = 0; m < Kg; ++m) {
              const i64 k = (c0 + c) * Kg + m;
              d[c] += wtap[k] * dyp[k];
            }
        }
      }
    }
  });
}

template <class T>
void depthwise_backward_weight_channels_last(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume(), in_plane = g.in_plane();
  const i64 OH = g.out[1], OW = g.out[2], P = g.out_plane();
  const i64 kblocks = ceil_div(K, kChannelBlock);
  const int slots = scratch_slots(kblocks);
  AlignedBuffer<T> accs(slots * kvol * kChannelBlock);
  parallel_for(kblocks, [&](i64 blk, int th) {
    const i64 k0 = blk * kChannelBlock, kw_ = std::min(kChannelBlock, K - k0);
    T* acc = accs.data() + th * kvol * kChannelBlock;  // acc[tap][k - k0]
    std::fill(acc, acc + kvol * kChannelBlock, T(0));
    for (i64 n = 0; n < g.N; ++n) {
      const T* xn = x + n * in_plane * C;
      for (i64 p = 0; p < P; ++p) {
        const i64 od = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
        const T* dyp = dy + (n * P + p) * K + k0;
        for (i64 tap = 0; tap < kvol; ++tap) {
          const i64 cell = input_cell(g, od, oh, ow, tap);
          if (cell < 0) continue;
          const T* xc = xn + cell * C;
          T* a = acc + tap * kChannelBlock;
          if (Kg == 1) {
            for (i64 k = 0; k < kw_; ++k) a[k] += dyp[k] * xc[k0 + k];
          } else {
            for (i64 k = 0; k < kw_; ++k) a[k] += dyp[k] * xc[(k0 + k) / Kg];
          }
        }
      }
    }
    for (i64 k = 0; k < kw_; ++k)
      for (i64 tap = 0; tap < kvol; ++tap) dw[(k0 + k) * kvol + tap] = acc[tap * kChannelBlock + k];
  });
}

#define CONVKERN_INSTANTIATE(T)                                                                               \
  template void depthwise_forward_channels_first<T>(const ConvGeometry&, const T*, const T*, const T*, T*);  \
  template void depthwise_backward_data_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);      \
  template void depthwise_backward_weight_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);    \
  template void depthwise_forward_channels_last<T>(const ConvGeometry&, const T*, const T*, const T*, T*);   \
  template void depthwise_backward_data_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);       \
  template void depthwise_backward_weight_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
