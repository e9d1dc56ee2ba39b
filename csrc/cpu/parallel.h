// parallel.h — the thread pool policy and scratch memory shared by the CPU kernels.
//
// The thread count is a process-wide setting read by every parallel region (omp_set_num_threads
// would only affect the calling thread, and convkern is called from many Python threads).
// Work is always split into items whose boundaries do not depend on the thread count, so
// results are bitwise identical with 1 or N threads.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace convkern::cpu {

int get_num_threads();
void set_num_threads(int n);

// Within its scope, kernels on the calling thread run on one thread. Entry points open one for
// small problems: a fork/join costs microseconds on an idle machine and milliseconds when the
// other core is busy, more than the whole call. Results do not depend on it (see above).
class SerialScope {
 public:
  explicit SerialScope(bool serial);
  ~SerialScope();
  SerialScope(const SerialScope&) = delete;
  SerialScope& operator=(const SerialScope&) = delete;

 private:
  bool previous_;
};

// Arithmetic (or element) counts below which a call runs serially.
constexpr double kSerialConvFlops = 4e6;
constexpr double kSerialPoolElements = 2.5e5;
int max_hardware_threads();
bool openmp_enabled();

inline int current_thread() {
#ifdef _OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

// Runs body(item, thread) for item in [0, items). The body must not throw: everything that can
// fail is checked before the region starts.
template <class F>
void parallel_for(std::int64_t items, F&& body) {
  if (items <= 0) return;
#ifdef _OPENMP
  const int nt = static_cast<int>(items < get_num_threads() ? items : get_num_threads());
  if (nt > 1) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
    for (std::int64_t i = 0; i < items; ++i) body(i, omp_get_thread_num());
    return;
  }
#endif
  for (std::int64_t i = 0; i < items; ++i) body(i, 0);
}

// Number of per-thread scratch slots a parallel_for over `items` needs.
inline int scratch_slots(std::int64_t items) {
  const int nt = get_num_threads();
  return static_cast<int>(items < nt ? (items < 1 ? 1 : items) : nt);
}

// 64-byte aligned, uninitialised storage for packed panels and tiles.
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::int64_t count) { resize(count); }
  // The byte count is checked: a count that would wrap it (a size computed from hostile
  // arguments) must fail here, not allocate a short buffer that the kernel then overruns.
  void resize(std::int64_t count) {
    if (count < 0) throw std::length_error("scratch size computation overflows 64-bit integers");
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::size_t>(count > 0 ? count : 1), sizeof(T), &bytes) ||
        __builtin_add_overflow(bytes, std::size_t{63}, &bytes))
      throw std::bad_alloc();
    bytes = bytes / 64 * 64;
    void* p = std::aligned_alloc(64, bytes);
    if (!p) throw std::bad_alloc();
    data_.reset(static_cast<T*>(p));
    size_ = count;
  }
  T* data() const { return data_.get(); }
  std::int64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::int64_t size_ = 0;
};

}  // namespace convkern::cpu
