// kernel_table.cpp — the entry points of one kernel set. Compiled once per instruction-set level
// with CONVKERN_KERNEL_SET naming the level; the algorithm choice is made here, inside the set.
#include "kernel_table.h"

#include "conv.h"
#include "conv_winograd.h"
#include "parallel.h"

#ifndef CONVKERN_KERNEL_SET
#error "CONVKERN_KERNEL_SET must name the kernel set (generic, avx2, avx512)"
#endif

namespace convkern::cpu {
namespace {

// Channels-last 3x3 stride-1 float32 layers run on the channels-first Winograd kernels, their
// activations transposed on the way in and out: each transpose is one pass over an activation
// (register-transposed 16 x 16 blocks), where the channels-last implicit GEMM does 4x
// Winograd's multiplications. The copies are leased from the scratch cache, whose pages stay
// mapped between calls.
struct ChannelsFirstCopy {
  CachedBuffer<float> storage;
  float* data = nullptr;
  i64 N, P, C;
  ChannelsFirstCopy(i64 n, i64 p, i64 c) : N(n), P(p), C(c) { data = storage.reserve(n * p * c); }
  // A copy of the channels-last activation `a` in channels-first order.
  ChannelsFirstCopy(const float* a, i64 n, i64 p, i64 c) : ChannelsFirstCopy(n, p, c) {
    activations_to_channels_first(a, data, N, P, C);
  }
  void copy_out(float* channels_last) const { activations_to_channels_last(data, channels_last, N, P, C); }
};

void winograd_forward_channels_last(const ConvGeometry& g, const float* x, const float* w, const float* b, float* y,
                                    bool three_d) {
  const ChannelsFirstCopy xf(x, g.N, g.in_plane(), g.C);
  ChannelsFirstCopy yf(g.N, g.out_plane(), g.K);
  (three_d ? winograd_3d_forward_ncdhw_f32 : winograd_forward_nchw_f32)(g, xf.data, w, b, yf.data);
  yf.copy_out(y);
}

void winograd_backward_data_channels_last(const ConvGeometry& g, const float* dy, const float* w, float* dx,
                                          bool three_d) {
  const ChannelsFirstCopy dyf(dy, g.N, g.out_plane(), g.K);
  ChannelsFirstCopy dxf(g.N, g.in_plane(), g.C);
  (three_d ? winograd_3d_backward_data_ncdhw_f32 : winograd_backward_data_nchw_f32)(g, dyf.data, w, dxf.data);
  dxf.copy_out(dx);
}

void winograd_backward_weight_channels_last(const ConvGeometry& g, const float* dy, const float* x, float* dw,
                                            bool three_d) {
  const ChannelsFirstCopy dyf(dy, g.N, g.out_plane(), g.K), xf(x, g.N, g.in_plane(), g.C);
  (three_d ? winograd_3d_backward_weight_ncdhw_f32 : winograd_backward_weight_nchw_f32)(g, dyf.data, xf.data, dw);
}

template <class T>
void conv_forward(const ConvGeometry& g, bool last, const T* x, const T* w, const T* b, T* y) {
  if (conv_is_depthwise(g)) {
    if (last)
      depthwise_forward_channels_last<T>(g, x, w, b, y);
    else
      depthwise_forward_channels_first<T>(g, x, w, b, y);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const bool flat = winograd_forward_wins(g), deep = !flat && winograd_3d_forward_wins(g);
    if (last && (flat || deep)) return winograd_forward_channels_last(g, x, w, b, y, deep);
    if (flat) return winograd_forward_nchw_f32(g, x, w, b, y);
    if (deep) return winograd_3d_forward_ncdhw_f32(g, x, w, b, y);
  }
  if (last)
    conv_forward_channels_last<T>(g, x, w, b, y);
  else
    conv_forward_channels_first<T>(g, x, w, b, y);
}

template <class T>
void conv_backward_data(const ConvGeometry& g, bool last, const T* dy, const T* w, T* dx) {
  if (conv_is_depthwise(g)) {
    if (last)
      depthwise_backward_data_channels_last<T>(g, dy, w, dx);
    else
      depthwise_backward_data_channels_first<T>(g, dy, w, dx);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const bool flat = winograd_backward_data_wins(g), deep = !flat && winograd_3d_backward_data_wins(g);
    if (last && (flat || deep)) return winograd_backward_data_channels_last(g, dy, w, dx, deep);
    if (flat) return winograd_backward_data_nchw_f32(g, dy, w, dx);
    if (deep) return winograd_3d_backward_data_ncdhw_f32(g, dy, w, dx);
  }
  if (last)
    conv_backward_data_channels_last<T>(g, dy, w, dx);
  else
    conv_backward_data_channels_first<T>(g, dy, w, dx);
}

template <class T>
void conv_backward_weight(const ConvGeometry& g, bool last, const T* dy, const T* x, T* dw) {
  if (conv_is_depthwise(g)) {
    if (last)
      depthwise_backward_weight_channels_last<T>(g, dy, x, dw);
    else
      depthwise_backward_weight_channels_first<T>(g, dy, x, dw);
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    const bool flat = winograd_backward_weight_wins(g), deep = !flat && winograd_3d_backward_weight_wins(g);
    if (last && (flat || deep)) return winograd_backward_weight_channels_last(g, dy, x, dw, deep);
    if (flat) return winograd_backward_weight_nchw_f32(g, dy, x, dw);
    if (deep) return winograd_3d_backward_weight_ncdhw_f32(g, dy, x, dw);
  }
  if (last)
    conv_backward_weight_channels_last<T>(g, dy, x, dw);
  else
    conv_backward_weight_channels_first<T>(g, dy, x, dw);
}

template <class T>
void conv_backward_bias(const ConvGeometry& g, bool last, const T* dy, T* db) {
  if (last)
    conv_backward_bias_channels_last<T>(g, dy, db);
  else
    conv_backward_bias_channels_first<T>(g, dy, db);
}

template <class T>
constexpr KernelTable<T> table() {
  return {&conv_forward<T>,
          &conv_backward_data<T>,
          &conv_backward_weight<T>,
          &conv_backward_bias<T>,
          &extremum_pool_forward<T>,
          &adaptive_extremum_pool_forward<T>,
          &extremum_pool_backward<T>,
          &avg_pool_forward<T>,
          &avg_pool_backward<T>,
          &adaptive_avg_pool_forward<T>,
          &adaptive_avg_pool_backward<T>};
}

#define CONVKERN_STRING_(x) #x
#define CONVKERN_STRING(x) CONVKERN_STRING_(x)
#define CONVKERN_GETTER_(set) convkern_cpu_kernels_##set
#define CONVKERN_GETTER(set) CONVKERN_GETTER_(set)

// constexpr: constant-initialised, so the set adds no static initialiser (those would run at
// import on any CPU, whichever set is chosen).
constexpr CpuKernels kKernels{CONVKERN_STRING(CONVKERN_KERNEL_SET), table<float>(), table<double>()};

}  // namespace
}  // namespace convkern::cpu

extern "C" const convkern::cpu::CpuKernels* CONVKERN_GETTER(CONVKERN_KERNEL_SET)() { return &convkern::cpu::kKernels; }
