// bind_pool.cpp — pooling entry points of convkern._C.
//
// Activations arrive as C-contiguous 5-D arrays in their own layout, (N, C, D, H, W) or, with
// channels_last, (N, D, H, W, C); lower ranks have unit leading spatial axes. Sizes come from the
// input (and, for adaptive pooling, the output) array and go through shape.h; every other array is
// then checked against the shapes the geometry implies.
#include "bind_common.h"
#include "cpu/kernel_table.h"
#include "cpu/parallel.h"

namespace convkern::bind {
namespace {

using cpu::Layout;

struct Activation5 {
  i64 batch, channels;
  Vec3 spatial;
};

Activation5 split5(const py::array& a, const char* name, bool channels_last) {
  require_ndim(a, name, 5);
  const auto s = shape_of(a);
  if (channels_last) return {s[0], s[4], {s[1], s[2], s[3]}};
  return {s[0], s[1], {s[2], s[3], s[4]}};
}

std::vector<i64> shape5(const Activation5& a, const i64* spatial, bool channels_last) {
  if (channels_last) return {a.batch, spatial[0], spatial[1], spatial[2], a.channels};
  return {a.batch, a.channels, spatial[0], spatial[1], spatial[2]};
}

i64 planes_of(const Activation5& a) { return checked_mul(a.batch, a.channels, "batch*channels"); }

Layout layout_of(const Activation5& a, bool channels_last) { return {channels_last, a.channels}; }

void require_indices(const py::array& idx, const std::vector<i64>& shape, bool writeable) {
  if (!py::isinstance<py::array_t<int64_t>>(idx))
    throw py::type_error("indices must be an int64 array, got " + py::str(idx.dtype()).cast<std::string>());
  if (shape_of(idx) != shape || !(idx.flags() & py::array::c_style) || (writeable && !idx.writeable()))
    throw std::invalid_argument(std::string("indices must be a ") + (writeable ? "writeable " : "") +
                                "C-contiguous int64 array of the output shape " + shape_str(shape) + ", got " +
                                shape_str(shape_of(idx)));
}

PoolGeometry pool_geometry(int rank, i64 planes, const Vec3& in, const Vec3& k, const Vec3& s, const Vec3& pb,
                           const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  return make_pool_geometry(rank, planes, in.data(), k.data(), s.data(), pb.data(), pa.data(), d.data(), ceil_mode,
                            same_or_valid ? PoolPadding::kSameOrValid : PoolPadding::kExplicit);
}

Vec3 pool_output_shape(int rank, i64 batch, i64 channels, const Vec3& in, const Vec3& k, const Vec3& s, const Vec3& pb,
                       const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  const auto g = pool_geometry(rank, checked_mul(batch, channels, "batch*channels"), in, k, s, pb, pa, d, ceil_mode,
                               same_or_valid);
  return {g.out[0], g.out[1], g.out[2]};
}

// The sliding-window geometry of `x` (the forward's input, or the backward's grad_input).
PoolGeometry pool_geometry_of(const Activation5& a, int rank, const Vec3& k, const Vec3& s, const Vec3& pb,
                              const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  return pool_geometry(rank, planes_of(a), a.spatial, k, s, pb, pa, d, ceil_mode, same_or_valid);
}

// Runs a kernel of the chosen set's float32 or float64 table with the GIL released, under the
// call's plan. kernel(table) gets that KernelTable<T>.
template <class F>
auto run_typed(DType dt, F&& kernel) {
  py::gil_scoped_release nogil;
  const cpu::CallPlan plan;
  const cpu::CpuKernels& k = cpu::cpu_kernels();
  return dt == DType::kFloat32 ? kernel(k.f32) : kernel(k.f64);
}

void extremum_pool_forward(const py::array& x, py::array& y, std::optional<py::array> idx, const Vec3& k, const Vec3& s,
                           const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid,
                           bool is_min, int rank, bool channels_last) {
  const auto a = split5(x, "input", channels_last);
  const auto g = pool_geometry_of(a, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape5(a, g.in, channels_last), false);
  require(y, "out", dt, shape5(a, g.out, channels_last), true);
  if (idx) require_indices(*idx, shape5(a, g.out, channels_last), true);
  const auto which = is_min ? cpu::Extremum::kMin : cpu::Extremum::kMax;
  i64* ip = idx ? mptr<i64>(*idx) : nullptr;
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.extremum_pool_forward(g, layout_of(a, channels_last), which, cptr<T>(x), mptr<T>(y), ip);
  });
}

// dx from dy and indices (the gradient of every max/min pool); refuses an index outside the plane.
// Pass exactly one geometry.
void scatter_extremum_gradient(const Activation5& a, bool channels_last, const PoolGeometry* g,
                               const AdaptivePoolGeometry* ag, const py::array& dy, const py::array& idx, py::array& dx,
                               DType dt) {
  const i64* ip = cptr<i64>(idx);
  const i64 bad = run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    return table.extremum_pool_backward(g, ag, layout_of(a, channels_last), cptr<T>(dy), ip, mptr<T>(dx));
  });
  const i64 in_plane = g ? g->in_plane() : ag->in_plane();
  if (bad >= 0)
    throw std::invalid_argument("indices holds " + std::to_string(ip[bad]) + " at flat position " +
                                std::to_string(bad) + ", outside the input plane of " + std::to_string(in_plane) +
                                " elements");
}

void extremum_pool_backward(const py::array& dy, const py::array& idx, py::array& dx, const Vec3& k, const Vec3& s,
                            const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid, int rank,
                            bool channels_last) {
  const auto a = split5(dx, "grad_input", channels_last);
  const auto g = pool_geometry_of(a, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, shape5(a, g.out, channels_last), false);
  require(dx, "grad_input", dt, shape5(a, g.in, channels_last), true);
  require_indices(idx, shape5(a, g.out, channels_last), false);
  scatter_extremum_gradient(a, channels_last, &g, nullptr, dy, idx, dx, dt);
}

cpu::AvgPoolOptions avg_options(bool count_include_pad, i64 divisor_override) {
  cpu::AvgPoolOptions o;
  o.count_include_pad = count_include_pad;
  o.divisor_override = divisor_override;
  return o;
}

void avg_pool_forward(const py::array& x, py::array& y, const Vec3& k, const Vec3& s, const Vec3& pb, const Vec3& pa,
                      bool ceil_mode, bool same_or_valid, bool count_include_pad, i64 divisor_override, int rank,
                      bool channels_last) {
  const Vec3 one{1, 1, 1};
  const auto a = split5(x, "input", channels_last);
  const auto g = pool_geometry_of(a, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape5(a, g.in, channels_last), false);
  require(y, "out", dt, shape5(a, g.out, channels_last), true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.avg_pool_forward(g, layout_of(a, channels_last), opt, cptr<T>(x), mptr<T>(y));
  });
}

void avg_pool_backward(const py::array& dy, py::array& dx, const Vec3& k, const Vec3& s, const Vec3& pb, const Vec3& pa,
                       bool ceil_mode, bool same_or_valid, bool count_include_pad, i64 divisor_override, int rank,
                       bool channels_last) {
  const Vec3 one{1, 1, 1};
  const auto a = split5(dx, "grad_input", channels_last);
  const auto g = pool_geometry_of(a, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, shape5(a, g.out, channels_last), false);
  require(dx, "grad_input", dt, shape5(a, g.in, channels_last), true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.avg_pool_backward(g, layout_of(a, channels_last), opt, cptr<T>(dy), mptr<T>(dx));
  });
}

// ---------------------------------------------------------------------------------- adaptive pooling

Vec3 adaptive_pool_output_shape(int rank, i64 batch, i64 channels, const Vec3& in, const Vec3& out) {
  const auto g = make_adaptive_pool_geometry(rank, checked_mul(batch, channels, "batch*channels"), in.data(),
                                             out.data());
  return {g.out[0], g.out[1], g.out[2]};
}

// The geometry of an adaptive pool from its input-sized and output-sized arrays.
AdaptivePoolGeometry adaptive_geometry_of(const Activation5& in, const py::array& output, const char* output_name,
                                          int rank, bool channels_last) {
  const auto o = split5(output, output_name, channels_last);
  return make_adaptive_pool_geometry(rank, planes_of(in), in.spatial.data(), o.spatial.data());
}

void adaptive_avg_pool_forward(const py::array& x, py::array& y, int rank, bool channels_last) {
  const auto a = split5(x, "input", channels_last);
  const auto g = adaptive_geometry_of(a, y, "out", rank, channels_last);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape5(a, g.in, channels_last), false);
  require(y, "out", dt, shape5(a, g.out, channels_last), true);
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.adaptive_avg_pool_forward(g, layout_of(a, channels_last), cptr<T>(x), mptr<T>(y));
  });
}

void adaptive_avg_pool_backward(const py::array& dy, py::array& dx, int rank, bool channels_last) {
  const auto a = split5(dx, "grad_input", channels_last);
  const auto g = adaptive_geometry_of(a, dy, "grad_output", rank, channels_last);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, shape5(a, g.out, channels_last), false);
  require(dx, "grad_input", dt, shape5(a, g.in, channels_last), true);
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.adaptive_avg_pool_backward(g, layout_of(a, channels_last), cptr<T>(dy), mptr<T>(dx));
  });
}

void adaptive_max_pool_forward(const py::array& x, py::array& y, std::optional<py::array> idx, int rank,
                               bool channels_last) {
  const auto a = split5(x, "input", channels_last);
  const auto g = adaptive_geometry_of(a, y, "out", rank, channels_last);
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape5(a, g.in, channels_last), false);
  require(y, "out", dt, shape5(a, g.out, channels_last), true);
  if (idx) require_indices(*idx, shape5(a, g.out, channels_last), true);
  i64* ip = idx ? mptr<i64>(*idx) : nullptr;
  run_typed(dt, [&](const auto& table) {
    using T = typename std::decay_t<decltype(table)>::value_type;
    table.adaptive_extremum_pool_forward(g, layout_of(a, channels_last), cpu::Extremum::kMax, cptr<T>(x), mptr<T>(y),
                                         ip);
  });
}

void adaptive_max_pool_backward(const py::array& dy, const py::array& idx, py::array& dx, int rank,
                                bool channels_last) {
  const auto a = split5(dx, "grad_input", channels_last);
  const auto g = adaptive_geometry_of(a, dy, "grad_output", rank, channels_last);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, shape5(a, g.out, channels_last), false);
  require(dx, "grad_input", dt, shape5(a, g.in, channels_last), true);
  require_indices(idx, shape5(a, g.out, channels_last), false);
  scatter_extremum_gradient(a, channels_last, nullptr, &g, dy, idx, dx, dt);
}

}  // namespace

void bind_pool(py::module_& m) {
  using namespace pybind11::literals;
  m.def("pool_output_shape", &pool_output_shape, "rank"_a, "batch"_a, "channels"_a, "in_size"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a);
  m.def("extremum_pool_forward", &extremum_pool_forward, "input"_a, "out"_a, "indices"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "is_min"_a, "rank"_a,
        "channels_last"_a);
  m.def("extremum_pool_backward", &extremum_pool_backward, "grad_output"_a, "indices"_a, "grad_input"_a, "kernel"_a,
        "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "rank"_a,
        "channels_last"_a);
  m.def("avg_pool_forward", &avg_pool_forward, "input"_a, "out"_a, "kernel"_a, "stride"_a, "pad_before"_a,
        "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a, "divisor_override"_a, "rank"_a,
        "channels_last"_a);
  m.def("avg_pool_backward", &avg_pool_backward, "grad_output"_a, "grad_input"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a, "divisor_override"_a,
        "rank"_a, "channels_last"_a);
  m.def("adaptive_pool_output_shape", &adaptive_pool_output_shape, "rank"_a, "batch"_a, "channels"_a, "in_size"_a,
        "output_size"_a);
  m.def("adaptive_avg_pool_forward", &adaptive_avg_pool_forward, "input"_a, "out"_a, "rank"_a, "channels_last"_a);
  m.def("adaptive_avg_pool_backward", &adaptive_avg_pool_backward, "grad_output"_a, "grad_input"_a, "rank"_a,
        "channels_last"_a);
  m.def("adaptive_max_pool_forward", &adaptive_max_pool_forward, "input"_a, "out"_a, "indices"_a, "rank"_a,
        "channels_last"_a);
  m.def("adaptive_max_pool_backward", &adaptive_max_pool_backward, "grad_output"_a, "indices"_a, "grad_input"_a,
        "rank"_a, "channels_last"_a);
}

}  // namespace convkern::bind
