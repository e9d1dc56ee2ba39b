// bind_cuda.cpp — the private extension module convkern._cuda.
//
// Arrays arrive as any Python object exposing __cuda_array_interface__ (CuPy arrays, PyTorch CUDA
// tensors, Numba device arrays); this module reads their pointer, shape, dtype, strides and
// read-only flag from it, so it depends on no array library's C API. Streams arrive as integers
// (cupy.cuda.Stream.ptr; 0 is the legacy default stream). Each entry point re-checks every array
// (dtype, rank, shape, C-contiguity, writability, that it is memory of one CUDA device), builds
// the geometry through shape.h exactly as the CPU bindings do, switches to the arrays' device,
// releases the GIL and enqueues the kernels; it does not synchronise (except where indices must
// be validated). CUDA errors become RuntimeError carrying CUDA's message; bad arguments
// ValueError / TypeError.
//
// Layouts are those of convkern._C: convolution activations are 5-D, (N, C, D, H, W) or
// (N, D, H, W, C) when channels_last; weights (K, C/groups, kD, kH, kW). Pooling activations are
// 4-D (planes, D, H, W) channels-first, as _C takes them, or 5-D in either layout.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "cuda/kernels.h"
#include "shape.h"

namespace py = pybind11;
using convkern::i64;
namespace ckc = convkern::cuda;

#ifndef CONVKERN_CUDA_ARCHITECTURES
#define CONVKERN_CUDA_ARCHITECTURES ""
#endif

namespace {

constexpr const char* kInterface = "__cuda_array_interface__";

using Vec3 = std::array<i64, 3>;

enum class DType { kFloat16, kFloat32, kFloat64, kInt64, kUInt8, kOther };

const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat16:
      return "float16";
    case DType::kFloat32:
      return "float32";
    case DType::kFloat64:
      return "float64";
    case DType::kInt64:
      return "int64";
    case DType::kUInt8:
      return "uint8";
    default:
      return "an unsupported dtype";
  }
}

std::string shape_str(const std::vector<i64>& s) {
  std::string r = "(";
  for (size_t i = 0; i < s.size(); ++i)
    r += std::to_string(s[i]) + (i + 1 < s.size() ? ", " : (s.size() == 1 ? "," : ""));
  return r + ")";
}

struct DevArray {
  std::string name;
  std::uintptr_t ptr = 0;
  std::vector<i64> shape;
  DType dtype = DType::kOther;
  std::string typestr;
  bool readonly = false;

  i64 size() const {
    i64 n = 1;
    for (i64 s : shape) n *= s;
    return n;
  }
  template <class T>
  T* data() const {
    return reinterpret_cast<T*>(ptr);
  }
};

DType parse_typestr(const std::string& t) {
  if (t.size() < 3 || t[0] == '>') return DType::kOther;  // big-endian data is never a device array we made
  const std::string kind = t.substr(1);
  if (kind == "f2") return DType::kFloat16;
  if (kind == "f4") return DType::kFloat32;
  if (kind == "f8") return DType::kFloat64;
  if (kind == "i8") return DType::kInt64;
  if (kind == "u1") return DType::kUInt8;
  return DType::kOther;
}

i64 itemsize(DType t) {
  switch (t) {
    case DType::kFloat16:
      return 2;
    case DType::kFloat32:
      return 4;
    case DType::kFloat64:
    case DType::kInt64:
      return 8;
    case DType::kUInt8:
      return 1;
    default:
      return 0;
  }
}

DevArray device_array(py::handle obj, const char* name) {
  if (!py::hasattr(obj, kInterface))
    throw py::type_error(std::string(name) + " must be a CUDA array (an object with " + kInterface + "), got " +
                         py::str(py::type::handle_of(obj).attr("__name__")).cast<std::string>());
  py::object iface = obj.attr(kInterface);
  if (!py::isinstance<py::dict>(iface)) throw py::type_error(std::string(name) + "." + kInterface + " is not a dict");
  py::dict d = iface;
  DevArray a;
  a.name = name;
  for (auto s : d["shape"].cast<py::tuple>()) a.shape.push_back(s.cast<i64>());
  a.typestr = d["typestr"].cast<std::string>();
  a.dtype = parse_typestr(a.typestr);
  py::tuple data = d["data"].cast<py::tuple>();
  a.ptr = data[0].cast<std::uintptr_t>();
  a.readonly = data[1].cast<bool>();
  if (d.contains("mask") && !d["mask"].is_none())
    throw std::invalid_argument(std::string(name) + ": masked arrays are not supported");
  if (d.contains("strides") && !d["strides"].is_none() && a.size() > 0) {
    std::vector<i64> strides;
    for (auto s : d["strides"].cast<py::tuple>()) strides.push_back(s.cast<i64>());
    i64 expected = itemsize(a.dtype);
    for (int i = int(a.shape.size()) - 1; i >= 0; --i) {
      if (a.shape[i] != 1 && strides[i] != expected)
        throw std::invalid_argument(std::string(name) + " must be C-contiguous");
      expected *= a.shape[i];
    }
  }
  return a;
}

std::optional<DevArray> optional_array(py::handle obj, const char* name) {
  if (obj.is_none()) return std::nullopt;
  return device_array(obj, name);
}

void require_ndim(const DevArray& a, size_t ndim) {
  if (a.shape.size() != ndim)
    throw std::invalid_argument(a.name + " must have " + std::to_string(ndim) + " dimensions, got shape " +
                                shape_str(a.shape));
}

// The dtypes of the kernels' floating-point arrays, and their element types: float16 ("<f2",
// CUDA's __half, computed in float32), float32 and float64.
//
// bfloat16 is not among them. The op layers hand the kernels CuPy arrays, and CuPy has no
// bfloat16 dtype: no CuPy array carries one, and a PyTorch bfloat16 CUDA tensor can reach
// convkern only through DLPack, which cupy.from_dlpack refuses for bfloat16. Adding it here
// (typestr "<V2" at best, as __cuda_array_interface__ has no bfloat16 code) would serve no caller.
DType float_dtype(const DevArray& a) {
  if (a.dtype != DType::kFloat16 && a.dtype != DType::kFloat32 && a.dtype != DType::kFloat64)
    throw py::type_error(a.name + " must be float16, float32 or float64, got typestr " + a.typestr);
  return a.dtype;
}

template <class T>
struct ElementType {
  using type = T;
};

// Calls f(ElementType<T>{}) with the element type T of a float_dtype() answer, so that one
// generic lambda per entry point serves every dtype:
//   with_element_type(dt, [&](auto tag) { using T = typename decltype(tag)::type; ... });
template <class F>
void with_element_type(DType dt, F&& f) {
  switch (dt) {
    case DType::kFloat16:
      f(ElementType<__half>{});
      return;
    case DType::kFloat32:
      f(ElementType<float>{});
      return;
    case DType::kFloat64:
      f(ElementType<double>{});
      return;
    default:
      throw std::logic_error(std::string("with_element_type: ") + dtype_name(dt) + " is not a float dtype");
  }
}

void require(const DevArray& a, DType dt, const std::vector<i64>& shape, bool writeable) {
  if (a.dtype != dt) throw py::type_error(a.name + " must have dtype " + dtype_name(dt) + ", got typestr " + a.typestr);
  if (a.shape != shape)
    throw std::invalid_argument(a.name + " must have shape " + shape_str(shape) + ", got " + shape_str(a.shape));
  if (writeable && a.readonly) throw std::invalid_argument(a.name + " must be writeable");
}

// Finds the one CUDA device all the (non-empty) arrays live on and makes it current for the
// lifetime of the scope.
class DeviceScope {
 public:
  explicit DeviceScope(std::initializer_list<const DevArray*> arrays) {
    int device = -1;
    std::string first;
    for (const DevArray* a : arrays) {
      if (a == nullptr || a->ptr == 0 || a->size() == 0) continue;
      cudaPointerAttributes attr{};
      const cudaError_t e = cudaPointerGetAttributes(&attr, reinterpret_cast<const void*>(a->ptr));
      if (e != cudaSuccess) {
        (void)cudaGetLastError();
        throw std::runtime_error("cannot query the memory of " + a->name + ": " + cudaGetErrorString(e));
      }
      if (attr.type != cudaMemoryTypeDevice && attr.type != cudaMemoryTypeManaged)
        throw std::invalid_argument(a->name + " does not point to CUDA device memory");
      if (device < 0) {
        device = attr.device;
        first = a->name;
      } else if (attr.device != device) {
        throw std::invalid_argument(a->name + " is on CUDA device " + std::to_string(attr.device) + " but " + first +
                                    " is on CUDA device " + std::to_string(device));
      }
    }
    if (device >= 0) {
      ckc::check_cuda(cudaGetDevice(&previous_), "cudaGetDevice");
      if (previous_ != device)
        ckc::check_cuda(cudaSetDevice(device), "cudaSetDevice");
      else
        previous_ = -1;
    }
  }
  ~DeviceScope() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// ------------------------------------------------------------------------------ convolution

struct ConvArgs {
  Vec3 stride, pad_before, pad_after, dilation;
  i64 groups;
  int rank;
  bool channels_last;
};

// Reads the attributes of a convkern._C.ConvArgs (or of this module's ConvArgs, or of any object
// with the same attributes).
ConvArgs conv_args(py::handle obj) {
  if (py::isinstance<ConvArgs>(obj)) return obj.cast<ConvArgs>();
  try {
    return ConvArgs{obj.attr("stride").cast<Vec3>(),       obj.attr("pad_before").cast<Vec3>(),
                    obj.attr("pad_after").cast<Vec3>(),    obj.attr("dilation").cast<Vec3>(),
                    obj.attr("groups").cast<i64>(),        obj.attr("rank").cast<int>(),
                    obj.attr("channels_last").cast<bool>()};
  } catch (py::error_already_set& e) {
    throw py::type_error(std::string("args must be a ConvArgs (stride, pad_before, pad_after, dilation, groups, "
                                     "rank, channels_last): ") +
                         e.what());
  } catch (py::cast_error& e) { throw py::type_error(std::string("args must be a ConvArgs: ") + e.what()); }
}

std::vector<i64> logical_shape(const DevArray& a, bool last) {
  require_ndim(a, 5);
  const auto& s = a.shape;
  if (last) return {s[0], s[4], s[1], s[2], s[3]};
  return s;
}

std::vector<i64> physical_shape(const std::vector<i64>& s, bool last) {
  if (last) return {s[0], s[2], s[3], s[4], s[1]};
  return s;
}

convkern::ConvGeometry geometry(const ConvArgs& a, const std::vector<i64>& xs, const std::vector<i64>& ws) {
  return convkern::make_conv_geometry(a.rank, xs[0], xs[1], xs.data() + 2, ws[0], ws[1], ws.data() + 2, a.stride.data(),
                                      a.pad_before.data(), a.pad_after.data(), a.dilation.data(), a.groups);
}

std::vector<i64> out_shape(const convkern::ConvGeometry& g) { return {g.N, g.K, g.out[0], g.out[1], g.out[2]}; }

void conv_forward(py::handle x, py::handle w, py::handle bias, py::handle y, py::handle args, std::uintptr_t stream) {
  const ConvArgs a = conv_args(args);
  const DevArray X = device_array(x, "input"), W = device_array(w, "weight"), Y = device_array(y, "out");
  const std::optional<DevArray> B = optional_array(bias, "bias");
  require_ndim(W, 5);
  const auto g = geometry(a, logical_shape(X, a.channels_last), W.shape);
  const DType dt = float_dtype(X);
  require(W, dt, W.shape, false);
  if (B) require(*B, dt, {g.K}, false);
  require(Y, dt, physical_shape(out_shape(g), a.channels_last), true);
  DeviceScope scope({&X, &W, B ? &*B : nullptr, &Y});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::conv_forward<T>(g, a.channels_last, X.data<T>(), W.data<T>(), B ? B->data<T>() : nullptr, Y.data<T>(),
                         as_stream(stream));
  });
}

// grad_input of a convolution; the input's shape is read from grad_input itself. bias (one per
// input channel, or None) is added to it: the forward of a transposed convolution.
void conv_backward_data(py::handle dy, py::handle w, py::handle dx, py::handle args, std::uintptr_t stream,
                        py::handle bias) {
  const ConvArgs a = conv_args(args);
  const DevArray DY = device_array(dy, "grad_output"), W = device_array(w, "weight"),
                 DX = device_array(dx, "grad_input");
  const std::optional<DevArray> B = optional_array(bias, "bias");
  require_ndim(W, 5);
  const auto g = geometry(a, logical_shape(DX, a.channels_last), W.shape);
  const DType dt = float_dtype(DY);
  require(W, dt, W.shape, false);
  require(DY, dt, physical_shape(out_shape(g), a.channels_last), false);
  require(DX, dt, DX.shape, true);
  if (B) require(*B, dt, {g.C}, false);
  DeviceScope scope({&DY, &W, B ? &*B : nullptr, &DX});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::conv_backward_data<T>(g, a.channels_last, DY.data<T>(), W.data<T>(), B ? B->data<T>() : nullptr, DX.data<T>(),
                               as_stream(stream));
  });
}

std::size_t conv_backward_weight_workspace(py::handle x, py::handle dw, py::handle args) {
  const ConvArgs a = conv_args(args);
  const DevArray X = device_array(x, "input"), DW = device_array(dw, "grad_weight");
  require_ndim(DW, 5);
  const auto g = geometry(a, logical_shape(X, a.channels_last), DW.shape);
  std::size_t bytes = 0;
  with_element_type(float_dtype(X),
                    [&](auto tag) { bytes = ckc::conv_backward_weight_workspace<typename decltype(tag)::type>(g); });
  return bytes;
}

void conv_backward_weight(py::handle dy, py::handle x, py::handle dw, py::handle workspace, py::handle args,
                          std::uintptr_t stream) {
  const ConvArgs a = conv_args(args);
  const DevArray DY = device_array(dy, "grad_output"), X = device_array(x, "input"),
                 DW = device_array(dw, "grad_weight");
  const std::optional<DevArray> WS = optional_array(workspace, "workspace");
  require_ndim(DW, 5);
  const auto g = geometry(a, logical_shape(X, a.channels_last), DW.shape);
  const DType dt = float_dtype(X);
  require(DY, dt, physical_shape(out_shape(g), a.channels_last), false);
  require(DW, dt, DW.shape, true);
  std::size_t ws_bytes = 0;
  void* ws_ptr = nullptr;
  if (WS) {
    if (WS->readonly) throw std::invalid_argument("workspace must be writeable");
    ws_bytes = std::size_t(WS->size() * itemsize(WS->dtype));
    ws_ptr = WS->data<void>();
  }
  DeviceScope scope({&DY, &X, &DW, WS ? &*WS : nullptr});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::conv_backward_weight<T>(g, a.channels_last, DY.data<T>(), X.data<T>(), DW.data<T>(), ws_ptr, ws_bytes,
                                 as_stream(stream));
  });
}

// grad_bias: the sum of grad_output over batch and positions, per channel.
void channel_sum(py::handle dy, py::handle db, bool channels_last, std::uintptr_t stream) {
  const DevArray DY = device_array(dy, "grad_output"), DB = device_array(db, "grad_bias");
  const auto s = logical_shape(DY, channels_last);
  const DType dt = float_dtype(DY);
  require(DB, dt, {s[1]}, true);
  DeviceScope scope({&DY, &DB});
  py::gil_scoped_release nogil;
  const i64 positions = s[2] * s[3] * s[4];
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::channel_sum<T>(s[0], s[1], positions, channels_last, DY.data<T>(), DB.data<T>(), as_stream(stream));
  });
}

// ---------------------------------------------------------------------------------- pooling

// The (N, C, spatial) view of a pooling activation: 4-D (planes, D, H, W), or 5-D in the layout
// channels_last names.
struct PoolView {
  ckc::PoolLayout layout;
  Vec3 spatial;
  size_t ndim;
};

PoolView pool_view(const DevArray& a, bool channels_last) {
  PoolView v;
  v.ndim = a.shape.size();
  v.layout.channels_last = channels_last;
  const auto& s = a.shape;
  if (v.ndim == 4 && !channels_last) {
    v.layout.N = s[0], v.layout.C = 1;
    v.spatial = {s[1], s[2], s[3]};
  } else if (v.ndim == 5) {
    if (channels_last) {
      v.layout.N = s[0], v.layout.C = s[4];
      v.spatial = {s[1], s[2], s[3]};
    } else {
      v.layout.N = s[0], v.layout.C = s[1];
      v.spatial = {s[2], s[3], s[4]};
    }
  } else {
    throw std::invalid_argument(a.name + " must be 4-D (planes, D, H, W) or 5-D (" +
                                (channels_last ? "N, D, H, W, C" : "N, C, D, H, W") + "), got shape " +
                                shape_str(a.shape));
  }
  return v;
}

// The shape of an array of the same view with other spatial extents.
std::vector<i64> pool_shape(const PoolView& v, const i64* spatial) {
  if (v.ndim == 4) return {v.layout.N, spatial[0], spatial[1], spatial[2]};
  if (v.layout.channels_last) return {v.layout.N, spatial[0], spatial[1], spatial[2], v.layout.C};
  return {v.layout.N, v.layout.C, spatial[0], spatial[1], spatial[2]};
}

convkern::PoolGeometry pool_geometry(const PoolView& v, int rank, const Vec3& k, const Vec3& s, const Vec3& pb,
                                     const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid) {
  return convkern::make_pool_geometry(
      rank, v.layout.N * v.layout.C, v.spatial.data(), k.data(), s.data(), pb.data(), pa.data(), d.data(), ceil_mode,
      same_or_valid ? convkern::PoolPadding::kSameOrValid : convkern::PoolPadding::kExplicit);
}

void require_indices(const DevArray& idx, const std::vector<i64>& shape, bool writeable) {
  if (idx.dtype != DType::kInt64) throw py::type_error("indices must be int64, got typestr " + idx.typestr);
  require(idx, DType::kInt64, shape, writeable);
}

void extremum_pool_forward(py::handle x, py::handle y, py::handle idx, const Vec3& k, const Vec3& s, const Vec3& pb,
                           const Vec3& pa, const Vec3& d, bool ceil_mode, bool same_or_valid, bool is_min, int rank,
                           bool channels_last, std::uintptr_t stream) {
  const DevArray X = device_array(x, "input"), Y = device_array(y, "out");
  const std::optional<DevArray> I = optional_array(idx, "indices");
  const PoolView v = pool_view(X, channels_last);
  const auto g = pool_geometry(v, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  const DType dt = float_dtype(X);
  const auto yshape = pool_shape(v, g.out);
  require(Y, dt, yshape, true);
  if (I) require_indices(*I, yshape, true);
  DeviceScope scope({&X, &Y, I ? &*I : nullptr});
  py::gil_scoped_release nogil;
  i64* ip = I ? I->data<i64>() : nullptr;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::extremum_pool_forward<T>(g, v.layout, is_min, X.data<T>(), Y.data<T>(), ip, as_stream(stream));
  });
}

void raise_bad_index(const ckc::PoolIndexCheck& verdict, i64 in_plane) {
  if (verdict.first_bad >= 0)
    throw std::invalid_argument("indices holds " + std::to_string(verdict.bad_value) + " at flat position " +
                                std::to_string(verdict.first_bad) + ", outside the input plane of " +
                                std::to_string(in_plane) + " elements");
}

// Shared by the plain and adaptive max/min backward: exactly one of g / ag is given.
void extremum_backward_common(const DevArray& DY, const DevArray& I, const DevArray& DX,
                              const std::optional<DevArray>& WS, const PoolView& v, const convkern::PoolGeometry* g,
                              const convkern::AdaptivePoolGeometry* ag, std::uintptr_t stream) {
  const DType dt = float_dtype(DY);
  const i64* out_sp = g ? g->out : ag->out;
  const auto yshape = pool_shape(v, out_sp);
  require(DY, dt, yshape, false);
  require_indices(I, yshape, false);
  require(DX, dt, DX.shape, true);
  void* scratch = nullptr;
  if (WS) {
    if (WS->size() * itemsize(WS->dtype) < i64(ckc::kPoolIndexCheckBytes) || WS->readonly)
      throw std::invalid_argument("workspace must be a writeable device buffer of at least " +
                                  std::to_string(ckc::kPoolIndexCheckBytes) + " bytes");
    scratch = WS->data<void>();
  }
  const i64 in_plane = g ? g->in_plane() : ag->in_plane();
  DeviceScope scope({&DY, &I, &DX, WS ? &*WS : nullptr});
  ckc::PoolIndexCheck verdict;
  {
    py::gil_scoped_release nogil;
    with_element_type(dt, [&](auto tag) {
      using T = typename decltype(tag)::type;
      verdict = ckc::extremum_pool_backward<T>(g, ag, v.layout, DY.data<T>(), I.data<i64>(), DX.data<T>(), scratch,
                                               as_stream(stream));
    });
  }
  raise_bad_index(verdict, in_plane);
}

void extremum_pool_backward(py::handle dy, py::handle idx, py::handle dx, py::handle workspace, const Vec3& k,
                            const Vec3& s, const Vec3& pb, const Vec3& pa, const Vec3& d, bool ceil_mode,
                            bool same_or_valid, int rank, bool channels_last, std::uintptr_t stream) {
  const DevArray DY = device_array(dy, "grad_output"), I = device_array(idx, "indices"),
                 DX = device_array(dx, "grad_input");
  const std::optional<DevArray> WS = optional_array(workspace, "workspace");
  const PoolView v = pool_view(DX, channels_last);
  const auto g = pool_geometry(v, rank, k, s, pb, pa, d, ceil_mode, same_or_valid);
  extremum_backward_common(DY, I, DX, WS, v, &g, nullptr, stream);
}

ckc::AvgOptions avg_options(bool count_include_pad, i64 divisor_override) {
  ckc::AvgOptions o;
  o.count_include_pad = count_include_pad;
  o.divisor_override = divisor_override;
  return o;
}

void avg_pool_forward(py::handle x, py::handle y, const Vec3& k, const Vec3& s, const Vec3& pb, const Vec3& pa,
                      bool ceil_mode, bool same_or_valid, bool count_include_pad, i64 divisor_override, int rank,
                      bool channels_last, std::uintptr_t stream) {
  const DevArray X = device_array(x, "input"), Y = device_array(y, "out");
  const PoolView v = pool_view(X, channels_last);
  const Vec3 one{1, 1, 1};
  const auto g = pool_geometry(v, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = float_dtype(X);
  require(Y, dt, pool_shape(v, g.out), true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  DeviceScope scope({&X, &Y});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::avg_pool_forward<T>(g, v.layout, opt, X.data<T>(), Y.data<T>(), as_stream(stream));
  });
}

void avg_pool_backward(py::handle dy, py::handle dx, const Vec3& k, const Vec3& s, const Vec3& pb, const Vec3& pa,
                       bool ceil_mode, bool same_or_valid, bool count_include_pad, i64 divisor_override, int rank,
                       bool channels_last, std::uintptr_t stream) {
  const DevArray DY = device_array(dy, "grad_output"), DX = device_array(dx, "grad_input");
  const PoolView v = pool_view(DX, channels_last);
  const Vec3 one{1, 1, 1};
  const auto g = pool_geometry(v, rank, k, s, pb, pa, one, ceil_mode, same_or_valid);
  const DType dt = float_dtype(DY);
  require(DY, dt, pool_shape(v, g.out), false);
  require(DX, dt, DX.shape, true);
  const auto opt = avg_options(count_include_pad, divisor_override);
  DeviceScope scope({&DY, &DX});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::avg_pool_backward<T>(g, v.layout, opt, DY.data<T>(), DX.data<T>(), as_stream(stream));
  });
}

convkern::AdaptivePoolGeometry adaptive_geometry(const PoolView& v, int rank, const Vec3& output_size) {
  return convkern::make_adaptive_pool_geometry(rank, v.layout.N * v.layout.C, v.spatial.data(), output_size.data());
}

void adaptive_avg_pool_forward(py::handle x, py::handle y, const Vec3& output_size, int rank, bool channels_last,
                               std::uintptr_t stream) {
  const DevArray X = device_array(x, "input"), Y = device_array(y, "out");
  const PoolView v = pool_view(X, channels_last);
  const auto g = adaptive_geometry(v, rank, output_size);
  const DType dt = float_dtype(X);
  require(Y, dt, pool_shape(v, g.out), true);
  DeviceScope scope({&X, &Y});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::adaptive_avg_pool_forward<T>(g, v.layout, X.data<T>(), Y.data<T>(), as_stream(stream));
  });
}

void adaptive_avg_pool_backward(py::handle dy, py::handle dx, const Vec3& output_size, int rank, bool channels_last,
                                std::uintptr_t stream) {
  const DevArray DY = device_array(dy, "grad_output"), DX = device_array(dx, "grad_input");
  const PoolView v = pool_view(DX, channels_last);
  const auto g = adaptive_geometry(v, rank, output_size);
  const DType dt = float_dtype(DY);
  require(DY, dt, pool_shape(v, g.out), false);
  require(DX, dt, DX.shape, true);
  DeviceScope scope({&DY, &DX});
  py::gil_scoped_release nogil;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::adaptive_avg_pool_backward<T>(g, v.layout, DY.data<T>(), DX.data<T>(), as_stream(stream));
  });
}

void adaptive_max_pool_forward(py::handle x, py::handle y, py::handle idx, const Vec3& output_size, int rank,
                               bool channels_last, std::uintptr_t stream) {
  const DevArray X = device_array(x, "input"), Y = device_array(y, "out");
  const std::optional<DevArray> I = optional_array(idx, "indices");
  const PoolView v = pool_view(X, channels_last);
  const auto g = adaptive_geometry(v, rank, output_size);
  const DType dt = float_dtype(X);
  const auto yshape = pool_shape(v, g.out);
  require(Y, dt, yshape, true);
  if (I) require_indices(*I, yshape, true);
  DeviceScope scope({&X, &Y, I ? &*I : nullptr});
  py::gil_scoped_release nogil;
  i64* ip = I ? I->data<i64>() : nullptr;
  with_element_type(dt, [&](auto tag) {
    using T = typename decltype(tag)::type;
    ckc::adaptive_max_pool_forward<T>(g, v.layout, X.data<T>(), Y.data<T>(), ip, as_stream(stream));
  });
}

void adaptive_max_pool_backward(py::handle dy, py::handle idx, py::handle dx, py::handle workspace,
                                const Vec3& output_size, int rank, bool channels_last, std::uintptr_t stream) {
  const DevArray DY = device_array(dy, "grad_output"), I = device_array(idx, "indices"),
                 DX = device_array(dx, "grad_input");
  const std::optional<DevArray> WS = optional_array(workspace, "workspace");
  const PoolView v = pool_view(DX, channels_last);
  const auto ag = adaptive_geometry(v, rank, output_size);
  extremum_backward_common(DY, I, DX, WS, v, nullptr, &ag, stream);
}

// ------------------------------------------------------------------------------ the device

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // no driver or no device: not an error here, just none
    return 0;
  }
  return n;
}

std::vector<std::string> architectures() {
  std::vector<std::string> out;
  std::string s = CONVKERN_CUDA_ARCHITECTURES;
  size_t start = 0;
  while (start <= s.size()) {
    const size_t end = s.find(',', start);
    const std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + 1;
  }
  return out;
}

int runtime_version() {
  int v = 0;
  if (cudaRuntimeGetVersion(&v) != cudaSuccess) (void)cudaGetLastError();
  return v;
}

int driver_version() {
  int v = 0;
  if (cudaDriverGetVersion(&v) != cudaSuccess) (void)cudaGetLastError();
  return v;
}

py::dict device_properties(int device) {
  cudaDeviceProp p{};
  ckc::check_cuda(cudaGetDeviceProperties(&p, device), "cudaGetDeviceProperties");
  py::dict d;
  d["name"] = std::string(p.name);
  d["compute_capability"] = py::make_tuple(p.major, p.minor);
  d["multiprocessors"] = p.multiProcessorCount;
  d["total_memory"] = static_cast<unsigned long long>(p.totalGlobalMem);
  d["l2_cache_bytes"] = p.l2CacheSize;
  return d;
}

}  // namespace

PYBIND11_MODULE(_cuda, m) {
  using namespace pybind11::literals;
  m.doc() = "convkern's CUDA kernels (private: use the convkern package)";

  py::class_<ConvArgs>(m, "ConvArgs", "Geometry arguments of one convolution (3 spatial axes).")
      .def(py::init([](const Vec3& stride, const Vec3& pb, const Vec3& pa, const Vec3& dil, i64 groups, int rank,
                       bool channels_last) { return ConvArgs{stride, pb, pa, dil, groups, rank, channels_last}; }),
           "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "groups"_a, "rank"_a, "channels_last"_a)
      .def_readonly("stride", &ConvArgs::stride)
      .def_readonly("pad_before", &ConvArgs::pad_before)
      .def_readonly("pad_after", &ConvArgs::pad_after)
      .def_readonly("dilation", &ConvArgs::dilation)
      .def_readonly("groups", &ConvArgs::groups)
      .def_readonly("rank", &ConvArgs::rank)
      .def_readonly("channels_last", &ConvArgs::channels_last);

  m.def("conv_forward", &conv_forward, "input"_a, "weight"_a, "bias"_a, "out"_a, "args"_a, "stream"_a = 0);
  m.def("conv_backward_data", &conv_backward_data, "grad_output"_a, "weight"_a, "grad_input"_a, "args"_a,
        "stream"_a = 0, "bias"_a = py::none());
  m.def("conv_backward_weight_workspace", &conv_backward_weight_workspace, "input"_a, "grad_weight"_a, "args"_a,
        "Bytes of device scratch conv_backward_weight needs (0: pass None).");
  m.def("conv_backward_weight", &conv_backward_weight, "grad_output"_a, "input"_a, "grad_weight"_a, "workspace"_a,
        "args"_a, "stream"_a = 0);
  m.def("channel_sum", &channel_sum, "grad_output"_a, "out"_a, "channels_last"_a, "stream"_a = 0);

  m.attr("pool_index_check_bytes") = ckc::kPoolIndexCheckBytes;
  m.def("extremum_pool_forward", &extremum_pool_forward, "input"_a, "out"_a, "indices"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "is_min"_a, "rank"_a,
        "channels_last"_a = false, "stream"_a = 0);
  m.def("extremum_pool_backward", &extremum_pool_backward, "grad_output"_a, "indices"_a, "grad_input"_a, "workspace"_a,
        "kernel"_a, "stride"_a, "pad_before"_a, "pad_after"_a, "dilation"_a, "ceil_mode"_a, "same_or_valid"_a, "rank"_a,
        "channels_last"_a = false, "stream"_a = 0,
        "workspace: None trusts the indices (they came from the forward); a device buffer of "
        "pool_index_check_bytes validates them first (synchronises the stream).");
  m.def("avg_pool_forward", &avg_pool_forward, "input"_a, "out"_a, "kernel"_a, "stride"_a, "pad_before"_a,
        "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a, "divisor_override"_a, "rank"_a,
        "channels_last"_a = false, "stream"_a = 0);
  m.def("avg_pool_backward", &avg_pool_backward, "grad_output"_a, "grad_input"_a, "kernel"_a, "stride"_a,
        "pad_before"_a, "pad_after"_a, "ceil_mode"_a, "same_or_valid"_a, "count_include_pad"_a, "divisor_override"_a,
        "rank"_a, "channels_last"_a = false, "stream"_a = 0);
  m.def("adaptive_avg_pool_forward", &adaptive_avg_pool_forward, "input"_a, "out"_a, "output_size"_a, "rank"_a,
        "channels_last"_a = false, "stream"_a = 0);
  m.def("adaptive_avg_pool_backward", &adaptive_avg_pool_backward, "grad_output"_a, "grad_input"_a, "output_size"_a,
        "rank"_a, "channels_last"_a = false, "stream"_a = 0);
  m.def("adaptive_max_pool_forward", &adaptive_max_pool_forward, "input"_a, "out"_a, "indices"_a, "output_size"_a,
        "rank"_a, "channels_last"_a = false, "stream"_a = 0);
  m.def("adaptive_max_pool_backward", &adaptive_max_pool_backward, "grad_output"_a, "indices"_a, "grad_input"_a,
        "workspace"_a, "output_size"_a, "rank"_a, "channels_last"_a = false, "stream"_a = 0);

  m.def("device_count", &device_count, "Visible CUDA devices (0 without a driver or a device).");
  m.def("architectures", &architectures, "The CUDA architectures this module was compiled for.");
  m.def("runtime_version", &runtime_version, "CUDA runtime version, e.g. 13000 for 13.0.");
  m.def("driver_version", &driver_version, "Highest CUDA version the driver supports (0: no driver).");
  m.def("device_properties", &device_properties, "device"_a);
  m.def("set_conv_kernel_version", &ckc::set_conv_kernel_version, "version"_a,
        "Selects the generation of the convolution GEMM kernels for the whole process: 1, 2 (the "
        "default; float and float16, float64 stays on 1) or 3 (2 with the forward on tensor cores). For "
        "tests and benchmarks that compare them.");
  m.def("conv_kernel_version", &ckc::conv_kernel_version, "The convolution GEMM kernel generation in use.");
  m.attr("conv_kernel_version_latest") = ckc::kConvKernelVersionLatest;
  m.attr("conv_kernel_version_default") = ckc::kConvKernelVersionDefault;
  m.def("set_conv_allow_tf32", &ckc::set_conv_allow_tf32, "allow"_a,
        "Whether kernel version 3 may compute float32 convolutions as TF32 on tensor cores (default False).");
  m.def("conv_allow_tf32", &ckc::conv_allow_tf32, "Whether TF32 is allowed for float32 convolutions.");
  m.def(
      "synchronize",
      [] {
        py::gil_scoped_release nogil;
        ckc::check_cuda(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
      },
      "Waits for all work on the current device (tests and benchmarks).");
}
