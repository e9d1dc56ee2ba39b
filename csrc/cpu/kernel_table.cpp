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

// Channels-last layers that run through the channels-first passes (channels_last_runs_channels_first)
// get channels-first copies of their activations (ChannelsFirstCopy, conv.h).
inline bool through_channels_first(const ConvGeometry& g, bool last, ConvPass pass) {
  return last && g.N > 0 && conv_reach_is_compact(g) && channels_last_runs_channels_first(g, pass);
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
    if (last && winograd_forward_wins(g) && winograd_forward_nhwc_f32(g, x, w, b, y)) return;
    if (last && winograd_3d_forward_wins(g) && winograd_3d_forward_ndhwc_f32(g, x, w, b, y)) return;
  }
  if (through_channels_first(g, last, ConvPass::kForward)) {
    const ChannelsFirstCopy<T> xf(x, g.N, g.in_plane(), g.C), yf(y, g.N, g.out_plane(), g.K);
    conv_forward<T>(g, false, xf.data, w, b, yf.data);
    return yf.copy_out(y);
  }
  if (!last && grey_forward_by_stencils(g)) return depthwise_forward_channels_first<T>(g, x, w, b, y);
  if (!last && g.N > 0 && conv_reach_is_compact(g) && channels_first_forward_runs_channels_last(g))
    return conv_forward_by_kernel_rows_channels_first(g, x, w, b, y);
  if (!last && g.N > 0 && conv_reach_is_compact(g) && channels_first_strided_forward_runs_channels_last(g)) {
    const ChannelsLastCopy<T> xl(x, g.N, g.in_plane(), g.C), yl(y, g.N, g.out_plane(), g.K);
    conv_forward<T>(g, true, xl.data, w, b, yl.data);
    return yl.copy_out(y);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!last && winograd_forward_wins(g)) return winograd_forward_nchw_f32(g, x, w, b, y);
    if (!last && winograd_3d_forward_wins(g)) return winograd_3d_forward_ncdhw_f32(g, x, w, b, y);
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
    if (last && winograd_backward_data_wins(g) && winograd_backward_data_nhwc_f32(g, dy, w, dx)) return;
    if (last && winograd_3d_backward_data_wins(g) && winograd_3d_backward_data_ndhwc_f32(g, dy, w, dx)) return;
  }
  if (last && g.N > 0 && conv_reach_is_compact(g) && backward_data_by_kernel_rows(g) &&
      conv_backward_data_by_phases(g, dy, w, dx))
    return;
  if (through_channels_first(g, last, ConvPass::kBackwardData)) {
    const ChannelsFirstCopy<T> dyf(dy, g.N, g.out_plane(), g.K), dxf(dx, g.N, g.in_plane(), g.C);
    conv_backward_data<T>(g, false, dyf.data, w, dxf.data);
    return dxf.copy_out(dx);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!last && winograd_backward_data_wins(g)) return winograd_backward_data_nchw_f32(g, dy, w, dx);
    if (!last && winograd_3d_backward_data_wins(g)) return winograd_3d_backward_data_ncdhw_f32(g, dy, w, dx);
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
    if (last && winograd_backward_weight_wins(g) && winograd_backward_weight_nhwc_f32(g, dy, x, dw)) return;
    if (last && winograd_3d_backward_weight_wins(g) && winograd_3d_backward_weight_ndhwc_f32(g, dy, x, dw)) return;
  }
  // Layers with few input channels by kernel rows; channels-first LeNet-sized ones on channels-last
  // copies (a few hundred KiB), a channels-first strided first layer transposing grad_output row
  // by row (cheaper than the channels-first pass's short reduction rows).
  if (g.N > 0 && conv_reach_is_compact(g)) {
    if (last && (backward_weight_by_image_blocks(g) || backward_weight_by_kernel_rows(g))) {
      return conv_backward_weight_by_kernel_rows(g, dy, x, dw);
    } else if (!last && backward_weight_by_image_blocks(g)) {
      const ChannelsLastCopy<T> dyl(dy, g.N, g.out_plane(), g.K), xl(x, g.N, g.in_plane(), g.C);
      return conv_backward_weight_by_kernel_rows(g, dyl.data, xl.data, dw);
    } else if (!last && channels_first_weight_grad_runs_channels_last(g)) {
      return conv_backward_weight_by_kernel_rows_channels_first(g, dy, x, dw);
    }
    if (backward_weight_wide_by_kernel_rows(g)) {
      if (last) return conv_backward_weight_wide_by_kernel_rows(g, dy, x, dw);
      const ChannelsLastCopy<T> dyl(dy, g.N, g.out_plane(), g.K), xl(x, g.N, g.in_plane(), g.C);
      return conv_backward_weight_wide_by_kernel_rows(g, dyl.data, xl.data, dw);
    }
  }
  if (through_channels_first(g, last, ConvPass::kBackwardWeight)) {
    const ChannelsFirstCopy<T> dyf(dy, g.N, g.out_plane(), g.K), xf(x, g.N, g.in_plane(), g.C);
    return conv_backward_weight<T>(g, false, dyf.data, xf.data, dw);
  }
  if constexpr (std::is_same_v<T, float>) {
    if (!last && winograd_backward_weight_wins(g)) return winograd_backward_weight_nchw_f32(g, dy, x, dw);
    if (!last && winograd_3d_backward_weight_wins(g)) return winograd_3d_backward_weight_ncdhw_f32(g, dy, x, dw);
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
