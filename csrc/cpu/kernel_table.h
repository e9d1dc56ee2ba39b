// kernel_table.h — the entry points of one CPU kernel set, and the set chosen for this CPU.
//
// Every kernel source is compiled once per instruction-set level (generic x86-64, AVX2 + FMA,
// AVX-512; one generic set elsewhere), each with exactly its own flags. A set exports one thing:
// a table of its entry points (kernel_table.cpp). dispatch.cpp picks the widest table the CPU
// runs, once, at import; the bindings call kernels only through it, so no code compiled for a
// wider level than the CPU's ever runs.
#pragma once

#include <type_traits>

#include "../shape.h"
#include "pool.h"

namespace convkern::cpu {

template <class T>
struct KernelTable {
  using value_type = T;
  // The convolution passes; each picks its algorithm (depthwise, Winograd, GEMM) itself.
  void (*conv_forward)(const ConvGeometry& g, bool channels_last, const T* x, const T* w, const T* bias, T* y);
  void (*conv_backward_data)(const ConvGeometry& g, bool channels_last, const T* dy, const T* w, T* dx);
  void (*conv_backward_weight)(const ConvGeometry& g, bool channels_last, const T* dy, const T* x, T* dw);
  void (*conv_backward_bias)(const ConvGeometry& g, bool channels_last, const T* dy, T* db);
  // Pooling, with the contracts of pool.h.
  void (*extremum_pool_forward)(const PoolGeometry& g, const Layout& layout, Extremum which, const T* x, T* y,
                                i64* idx);
  void (*adaptive_extremum_pool_forward)(const AdaptivePoolGeometry& g, const Layout& layout, Extremum which,
                                         const T* x, T* y, i64* idx);
  i64 (*extremum_pool_backward)(const PoolGeometry* g, const AdaptivePoolGeometry* ag, const Layout& layout,
                                const T* dy, const i64* idx, T* dx);
  void (*avg_pool_forward)(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* x, T* y);
  void (*avg_pool_backward)(const PoolGeometry& g, const Layout& layout, const AvgPoolOptions& opt, const T* dy, T* dx);
  void (*adaptive_avg_pool_forward)(const AdaptivePoolGeometry& g, const Layout& layout, const T* x, T* y);
  void (*adaptive_avg_pool_backward)(const AdaptivePoolGeometry& g, const Layout& layout, const T* dy, T* dx);
};

struct CpuKernels {
  const char* isa;  // "generic", "avx2" or "avx512"
  KernelTable<float> f32;
  KernelTable<double> f64;

  template <class T>
  const KernelTable<T>& of() const {
    if constexpr (std::is_same_v<T, float>)
      return f32;
    else
      return f64;
  }
};

// The set chosen for this process (see dispatch.cpp).
const CpuKernels& cpu_kernels();

// What chose it, for convkern.info() and the import-time check of CONVKERN_ISA.
struct IsaChoice {
  const char* chosen;  // the level in use
  const char* best;  // the widest level this CPU runs and this build holds
  const char* requested;  // CONVKERN_ISA as given, or nullptr when unset or empty
  bool request_known;  // whether `requested` names a level ("generic", "avx2", "avx512")
};
const IsaChoice& isa_choice();

}  // namespace convkern::cpu

// The getters the sets export (the only global symbol each one keeps).
extern "C" {
const convkern::cpu::CpuKernels* convkern_cpu_kernels_generic();
const convkern::cpu::CpuKernels* convkern_cpu_kernels_avx2();
const convkern::cpu::CpuKernels* convkern_cpu_kernels_avx512();
}
