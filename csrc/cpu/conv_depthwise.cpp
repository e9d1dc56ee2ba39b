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
// Current: v14 (how it got here: docs/performance.md, "Kernel history"). Measured 2026-12-05 on
// the 2-core AMD EPYC (Zen 4, AVX-512), 2 threads, medians over 2 s, mobilenet.dw3x3 (N8 C256
// 28x28) NHWC, input from NumPy (16 bytes past a 64-byte boundary): forward 0.29 ms (PyTorch 2.13
// 0.28 in the same process; 0.22 and 0.23 on an aligned input), backward data 0.26 (0.41),
// backward weight 0.37 (0.52); under CONVKERN_ISA=avx2 (PyTorch limited to AVX2) 0.38 (0.41),
// 0.38 (0.35), 0.39 (0.68).
// NCHW, 2026-12-04, 2-core AMD EPYC (Zen 4), each pass timed alone (medians over 2 s; measure
// with `python bench/run.py --quick --filter mobilenet --layout NCHW`): forward 0.41-0.44 ms
// (PyTorch 0.47-0.49), backward data 0.41-0.44, backward weight 0.62-0.66; AVX2 0.46, 0.46, 0.55.
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include <cmath>

#include "conv.h"
#include "pack.h"
#include "parallel.h"
#include "simd_vector.h"

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

// A one-channel (grey) layer with at most 8 outputs, unit stride and no dilation is a depthwise
// layer with a channel multiplier of K: its forward runs the same stencils, each output plane
// one pass over the input's padded plane. The GEMMs suit it poorly: K is short of a panel of
// columns, or, as rows, leaves a reduction of kernel-volume steps per tile (lenet5.conv1, 1 -> 6
// channels, 5 x 5: 25), and its im2col gathers runs of one value. Items are images: from 4 on (the
// choice depends on the batch, not the thread count, so the bits do not either).
bool grey_forward_by_stencils(const ConvGeometry& g) {
  if (g.groups != 1 || g.C != 1 || g.K > 8 || g.N < 4 || !conv_reach_is_compact(g)) return false;
  for (int a = 0; a < 3; ++a)
    if (g.stride[a] != 1 || g.dilation[a] != 1) return false;
  return true;
}

namespace {

template <class T>
bool weights_finite(const ConvGeometry& g, const T* w) {
  return all_finite(w, g.K * g.kernel_volume());  // C/groups is 1
}

// One (n, c) plane zero-padded into a private buffer whose rows are wide enough that every
// vector-length chunk of output columns reads whole vectors for every tap: the stencil then has
// no border code and accumulates each chunk in registers across all taps (accumulating in
// memory, tap by tap, made every tap a store-to-load round trip: v1 ran at 0.4x PyTorch).
struct PaddedPlane {
  i64 Dp, Hp, Wb;
  i64 size() const { return Dp * Hp * Wb; }
};

// The first n (< one vector) lanes of v to p: one masked store under AVX-512, plain ones under AVX2.
template <class T>
inline void store_partial(T* p, Vec<T> v, i64 n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), reinterpret_cast<__m512&>(v));
    return;
  } else {
    _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << n) - 1), reinterpret_cast<__m512d&>(v));
    return;
  }
#elif defined(__AVX2__)
  // Plain stores (pack.h): AMD's masked stores are microcoded. A double is two float lanes.
  if constexpr (std::is_same_v<T, float>) {
    store_first_lanes(p, reinterpret_cast<__m256&>(v), n);
    return;
  } else {
    store_first_lanes(reinterpret_cast<float*>(p), _mm256_castpd_ps(reinterpret_cast<__m256d&>(v)), 2 * n);
    return;
  }
#endif
  for (i64 j = 0; j < n; ++j) p[j] = v[j];
}

// The first n lanes from p, zeros in the others.
template <class T>
inline Vec<T> load_partial(const T* p, i64 n) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, float>) {
    __m512 v = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
    return reinterpret_cast<Vec<T>&>(v);
  } else {
    __m512d v = _mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << n) - 1), p);
    return reinterpret_cast<Vec<T>&>(v);
  }
#elif defined(__AVX2__)
  if constexpr (std::is_same_v<T, float>) {
    __m256 v = _mm256_maskload_ps(p, first_lanes<T>(n));
    return reinterpret_cast<Vec<T>&>(v);
  } else {
    __m256d v = _mm256_maskload_pd(p, first_lanes<T>(n));
    return reinterpret_cast<Vec<T>&>(v);
  }
#endif
  Vec<T> v = Vec<T>{};
  for (i64 j = 0; j < n; ++j) v[j] = p[j];
  return v;
}

// Padded extents for reading `src_size` cells through windows of an `out`-long output with the
// given stride/dilation/kernel, chunked by VL along W.
PaddedPlane padded_plane(const i64* in, const i64* pad_before, const i64* pad_after, const i64* out, const i64* stride,
                         const i64* dilation, const i64* kernel, i64 vl) {
  PaddedPlane pp;
  pp.Dp = in[0] + pad_before[0] + pad_after[0];
  pp.Hp = in[1] + pad_before[1] + pad_after[1];
  const i64 chunks = ceil_div(out[2], vl);
  pp.Wb = std::max(in[2] + pad_before[2] + pad_after[2],
                   (chunks * vl - 1) * stride[2] + (kernel[2] - 1) * dilation[2] + 1);
  return pp;
}

// Copies the input rows into a padded plane whose padding is already zero: a thread's plane
// buffer is zeroed once per call (zero_planes) and only its input cells are written, a row at a
// time in vectors. (Zeroing each plane's margins per row, GCC turned the zero loops into a memset
// call per margin: with the per-row copy, a third of mobilenet.dw3x3's NCHW forward on a Zen 4.)
template <class T>
void fill_padded_plane(const PaddedPlane& pp, const i64* in, const i64* pad_before, const T* src, T* buf) {
  constexpr i64 VL = vector_length<T>();
  const i64 W = in[2];
  for (i64 id = 0; id < in[0]; ++id)
    for (i64 ih = 0; ih < in[1]; ++ih) {
      const T* from = src + (id * in[1] + ih) * W;
      T* to = buf + ((id + pad_before[0]) * pp.Hp + ih + pad_before[1]) * pp.Wb + pad_before[2];
      i64 j = 0;
      for (; j + VL <= W; j += VL) store_vec(to + j, load_vec(from + j));
      if (j < W) store_partial(to + j, load_partial(from + j, W - j), W - j);
    }
}

// Scratch planes for fill_padded_plane, their padding zero.
template <class T>
AlignedBuffer<T> zero_planes(i64 count) {
  AlignedBuffer<T> planes(count);
  std::fill(planes.data(), planes.data() + count, T(0));
  return planes;
}

// The 2-D, unit-stride, undilated stencil with the kernel size known at compile time (3x3, 5x5,
// 7x7 cover the depthwise layers of MobileNet/EfficientNet): every tap's weight stays in a
// register for the whole plane and the tap loops unroll, leaving one load and one FMA per tap
// and vector of outputs.
template <class T, int KH, int KW>
void stencil_plane_2d_unit(const PaddedPlane& pp, const i64* out, const T* buf, const T* w, bool flip, T init, T* dst) {
  constexpr i64 VL = vector_length<T>();
  constexpr int kvol = KH * KW;
  Vec<T> wv[kvol];
  for (int tap = 0; tap < kvol; ++tap) wv[tap] = w[flip ? kvol - 1 - tap : tap] + Vec<T>{};
  const i64 OH = out[1], OW = out[2];
  for (i64 oh = 0; oh < OH; ++oh) {
    T* drow = dst + oh * OW;
    const T* rows = buf + oh * pp.Wb;
    for (i64 ow0 = 0; ow0 < OW; ow0 += VL) {
      Vec<T> acc = init + Vec<T>{};
#pragma GCC unroll 8
      for (int kh = 0; kh < KH; ++kh)
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; ++kw) acc += wv[kh * KW + kw] * load_vec(rows + kh * pp.Wb + ow0 + kw);
      const i64 n = std::min(VL, OW - ow0);
      if (n == VL) {
        store_vec(drow + ow0, acc);
      } else {
        store_partial(drow + ow0, acc, n);
      }
    }
  }
}

// Weight gradient of one plane for the same stencils: acc[tap] += sum over outputs of
// dy * x(tap), per vector lane. The tap accumulators live in registers for the whole plane.
template <class T, int KH, int KW>
void weight_grad_plane_2d_unit(const PaddedPlane& pp, const i64* out, const T* buf, const T* dyp, Vec<T>* acc) {
  constexpr i64 VL = vector_length<T>();
  constexpr int kvol = KH * KW;
  Vec<T> a[kvol];
  for (int tap = 0; tap < kvol; ++tap) a[tap] = acc[tap];
  const i64 OH = out[1], OW = out[2];
  for (i64 oh = 0; oh < OH; ++oh) {
    const T* dyrow = dyp + oh * OW;
    const T* rows = buf + oh * pp.Wb;
    for (i64 ow0 = 0; ow0 < OW; ow0 += VL) {
      const i64 n = std::min(VL, OW - ow0);
      if (n == VL) {
        const Vec<T> dv = load_vec(dyrow + ow0);
#pragma GCC unroll 8
        for (int kh = 0; kh < KH; ++kh)
#pragma GCC unroll 8
          for (int kw = 0; kw < KW; ++kw) a[kh * KW + kw] += dv * load_vec(rows + kh * pp.Wb + ow0 + kw);
      } else {
        // Lanes past the row stay zero on both sides: 0 * (an infinite input) would be NaN.
        const Vec<T> dv = load_partial(dyrow + ow0, n);
        for (int kh = 0; kh < KH; ++kh)
          for (int kw = 0; kw < KW; ++kw) a[kh * KW + kw] += dv * load_partial(rows + kh * pp.Wb + ow0 + kw, n);
      }
    }
  }
  for (int tap = 0; tap < kvol; ++tap) acc[tap] = a[tap];
}

template <class T>
using FixedWeightGrad = void (*)(const PaddedPlane&, const i64*, const T*, const T*, Vec<T>*);

template <class T>
using FixedStencil = void (*)(const PaddedPlane&, const i64*, const T*, const T*, bool, T, T*);

// The compile-time stencil for this geometry, or nullptr for the general one.
template <class T>
FixedStencil<T> fixed_stencil(const i64* out, const i64* stride, const i64* dilation, const i64* kernel) {
  const bool planar = out[0] == 1 && kernel[0] == 1;
  const bool unit = stride[1] == 1 && stride[2] == 1 && dilation[1] == 1 && dilation[2] == 1;
  if (!planar || !unit || kernel[1] != kernel[2]) return nullptr;
  switch (kernel[1]) {
    case 3:
      return &stencil_plane_2d_unit<T, 3, 3>;
    case 5:
      return &stencil_plane_2d_unit<T, 5, 5>;
    case 7:
      return &stencil_plane_2d_unit<T, 7, 7>;
    default:
      return nullptr;
  }
}

template <class T>
FixedWeightGrad<T> fixed_weight_grad(const i64* out, const i64* stride, const i64* dilation, const i64* kernel) {
  if (fixed_stencil<T>(out, stride, dilation, kernel) == nullptr) return nullptr;
  switch (kernel[1]) {
    case 3:
      return &weight_grad_plane_2d_unit<T, 3, 3>;
    case 5:
      return &weight_grad_plane_2d_unit<T, 5, 5>;
    default:
      return &weight_grad_plane_2d_unit<T, 7, 7>;
  }
}

// out[od, oh, :] (+)= sum over taps of w[tap] * buf[window]: the direct stencil on a padded plane.
// w is read in flipped order when `flip` (the stride-1 backward-data pass as a correlation).
template <class T>
void stencil_plane(const PaddedPlane& pp, const i64* out, const i64* stride, const i64* dilation, const i64* kernel,
                   const T* buf, const T* w, bool flip, T init, T* dst) {
  if (FixedStencil<T> fixed = fixed_stencil<T>(out, stride, dilation, kernel)) {
    fixed(pp, out, buf, w, flip, init, dst);
    return;
  }
  constexpr i64 VL = vector_length<T>();
  const i64 kvol = kernel[0] * kernel[1] * kernel[2];
  for (i64 od = 0; od < out[0]; ++od)
    for (i64 oh = 0; oh < out[1]; ++oh) {
      T* drow = dst + (od * out[1] + oh) * out[2];
      for (i64 ow0 = 0; ow0 < out[2]; ow0 += VL) {
        // One vector of outputs, kept in a register across every tap.
        Vec<T> acc = init + Vec<T>{};
        for (i64 kd = 0; kd < kernel[0]; ++kd)
          for (i64 kh = 0; kh < kernel[1]; ++kh) {
            const T* row = buf +
                           ((od * stride[0] + kd * dilation[0]) * pp.Hp + oh * stride[1] + kh * dilation[1]) * pp.Wb;
            for (i64 kw = 0; kw < kernel[2]; ++kw) {
              const i64 tap = (kd * kernel[1] + kh) * kernel[2] + kw;
              const T wv = w[flip ? kvol - 1 - tap : tap];
              const T* src = row + ow0 * stride[2] + kw * dilation[2];
              Vec<T> v;
              if (stride[2] == 1) {
                v = load_vec(src);
              } else {
                for (i64 j = 0; j < VL; ++j) v[j] = src[j * stride[2]];
              }
              acc += wv * v;
            }
          }
        const i64 n = std::min(VL, out[2] - ow0);
        if (n == VL) {
          store_vec(drow + ow0, acc);
        } else {
          for (i64 j = 0; j < n; ++j) drow[ow0 + j] = acc[j];
        }
        static_assert(sizeof(Vec<T>) == VL * sizeof(T), "one vector per chunk");
      }
    }
}

}  // namespace

template <class T>
void depthwise_forward_channels_first(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  if (!conv_reach_is_compact(g)) return conv_forward_direct(g, false, x, w, bias, y);
  const i64 Kg = g.K_per_group(), kvol = g.kernel_volume(), in_plane = g.in_plane(), out_plane = g.out_plane();
  const PaddedPlane pp = padded_plane(g.in, g.pad_before, g.pad_after, g.out, g.stride, g.dilation, g.kernel,
                                      vector_length<T>());
  const i64 planes = g.N * g.K;
  const int slots = scratch_slots(planes);
  AlignedBuffer<T> bufs = zero_planes<T>(checked_mul(slots, pp.size(), "depthwise scratch"));
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
  // The unit-stride form correlates a zero-padded dy with the flipped kernel: with non-finite
  // weights those zeros would add products (0 * Inf) that the gradient does not have.
  if (!conv_reach_is_compact(g) || !weights_finite(g, w)) return conv_backward_data_direct(g, false, dy, w, dx);
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
    AlignedBuffer<T> bufs = zero_planes<T>(checked_mul(slots, pp.size() + in_plane, "depthwise scratch"));
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
  if (!conv_reach_is_compact(g)) return conv_backward_weight_direct(g, false, dy, x, dw);
  constexpr i64 VL = vector_length<T>();
  const i64 Kg = g.K_per_group(), kvol = g.kernel_volume(), in_plane = g.in_plane(), out_plane = g.out_plane();
  const i64 OD = g.out[0], OH = g.out[1], OW = g.out[2];
  const PaddedPlane pp = padded_plane(g.in, g.pad_before, g.pad_after, g.out, g.stride, g.dilation, g.kernel, VL);
  const int slots = scratch_slots(g.K);
  AlignedBuffer<T> bufs = zero_planes<T>(checked_mul(slots, pp.size(), "depthwise scratch"));
  AlignedBuffer<T> acc_store(slots * kvol * VL);  // 64-byte aligned: holds whole vectors
  parallel_for(g.K, [&](i64 k, int th) {
    const i64 c = k / Kg;
    T* buf = bufs.data() + th * pp.size();
    // One vector of per-lane partial sums per tap, over the whole batch; lanes summed in order.
    Vec<T>* acc = reinterpret_cast<Vec<T>*>(acc_store.data() + th * kvol * VL);
    for (i64 tap = 0; tap < kvol; ++tap) acc[tap] = Vec<T>{};
    const FixedWeightGrad<T> fixed = fixed_weight_grad<T>(g.out, g.stride, g.dilation, g.kernel);
    for (i64 n = 0; n < g.N; ++n) {
      fill_padded_plane(pp, g.in, g.pad_before, x + (n * g.C + c) * in_plane, buf);
      const T* dyp = dy + (n * g.K + k) * out_plane;
      if (fixed) {
        fixed(pp, g.out, buf, dyp, acc);
        continue;
      }
      for (i64 od = 0; od < OD; ++od)
        for (i64 oh = 0; oh < OH; ++oh) {
          const T* dyrow = dyp + (od * OH + oh) * OW;
          for (i64 ow0 = 0; ow0 < OW; ow0 += VL) {
            Vec<T> dv = Vec<T>{};
            const i64 m = std::min(VL, OW - ow0);
            if (m == VL)
              dv = load_vec(dyrow + ow0);
            else
              for (i64 j = 0; j < m; ++j) dv[j] = dyrow[ow0 + j];
            for (i64 kd = 0; kd < g.kernel[0]; ++kd)
              for (i64 kh = 0; kh < g.kernel[1]; ++kh) {
                const T* row = buf + ((od * g.stride[0] + kd * g.dilation[0]) * pp.Hp + oh * g.stride[1] +
                                      kh * g.dilation[1]) *
                                         pp.Wb;
                for (i64 kw = 0; kw < g.kernel[2]; ++kw) {
                  const T* src = row + ow0 * g.stride[2] + kw * g.dilation[2];
                  Vec<T> v = Vec<T>{};  // lanes past the row stay zero (0 * inf would be NaN)
                  if (g.stride[2] == 1 && m == VL)
                    v = load_vec(src);
                  else
                    for (i64 j = 0; j < m; ++j) v[j] = src[j * g.stride[2]];
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

// Each tap's offset from a window's origin, per axis (dilation applied, padding subtracted):
// computed once per call, so that finding a tap's input cell costs no integer division (v2 divided
// three times per position and tap, which cost more than the channel loop it fed).
struct TapOffsets {
  std::vector<i64> d, h, w;
};

inline TapOffsets tap_offsets(const ConvGeometry& g) {
  TapOffsets t;
  for (i64 kd = 0; kd < g.kernel[0]; ++kd)
    for (i64 kh = 0; kh < g.kernel[1]; ++kh)
      for (i64 kw = 0; kw < g.kernel[2]; ++kw) {
        t.d.push_back(kd * g.dilation[0] - g.pad_before[0]);
        t.h.push_back(kh * g.dilation[1] - g.pad_before[1]);
        t.w.push_back(kw * g.dilation[2] - g.pad_before[2]);
      }
  return t;
}

// Input cell (its channel 0) read by `tap` of output position (od, oh, ow), or -1 in padding.
inline i64 input_cell(const ConvGeometry& g, const TapOffsets& t, i64 od, i64 oh, i64 ow, i64 tap) {
  const i64 id = od * g.stride[0] + t.d[tap];
  const i64 ih = oh * g.stride[1] + t.h[tap];
  const i64 iw = ow * g.stride[2] + t.w[tap];
  if (id < 0 || id >= g.in[0] || ih < 0 || ih >= g.in[1] || iw < 0 || iw >= g.in[2]) return -1;
  return (id * g.in[1] + ih) * g.in[2] + iw;
}

}  // namespace

namespace {

// Channels-last depthwise with one output channel per input channel (the MobileNet case), 2-D,
// kernel size fixed at compile time: one vector of channels at a time, its KH x KW tap weights
// loaded once per row and vector, while the loop walks the row's positions.
//   out[n, o, c] = bias[c] + sum_taps w[tap, c] * in[n, o * stride - pad + tap * dilation, c]
// The input gradient at unit stride is the same stencil over dy with the kernel flipped and the
// padding (k - 1) * dilation - pad: see depthwise_backward_data_channels_last.
struct PlaneStencil {
  i64 N, C, IH, IW, OH, OW, sh, sw, dh, dw, ph, pw;
};

// Output positions per register block. Each output vector is a chain of KH x KW dependent FMAs,
// so one position at a time waits on FMA latency; 8 independent chains cover latency x ports
// (4 x 2). v4 ran two chains (two channel vectors of one position) and reached 0.5x PyTorch.
constexpr int kNhwcPositions = 8;
// At most this many blocks of images (partial weight gradients) in the channels-last weight
// gradient by blocks of images.
constexpr i64 kMaxImageBlocks = 64;
// Images from which the AVX-512 channels-last weight gradient takes blocks of images too (fewer
// leave threads without a block).
constexpr i64 kImageBlocksFrom = 4;

// The first n (0 to one vector) lanes from p, and to p.
template <class T>
inline Vec<T> load_n(const T* p, i64 n) {
  return n == vector_length<T>() ? load_vec(p) : load_partial(p, n);
}

template <class T>
inline void store_n(T* p, Vec<T> v, i64 n) {
  if (n == vector_length<T>())
    store_vec(p, v);
  else
    store_partial(p, v, n);
}

// Output columns [lo, hi) whose every tap lands inside the input row: no bounds checks there.
inline void interior_columns(const PlaneStencil& s, i64 KW, i64& lo, i64& hi) {
  i64 lo_first, hi_first, lo_last, hi_last;
  clip_columns(s.OW, s.IW, s.sw, -s.pw, lo_first, hi_first);
  clip_columns(s.OW, s.IW, s.sw, (KW - 1) * s.dw - s.pw, lo_last, hi_last);
  lo = std::max(lo_first, lo_last);
  hi = std::max(lo, std::min(hi_first, hi_last));
}

// The input row (channel 0 of column 0) each kernel row reads for output row oh of image n, or
// nullptr where it falls in the padding.
template <class T, int KH>
inline void tap_rows(const PlaneStencil& s, const T* in, i64 n, i64 oh, const T* (&rows)[KH]) {
  for (int kh = 0; kh < KH; ++kh) {
    const i64 ih = oh * s.sh - s.ph + kh * s.dh;
    rows[kh] = ih >= 0 && ih < s.IH ? in + (n * s.IH + ih) * s.IW * s.C : nullptr;
  }
}

template <class T, int KH, int KW>
void stencil_nhwc_2d(const PlaneStencil& s, const T* in, const T* wt /* [tap][C] */, bool flip, const T* bias, T* out) {
  constexpr i64 VL = vector_length<T>();
  constexpr int kvol = KH * KW, P = kNhwcPositions;
  i64 lo, hi;
  interior_columns(s, KW, lo, hi);
  const i64 C = s.C, full_vectors = C / VL, tail = C - full_vectors * VL;
  const T* tap_w[kvol];  // each tap's weights for every channel
  for (int t = 0; t < kvol; ++t) tap_w[t] = wt + (flip ? kvol - 1 - t : t) * C;
  // Addresses advance by these steps: computed from the indices, they cost an integer multiply
  // per load, which left the FMAs waiting.
  const i64 position_step = s.sw * C, tap_step = s.dw * C;
  // Under AVX-512 at unit stride and dilation, output rows go in pairs: the two rows read KH + 1
  // input rows, each pixel loaded once for both, where one row at a time loads KH rows for each
  // (mobilenet.dw3x3 NHWC forward, 2-core Zen 4, in a standalone copy of both loops: 0.23 ->
  // 0.19 ms with the input on a 64-byte boundary, 0.38 -> 0.26 ms with it 16 bytes past one, as
  // NumPy's large arrays often are). Under AVX2 pairs of 4-position blocks were no faster.
  constexpr int kPairPositions = 4;
  const bool row_pairs = sizeof(Vec<T>) >= 64 && s.sh == 1 && s.dh == 1 && s.sw == 1 && s.dw == 1 && full_vectors > 0 &&
                         hi - lo >= kPairPositions;
  // The whole vectors' weights by vector, [vector][tap][VL], for the pairs: a block's taps at
  // fixed offsets from one pointer.
  AlignedBuffer<T> vector_taps(row_pairs ? checked_mul(full_vectors * kvol, VL, "depthwise weights") : 0);
  if (row_pairs)
    for (i64 cv = 0; cv < full_vectors; ++cv)
      for (int t = 0; t < kvol; ++t) store_vec(vector_taps.data() + (cv * kvol + t) * VL, load_vec(tap_w[t] + cv * VL));
  // The interior positions [lo, returned) of rows oh and oh + 1 of image n, whole vectors of
  // channels. Each output sums the same terms in the same order as the one-row blocks below, so
  // the results do not depend on the pairing.
  const auto pair_interior = [&](i64 n, i64 oh) {
    constexpr int PB = kPairPositions, KR = KH + 1;
    const T* in_rows[KR];  // input rows oh - ph + r, nullptr in the padding
    for (int r = 0; r < KR; ++r) {
      const i64 ih = oh - s.ph + r;
      in_rows[r] = ih >= 0 && ih < s.IH ? in + (n * s.IH + ih) * s.IW * C : nullptr;
    }
    T* const out0 = out + (n * s.OH + oh) * s.OW * C;
    T* const out1 = out0 + s.OW * C;
    i64 ow = lo;
    for (; ow + PB <= hi; ow += PB) {
      const T* first[KR];
#pragma GCC unroll 8
      for (int r = 0; r < KR; ++r) first[r] = in_rows[r] ? in_rows[r] + (ow - s.pw) * C : nullptr;
      T* const o0 = out0 + ow * C;
      T* const o1 = out1 + ow * C;
      const T* wv = vector_taps.data();
      for (i64 c0 = 0; c0 < full_vectors * VL; c0 += VL, wv += kvol * VL) {
        Vec<T> acc0[PB], acc1[PB];
        const Vec<T> b = bias ? load_vec(bias + c0) : Vec<T>{};
#pragma GCC unroll 8
        for (int p = 0; p < PB; ++p) acc0[p] = acc1[p] = b;
#pragma GCC unroll 8
        for (int r = 0; r < KR; ++r) {
          if (!first[r]) continue;
          Vec<T> px[PB + KW - 1];
#pragma GCC unroll 16
          for (int j = 0; j < PB + KW - 1; ++j) px[j] = load_vec(first[r] + j * C + c0);
          if (r < KH) {  // kernel row r of output row oh
#pragma GCC unroll 8
            for (int kw = 0; kw < KW; ++kw) {
              const Vec<T> w = load_vec(wv + (r * KW + kw) * VL);
#pragma GCC unroll 8
              for (int p = 0; p < PB; ++p) acc0[p] += w * px[p + kw];
            }
          }
          if (r >= 1) {  // kernel row r - 1 of output row oh + 1
#pragma GCC unroll 8
            for (int kw = 0; kw < KW; ++kw) {
              const Vec<T> w = load_vec(wv + ((r - 1) * KW + kw) * VL);
#pragma GCC unroll 8
              for (int p = 0; p < PB; ++p) acc1[p] += w * px[p + kw];
            }
          }
        }
#pragma GCC unroll 8
        for (int p = 0; p < PB; ++p) {
          store_vec(o0 + p * C + c0, acc0[p]);
          store_vec(o1 + p * C + c0, acc1[p]);
        }
      }
    }
    return ow;
  };
  const i64 per_image = row_pairs ? ceil_div(s.OH, 2) : s.OH;
  parallel_for(s.N * per_image, [&](i64 item, int) {
    const i64 n = item / per_image, first_row = row_pairs ? 2 * (item % per_image) : item % per_image;
    const bool pair = row_pairs && first_row + 1 < s.OH;
    // Interior positions [lo, paired_to) of this item's rows are done by the pair.
    const i64 paired_to = pair ? pair_interior(n, first_row) : lo;
    for (i64 row = n * s.OH + first_row; row <= n * s.OH + first_row + (pair ? 1 : 0); ++row) {
      const T* rows[KH];
      tap_rows<T, KH>(s, in, row / s.OH, row % s.OH, rows);
      T* orow = out + row * s.OW * C;
      // One position, every channel, with each tap's bounds checked once (the row's ends). Taps
      // in the padding are skipped, as the block below skips padded rows: both sum the same terms
      // in the same order.
      const auto all_channels = [&](i64 ow) {
        const T* tap_in[kvol];  // nullptr: in the padding
        for (int kh = 0; kh < KH; ++kh)
          for (int kw = 0; kw < KW; ++kw) {
            const i64 iw = ow * s.sw - s.pw + kw * s.dw;
            tap_in[kh * KW + kw] = rows[kh] && iw >= 0 && iw < s.IW ? rows[kh] + iw * C : nullptr;
          }
        T* o = orow + ow * C;
        for (i64 c0 = 0; c0 < C; c0 += VL) {
          const i64 nc = std::min(VL, C - c0);
          Vec<T> acc = bias ? load_n(bias + c0, nc) : Vec<T>{};
          for (int t = 0; t < kvol; ++t)
            if (tap_in[t]) acc += load_n(tap_w[t] + c0, nc) * load_n(tap_in[t] + c0, nc);
          store_n(o + c0, acc, nc);
        }
      };
      // The last, partial vector of channels for the `count` positions from ow.
      const auto ragged_channels = [&](i64 ow, int count) {
        const i64 c0 = full_vectors * VL;
        for (int p = 0; p < count; ++p) {
          Vec<T> acc = bias ? load_n(bias + c0, tail) : Vec<T>{};
          for (int kh = 0; kh < KH; ++kh) {
            if (!rows[kh]) continue;
            for (int kw = 0; kw < KW; ++kw)
              acc += load_n(tap_w[kh * KW + kw] + c0, tail) *
                     load_n(rows[kh] + ((ow + p) * s.sw - s.pw + kw * s.dw) * C + c0, tail);
          }
          store_n(orow + (ow + p) * C + c0, acc, tail);
        }
      };
      i64 ow = 0;
      for (; ow < lo; ++ow) all_channels(ow);
      if (paired_to > lo) {
        if (tail) ragged_channels(lo, static_cast<int>(paired_to - lo));
        ow = paired_to;
      }
      // PB positions from ow, every channel; positions outermost, so that a block's inputs are
      // whole pixels (all channels, contiguous) read vector after vector (vectors outermost walked
      // the row at a stride of C floats, whose lines, 1 KiB apart at C = 256, shared a few L1
      // sets). At unit stride and dilation (kUnit) the PB positions of one kernel row read
      // PB + KW - 1 consecutive pixels, each loaded once and used by every tap that reads it;
      // otherwise each tap loads its PB pixels a position step apart (PB x KW loads, each with its
      // own address step: twice the FMAs' loads at 3x3).
      const auto position_block = [&](auto positions, auto unit) {
        constexpr int PB = decltype(positions)::value;
        constexpr bool kUnit = decltype(unit)::value;
        for (i64 cv = 0; cv < full_vectors; ++cv) {
          const i64 c0 = cv * VL;
          Vec<T> acc[PB];
          const Vec<T> b = bias ? load_vec(bias + c0) : Vec<T>{};
#pragma GCC unroll 8
          for (int p = 0; p < PB; ++p) acc[p] = b;
#pragma GCC unroll 8
          for (int kh = 0; kh < KH; ++kh) {
            if (!rows[kh]) continue;
            const T* tap_in = rows[kh] + (ow * s.sw - s.pw) * C + c0;
            if constexpr (kUnit) {
              Vec<T> w[KW], px[PB + KW - 1];
#pragma GCC unroll 8
              for (int kw = 0; kw < KW; ++kw) w[kw] = load_vec(tap_w[kh * KW + kw] + c0);
#pragma GCC unroll 16
              for (int j = 0; j < PB + KW - 1; ++j, tap_in += C) px[j] = load_vec(tap_in);
#pragma GCC unroll 8
              for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                for (int p = 0; p < PB; ++p) acc[p] += w[kw] * px[p + kw];
            } else {
#pragma GCC unroll 8
              for (int kw = 0; kw < KW; ++kw, tap_in += tap_step) {
                const Vec<T> w = load_vec(tap_w[kh * KW + kw] + c0);
                const T* q = tap_in;
#pragma GCC unroll 8
                for (int p = 0; p < PB; ++p, q += position_step) acc[p] += w * load_vec(q);
              }
            }
          }
#pragma GCC unroll 8
          for (int p = 0; p < PB; ++p) store_vec(orow + (ow + p) * C + c0, acc[p]);
        }
        if (tail) ragged_channels(ow, PB);
        ow += PB;
      };
      if (s.sw == 1 && s.dw == 1) {
        // Blocks of 8 positions (4 with AVX2's 16 vector registers: accumulators, pixels and
        // weights stay in registers), then smaller ones up to the interior's end.
        constexpr int PU = sizeof(Vec<T>) >= 64 ? P : P / 2;
        while (ow + PU <= hi) position_block(std::integral_constant<int, PU>{}, std::true_type{});
        if (ow + 4 <= hi) position_block(std::integral_constant<int, 4>{}, std::true_type{});
        if (ow + 2 <= hi) position_block(std::integral_constant<int, 2>{}, std::true_type{});
        if (ow + 1 <= hi) position_block(std::integral_constant<int, 1>{}, std::true_type{});
      }
      while (ow + P <= hi) position_block(std::integral_constant<int, P>{}, std::false_type{});
      for (; ow < s.OW; ++ow) all_channels(ow);
    }
  });
}

// Weight gradient of the same layers: dw[c, tap] = sum over (n, oh, ow) of dy[n, oh, ow, c] *
// in[n, tap's cell, c]. Work is split by cache lines of channels, whose taps' accumulators stay
// in registers over the positions (the channels are the lanes, so no lanes are summed at the
// end); v4 added each tap's products into a block of memory per position, at 0.3x PyTorch.
// An item is a block of images: each image's input and grad_output are copied, read in order,
// into planes of one line of channels, and each line's two vectors sum the image one after the
// other into the block's partial taps. (Items of one vector reading in place loaded half of every
// line of both operands, 1 KiB apart at 256 channels, the other half loaded again by another item:
// mobilenet.dw3x3 NHWC under AVX2, 2-core Xeon, 1.10 ms with a compact input plane per vector,
// 0.65 by blocks of images; PyTorch limited to AVX2: 0.60.) Under AVX-512 (32 registers) with
// fewer than kImageBlocksFrom images, an item is one line instead, its two vectors running together
// over the whole batch, reading their rows in place: that had been the AVX-512 form for any batch
// (mobilenet.dw3x3 NHWC, batch 8, 2-core Zen 4: 1.26-1.80 -> 0.68-1.37 ms; batch 32: 7.98 -> 3.07).
// Taps in the padding add dy * 0, as PyTorch's do: Inf or NaN in dy there makes the gradient NaN.
template <class T, int KH, int KW>
void weight_grad_nhwc_2d(const PlaneStencil& s, const T* in, const T* dy, T* dw /* [C][tap] */) {
  constexpr i64 VL = vector_length<T>();
  constexpr int kvol = KH * KW;
  constexpr bool kCompact = sizeof(Vec<T>) < 64;
  constexpr i64 kLine = 2 * VL;  // the channels of one item
  i64 lo, hi;
  interior_columns(s, KW, lo, hi);
  const i64 C = s.C, cells = s.IH * s.IW, out_cells = s.OH * s.OW, items = ceil_div(C, kLine);
  // V vectors of channels (from x and dy, already offset to them; nc channels in all, nc <= V x
  // VL), their rows W values apart, images [0, images), added into acc.
  const auto accumulate = [&](auto vectors, Vec<T>* sums /* [V][kvol] */, const PlaneStencil& rs, const T* x,
                              const T* g, i64 W, i64 nc, i64 images) {
    constexpr int V = decltype(vectors)::value;
    Vec<T> acc[V][kvol];  // a local copy, which stays in registers
    for (int v = 0; v < V; ++v)
#pragma GCC unroll 25
      for (int t = 0; t < kvol; ++t) acc[v][t] = sums[v * kvol + t];
    for (i64 row = 0; row < images * s.OH; ++row) {
      const T* rows[KH];
      tap_rows<T, KH>(rs, x, row / s.OH, row % s.OH, rows);
      bool all_rows = true;
      for (int kh = 0; kh < KH; ++kh) all_rows = all_rows && rows[kh];
      const T* dyrow = g + row * s.OW * W;
      const auto one_position = [&](i64 ow) {
        for (int v = 0; v < V; ++v) {
          const i64 n = V == 1 ? nc : VL;
          const Vec<T> d = load_n(dyrow + ow * W + v * VL, n);
          for (int kh = 0; kh < KH; ++kh)
            for (int kw = 0; kw < KW; ++kw) {
              const i64 iw = ow * s.sw - s.pw + kw * s.dw;
              const bool inside = rows[kh] && iw >= 0 && iw < s.IW;
              acc[v][kh * KW + kw] += d * (inside ? load_n(rows[kh] + iw * W + v * VL, n) : Vec<T>{});
            }
        }
      };
      i64 ow = 0;
      if (nc == V * VL && all_rows) {
        for (; ow < lo; ++ow) one_position(ow);
        // Pointers that advance by a position, and tap offsets computed once: from the indices,
        // every load cost an integer multiply.
        const i64 position_step = s.sw * W, tap_step = s.dw * W;
        const T* in_at[KH];
        for (int kh = 0; kh < KH; ++kh) in_at[kh] = rows[kh] + (ow * s.sw - s.pw) * W;
        for (; ow < hi; ++ow) {
          Vec<T> d[V];
#pragma GCC unroll 2
          for (int v = 0; v < V; ++v) d[v] = load_vec(dyrow + ow * W + v * VL);
#pragma GCC unroll 8
          for (int kh = 0; kh < KH; ++kh) {
#pragma GCC unroll 8
            for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 2
              for (int v = 0; v < V; ++v) acc[v][kh * KW + kw] += d[v] * load_vec(in_at[kh] + kw * tap_step + v * VL);
            in_at[kh] += position_step;
          }
        }
      }
      for (; ow < s.OW; ++ow) one_position(ow);
    }
    for (int v = 0; v < V; ++v)
#pragma GCC unroll 25
      for (int t = 0; t < kvol; ++t) sums[v * kvol + t] = acc[v][t];
  };

  using One = std::integral_constant<int, 1>;
  const auto store_taps = [&](const Vec<T>(&taps)[kvol], i64 first, i64 count) {
    for (i64 j = 0; j < count; ++j)
      for (int k = 0; k < kvol; ++k) dw[(first + j) * kvol + k] = taps[k][j];
  };
  // Blocks of images as below, for 3x3 kernels (under AVX2 and SSE at unit stride only), reading
  // the operands in place, whole pixels at a time as the forward does: for a block of positions,
  // each vector of channels loads its taps' partial sums (kvol x C of them per block of images,
  // in L1), adds the block's positions and stores them back. At unit stride and dilation, output
  // rows go in pairs, as in the forward: both rows' blocks read the KH + 1 input rows once. The
  // copies into planes of lines took more time than the sums (mobilenet.dw3x3 NHWC, AVX-512,
  // 2-core Zen 4: 47% of the samples against 30%); in place, one row at a time: 0.45-0.50 ->
  // 0.42-0.46 ms, rows in pairs: 0.33-0.36.
  // A partial's terms come in a fixed order (the thread count does not change it), but not the
  // copying form's: the two can differ in the last bits.
  // Under AVX2 (16 registers) at unit stride only, in blocks half as long, each pixel loaded
  // into one register and added into the taps that read it at once: mobilenet.dw3x3 NHWC under
  // AVX2, 2-core Zen 4, 0.53-0.77 -> 0.36-0.37 ms; SSE 1.1-1.3 -> 0.67-0.69.
  const bool unit = s.sw == 1 && s.dw == 1;
  if (kvol <= 9 && s.N >= kImageBlocksFrom && (!kCompact || unit)) {
    constexpr int P = kCompact ? 4 : 8, kPairPositions = P / 2;
    const i64 vectors = ceil_div(C, VL), full_vectors = C / VL;
    const i64 block = ceil_div(s.N, kMaxImageBlocks), blocks = ceil_div(s.N, block);
    AlignedBuffer<Vec<T>> partials(checked_mul(blocks * vectors, kvol, "depthwise partials"));
    const bool row_pairs = unit && s.sh == 1 && s.dh == 1;
    // acc[kw] += d[p] * pixel(p + kw) for the PB positions of one kernel row, each pixel loaded
    // once into one register (AVX2): the taps' order over the positions is the same as below.
    const auto kernel_row_streamed = [&](auto positions, Vec<T>* acc, const Vec<T>* d, auto pixel) {
      constexpr int PB = decltype(positions)::value;
#pragma GCC unroll 16
      for (int j = 0; j < PB + KW - 1; ++j) {
        const Vec<T> px = pixel(j);
#pragma GCC unroll 8
        for (int kw = 0; kw < KW; ++kw)
          if (j - kw >= 0 && j - kw < PB) acc[kw] += d[j - kw] * px;
      }
    };
    parallel_for(blocks, [&](i64 b, int) {
      Vec<T>* part = partials.data() + b * vectors * kvol;  // [vector][tap]
      std::fill(part, part + vectors * kvol, Vec<T>{});
      // Position ow of the row reading `rows` (dy's row dyrow), vectors [first, vectors), added
      // into the partials in memory: the rows' ends and the last, partial vector.
      const auto position_of = [&](const T* const(&rows)[KH], const T* dyrow, i64 ow, i64 first) {
        for (i64 v = first; v < vectors; ++v) {
          const i64 c0 = v * VL, nc = std::min(VL, C - c0);
          const Vec<T> d = load_n(dyrow + ow * C + c0, nc);
          Vec<T>* sums = part + v * kvol;
          for (int kh = 0; kh < KH; ++kh)
            for (int kw = 0; kw < KW; ++kw) {
              const i64 iw = ow * s.sw - s.pw + kw * s.dw;
              const bool inside = rows[kh] && iw >= 0 && iw < s.IW;
              sums[kh * KW + kw] += d * (inside ? load_n(rows[kh] + iw * C + c0, nc) : Vec<T>{});
            }
        }
      };
      for (i64 row = b * block * s.OH; row < std::min(s.N, (b + 1) * block) * s.OH; ++row) {
        const T* rows[KH];
        tap_rows<T, KH>(s, in, row / s.OH, row % s.OH, rows);
        const T* dyrow = dy + row * s.OW * C;
        if (row_pairs && (row % s.OH) % 2 == 0 && row % s.OH + 1 < s.OH) {
          // Rows oh and oh + 1 read input rows oh - ph .. oh - ph + KH: the second row's kernel
          // row kh is the first's kh + 1.
          constexpr int PP = kPairPositions;
          const T* rows1[KH];
          tap_rows<T, KH>(s, in, (row + 1) / s.OH, (row + 1) % s.OH, rows1);
          const T* in_rows[KH + 1];
          for (int r = 0; r < KH; ++r) in_rows[r] = rows[r];
          in_rows[KH] = rows1[KH - 1];
          const T* dyrow1 = dyrow + s.OW * C;
          i64 ow = 0;
          for (; ow < lo; ++ow) {
            position_of(rows, dyrow, ow, 0);
            position_of(rows1, dyrow1, ow, 0);
          }
          for (; ow + PP <= hi; ow += PP) {
            for (i64 v = 0; v < full_vectors; ++v) {
              const i64 c0 = v * VL;
              Vec<T>* sums = part + v * kvol;
              Vec<T> acc[kvol], d0[PP], d1[PP];
#pragma GCC unroll 9
              for (int t = 0; t < kvol; ++t) acc[t] = sums[t];
#pragma GCC unroll 8
              for (int p = 0; p < PP; ++p) {
                d0[p] = load_vec(dyrow + (ow + p) * C + c0);
                d1[p] = load_vec(dyrow1 + (ow + p) * C + c0);
              }
#pragma GCC unroll 8
              for (int r = 0; r <= KH; ++r) {
                const T* q = in_rows[r] ? in_rows[r] + (ow - s.pw) * C + c0 : nullptr;
                if constexpr (kCompact) {
                  using Positions = std::integral_constant<int, PP>;
                  const auto zero = [](int) { return Vec<T>{}; };
                  const auto at = [&](int j) { return load_vec(q + j * C); };
                  if (r < KH) {
                    if (q)
                      kernel_row_streamed(Positions{}, acc + r * KW, d0, at);
                    else
                      kernel_row_streamed(Positions{}, acc + r * KW, d0, zero);
                  }
                  if (r >= 1) {
                    if (q)
                      kernel_row_streamed(Positions{}, acc + (r - 1) * KW, d1, at);
                    else
                      kernel_row_streamed(Positions{}, acc + (r - 1) * KW, d1, zero);
                  }
                  continue;
                }
                Vec<T> px[PP + KW - 1];
#pragma GCC unroll 16
                for (int j = 0; j < PP + KW - 1; ++j) px[j] = q ? load_vec(q + j * C) : Vec<T>{};
                if (r < KH)
#pragma GCC unroll 8
                  for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                    for (int p = 0; p < PP; ++p) acc[r * KW + kw] += d0[p] * px[p + kw];
                if (r >= 1)
#pragma GCC unroll 8
                  for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                    for (int p = 0; p < PP; ++p) acc[(r - 1) * KW + kw] += d1[p] * px[p + kw];
              }
#pragma GCC unroll 9
              for (int t = 0; t < kvol; ++t) sums[t] = acc[t];
            }
            if (full_vectors < vectors)
              for (int p = 0; p < PP; ++p) {
                position_of(rows, dyrow, ow + p, full_vectors);
                position_of(rows1, dyrow1, ow + p, full_vectors);
              }
          }
          for (; ow < s.OW; ++ow) {
            position_of(rows, dyrow, ow, 0);
            position_of(rows1, dyrow1, ow, 0);
          }
          ++row;
          continue;
        }
        const auto one_position = [&](i64 ow, i64 first) { position_of(rows, dyrow, ow, first); };
        i64 ow = 0;
        for (; ow < lo; ++ow) one_position(ow, 0);
        for (; ow + P <= hi; ow += P) {
          for (i64 v = 0; v < full_vectors; ++v) {
            const i64 c0 = v * VL;
            Vec<T>* sums = part + v * kvol;
            Vec<T> acc[kvol], d[P];
#pragma GCC unroll 9
            for (int t = 0; t < kvol; ++t) acc[t] = sums[t];
#pragma GCC unroll 8
            for (int p = 0; p < P; ++p) d[p] = load_vec(dyrow + (ow + p) * C + c0);
#pragma GCC unroll 8
            for (int kh = 0; kh < KH; ++kh) {
              // A row in the padding adds dy * 0, as one_position does.
              const T* q = rows[kh] ? rows[kh] + (ow * s.sw - s.pw) * C + c0 : nullptr;
              if constexpr (kCompact) {  // unit stride
                using Positions = std::integral_constant<int, P>;
                if (q)
                  kernel_row_streamed(Positions{}, acc + kh * KW, d, [&](int j) { return load_vec(q + j * C); });
                else
                  kernel_row_streamed(Positions{}, acc + kh * KW, d, [](int) { return Vec<T>{}; });
              } else if (unit) {
                Vec<T> px[P + KW - 1];
#pragma GCC unroll 16
                for (int j = 0; j < P + KW - 1; ++j) px[j] = q ? load_vec(q + j * C) : Vec<T>{};
#pragma GCC unroll 8
                for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                  for (int p = 0; p < P; ++p) acc[kh * KW + kw] += d[p] * px[p + kw];
              } else if (q) {
#pragma GCC unroll 8
                for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                  for (int p = 0; p < P; ++p) acc[kh * KW + kw] += d[p] * load_vec(q + (p * s.sw + kw * s.dw) * C);
              } else {
                // Selecting the operand inside the product kept GCC from fusing the multiply-add.
#pragma GCC unroll 8
                for (int kw = 0; kw < KW; ++kw)
#pragma GCC unroll 8
                  for (int p = 0; p < P; ++p) acc[kh * KW + kw] += d[p] * Vec<T>{};
              }
            }
#pragma GCC unroll 9
            for (int t = 0; t < kvol; ++t) sums[t] = acc[t];
          }
          if (full_vectors < vectors)
            for (int p = 0; p < P; ++p) one_position(ow + p, full_vectors);
        }
        for (; ow < s.OW; ++ow) one_position(ow, 0);
      }
    });
    parallel_for(vectors, [&](i64 v, int) {
      Vec<T> taps[kvol];
      for (int k = 0; k < kvol; ++k) {
        taps[k] = partials.data()[v * kvol + k];
        for (i64 b = 1; b < blocks; ++b) taps[k] += partials.data()[(b * vectors + v) * kvol + k];
      }
      store_taps(taps, v * VL, std::min(VL, C - v * VL));
    });
    return;
  }
  // Under AVX-512 too from kImageBlocksFrom images on (the in-place items below stream the whole
  // batch once per line of channels, 1/8 of every 1 KiB pixel at 256 channels). The choice depends
  // on the batch, not on the thread count, so the bits do not either.
  if (kCompact || s.N >= kImageBlocksFrom) {
    // Blocks of images, a thread's own: each image's input and grad_output are copied, read in
    // order, into planes of one line of channels each; every line then sums the image into the
    // block's partial taps; the partials are added in block order (the bits do not depend on
    // the thread count).
    const i64 block = ceil_div(s.N, kMaxImageBlocks), blocks = ceil_div(s.N, block);
    const i64 plane_cells = cells + out_cells, per_slot = checked_mul(items * kLine, plane_cells, "channel planes");
    AlignedBuffer<T> planes(checked_mul(scratch_slots(blocks), per_slot, "channel planes"));
    AlignedBuffer<Vec<T>> partials(checked_mul(blocks * items, 2 * kvol, "depthwise partials"));
    PlaneStencil cs = s;
    cs.N = 1;
    cs.C = kLine;
    const auto to_lines = [&](T* dst, const T* src, i64 count) {  // [cell][C] -> [line][cell][kLine]
      for (i64 cell = 0; cell < count; ++cell)
        for (i64 item = 0; item < items; ++item)
          for (i64 v = 0; v < 2; ++v) {
            const i64 n = std::clamp<i64>(C - item * kLine - v * VL, 0, VL);
            store_vec(dst + (item * count + cell) * kLine + v * VL,
                      n > 0 ? load_n(src + cell * C + item * kLine + v * VL, n) : Vec<T>{});
          }
    };
    parallel_for(blocks, [&](i64 b, int t) {
      T* xl = planes.data() + t * per_slot;
      T* gl = xl + items * kLine * cells;
      Vec<T>* part = partials.data() + b * items * 2 * kvol;
      std::fill(part, part + items * 2 * kvol, Vec<T>{});
      for (i64 n = b * block; n < std::min(s.N, (b + 1) * block); ++n) {
        to_lines(xl, in + n * cells * C, cells);
        to_lines(gl, dy + n * out_cells * C, out_cells);
        for (i64 item = 0; item < items; ++item) {
          const i64 nc = std::min(kLine, C - item * kLine);
          for (i64 v = 0; v < ceil_div(nc, VL); ++v) {
            accumulate(One{}, part + (item * 2 + v) * kvol, cs, xl + item * kLine * cells + v * VL,
                       gl + item * kLine * out_cells + v * VL, kLine, std::min(VL, nc - v * VL), 1);
          }
        }
      }
    });
    parallel_for(items * 2, [&](i64 iv, int) {
      const i64 c0 = iv * VL;
      if (c0 >= C) return;
      Vec<T> taps[kvol];
      for (int k = 0; k < kvol; ++k) {
        taps[k] = partials.data()[iv * kvol + k];
        for (i64 b = 1; b < blocks; ++b) taps[k] += partials.data()[(b * items * 2 + iv) * kvol + k];
      }
      store_taps(taps, c0, std::min(VL, C - c0));
    });
    return;
  }
  parallel_for(items, [&](i64 item, int) {
    const i64 c0 = item * kLine, nc = std::min(kLine, C - c0), vectors = ceil_div(nc, VL);
    Vec<T> acc[2][kvol] = {};
    Vec<T> second[2][kvol] = {};  // the second vector's accumulators when the vectors run apart
    if (nc == kLine) {
      accumulate(std::integral_constant<int, 2>{}, &acc[0][0], s, in + c0, dy + c0, C, nc, s.N);
    } else {
      accumulate(One{}, &acc[0][0], s, in + c0, dy + c0, C, std::min(VL, nc), s.N);
      if (vectors > 1) accumulate(One{}, &second[0][0], s, in + c0 + VL, dy + c0 + VL, C, nc - VL, s.N);
    }
    store_taps(acc[0], c0, std::min(VL, nc));
    if (vectors > 1) store_taps(nc == kLine ? acc[1] : second[0], c0 + VL, nc - VL);
  });
}

// The forward pass's geometry in a PlaneStencil (2-D: the H and W axes).
inline PlaneStencil forward_plane_stencil(const ConvGeometry& g) {
  return {g.N,         g.C,         g.in[1],       g.in[2],       g.out[1],        g.out[2],
          g.stride[1], g.stride[2], g.dilation[1], g.dilation[2], g.pad_before[1], g.pad_before[2]};
}

template <class T>
using NhwcStencil = void (*)(const PlaneStencil&, const T*, const T*, bool, const T*, T*);

// The compile-time stencil for a 2-D layer with one output channel per input channel, or nullptr.
template <class T>
NhwcStencil<T> nhwc_stencil(const ConvGeometry& g) {
  // 2-D only: a single input slice can still give several output slices (padding on D), which
  // these per-plane stencils would not write.
  if (g.K_per_group() != 1 || g.kernel[0] != 1 || g.in[0] != 1 || g.out[0] != 1 || g.kernel[1] != g.kernel[2])
    return nullptr;
  switch (g.kernel[1]) {
    case 3:
      return &stencil_nhwc_2d<T, 3, 3>;
    case 5:
      return &stencil_nhwc_2d<T, 5, 5>;
    default:
      return nullptr;
  }
}

}  // namespace

template <class T>
void depthwise_forward_channels_last(const ConvGeometry& g, const T* x, const T* w, const T* bias, T* y) {
  // These stencils skip padding; with non-finite weights its zeros matter (0 * Inf is NaN).
  if (!conv_reach_is_compact(g) || !weights_finite(g, w)) return conv_forward_direct(g, true, x, w, bias, y);
  if (NhwcStencil<T> stencil = nhwc_stencil<T>(g)) {
    const PlaneStencil s = forward_plane_stencil(g);
    const std::vector<T> wt = taps_major(g, w);
    stencil(s, x, wt.data(), false, bias, y);
    return;
  }
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume();
  const i64 OH = g.out[1], OW = g.out[2], rows = g.N * g.out[0] * OH;
  const std::vector<T> wt = taps_major(g, w);
  const TapOffsets offsets = tap_offsets(g);
  parallel_for(rows, [&](i64 row, int) {
    const i64 n = row / (g.out[0] * OH), od = (row / OH) % g.out[0], oh = row % OH;
    const T* xn = x + n * g.in_plane() * C;
    for (i64 ow = 0; ow < OW; ++ow) {
      T* yp = y + ((row * OW) + ow) * K;
      if (Kg == 1) {
        // Blocks of 4 vectors of channels accumulate in registers across every tap (adding each
        // tap into y in memory made every tap a store-to-load round trip); a ragged last block
        // goes through the loop below.
        constexpr i64 VL = vector_length<T>(), kBlock = 4 * VL;
        const i64 full = K / kBlock * kBlock;
        for (i64 k0 = 0; k0 < full; k0 += kBlock) {
          Vec<T> acc[4];
          for (int v = 0; v < 4; ++v) acc[v] = bias ? load_vec(bias + k0 + v * VL) : Vec<T>{};
          for (i64 tap = 0; tap < kvol; ++tap) {
            const i64 cell = input_cell(g, offsets, od, oh, ow, tap);
            if (cell < 0) continue;
            const T* xc = xn + cell * C + k0;
            const T* wtap = wt.data() + tap * K + k0;
            for (int v = 0; v < 4; ++v) acc[v] += load_vec(wtap + v * VL) * load_vec(xc + v * VL);
          }
          for (int v = 0; v < 4; ++v) store_vec(yp + k0 + v * VL, acc[v]);
        }
        for (i64 k = full; k < K; ++k) yp[k] = bias ? bias[k] : T(0);
        for (i64 tap = 0; tap < kvol && full < K; ++tap) {
          const i64 cell = input_cell(g, offsets, od, oh, ow, tap);
          if (cell < 0) continue;
          const T* xc = xn + cell * C;
          const T* wtap = wt.data() + tap * K;
          for (i64 k = full; k < K; ++k) yp[k] += wtap[k] * xc[k];
        }
        continue;
      }
      for (i64 k = 0; k < K; ++k) yp[k] = bias ? bias[k] : T(0);
      for (i64 tap = 0; tap < kvol; ++tap) {
        const i64 cell = input_cell(g, offsets, od, oh, ow, tap);
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
  // The unit-stride form correlates a zero-padded dy with the flipped kernel: with non-finite
  // weights those zeros would add products (0 * Inf) that the gradient does not have.
  if (!conv_reach_is_compact(g) || !weights_finite(g, w)) return conv_backward_data_direct(g, true, dy, w, dx);
  if (NhwcStencil<T> stencil = nhwc_stencil<T>(g); stencil && g.stride[1] == 1 && g.stride[2] == 1) {
    // Unit stride: dx is the correlation of dy with the flipped kernel, padded by
    // (k - 1) * dilation - pad_before (any sign: the stencil checks every tap's bounds).
    const PlaneStencil s{g.N,
                         g.C,
                         g.out[1],
                         g.out[2],
                         g.in[1],
                         g.in[2],
                         1,
                         1,
                         g.dilation[1],
                         g.dilation[2],
                         (g.kernel[1] - 1) * g.dilation[1] - g.pad_before[1],
                         (g.kernel[2] - 1) * g.dilation[2] - g.pad_before[2]};
    const std::vector<T> wt = taps_major(g, w);
    stencil(s, dy, wt.data(), true, nullptr, dx);
    return;
  }
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume(), in_plane = g.in_plane();
  const i64 OH = g.out[1], OW = g.out[2], P = g.out_plane();
  const i64 cblocks = ceil_div(C, kChannelBlock);
  const std::vector<T> wt = taps_major(g, w);
  const TapOffsets offsets = tap_offsets(g);
  // Items own (image, channel block): the scatter below writes only their channels.
  parallel_for(g.N * cblocks, [&](i64 item, int) {
    const i64 n = item / cblocks, c0 = (item % cblocks) * kChannelBlock, cw = std::min(kChannelBlock, C - c0);
    T* dxn = dx + n * in_plane * C + c0;
    for (i64 s = 0; s < in_plane; ++s) std::fill(dxn + s * C, dxn + s * C + cw, T(0));
    for (i64 p = 0; p < P; ++p) {
      const i64 od = p / (OH * OW), oh = (p / OW) % OH, ow = p % OW;
      const T* dyp = dy + (n * P + p) * K;
      for (i64 tap = 0; tap < kvol; ++tap) {
        const i64 cell = input_cell(g, offsets, od, oh, ow, tap);
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
  if (!conv_reach_is_compact(g)) return conv_backward_weight_direct(g, true, dy, x, dw);
  if (nhwc_stencil<T>(g)) {
    const PlaneStencil s = forward_plane_stencil(g);
    if (g.kernel[1] == 3)
      weight_grad_nhwc_2d<T, 3, 3>(s, x, dy, dw);
    else
      weight_grad_nhwc_2d<T, 5, 5>(s, x, dy, dw);
    return;
  }
  const i64 Kg = g.K_per_group(), K = g.K, C = g.C, kvol = g.kernel_volume(), in_plane = g.in_plane();
  const i64 OH = g.out[1], OW = g.out[2], P = g.out_plane();
  const i64 kblocks = ceil_div(K, kChannelBlock);
  const int slots = scratch_slots(kblocks);
  AlignedBuffer<T> accs(slots * kvol * kChannelBlock);
  const TapOffsets offsets = tap_offsets(g);
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
          const i64 cell = input_cell(g, offsets, od, oh, ow, tap);
          if (cell < 0) {
            // Padding is zeros that take part in the products, as in PyTorch: Inf or NaN in dy
            // reaching padding makes the weight's gradient NaN.
            T* a = acc + tap * kChannelBlock;
            for (i64 k = 0; k < kw_; ++k) a[k] += dyp[k] * T(0);
            continue;
          }
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

#define CONVKERN_INSTANTIATE(T)                                                                             \
  template void depthwise_forward_channels_first<T>(const ConvGeometry&, const T*, const T*, const T*, T*); \
  template void depthwise_backward_data_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);     \
  template void depthwise_backward_weight_channels_first<T>(const ConvGeometry&, const T*, const T*, T*);   \
  template void depthwise_forward_channels_last<T>(const ConvGeometry&, const T*, const T*, const T*, T*);  \
  template void depthwise_backward_data_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);      \
  template void depthwise_backward_weight_channels_last<T>(const ConvGeometry&, const T*, const T*, T*);
CONVKERN_INSTANTIATE(float)
CONVKERN_INSTANTIATE(double)
#undef CONVKERN_INSTANTIATE

}  // namespace convkern::cpu
