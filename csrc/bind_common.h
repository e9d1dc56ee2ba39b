// bind_common.h — array checks shared by the binding files of convkern._C.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "shape.h"

namespace convkern::bind {

namespace py = pybind11;
using Vec3 = std::array<i64, 3>;

enum class DType { kFloat32, kFloat64 };

inline DType dtype_of(const py::array& a, const char* name) {
  if (py::isinstance<py::array_t<float>>(a)) return DType::kFloat32;
  if (py::isinstance<py::array_t<double>>(a)) return DType::kFloat64;
  throw py::type_error(std::string(name) + " must be float32 or float64, got " +
                       py::str(a.dtype()).cast<std::string>());
}

inline std::string shape_str(const std::vector<i64>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i) r += std::to_string(s[i]) + (i + 1 < s.size() || s.size() == 1 ? ", " : "");
  if (s.size() == 1) r.pop_back();
  return r + ")";
}

inline std::vector<i64> shape_of(const py::array& a) { return std::vector<i64>(a.shape(), a.shape() + a.ndim()); }

// Checks that `a` is a C-contiguous array of dtype `dt` and exactly `shape`.
inline void require(const py::array& a, const char* name, DType dt, const std::vector<i64>& shape, bool writeable) {
  if (dtype_of(a, name) != dt) throw py::type_error(std::string(name) + " has a different dtype from the input");
  if (shape_of(a) != shape)
    throw std::invalid_argument(std::string(name) + " must have shape " + shape_str(shape) + ", got " +
                                shape_str(shape_of(a)));
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(name) + " must be C-contiguous");
  if (writeable && !a.writeable()) throw std::invalid_argument(std::string(name) + " must be writeable");
}

inline void require_ndim(const py::array& a, const char* name, py::ssize_t ndim) {
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

void bind_conv(py::module_& m);
void bind_pool(py::module_& m);

}  // namespace convkern::bind
