#include "parallel.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace convkern::cpu {
namespace {

int default_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

std::atomic<int> g_num_threads{default_threads()};
// The count of the plan open on this thread; 0 when none is.
thread_local int t_plan_threads = 0;

}  // namespace

int num_threads_setting() { return g_num_threads.load(std::memory_order_relaxed); }

int effective_num_threads() {
  int n = num_threads_setting();
#ifdef _OPENMP
  n = std::min(n, omp_get_max_threads());
#endif
  return n < 1 ? 1 : n;
}

int get_num_threads() {
  if (t_plan_threads > 0) return t_plan_threads;
#ifdef _OPENMP
  // A worker of an open region has no plan of its own; a loop it starts would run inline anyway.
  if (omp_in_parallel()) return 1;
#endif
  return effective_num_threads();
}

void set_num_threads(int n) { g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

CallPlan::CallPlan(bool serial) : previous_(t_plan_threads) {
  threads_ = serial ? 1 : previous_ > 0 ? previous_ : effective_num_threads();
  t_plan_threads = threads_;
}
CallPlan::~CallPlan() { t_plan_threads = previous_; }

int max_hardware_threads() {
  const unsigned n = std::thread::hardware_concurrency();
  return n ? static_cast<int>(n) : 1;
}

bool openmp_enabled() {
#ifdef _OPENMP
  return true;
#else
  return false;
#endif
}

// ------------------------------------------------------------------------------------- scratch

namespace {

// Each block starts with a header holding its size, one alignment unit long so the caller's
// part stays 64-byte aligned.
constexpr std::size_t kHeader = 64;

std::atomic<std::int64_t> g_live_bytes{0};
std::atomic<std::int64_t> g_peak_bytes{0};

void note_peak(std::int64_t live) {
  std::int64_t peak = g_peak_bytes.load(std::memory_order_relaxed);
  while (live > peak && !g_peak_bytes.compare_exchange_weak(peak, live, std::memory_order_relaxed)) {}
}

using Clock = std::chrono::steady_clock;

// A block idle this long is freed at the next lease or return: a burst of calls keeps its warm
// pages, a process that stopped calling gives them back once it calls again (release_scratch
// frees them at once).
constexpr auto kIdleLifetime = std::chrono::seconds(10);

struct IdleBlock {
  void* block;
  std::size_t capacity;
  Clock::time_point returned;
  // What the block holds of memory, header and rounding included: what scratch_allocate added to
  // the live bytes, so that cached and live bytes are counted alike.
  std::int64_t footprint() const {
    return static_cast<std::int64_t>(*reinterpret_cast<const std::size_t*>(static_cast<const char*>(block) - kHeader));
  }
};

// Idle blocks, least recently returned first. 256 MiB: the workspaces of the largest layers the
// benchmarks run twice over, so two threads alternating on them both reuse warm pages.
struct ScratchCache {
  std::mutex mutex;
  std::vector<IdleBlock> idle;
  std::int64_t idle_bytes = 0;
  std::int64_t limit = std::int64_t{256} << 20;
};

ScratchCache& cache() {
  static ScratchCache* c = new ScratchCache;  // never destroyed: blocks may return during exit
  return *c;
}

// Frees the oldest idle blocks until at most `keep` bytes stay and none is older than
// kIdleLifetime; the caller holds the lock and frees `to_free` after releasing it.
void trim_locked(ScratchCache& c, std::int64_t keep, std::vector<void*>& to_free) {
  const Clock::time_point expired = Clock::now() - kIdleLifetime;
  to_free.reserve(c.idle.size());  // may throw, before anything changes
  std::size_t drop = 0;
  while (drop < c.idle.size() && (c.idle_bytes > keep || c.idle[drop].returned < expired)) {
    c.idle_bytes -= c.idle[drop].footprint();
    to_free.push_back(c.idle[drop].block);
    ++drop;
  }
  c.idle.erase(c.idle.begin(), c.idle.begin() + static_cast<std::ptrdiff_t>(drop));
}

}  // namespace

void* scratch_allocate(std::size_t bytes) noexcept {
  if (bytes > static_cast<std::size_t>(INT64_MAX) - 2 * kHeader) return nullptr;
  const std::size_t total = (bytes + kHeader + 63) / 64 * 64;
  void* base = std::aligned_alloc(64, total);
  if (!base) return nullptr;
  *static_cast<std::size_t*>(base) = total;
  note_peak(g_live_bytes.fetch_add(static_cast<std::int64_t>(total), std::memory_order_relaxed) +
            static_cast<std::int64_t>(total));
  return static_cast<char*>(base) + kHeader;
}

void scratch_free(void* p) noexcept {
  if (!p) return;
  void* base = static_cast<char*>(p) - kHeader;
  g_live_bytes.fetch_sub(static_cast<std::int64_t>(*static_cast<std::size_t*>(base)), std::memory_order_relaxed);
  std::free(base);
}

void* scratch_cache_take(std::size_t bytes, std::size_t* capacity) {
  ScratchCache& c = cache();
  std::vector<void*> to_free;
  void* found = nullptr;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    trim_locked(c, c.limit, to_free);
    std::size_t best = c.idle.size();
    for (std::size_t i = 0; i < c.idle.size(); ++i)
      if (c.idle[i].capacity >= bytes && (best == c.idle.size() || c.idle[i].capacity < c.idle[best].capacity))
        best = i;
    if (best < c.idle.size()) {
      found = c.idle[best].block;
      *capacity = c.idle[best].capacity;
      c.idle_bytes -= c.idle[best].footprint();
      c.idle.erase(c.idle.begin() + static_cast<std::ptrdiff_t>(best));
    }
  }
  for (void* p : to_free) scratch_free(p);
  if (found) return found;
  void* block = scratch_allocate(bytes);
  if (!block) throw std::bad_alloc();
  *capacity = bytes;
  return block;
}

void scratch_cache_give(void* block, std::size_t capacity) noexcept {
  ScratchCache& c = cache();
  std::vector<void*> to_free;
  try {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.idle.push_back({block, capacity, Clock::now()});
    c.idle_bytes += c.idle.back().footprint();
    trim_locked(c, c.limit, to_free);
  } catch (...) {  // no room to record it: free it instead
    scratch_free(block);
    return;
  }
  for (void* p : to_free) scratch_free(p);
}

ScratchStats scratch_stats() {
  ScratchCache& c = cache();
  std::lock_guard<std::mutex> lock(c.mutex);
  return {g_live_bytes.load(std::memory_order_relaxed), g_peak_bytes.load(std::memory_order_relaxed), c.idle_bytes,
          c.limit};
}

void reset_scratch_peak() { g_peak_bytes.store(g_live_bytes.load(std::memory_order_relaxed)); }

std::int64_t release_scratch() {
  ScratchCache& c = cache();
  std::vector<void*> to_free;
  std::int64_t freed;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    freed = c.idle_bytes;
    trim_locked(c, 0, to_free);
  }
  for (void* p : to_free) scratch_free(p);
  return freed;
}

void set_scratch_cache_limit(std::int64_t bytes) {
  ScratchCache& c = cache();
  std::vector<void*> to_free;
  {
    std::lock_guard<std::mutex> lock(c.mutex);
    c.limit = bytes < 0 ? 0 : bytes;
    trim_locked(c, c.limit, to_free);
  }
  for (void* p : to_free) scratch_free(p);
}

}  // namespace convkern::cpu
