// bindings.cpp — the private extension module convkern._C.
//
// A thin layer: it re-checks every array it is handed (dtype, rank, shape, contiguity,
// writability) so that even a direct call into _C cannot make a kernel read or write out of
// bounds, builds the geometry through shape.h, releases the GIL and calls the kernel.
// Argument parsing for users (ints vs tuples, "same", layouts) lives in python/convkern.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <optional>
#include <string>

#include "cpu/conv.h"
#include "cpu/microkernel.h"
#include "cpu/parallel.h"
#include "cpu/pool.h"
#include "shape.h"

namespace py = pybind11;
using convkern::i64;
using Vec3 = std::array<i64, 3>;

namespace {

enum class DType { kFloat32, kFloat64 };

DType dtype_of(const py::array& a, const char* name) {
  if (py::isinstance<py::array_t<float>>(a)) return DType::kFloat32;
  if (py::isinstance<py::array_t<double>>(a)) return DType::kFloat64;
  throw py::type_error(std::string(name) + " must be float32 or float64, got " +
                       py::str(a.dtype()).cast<std::string>());
}

std::string shape_str(const std::vector<i64>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += std::to_string(s[i]) + (i + 1 < s.size() || s.size() == 1 ? ", " : "");
  if (s.size() == 1) r.pop_back();
  return r + ")";
}

std::vector<i64> shape_of(const py::array& a) { return std::vector<i64>(a.shape(), a.shape() + a.ndim()); }

// Checks that `a` is a C-contiguous array of dtype `dt` and exactly `shape`.
void require(const py::array& a, const char* name, DType dt, const std::vector<i64>& shape, bool writeable) {
  if (dtype_of(a, name) != dt) throw py::type_error(std::string(name) + " has a different dtype from the input");
  if (shape_of(a) != shape)
    throw std::invalid_argument(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                                shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (writeable && !a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
}

void require_ndim(const py::array& a, const char* name, py::ssize_t ndim) {
  if (a.ndim() != ndim)
    throw std::invalid_argument(std::string(name) + " must have " + std::to_string(ndim) + " dimensions, got " +
                                std::to_string(a.ndim()));
}

template <class T>
const T* cptr(const py::array& a) {
  return static_cast<const T*>(a.data());
}
template <class T>
T* mptr(py::array& a) {
  return static_cast<T*>(a.mutable_data());
}

convkern::ConvGeometry conv_geometry(int rank, const std::vector<i64>& xs, const std::vector<i64>& ws,
                                     const Vec3& stride, const Vec3& pb, const Vec3& pa, const Vec3& dil,
                                     i64 groups) {
  if (xs.size() != 5 || ws.size() != 5) throw std::invalid_argument("conv geometry expects 5-D shapes");
  return convkern::make_conv_geometry(rank, xs[0], xs[1], xs.data() + 2, ws[0], ws[1], ws.data() + 2, stride.data(),
                                      pb.data(), pa.data(), dil.data(), groups);
}

std::vector<i64> conv_out_shape(const convkern::ConvGeometry& g) {
  return {g.N, g.K, g.out[0], g.out[1], g.out[2]};
}

std::vector<i64> conv_output_shape(int rank, const std::vector<i64>& xs, const std::vector<i64>& ws,
                                   const Vec3& stride, const Vec3& pb, const Vec3& pa, const Vec3& dil, i64 groups) {
  return conv_out_shape(conv_geometry(rank, xs, ws, stride, pb, pa, dil, groups));
}

void conv_forward(const py::array& x, const py::array& w, const std::optional<py::array>& bias, py::array& y,
                  const Vec3& stride, const Vec3& pb, const Vec3& pa, const Vec3& dil, i64 groups, int rank) {
  require_ndim(x, "input", 5);
  require_ndim(w, "weight", 5);
  const auto g = conv_geometry(rank, shape_of(x), shape_of(w), stride, pb, pa, dil, groups);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape_of(x), false);
  require(w, "weight", dt, shape_of(w), false);
  if (bias) require(*bias, "bias", dt, {g.K}, false);
  require(y, "out", dt, conv_out_shape(g), true);
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    convkern::cpu::conv_forward<float>(g, cptr<float>(x), cptr<float>(w), bias ? cptr<float>(*bias) : nullptr,
                                       mptr<float>(y));
  else
    convkern::cpu::conv_forward<double>(g, cptr<double>(x), cptr<double>(w), bias ? cptr<double>(*bias) : nullptr,
                                        mptr<double>(y));
}

template <class T>
void conv_backward_typed(const convkern::ConvGeometry& g, const py::array& dy, const py::array& x, const py::array& w,
                         std::optional<py::array>& dx, std::optional<py::array>& dw, std::optional<py::array>& db) {
  if (dx) convkern::cpu::conv_backward_data<T>(g, cptr<T>(dy), cptr<T>(w), mptr<T>(*dx));
  if (dw) convkern::cpu::conv_backward_weight<T>(g, cptr<T>(dy), cptr<T>(x), mptr<T>(*dw));
  if (db) convkern::cpu::conv_backward_bias<T>(g, cptr<T>(dy), mptr<T>(*db));
}

void conv_backward(const py::array& dy, const py::array& x, const py::array& w, std::optional<py::array> dx,
                   std::optional<py::array> dw, std::optional<py::array> db, const Vec3& stride, const Vec3& pb,
                   const Vec3& pa, const Vec3& dil, i64 groups, int rank) {
  require_ndim(x, "input", 5);
  require_ndim(w, "weight", 5);
  const auto g = conv_geometry(rank, shape_of(x), shape_of(w), stride, pb, pa, dil, groups);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape_of(x), false);
  require(w, "weight", dt, shape_of(w), false);
  require(dy, "grad_output", dt, conv_out_shape(g), false);
  if (dx) require(*dx, "grad_input", dt, shape_of(x), true);
  if (dw) require(*dw, "grad_weight", dt, shape_of(w), true);
  if (db) require(*db, "grad_bias", dt, {g.K}, true);
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    conv_backward_typed<float>(g, dy, x, w, dx, dw, db);
  else
    conv_backward_typed<double>(g, dy, x, w, dx, dw, db);
}

convkern::PoolGeometry pool_geometry(int rank, i64 planes, const Vec3& in, const Vec3& k, const Vec3& s,
                                     const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode,
                                     bool same_or_valid) {
  return convkern::make_pool_geometry(rank, planes, in.data(), k.data(), s.data(), pb.data(), pa.data(), d.data(),
                                      ceil_mode,
                                      same_or_valid ? convkern::PoolPadding::kSameOrValid
                                                    : convkern::PoolPadding::kExplicit);
}

Vec3 pool_output_shape(int rank, i64 planes, const Vec3& in, const Vec3& k, const Vec3& s, const Vec3& pb,
                       const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  const auto g = pool_geometry(rank, planes, in, k, s, pb, pa, d, ceil_mode, same_or_valid);
  return {g.out[0], g.out[1], g.out[2]};
}

std::vector<i64> planes_shape(const convkern::PoolGeometry& g, bool output) {
  const i64* e = output ? g.out : g.in;
  return {g.planes, e[0], e[1], e[2]};
}

convkern::PoolGeometry pool_geometry_of(const py::array& x, int rank, const Vec3& k, const Vec3& s, const Vec3& pb,
                                        const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  require_ndim(x, "input", 4);
  const auto xs = shape_of(x);
  return pool_geometry(rank, xs[0], {xs[1], xs[2], xs[3]}, k, s, pb, pa, d, ceil_mode, same_or_valid);
}

void extremum_pool_forward(const py::array& x, py::array& y, std::optional<py::array> idx, const Vec3& k,
                           const Vec3& s, const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode,
                           bool same_or_valid, bool is_min, int rank) {
  const auto g = pool_geometry_of(x, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, planes_shape(g, false), false);
  require(y, "out", dt, planes_shape(g, true), true);
  if (idx) {
    if (!py::isinstance<py::array_t<int64_t>>(*idx)) throw py::type_error("indices must be int64");
    if (shape_of(*idx) != planes_shape(g, true) || !(idx->flags() & py::array::c_style) || !idx->writeable())
      throw std::invalid_argument("indices buffer must be a writeable C-contiguous int64 array of the output shape");
  }
  const auto which = is_min ? convkern::cpu::Extremum::kMin : convkern::cpu::Extremum::kMax;
  i64* ip = idx ? static_cast<i64*>(idx->mutable_data()) : nullptr;
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    convkern::cpu::extremum_pool_forward<float>(g, which, cptr<float>(x), mptr<float>(y), ip);
  else
    convkern::cpu::extremum_pool_forward<double>(g, which, cptr<double>(x), mptr<double>(y), ip);
}

void extremum_pool_backward(const py::array& dy, const py::array& idx, py::array& dx, const Vec3& k, const Vec3& s,
                            const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid,
                            int rank) {
  const auto g = pool_geometry_of(dx, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, planes_shape(g, true), false);
  require(dx, "grad_input", dt, planes_shape(g, false), true);
  if (!py::isinstance<py::array_t<int64_t>>(idx))
    throw py::type_error("indices must be an int64 array, got " + py::str(idx.dtype()).cast<std::string>());
  if (shape_of(idx) != planes_shape(g, true) || !(idx.flags() & py::array::c_style))
    throw std::invalid_argument("indices must be a C-contiguous int64 array of the output shape");
  const i64* ip = static_cast<const i64*>(idx.data());
  i64 bad;
  {
    py::gil_scoped_release nogil;
    bad = convkern::cpu::find_bad_pool_index(g, ip);
  }
  if (bad >= 0)
    throw std::invalid_argument("indices holds " + std::to_string(ip[bad]) + " at flat position " +
                                std::to_string(bad) + ", outside the input plane of " +
                                std::to_string(g.in_plane()) + " elements");
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    convkern::cpu::extremum_pool_backward<float>(g, cptr<float>(dy), ip, mptr<float>(dx));
  else
    convkern::cpu::extremum_pool_backward<double>(g, cptr<double>(dy), ip, mptr<double>(dx));
}

convkern::cpu::AvgPoolOptions avg_options(bool count_include_pad, i64 divisor_override) {
  convkern::cpu::AvgPoolOptions o;
  o.count_include_pad = count_include_pad;
  o.divisor_override = divisor_override;
  return o;
}

void avg_pool_forward(const py::array& x, py::array& y, const Vec3& k, const Vec3& s, const Vec3& pb, const Vec3& pa,
                      bool ceil_mode, bool same_or_valid, bool count_include_pad, i64 divisor_override, int rank) {
  const Vec3 one{1, 1, 1};
  const auto g = pool_geometry_of(x, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, planes_shape(g, false), false);
  require(y, "out", dt, planes_shape(g, true), true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    convkern::cpu::avg_pool_forward<float>(g, opt, cptr<float>(x), mptr<float>(y));
  else
    convkern::cpu::avg_pool_forward<double>(g, opt, cptr<double>(x), mptr<double>(y));
}

void avg_pool_backward(const py::array& dy, py::array& dx, const Vec3& k, const Vec3& s, const Vec3& pb,
                       const Vec3& pa, bool ceil_mode, bool same_or_valid, bool count_include_pad,
                       i64 divisor_override, int rank) {
  const Vec3 one{1, 1, 1};
  const auto g = pool_geometry_of(dx, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, planes_shape(g, true), false);
  require(dx, "grad_input", dt, planes_shape(g, false), true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  py::gil_scoped_release nogil;
  if (dt == DType::kFloat32)
    convkern::cpu::avg_pool_backward<float>(g, opt, cptr<float>(dy), mptr<float>(dx));
  else
    convkern::cpu::avg_pool_backward<double>(g, opt, cptr<double>(dy), mptr<double>(dx));
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "convkern's compiled kernels (private: use the convkern package)";
  using namespace pybind11::literals;
  m.def("same_padding", [](i64 in, i64 k, i64 s, i64 d) {
    const auto p = convkern::same_padding(in, k, s, d);
    return std::make_pair(p.before, p.after);
  }, "in_size"_a, "kernel"_a, "stride"_a, "dilation"_a);
  m.def("conv_output_shape", &conv_output_shape, "rank"_a, "input_shape"_a, "weight_shape"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a);
  m.def("conv_forward", &conv_forward, "input"_a, "weight"_a, "bias"_a, "out"_a, "stride"_a, "pad_before"_a,
        "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a);
  m.def("conv_backward", &conv_backward, "grad_output"_a, "input"_a, "weight"_a, "grad_input"_a, "grad_weight"_a,
        "grad_bias"_a, "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a);
  m.def("pool_output_shape", &pool_output_shape, "rank"_a, "planes"_a, "in_size"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a);
  m.def("extremum_pool_forward", &extremum_pool_forward, "input"_a, "out"_a, "indices"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "is_min"_a, "rank"_a);
  m.def("extremum_pool_backward", &extremum_pool_backward, "grad_output"_a, "indices"_a, "grad_input"_a, "kernel"_a,
        "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "rank"_a);
  m.def("avg_pool_forward", &avg_pool_forward, "input"_a, "out"_a, "kernel"_a, "stride"_a, "pad_before"_a,
        "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a, "divisor_override"_a, "rank"_a);
  m.def("avg_pool_backward", &avg_pool_backward, "grad_output"_a, "grad_input"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a,
        "divisor_override"_a, "rank"_a);
  m.def("cpu_isa", &convkern::cpu::micro_kernel_isa);
  m.def("openmp", &convkern::cpu::openmp_enabled);
  m.def("get_num_threads", &convkern::cpu::get_num_threads);
  m.def("set_num_threads", &convkern::cpu::set_num_threads, "n"_a);
  m.def("hardware_threads", &convkern::cpu::max_hardware_threads);
  m.attr("cuda_built") = false;
}
