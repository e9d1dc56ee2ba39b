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
//   v1  direct stencils, planes (NCHW) or channel blocks (NHWC) in parallel: mobilenet.dw3x3
//       forward 0.37x, backward 0.24x PyTorch (bench/run.py --quick, 2 threads).
//   v2  channels-first: padded private planes, register accumulation across taps; stride-1
//       backward data as the flipped-kernel correlation; weight gradient in per-tap vector lanes.
#include <algorithm>
#include <cstring>
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

namespace {

// One (n, c) plane zero-padded into a private buffer whose rows are wide enough that every
// vector-length chunk of output columns reads whole vectors for every tap: the stencil then has
// no border code and accumulates each chunk in registers across all taps (accumulating in
// memory, tap by tap, made every tap a store-to-load round trip: v1 ran at 0.4x PyTorch).
struct PaddedPlane {
  i64 Dp, Hp, Wb;
  i64 size() const { return Dp * Hp * Wb; }
};

template <class T>
constexpr i64 vector_length() {
  return 64 / static_cast<i64>(sizeof(T));
}

// Padded extents for reading `src_size` cells through windows of an `out`-long output with the
// given stride/dilation/kernel, chunked by VL along W.
PaddedPlane padded_plane(const i64* in, const i64* pad_before, const i64* pad_after, const i64* out,
                         const i64* stride, const i64* dilation, const i64* kernel, i64 vl) {
  PaddedPlane pp;
  pp.Dp = in[0] + pad_before[0] + pad_after[0];
  pp.Hp = in[1] + pad_before[1] + pad_after[1];
  const i64 chunks = ceil_div(out[2], vl);
  pp.Wb = std::max(in[2] + pad_before[2] + pad_after[2], (chunks * vl - 1) * stride[2] + (kernel[2] - 1) * dilation[2] + 1);
  return pp;
}

template <class T>
void fill_padded_plane(const PaddedPlane& pp, const i64* in, const i64* pad_before, const T* src, T* buf) {
  std::fill(buf, buf + pp.size(), T(0));
  for (i64 d = 0; d < in[0]; ++d)
    for (i64 h = 0; h < in[1]; ++h) {
      const T* s = src + (d * in[1] + h) * in[2];
      std::copy(s, s + in[2], buf + ((d + pad_before[0]) * pp.Hp + h + pad_before[1]) * pp.Wb + pad_before[2]);
    }
}

// out[od, oh, :] (+)= sum over taps of w[tap] * buf[window]: the direct stencil on a padded plane.
// w is read in flipped order when `flip` (the stride-1 backward-data pass as a correlation).
template <class T>
void stencil_plane(const PaddedPlane& pp, const i64* out, const i64* stride, const i64* dilation, const i64* kernel,
                   const T* buf, const T* w, bool flip, T init, T* dst) {
  constexpr i64 VL = vector_length<T>();
  const i64 kvol = kernel[0] * kernel[1] * kernel[2];
  for (i64 od = 0; od < out[0]; ++od)
    for (i64 oh = 0; oh < out[1]; ++oh) {
      T* drow = dst + (od * out[1] + oh) * out[2];
      for (i64 ow0 = 0; ow0 < out[2]; ow0 += VL) {
        // One vector of outputs, kept in a register across every tap (GCC vector extension:
        // written with plain arrays, the accumulator was split into scalar registers).
        typedef T Vec __attribute__((vector_size(64)));
        Vec acc = init + Vec{};
        for (i64 kd = 0; kd < kernel[0]; ++kd)
          for (i64 kh = 0; kh < kernel[1]; ++kh) {
            const T* row = buf + ((od * stride[0] + kd * dilation[0]) * pp.Hp + oh * stride[1] + kh * dilation[1]) * pp.Wb;
            for (i64 kw = 0; kw < kernel[2]; ++kw) {
              const i64 tap = (kd * kernel[1] + kh) * kernel[2] + kw;
              const T wv = w[flip ? kvol - 1 - tap : tap];
              const T* src = row + ow0 * stride[2] + kw * dilation[2];
              Vec v;
              if (stride[2] == 1) {
                std::memcpy(&v, src, sizeof(Vec));
              } else {
                for (i64 j = 0; j < VL; ++j) v[j] = src[j * stride[2]];
              }
              acc += wv * v;
            }
          }
        const i64 n = std::min(VL, out[2] - ow0);
        for (i64 j = 0; j < n; ++j) drow[ow0 + j] = acc[j];
        static_assert(sizeof(Vec) == VL * sizeof(T), "one vector per chunk");
      }
    }
}

}  // namespace

template <class T>
void depthwise_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  const i64 Kg = g.K_per_group(), kvol = g.kernel_volume(), in_plane = g.in_plane(), out_plane = g.out_plane();
  const PaddedPlane pp = padded_plane(g.in, g.pad_before, g.pad_after, g.out, g.stride, g.dilation, g.kernel,
                                      vector_length<T>());
  const i64 planes = g.N * g.K;
  const int slots = scratch_slots(planes);
  AlignedBuffer<T> bufs(checked_mul(slots, pp.size(), "depthwise scratch"));
  // Items are (n, input channel): the padded plane is shared by its K/C output channels.
  parallel_for(g.N * g.C, [&](i64 item, int t) {
    const i64 n = item / g.C, c = item % g.C;
    T* buf = bufs.data() + t * pp.size();
    fill_padded_plane(pp, g.in, g.pad_before, x + item * in_plane, buf);
    for (i64 k = c * Kg; k < (c + 1) * Kg; ++k)
      stencil_plane(pp, g.out, g.stride, g.dilation, g.kernel, buf, w + k * kvol, false, bias ? bias[k] : T(0),
                    y + (n * g.K + k) * out_plane);
  });
}

template <class T>
void depthwise_backward_data_channels_first(const ConvGeometry& g, const T* dy, const T* w, T* dx) {
  const i64 Kg = g.K_per_group(), OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const i64 ID = g.in[0], IH = g.in[1], IW = g.in[2], kvol = g.kernel_volume();
  const Taps t = taps_of(g);
  // Stride 1 with padding inside the kernel's reach: dx is the correlation of dy, padded by
  // (k-1)*d - pad_before in front, with the flipped kernel — the forward stencil again.
  bool as_correlation = g.stride[0] == 1 && g.stride[1] == 1 && g.stride[2] == 1;
  i64 front[kSpatial], back[kSpatial], one[kSpatial] = {1, 1, 1};
  for (int a = 0; a < kSpatial; ++a) {
    front[a] = (g.kernel[a] - 1) * g.dilation[a] - g.pad_before[a];
    back[a] = g.in[a] - 1 - (g.out[a] - 1) + g.pad_before[a];
    as_correlation = as_correlation && front[a] >= 0 && back[a] >= 0;
  }
  if (as_correlation) {
    const PaddedPlane pp = padded_plane(g.out, front, back, g.in, one, g.dilation, g.kernel, vector_length<T>());
    const i64 in_plane = g.in_plane(), out_plane = g.out_plane();
    const int slots = scratch_slots(g.N * g.C);
    AlignedBuffer<T> bufs(checked_mul(slots, pp.size() + in_plane, "depthwise scratch"));
    parallel_for(g.N * g.C, [&](i64 item, int th) {
      const i64 n = item / g.C, c = item % g.C;
      T* buf = bufs.data() + th * (pp.size() + in_plane);
      T* part = buf + pp.size();
      T* dxp = dx + item * in_plane;
      for (i64 k = c * Kg; k < (c + 1) * Kg; ++k) {
        fill_padded_plane(pp, g.out, front, dy + (n * g.K + k) * out_plane, buf);
        stencil_plane(pp, g.in, one, g.dilation, g.kernel, buf, w + k * kvol, true, T(0), k == c * Kg ? dxp : part);
        if (k != c * Kg)
          for (i64 i = 0; i < in_plane; ++i) dxp[i] += part[i];
      }
    });
    return;
  }
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
                for (i64 ow = lo; ow < hi; ++ow) dxrow[ow * s + off] += wv * dyrow[ow];
              }
            }
          }
        }
    }
  });
}

template <class T>
void depthwise_backward_weight_channels_first(const ConvGeometry& g, const T* dy, const T* x, T* dw) {
  constexpr i64 VL = vector_length<T>();
  typedef T Vec __attribute__((vector_size(64)));
  const i64 Kg = g.K_per_group(), kvol = g.kernel_volume(), in_plane = g.in_plane(), out_plane = g.out_plane();
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const PaddedPlane pp = padded_plane(g.in, g.pad_before, g.pad_after, g.out, g.stride, g.dilation, g.kernel, VL);
  const int slots = scratch_slots(g.K);
  AlignedBuffer<T> bufs(checked_mul(slots, pp.size(), "depthwise scratch"));
  AlignedBuffer<T> acc_store(slots * kvol * VL);  // 64-byte aligned: holds whole vectors
  parallel_for(g.K, [&](i64 k, int th) {
    const i64 c = k / Kg;
    T* buf = bufs.data() + th * pp.size();
    // One vector of per-lane partial sums per tap, over the whole batch; lanes summed in order.
    Vec* acc = reinterpret_cast<Vec*>(acc_store.data() + th * kvol * VL);
    for (i64 tap = 0; tap < kvol; ++tap) acc[tap] = Vec{};
    for (i64 n = 0; n < g.N; ++n) {
      fill_padded_plane(pp, g.in, g.pad_before, x + (n * g.C + c) * in_plane, buf);
      const T* dyp = dy + (n * g.K + k) * out_plane;
      for (i64 od = 0; od < OD; ++od)
        for (i64 oh = 0; oh < OH; ++oh) {
          const T* dyrow = dyp + (od * OH + oh) * OW;
          for (i64 ow0 = 0; ow0 < OW; ow0 += VL) {
            Vec dv = Vec{};
            const i64 m = std::min(VL, OW - ow0);
            if (m == VL) std::memcpy(&dv, dyrow + ow0, sizeof(Vec));
            else for (i64 j = 0; j < m; ++j) dv[j] = dyrow[ow0 + j];
            for (i64 kd = 0; kd < g.kernel[0]; ++kd)
              for (i64 kh = 0; kh < g.kernel[1]; ++kh) {
                const T* row = buf + ((od * g.stride[0] + kd * g.dilation[0]) * pp.Hp + oh * g.stride[1] +
                                      kh * g.dilation[1]) * pp.Wb;
                for (i64 kw = 0; kw < g.kernel[2]; ++kw) {
                  const T* src = row + ow0 * g.stride[2] + kw * g.dilation[2];
                  Vec v;
                  if (g.stride[2] == 1) std::memcpy(&v, src, sizeof(Vec));
                  else for (i64 j = 0; j < VL; ++j) v[j] = src[j * g.stride[2]];
                  acc[(kd * g.kernel[1] + kh) * g.kernel[2] + kw] += dv * v;
                }
              }
          }
        }
    }
    for (i64 tap = 0; tap < kvol; ++tap) {
      T sum = 0;
      for (i64 j = 0; j < VL; ++j) sum += acc[tap][j];
      dw[k * kvol + tap] = sum;
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
