// bind_conv.cpp — convolution entry points of convkern._C.
#include "bind_common.h"
#include "cpu/conv.h"

namespace convkern::bind {
namespace {

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

}  // namespace

void bind_conv(py::module_& m) {
  using namespace pybind11::literals;
  m.def("conv_output_shape", &conv_output_shape, "rank"_a, "input_shape"_a, "weight_shape"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a);
  m.def("conv_forward", &conv_forward, "input"_a, "weight"_a, "bias"_a, "out"_a, "stride"_a, "pad_before"_a,
        "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a);
  m.def("conv_backward", &conv_backward, "grad_output"_a, "input"_a, "weight"_a, "grad_input"_a, "grad_weight"_a,
        "grad_bias"_a, "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a);
}

}  // namespace convkern::bind
