// bindings.cpp — the private extension module convkern._C.
//
// A thin layer: each entry point re-checks every array it is handed (dtype, rank, shape,
// contiguity, writability) so that even a direct call into _C cannot make a kernel read or write
// out of bounds, builds the geometry through shape.h, releases the GIL, opens the call's plan
// (parallel.h) and calls the kernel through the kernel set chosen for this CPU (kernel_table.h).
// Argument parsing for users (ints vs tuples, "same", layouts) lives in python/convkern.
// The entry points are grouped by operator family in bind_*.cpp.
#include "bind_common.h"
#include "cpu/kernel_table.h"
#include "cpu/parallel.h"

namespace py = pybind11;
using convkern::i64;

PYBIND11_MODULE(_C, m) {
  convkern::bind::bind_conv(m);
  convkern::bind::bind_pool(m);
  m.doc() = "convkern's compiled kernels (private: use the convkern package)";
  using namespace pybind11::literals;
  namespace cpu = convkern::cpu;
  m.def(
      "same_padding",
      [](i64 in, i64 k, i64 s, i64 d) {
        const auto p = convkern::same_padding(in, k, s, d);
        return std::make_pair(p.before, p.after);
      },
      "in_size"_a, "kernel"_a, "stride"_a, "dilation"_a);
  // Choosing the kernel set here, at import, makes every later call find it made.
  cpu::cpu_kernels();
  m.def("cpu_isa", [] { return std::string(cpu::cpu_kernels().isa); });
  m.def(
      "isa_choice",
      [] {
        const cpu::IsaChoice& c = cpu::isa_choice();
        py::dict d;
        d["chosen"] = c.chosen;
        d["best"] = c.best;
        d["requested"] = c.requested ? py::object(py::str(c.requested)) : py::object(py::none());
        d["request_known"] = c.request_known;
        return d;
      },
      "The kernel set in use, the widest this CPU runs, and CONVKERN_ISA as given.");
  m.attr("isa_levels") = py::str(CONVKERN_ISA_LEVELS);
  m.def("openmp", &cpu::openmp_enabled);
  m.def("get_num_threads", &cpu::num_threads_setting);
  m.def("effective_num_threads", &cpu::effective_num_threads,
        "Threads a call from this thread would use now: the setting capped by this thread's OpenMP limit.");
  m.def("set_num_threads", &cpu::set_num_threads, "n"_a);
  m.def("hardware_threads", &cpu::max_hardware_threads);
  m.def(
      "scratch_stats",
      [] {
        const cpu::ScratchStats s = cpu::scratch_stats();
        py::dict d;
        d["live_bytes"] = s.live_bytes;
        d["peak_bytes"] = s.peak_bytes;
        d["cached_bytes"] = s.cached_bytes;
        d["cache_limit"] = s.cache_limit;
        return d;
      },
      "Kernel scratch memory: allocated now (in use plus cached), peak since reset_scratch_peak, cached, cache limit.");
  m.def("reset_scratch_peak", &cpu::reset_scratch_peak);
  m.def(
      "release_scratch",
      [] {
        py::gil_scoped_release nogil;
        return cpu::release_scratch();
      },
      "Frees the scratch cache's idle blocks; returns the bytes freed.");
  m.def(
      "set_scratch_cache_limit",
      [](i64 bytes) {
        if (bytes < 0) throw std::invalid_argument("bytes must be >= 0, got " + std::to_string(bytes));
        py::gil_scoped_release nogil;
        cpu::set_scratch_cache_limit(bytes);
      },
      "bytes"_a);
}
