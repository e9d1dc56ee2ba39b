// bind_conv.cpp — convolution entry points of convkern._C.
//
// Arrays arrive 5-D: activations (N, C, D, H, W), or (N, D, H, W, C) when channels_last, and
// weights (K, C/groups, kD, kH, kW). Lower ranks come with unit leading spatial axes.
#include "bind_common.h"
#include "cpu/kernel_table.h"
#include "cpu/parallel.h"

namespace convkern::bind {
namespace {

// Logical (N, C, D, H, W) shape of a 5-D activation array in either layout, and back.
std::vector<i64> logical_shape(const py::array& a, const char* name, bool channels_last) {
  require_ndim(a, name, 5);
  auto s = shape_of(a);
  if (channels_last) return {s[0], s[4], s[1], s[2], s[3]};
  return s;
}

std::vector<i64> physical_shape(const std::vector<i64>& s, bool channels_last) {
  if (channels_last) return {s[0], s[2], s[3], s[4], s[1]};
  return s;
}

struct ConvArgs {
  Vec3 stride, pad_before, pad_after, dilation;
  i64 groups;
  int rank;
  bool channels_last;
};

ConvGeometry geometry(const ConvArgs& a, const std::vector<i64>& xs, const std::vector<i64>& ws) {
  if (xs.size() != 5 || ws.size() != 5) throw std::invalid_argument("conv geometry expects 5-D shapes");
  return make_conv_geometry(a.rank, xs[0], xs[1], xs.data() + 2, ws[0], ws[1], ws.data() + 2, a.stride.data(),
                            a.pad_before.data(), a.pad_after.data(), a.dilation.data(), a.groups);
}

std::vector<i64> out_shape(const ConvGeometry& g) { return {g.N, g.K, g.out[0], g.out[1], g.out[2]}; }

bool small_conv(const ConvGeometry& g) {
  return 2.0 * g.N * g.K * g.out_plane() * g.reduction() < cpu::kSerialConvFlops;
}

void conv_forward(const py::array& x, const py::array& w, const std::optional<py::array>& bias, py::array& y,
                  const ConvArgs& a) {
  require_ndim(w, "weight", 5);
  const auto g = geometry(a, logical_shape(x, "input", a.channels_last), shape_of(w));
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape_of(x), false);
  require(w, "weight", dt, shape_of(w), false);
  if (bias) require(*bias, "bias", dt, {g.K}, false);
  require(y, "out", dt, physical_shape(out_shape(g), a.channels_last), true);
  py::gil_scoped_release nogil;
  const cpu::CallPlan plan(small_conv(g));
  if (dt == DType::kFloat32)
    cpu::cpu_kernels().f32.conv_forward(g, a.channels_last, cptr<float>(x), cptr<float>(w),
                                        bias ? cptr<float>(*bias) : nullptr, mptr<float>(y));
  else
    cpu::cpu_kernels().f64.conv_forward(g, a.channels_last, cptr<double>(x), cptr<double>(w),
                                        bias ? cptr<double>(*bias) : nullptr, mptr<double>(y));
}

// grad_input of a convolution; the input's shape is read from grad_input itself.
void conv_backward_data(const py::array& dy, const py::array& w, py::array& dx, const ConvArgs& a) {
  require_ndim(w, "weight", 5);
  const auto g = geometry(a, logical_shape(dx, "grad_input", a.channels_last), shape_of(w));
  const DType dt = dtype_of(dy, "grad_output");
  require(w, "weight", dt, shape_of(w), false);
  require(dy, "grad_output", dt, physical_shape(out_shape(g), a.channels_last), false);
  require(dx, "grad_input", dt, shape_of(dx), true);
  py::gil_scoped_release nogil;
  const cpu::CallPlan plan(small_conv(g));
  if (dt == DType::kFloat32)
    cpu::cpu_kernels().f32.conv_backward_data(g, a.channels_last, cptr<float>(dy), cptr<float>(w), mptr<float>(dx));
  else
    cpu::cpu_kernels().f64.conv_backward_data(g, a.channels_last, cptr<double>(dy), cptr<double>(w), mptr<double>(dx));
}

void conv_backward_weight(const py::array& dy, const py::array& x, py::array& dw, const ConvArgs& a) {
  require_ndim(dw, "grad_weight", 5);
  const auto g = geometry(a, logical_shape(x, "input", a.channels_last), shape_of(dw));
  const DType dt = dtype_of(x, "input");
  require(x, "input", dt, shape_of(x), false);
  require(dy, "grad_output", dt, physical_shape(out_shape(g), a.channels_last), false);
  require(dw, "grad_weight", dt, shape_of(dw), true);
  py::gil_scoped_release nogil;
  const cpu::CallPlan plan(small_conv(g));
  if (dt == DType::kFloat32)
    cpu::cpu_kernels().f32.conv_backward_weight(g, a.channels_last, cptr<float>(dy), cptr<float>(x), mptr<float>(dw));
  else
    cpu::cpu_kernels().f64.conv_backward_weight(g, a.channels_last, cptr<double>(dy), cptr<double>(x),
                                                mptr<double>(dw));
}

// grad_bias: the sum of grad_output over batch and positions, per channel.
void channel_sum(const py::array& dy, py::array& db, bool channels_last) {
  const auto s = logical_shape(dy, "grad_output", channels_last);
  const DType dt = dtype_of(dy, "grad_output");
  require(dy, "grad_output", dt, shape_of(dy), false);
  require(db, "grad_bias", dt, {s[1]}, true);
  // A 1x1 convolution geometry over grad_output's shape: only N, K and the output plane matter.
  ConvGeometry g;
  g.N = s[0];
  g.K = s[1];
  for (int i = 0; i < 3; ++i) g.out[i] = s[2 + i];
  py::gil_scoped_release nogil;
  const cpu::CallPlan plan;
  if (dt == DType::kFloat32)
    cpu::cpu_kernels().f32.conv_backward_bias(g, channels_last, cptr<float>(dy), mptr<float>(db));
  else
    cpu::cpu_kernels().f64.conv_backward_bias(g, channels_last, cptr<double>(dy), mptr<double>(db));
}

py::tuple conv_transpose_plan(int rank, const Vec3& in, const Vec3& k, const Vec3& s, const Vec3& p, const Vec3& op,
                              const Vec3& d) {
  const auto plan = make_conv_transpose_plan(rank, in.data(), k.data(), s.data(), p.data(), op.data(), d.data());
  auto v = [](const i64* a) { return Vec3{a[0], a[1], a[2]}; };
  return py::make_tuple(v(plan.out), v(plan.pad_after), v(plan.in_extended));
}

}  // namespace

void bind_conv(py::module_& m) {
  using namespace pybind11::literals;
  py::class_<ConvArgs>(m, "ConvArgs", "Geometry arguments of one convolution (3 spatial axes).")
      .def(py::init([](const Vec3& stride, const Vec3& pb, const Vec3& pa, const Vec3& dil, i64 groups, int rank,
                       bool channels_last) { return ConvArgs{stride, pb, pa, dil, groups, rank, channels_last}; }),
           "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a, "channels_last"_a)
      // Readable so that convkern._cuda can take the same object.
      .def_readonly("stride", &ConvArgs::stride)
      .def_readonly("pad_before", &ConvArgs::pad_before)
      .def_readonly("pad_after", &ConvArgs::pad_after)
      .def_readonly("dilation", &ConvArgs::dilation)
      .def_readonly("groups", &ConvArgs::groups)
      .def_readonly("rank", &ConvArgs::rank)
      .def_readonly("channels_last", &ConvArgs::channels_last);
  m.def(
      "conv_output_shape",
      [](const std::vector<i64>& xs, const std::vector<i64>& ws, const ConvArgs& a) {
        return out_shape(geometry(a, xs, ws));
      },
      "input_shape"_a, "weight_shape"_a, "args"_a, "Logical (N, K, oD, oH, oW) of a convolution; validates it.");
  m.def("conv_forward", &conv_forward, "input"_a, "weight"_a, "bias"_a, "out"_a, "args"_a);
  m.def("conv_backward_data", &conv_backward_data, "grad_output"_a, "weight"_a, "grad_input"_a, "args"_a);
  m.def("conv_backward_weight", &conv_backward_weight, "grad_output"_a, "input"_a, "grad_weight"_a, "args"_a);
  m.def("channel_sum", &channel_sum, "grad_output"_a, "out"_a, "channels_last"_a);
  m.def("conv_transpose_plan", &conv_transpose_plan, "rank"_a, "in_size"_a, "kernel"_a, "stride"_a, "padding"_a,
        "output_padding"_a, "dilation"_a,
        "(out, pad_after, in_extended) of a transposed convolution computed as a convolution's backward.");
}

}  // namespace convkern::bind
