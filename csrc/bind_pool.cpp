// bind_pool.cpp — pooling entry points of convkern._C.
#include "bind_common.h"
#include "cpu/pool.h"

namespace convkern::bind {
namespace {

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

void bind_pool(py::module_& m) {
  using namespace pybind11::literals;
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
}

}  // namespace convkern::bind
