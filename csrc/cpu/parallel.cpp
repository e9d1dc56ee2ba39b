#include "parallel.h"

#include <atomic>
#include <thread>

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
thread_local bool t_serial = false;

}  // namespace

int get_num_threads() { return t_serial ? 1 : g_num_threads.load(std::memory_order_relaxed); }

SerialScope::SerialScope(bool serial) : previous_(t_serial) { t_serial = t_serial || serial; }
SerialScope::~SerialScope() { t_serial = previous_; }

void set_num_threads(int n) { g_num_threads.store(n < 1 ? 1 : n, std::memory_order_relaxed); }

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

}  // namespace convkern::cpu
