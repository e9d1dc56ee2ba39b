// bindings.cpp — the private extension module convkern._C.
//
// A thin layer: each entry point re-checks every array it is handed (dtype, rank, shape,
// contiguity, writability) so that even a direct call into _C cannot make a kernel read or write
// out of bounds, builds the geometry through shape.h, releases the GIL and calls the kernel.
// Argument parsing for users (ints vs tuples, "same", layouts) lives in python/convkern.
// The entry points are grouped by operator family in bind_*.cpp.
#include "bind_common.h"
#include "cpu/microkernel.h"
#include "cpu/parallel.h"

namespace py = pybind11;
using convkern::i64;

PYBIND11_MODULE(_C, m) {
  convkern::bind::bind_conv(m);
  convkern::bind::bind_pool(m);
  m.doc() = "convkern's compiled kernels (private: use the convkern package)";
  using namespace pybind11::literals;
  m.def("same_padding", [](i64 in, i64 k, i64 s, i64 d) {
    const auto p = convkern::same_padding(in, k, s, d);
    return std::make_pair(p.before, p.after);
  }, "in_size"_a, "kernel"_a, "stride"_a, "dilation"_a);
  m.def("cpu_isa", &convkern::cpu::micro_kernel_isa);
  m.def("openmp", &convkern::cpu::openmp_enabled);
  m.def("get_num_threads", &convkern::cpu::get_num_threads);
  m.def("set_num_threads", &convkern::cpu::set_num_threads, "n"_a);
  m.def("hardware_threads", &convkern::cpu::max_hardware_threads);
}
