// conv_winograd_3d.cpp — 3-D convolutions with 3x3 spatial taps, unit stride, through the 2-D
// Winograd kernel (conv_winograd.cpp).
//
// A 3-D convolution is a sum over its depth taps of 2-D convolutions of input depth slices:
//     y[n, od] = sum_{kd} conv2d(x[n, od - pad_d + kd], w[:, :, kd])
// so with the depth taps folded into the channels it is one 2-D convolution of a "slice batch".
// The 2-D kernel works on channels-last activations, and the taps are folded kd-major, so that
// each cell of X' is KD contiguous runs of the input's C channels:
//     X'[n * OD + od][h][w][kd * C + c] = x[n, od - pad_d + kd, h, w, c]   (zero outside the input)
//     W'[k][kd * C + c]                  = w[k, c, kd]   (a reordered copy: weights are small)
//     Y'[n * OD + od][h][w][k]           = y[n, od, h, w, k]   (y's own memory: no copy)
// and grad_output is likewise the slice batch's own. X' is a copy with KD x the input's size
// (video.conv3d: 38 MB), made with both threads; the 2-D kernel then runs at its 3x3 speed. The
// input gradient is the 2-D backward-data pass folded back over the depth taps (each input slice
// sums, in kd order, the slices that read it); the weight gradient is the 2-D weight gradient of
// the slice batch, reordered back to w's layout. Channels-first (NCDHW) activations go through
// channels-last copies. The slice buffers are leased from the scratch cache: blocks this large
// are fresh mmap pages on every call otherwise, and faulting them in cost a third of each pass.
// Deterministic: every copy and fold is owned by one work item, in a fixed order.
//
// Current: v4 (how it got here: docs/performance.md, "Kernel history"). Measured 2026-12-03 on
// the 2-core AMD EPYC (Zen 5, AVX-512), 2 threads, best of 6 calls, video.conv3d (N2 C64 8x56x56
// K64): NDHWC forward 15.0 ms, backward data 13.0, backward weight 15.1; NCDHW 16.6 / 15.0 / 17.9
// (PyTorch 2.13 oneDNN in an earlier hour's `bench/run.py --quick`, NCDHW: 24.4 / 26.0 / 29.2).
#include <algorithm>

#include "conv.h"
#include "conv_winograd.h"
#include "parallel.h"

namespace convkern::cpu {
namespace {

// The 2-D convolution of the slice batch.
ConvGeometry slice_geometry(const ConvGeometry& g) {
  ConvGeometry s = g;
  s.rank = 2;
  s.N = g.N * g.out[0];
  s.C = g.C * g.kernel[0];
  s.in[0] = s.kernel[0] = s.out[0] = 1;
  s.pad_before[0] = s.pad_after[0] = 0;
  return s;
}

// X' of channels-last x, kd-major channels (see the header).
void make_slice_batch_channels_last(const ConvGeometry& g, const float* x, float* xs) {
  const i64 OD = g.out[0], KD = g.kernel[0], ID = g.in[0], C = g.C, cells = g.in[1] * g.in[2];
  parallel_for(g.N * OD, [&](i64 item, int) {
    const i64 n = item / OD, od = item % OD;
    float* dst = xs + item * cells * KD * C;
    for (i64 kd = 0; kd < KD; ++kd) {
      const i64 id = od - g.pad_before[0] + kd;
      const float* src = id < 0 || id >= ID ? nullptr : x + (n * ID + id) * cells * C;
      for (i64 e = 0; e < cells; ++e) {
        float* d = dst + (e * KD + kd) * C;
        if (src)
          std::copy_n(src + e * C, C, d);
        else
          std::fill(d, d + C, 0.0f);
      }
    }
  });
}

// W'[k][kd * C + c][tap] = w[k][c][kd][tap] (to_slices), or the reverse.
void reorder_depth_taps(const ConvGeometry& g, const float* src, float* dst, bool to_slices) {
  const i64 KD = g.kernel[0], C = g.C;
  parallel_for(g.K, [&](i64 k, int) {
    for (i64 c = 0; c < C; ++c)
      for (i64 kd = 0; kd < KD; ++kd) {
        const i64 volume = ((k * C + c) * KD + kd) * 9, slices = ((k * KD + kd) * C + c) * 9;
        if (to_slices)
          std::copy_n(src + volume, 9, dst + slices);
        else
          std::copy_n(src + slices, 9, dst + volume);
      }
  });
}

i64 volume(const i64 (&e)[3]) { return e[0] * e[1] * e[2]; }

}  // namespace

bool winograd_3d_eligible(const ConvGeometry& g) {
  if (g.rank != 3 || g.N == 0 || g.out[0] == 0 || g.groups != 1 || g.stride[0] != 1 || g.dilation[0] != 1) return false;
  return winograd_eligible(slice_geometry(g));
}

bool winograd_3d_forward_wins(const ConvGeometry& g) {
  return winograd_3d_eligible(g) && winograd_forward_wins(slice_geometry(g));
}

bool winograd_3d_backward_data_wins(const ConvGeometry& g) {
  return winograd_3d_eligible(g) && winograd_backward_data_wins(slice_geometry(g));
}

bool winograd_3d_backward_weight_wins(const ConvGeometry& g) {
  return winograd_3d_eligible(g) && winograd_backward_weight_wins(slice_geometry(g));
}

// Channels-first (NCDHW) activations: channels-last copies and the passes below; the implicit
// GEMM on the original arrays when the values rule the transforms out.
void winograd_3d_forward_ncdhw_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const ChannelsLastCopy<float> xl(x, g.N, volume(g.in), g.C), yl(y, g.N, volume(g.out), g.K);
  if (!winograd_3d_forward_ndhwc_f32(g, xl.data, w, bias, yl.data))
    return conv_forward_channels_first(g, x, w, bias, y);
  yl.copy_out(y);
}

void winograd_3d_backward_data_ncdhw_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const ChannelsLastCopy<float> dyl(dy, g.N, volume(g.out), g.K), dxl(dx, g.N, volume(g.in), g.C);
  if (!winograd_3d_backward_data_ndhwc_f32(g, dyl.data, w, dxl.data))
    return conv_backward_data_channels_first(g, dy, w, dx);
  dxl.copy_out(dx);
}

void winograd_3d_backward_weight_ncdhw_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const ChannelsLastCopy<float> dyl(dy, g.N, volume(g.out), g.K), xl(x, g.N, volume(g.in), g.C);
  if (!winograd_3d_backward_weight_ndhwc_f32(g, dyl.data, xl.data, dw))
    return conv_backward_weight_channels_first(g, dy, x, dw);
}

bool winograd_3d_forward_ndhwc_f32(const ConvGeometry& g, const float* x, const float* w, const float* bias, float* y) {
  const ConvGeometry s = slice_geometry(g);
  CachedBuffer<float> xs_lease;
  AlignedBuffer<float> ws(checked_mul(g.K * s.C, 9, "depth-slice weights"));
  float* xs = xs_lease.reserve(checked_mul(s.N * s.C, s.in_plane(), "depth-slice batch"));
  make_slice_batch_channels_last(g, x, xs);
  reorder_depth_taps(g, w, ws.data(), true);
  return winograd_forward_nhwc_f32(s, xs, ws.data(), bias, y);
}

bool winograd_3d_backward_data_ndhwc_f32(const ConvGeometry& g, const float* dy, const float* w, float* dx) {
  const ConvGeometry s = slice_geometry(g);
  CachedBuffer<float> dxs_lease;
  AlignedBuffer<float> ws(checked_mul(g.K * s.C, 9, "depth-slice weights"));
  float* dxs = dxs_lease.reserve(checked_mul(s.N * s.C, s.in_plane(), "depth-slice gradient"));
  reorder_depth_taps(g, w, ws.data(), true);
  if (!winograd_backward_data_nhwc_f32(s, dy, ws.data(), dxs)) return false;
  // dx[n, id, h, w, c] = sum over kd (in order) of dX'[n * OD + od][h][w][kd * C + c], od = id + pad - kd.
  const i64 OD = g.out[0], KD = g.kernel[0], ID = g.in[0], C = g.C, cells = g.in[1] * g.in[2];
  parallel_for(g.N * ID, [&](i64 item, int) {
    const i64 n = item / ID, id = item % ID;
    float* d = dx + item * cells * C;
    bool first = true;
    for (i64 kd = 0; kd < KD; ++kd) {
      const i64 od = id + g.pad_before[0] - kd;
      if (od < 0 || od >= OD) continue;
      const float* src = dxs + (n * OD + od) * cells * KD * C + kd * C;
      for (i64 e = 0; e < cells; ++e) {
        const float* se = src + e * KD * C;
        float* de = d + e * C;
        if (first)
          std::copy_n(se, C, de);
        else
          for (i64 c = 0; c < C; ++c) de[c] += se[c];
      }
      first = false;
    }
    if (first) std::fill(d, d + cells * C, 0.0f);
  });
  return true;
}

bool winograd_3d_backward_weight_ndhwc_f32(const ConvGeometry& g, const float* dy, const float* x, float* dw) {
  const ConvGeometry s = slice_geometry(g);
  CachedBuffer<float> xs_lease;
  AlignedBuffer<float> dws(checked_mul(g.K * s.C, 9, "depth-slice weights"));
  float* xs = xs_lease.reserve(checked_mul(s.N * s.C, s.in_plane(), "depth-slice batch"));
  make_slice_batch_channels_last(g, x, xs);
  if (!winograd_backward_weight_nhwc_f32(s, dy, xs, dws.data())) return false;
  reorder_depth_taps(g, dws.data(), dw, false);
  return true;
}

}  // namespace convkern::cpu
