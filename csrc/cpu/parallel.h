// parallel.h — the thread pool policy and scratch memory shared by the CPU kernels.
//
// The thread count is a process-wide setting (omp_set_num_threads would only affect the calling
// thread, and convkern is called from many Python threads), capped by the calling thread's own
// OpenMP limit (omp_get_max_threads: OMP_NUM_THREADS, omp_set_num_threads, threadpoolctl).
// A call reads it ONCE, into the CallPlan its entry point opens; everything of that call (scratch
// sizing, work splitting, parallel_for) then reads the plan, so another thread changing the
// setting mid-call cannot make thread ids outrun the scratch sized for them.
// Work is always split into items whose boundaries do not depend on the thread count, so
// results are bitwise identical with 1 or N threads.
//
// This header and parallel.cpp are common code, outside the kernel sets: there is one setting,
// one plan slot per thread and one scratch account per process.
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

// Threads of the call running on this thread: its plan's count. Outside any plan, the count a
// plan opened now would get (and 1 inside a parallel region, whose nested loops run inline).
int get_num_threads();
// The process-wide setting, and what a call from this thread would use now (the setting capped
// by this thread's OpenMP limit).
int num_threads_setting();
int effective_num_threads();
// Takes effect for calls that start afterwards; safe from any thread at any time.
void set_num_threads(int n);

// The plan of one call: every entry point opens one before it runs a kernel. It reads the
// thread count once; kernels on the calling thread see that count until it closes. `serial`
// makes it 1: entry points ask for that for small problems, where a fork/join costs
// microseconds on an idle machine and milliseconds when the other core is busy, more than the
// whole call. Results do not depend on the count (see above). Plans nest: an inner one never
// raises the outer one's count.
class CallPlan {
 public:
  explicit CallPlan(bool serial = false);
  ~CallPlan();
  CallPlan(const CallPlan&) = delete;
  CallPlan& operator=(const CallPlan&) = delete;
  int threads() const { return threads_; }

 private:
  int previous_;
  int threads_;
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
// fail is checked before the region starts. With many items per thread, each thread takes one
// contiguous share: neighbouring items share operands (input rows of adjacent position tiles),
// and a call repeated on the same arrays finds each share's data in the cache of the core that
// used it last (2-core Xeon, against items handed out one at a time: resnet50.conv1 NHWC forward
// 1.24x, mobilenet.dw3x3 NCHW forward 1.32x, resnet50.l4.3x3 1.03-1.16x). With few, they are
// handed out one at a time, as items may differ in cost (a last, shorter block of reduction
// rows: resnet50.conv1's NCHW weight gradient ran 1.7x slower in contiguous shares).
constexpr std::int64_t kStaticItemsPerThread = 8;

template <class F>
void parallel_for(std::int64_t items, F&& body) {
  if (items <= 0) return;
#ifdef _OPENMP
  const int nt = static_cast<int>(items < get_num_threads() ? items : get_num_threads());
  if (nt > 1) {
    if (items >= kStaticItemsPerThread * nt) {
#pragma omp parallel for schedule(static) num_threads(nt)
      for (std::int64_t i = 0; i < items; ++i) body(i, omp_get_thread_num());
    } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(nt)
      for (std::int64_t i = 0; i < items; ++i) body(i, omp_get_thread_num());
    }
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

// Scratch accounting. Every kernel workspace comes from scratch_allocate (64-byte aligned,
// nullptr when out of memory) and goes back through scratch_free, so the bytes a call holds can
// be measured (convkern._C.scratch_stats, for tests and docs/cpu.md).
void* scratch_allocate(std::size_t bytes) noexcept;
void scratch_free(void* p) noexcept;

struct ScratchStats {
  std::int64_t live_bytes;  // allocated now: in use plus cached
  std::int64_t peak_bytes;  // most live at once since the last reset
  std::int64_t cached_bytes;  // idle blocks kept by the scratch cache
  std::int64_t cache_limit;  // the most the cache keeps
};
ScratchStats scratch_stats();
void reset_scratch_peak();
// Frees every idle cached block; returns the bytes freed.
std::int64_t release_scratch();
void set_scratch_cache_limit(std::int64_t bytes);

// Large workspaces whose pages would otherwise be faulted in afresh on every call (Winograd's:
// tens of MiB, where faulting cost as much as the transforms) are leased from a process-wide
// cache instead: a lease takes the smallest idle block that fits (or allocates one) and gives it
// back when it ends. The cache keeps idle blocks up to its limit in total, whatever the number
// of threads, freeing the least recently returned ones first, and none idle for more than 10 s
// (freed at the next lease or return), so no thread keeps memory beyond its calls.
void* scratch_cache_take(std::size_t bytes, std::size_t* capacity);
void scratch_cache_give(void* block, std::size_t capacity) noexcept;

template <class T>
class CachedBuffer {
 public:
  CachedBuffer() = default;
  ~CachedBuffer() { release(); }
  CachedBuffer(const CachedBuffer&) = delete;
  CachedBuffer& operator=(const CachedBuffer&) = delete;
  // Storage for at least `count` elements (contents unspecified); earlier pointers are invalid.
  T* reserve(std::int64_t count) {
    std::size_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<std::size_t>(count > 0 ? count : 1), sizeof(T), &bytes))
      throw std::bad_alloc();  // a wrapped size would lease a short block
    if (bytes > capacity_) {
      release();
      block_ = scratch_cache_take(bytes, &capacity_);
    }
    return static_cast<T*>(block_);
  }

 private:
  void release() noexcept {
    if (block_) scratch_cache_give(block_, capacity_);
    block_ = nullptr;
    capacity_ = 0;
  }
  void* block_ = nullptr;
  std::size_t capacity_ = 0;
};

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
    void* p = scratch_allocate(bytes);
    if (!p) throw std::bad_alloc();
    data_.reset(static_cast<T*>(p));
    size_ = count;
  }
  T* data() const { return data_.get(); }
  std::int64_t size() const { return size_; }

 private:
  struct Free {
    void operator()(T* p) const { scratch_free(p); }
  };
  std::unique_ptr<T, Free> data_;
  std::int64_t size_ = 0;
};

}  // namespace convkern::cpu
