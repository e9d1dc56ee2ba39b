// shape.h — the single source of truth for argument checks and output sizes.
//
// Every backend (CPU now, CUDA later) and every pass (forward, backward-data, backward-weight)
// builds its geometry here, so a size computed in one place cannot disagree with another.
// All arithmetic is 64-bit and checked: a product or sum that would overflow int64 is an
// error, not a wrap-around that later becomes an out-of-bounds write.
//
// Internally every op is 3-D in space: a 1-D op is (D, H, W) = (1, 1, W), a 2-D op is
// (1, H, W). `rank` (1, 2 or 3) is kept only so that error messages speak of the axes the
// caller actually passed.
#pragma once

#include <algorithm>
#include <cstdint>
#include <climits>
#include <stdexcept>
#include <string>

namespace convkern {

using i64 = std::int64_t;
constexpr int kSpatial = 3;

// std::invalid_argument becomes a Python ValueError through pybind11.
[[noreturn]] inline void fail(const std::string& msg) { throw std::invalid_argument(msg); }

inline i64 checked_mul(i64 a, i64 b, const char* what) {
  i64 r;
  if (__builtin_mul_overflow(a, b, &r)) fail(std::string(what) + ": size computation overflows 64-bit integers");
  return r;
}

inline i64 checked_add(i64 a, i64 b, const char* what) {
  i64 r;
  if (__builtin_add_overflow(a, b, &r)) fail(std::string(what) + ": size computation overflows 64-bit integers");
  return r;
}

// Python floor division for possibly negative numerators (positive divisor).
inline i64 floor_div(i64 a, i64 b) {
  i64 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

inline i64 ceil_div(i64 a, i64 b) { return -floor_div(-a, b); }

// Output sizes are sums and products of values that are each within int64 but whose sum need not
// be (an input plus two paddings of 2**62, a stride of 2**63-1 times a kernel): they are computed
// in 128 bits, where no valid combination of int64 arguments can overflow, and only the final size
// must fit int64.
using i128 = __int128;

inline i128 floor_div128(i128 a, i128 b) {
  i128 q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

inline std::string to_string128(i128 v) {
  if (v >= INT64_MIN && v <= INT64_MAX) return std::to_string(static_cast<i64>(v));
  const bool negative = v < 0;
  unsigned __int128 u = negative ? -static_cast<unsigned __int128>(v) : static_cast<unsigned __int128>(v);
  std::string digits;
  do {
    digits.insert(digits.begin(), static_cast<char>('0' + static_cast<int>(u % 10)));
    u /= 10;
  } while (u != 0);
  return negative ? "-" + digits : digits;
}

// A size computed in 128 bits as an int64, or an error naming it.
inline i64 narrow_size(i128 v, const char* what) {
  if (v > INT64_MAX || v < INT64_MIN)
    throw std::invalid_argument(std::string(what) + " " + to_string128(v) + " does not fit a 64-bit integer");
  return static_cast<i64>(v);
}

// Formats the last `rank` entries of a 3-vector as a Python tuple, e.g. "(3, 3)".
template <class Int>
inline std::string tuple_str(const Int* v, int rank) {
  std::string s = "(";
  for (int i = kSpatial - rank; i < kSpatial; ++i) {
    s += to_string128(v[i]);
    if (i + 1 < kSpatial || rank == 1) s += rank == 1 ? "," : ", ";
  }
  return s + ")";
}

inline void check_rank(int rank) {
  if (rank < 1 || rank > kSpatial) fail("spatial rank must be 1, 2 or 3, got " + std::to_string(rank));
}

inline void check_positive(const i64* v, int rank, const char* name) {
  for (int i = kSpatial - rank; i < kSpatial; ++i)
    if (v[i] < 1) fail(std::string(name) + " must be >= 1 on every spatial axis, got " + tuple_str(v, rank));
}

inline void check_non_negative(const i64* v, int rank, const char* name) {
  for (int i = kSpatial - rank; i < kSpatial; ++i)
    if (v[i] < 0) fail(std::string(name) + " must be >= 0 on every spatial axis, got " + tuple_str(v, rank));
}

// Extent covered by a dilated kernel: dilation*(k-1) + 1.
inline i64 effective_kernel(i64 k, i64 dilation) {
  return checked_add(checked_mul(dilation, k - 1, "dilation*(kernel_size-1)"), 1, "effective kernel size");
}

// The same in 128 bits, exact for any int64 k >= 1 and dilation >= 1.
inline i128 effective_kernel128(i64 k, i64 dilation) { return i128(dilation) * (k - 1) + 1; }

// TensorFlow "same" padding at any stride and dilation: out = ceil(in / stride),
// total = max((out-1)*stride + (k-1)*dilation + 1 - in, 0), before = total // 2.
struct PadPair {
  i64 before, after;
};

inline PadPair same_padding(i64 in, i64 k, i64 stride, i64 dilation) {
  if (in < 0) fail("input size must be >= 0, got " + std::to_string(in));
  if (k < 1) fail("kernel_size must be >= 1, got " + std::to_string(k));
  if (stride < 1) fail("stride must be >= 1, got " + std::to_string(stride));
  if (dilation < 1) fail("dilation must be >= 1, got " + std::to_string(dilation));
  const i64 out = ceil_div(in, stride);
  // (out - 1) * stride < in, but the dilated kernel may leave int64: only the pads must fit.
  const i128 span = i128(out - 1) * stride + effective_kernel128(k, dilation);
  const i128 total = span - in > 0 ? span - in : 0;
  return {narrow_size(total / 2, "'same' padding"), narrow_size(total - total / 2, "'same' padding")};
}

// ---------------------------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------------------------

// Copies the caller's `rank` spatial axes into a geometry's 3-axis arrays; the leading unused
// axes become size 1, kernel 1, stride 1, dilation 1, no padding.
template <class Geometry>
void set_window_axes(Geometry& g, int rank, const i64* in, const i64* kernel, const i64* stride, const i64* dilation,
                     const i64* pad_before, const i64* pad_after) {
  for (int i = 0; i < kSpatial; ++i) {
    const bool used = i >= kSpatial - rank;
    g.in[i] = used ? in[i] : 1;
    g.kernel[i] = used ? kernel[i] : 1;
    g.stride[i] = used ? stride[i] : 1;
    g.dilation[i] = used ? dilation[i] : 1;
    g.pad_before[i] = used ? pad_before[i] : 0;
    g.pad_after[i] = used ? pad_after[i] : 0;
  }
}

// Geometry of a (grouped, strided, dilated, asymmetrically padded) cross-correlation
// y[n, k, o] = b[k] + sum_{c in group(k), r} x[n, c, o*stride - pad_before + r*dilation] * w[k, c, r].
struct ConvGeometry {
  int rank = 2;
  i64 N = 0, C = 0, K = 0, groups = 1;
  i64 in[kSpatial] = {1, 1, 1};
  i64 kernel[kSpatial] = {1, 1, 1};
  i64 out[kSpatial] = {1, 1, 1};
  i64 stride[kSpatial] = {1, 1, 1};
  i64 dilation[kSpatial] = {1, 1, 1};
  i64 pad_before[kSpatial] = {0, 0, 0};
  i64 pad_after[kSpatial] = {0, 0, 0};

  i64 C_per_group() const { return C / groups; }
  i64 K_per_group() const { return K / groups; }
  i64 in_plane() const { return in[0] * in[1] * in[2]; }
  i64 out_plane() const { return out[0] * out[1] * out[2]; }
  i64 kernel_volume() const { return kernel[0] * kernel[1] * kernel[2]; }
  // Length of the reduction behind one output element (the GEMM "K" dimension).
  i64 reduction() const { return C_per_group() * kernel_volume(); }
};

// Validates the arguments of a convolution and computes its output size. Arrays are given as
// 3-D spatial shapes with leading 1s for lower ranks; `w_cin` is weight.shape[1].
inline ConvGeometry make_conv_geometry(int rank, i64 N, i64 C, const i64* in, i64 K, i64 w_cin, const i64* kernel,
                                       const i64* stride, const i64* pad_before, const i64* pad_after,
                                       const i64* dilation, i64 groups) {
  check_rank(rank);
  ConvGeometry g;
  g.rank = rank;
  if (N < 0) fail("input batch size must be >= 0, got " + std::to_string(N));
  if (groups < 1) fail("groups must be >= 1, got " + std::to_string(groups));
  if (C < 1) fail("input must have at least one channel, got " + std::to_string(C));
  if (K < 1 || w_cin < 1)
    fail("weight must not be empty: got out_channels=" + std::to_string(K) +
         ", in_channels/groups=" + std::to_string(w_cin));
  check_positive(kernel, rank, "kernel size (weight spatial shape)");
  check_positive(stride, rank, "stride");
  check_positive(dilation, rank, "dilation");
  check_non_negative(pad_before, rank, "padding");
  check_non_negative(pad_after, rank, "padding");
  if (C % groups != 0)
    fail("groups must divide the input channels: input has " + std::to_string(C) +
         " channels, groups=" + std::to_string(groups));
  if (K % groups != 0)
    fail("groups must divide the output channels: weight has " + std::to_string(K) +
         " output channels, groups=" + std::to_string(groups));
  if (w_cin * groups != C)
    fail("weight expects " + std::to_string(w_cin * groups) +
         " input channels (weight.shape[1]=" + std::to_string(w_cin) + " x groups=" + std::to_string(groups) +
         "), but input has " + std::to_string(C) + " channels");
  g.N = N;
  g.C = C;
  g.K = K;
  g.groups = groups;
  set_window_axes(g, rank, in, kernel, stride, dilation, pad_before, pad_after);
  for (int i = 0; i < kSpatial; ++i) {
    if (g.in[i] < 1) fail("input spatial size must be >= 1 on every axis, got " + tuple_str(in, rank));
    // The padded extent and the dilated kernel may each exceed int64 (paddings or dilations near
    // 2**62); only the output size has to fit.
    const i128 padded = i128(g.in[i]) + g.pad_before[i] + g.pad_after[i];
    const i128 ek = effective_kernel128(g.kernel[i], g.dilation[i]);
    if (ek > padded) {
      i128 eks[kSpatial], padded_all[kSpatial];
      for (int j = 0; j < kSpatial; ++j) {
        eks[j] = effective_kernel128(g.kernel[j], g.dilation[j]);
        padded_all[j] = i128(g.in[j]) + g.pad_before[j] + g.pad_after[j];
      }
      fail("kernel is larger than the padded input: dilated kernel size " + tuple_str(eks, rank) +
           ", padded input size " + tuple_str(padded_all, rank) + " (output size would be < 1)");
    }
    g.out[i] = narrow_size((padded - ek) / g.stride[i] + 1, "convolution output size");
  }
  // Every tensor's element count must fit in int64 (indexing is 64-bit throughout).
  checked_mul(checked_mul(N, C, "input size"),
              checked_mul(checked_mul(g.in[0], g.in[1], "input size"), g.in[2], "input size"), "input size");
  checked_mul(checked_mul(N, K, "output size"),
              checked_mul(checked_mul(g.out[0], g.out[1], "output size"), g.out[2], "output size"), "output size");
  checked_mul(checked_mul(K, w_cin, "weight size"),
              checked_mul(checked_mul(g.kernel[0], g.kernel[1], "weight size"), g.kernel[2], "weight size"),
              "weight size");
  return g;
}

// ---------------------------------------------------------------------------------------------
// Transposed convolution
// ---------------------------------------------------------------------------------------------

// A transposed convolution is the backward-data pass of the convolution that maps its output
// back to its input. This plan gives that convolution: output size per axis
// out = (in-1)*stride - 2*padding + dilation*(k-1) + output_padding + 1, padded by `padding`
// before and `pad_after` after, where pad_after >= 0 makes the convolution's output exactly
// `in` long. When output_padding exceeds padding + stride - 1 (possible only with dilation >
// stride) no such pad exists; the convolution then sees `in_extended` > in positions, the extra
// ones zero (they contribute nothing to the output; their gradients are dropped).
struct ConvTransposePlan {
  i64 out[kSpatial] = {1, 1, 1};
  i64 pad_after[kSpatial] = {0, 0, 0};
  i64 in_extended[kSpatial] = {1, 1, 1};
};

inline ConvTransposePlan make_conv_transpose_plan(int rank, const i64* in, const i64* kernel, const i64* stride,
                                                  const i64* padding, const i64* output_padding, const i64* dilation) {
  check_rank(rank);
  check_positive(kernel, rank, "kernel size (weight spatial shape)");
  check_positive(stride, rank, "stride");
  check_positive(dilation, rank, "dilation");
  check_non_negative(padding, rank, "padding");
  check_non_negative(output_padding, rank, "output_padding");
  ConvTransposePlan plan;
  for (int i = kSpatial - rank; i < kSpatial; ++i) {
    if (in[i] < 1) fail("input spatial size must be >= 1 on every axis, got " + tuple_str(in, rank));
    if (output_padding[i] >= std::max(stride[i], dilation[i]))
      fail("output_padding must be smaller than max(stride, dilation) on every axis, got output_padding=" +
           tuple_str(output_padding, rank) + ", stride=" + tuple_str(stride, rank) +
           ", dilation=" + tuple_str(dilation, rank));
    // In 128 bits: every term fits int64 but the sum need not, and the output may still be valid.
    auto transposed_size = [&](int j) {
      return i128(in[j] - 1) * stride[j] - 2 * i128(padding[j]) + effective_kernel128(kernel[j], dilation[j]) +
             output_padding[j];
    };
    const i128 out = transposed_size(i);
    if (out < 1) {
      i128 outs[kSpatial] = {1, 1, 1};
      for (int j = kSpatial - rank; j < kSpatial; ++j) outs[j] = transposed_size(j);
      fail("output size is too small: input size " + tuple_str(in, rank) + " gives transposed output size " +
           tuple_str(outs, rank) + "; reduce padding");
    }
    plan.out[i] = narrow_size(out, "transposed convolution output size");
    plan.pad_after[i] = std::max<i64>(0, padding[i] - output_padding[i]);
    plan.in_extended[i] = in[i] + std::max<i64>(0, output_padding[i] - padding[i]) / stride[i];
  }
  return plan;
}

// ---------------------------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------------------------

// How padding was given: explicit symmetric ints (PyTorch rules, padded cells count towards
// avg_pool's divisor when count_include_pad) or "same"/"valid" (TensorFlow rules: padded cells
// never count, ceil_mode must be off).
enum class PoolPadding { kExplicit = 0, kSameOrValid = 1 };

struct PoolGeometry {
  int rank = 2;
  i64 planes = 0;  // N * C
  i64 in[kSpatial] = {1, 1, 1};
  i64 kernel[kSpatial] = {1, 1, 1};
  i64 out[kSpatial] = {1, 1, 1};
  i64 stride[kSpatial] = {1, 1, 1};
  i64 dilation[kSpatial] = {1, 1, 1};
  i64 pad_before[kSpatial] = {0, 0, 0};
  i64 pad_after[kSpatial] = {0, 0, 0};
  PoolPadding padding_kind = PoolPadding::kExplicit;
  bool ceil_mode = false;

  i64 in_plane() const { return in[0] * in[1] * in[2]; }
  i64 out_plane() const { return out[0] * out[1] * out[2]; }
};

// PyTorch's pooling_output_shape: floor or ceil division, and with ceil_mode the last window
// must start inside the input or the left padding.
// Computed in 128 bits: with strides near 2**63 the rounding term stride - 1 and (out - 1) * stride
// leave int64 although the result is a small valid size.
inline i128 pool_output_size(i64 in, i64 k, i64 pad_before, i64 pad_after, i64 stride, i64 dilation, bool ceil_mode) {
  const i128 span = i128(in) + pad_before + pad_after - effective_kernel128(k, dilation);
  i128 out = floor_div128(span + (ceil_mode ? i128(stride) - 1 : 0), stride) + 1;
  if (ceil_mode && (out - 1) * stride >= i128(in) + pad_before) --out;
  return out;
}

inline PoolGeometry make_pool_geometry(int rank, i64 planes, const i64* in, const i64* kernel, const i64* stride,
                                       const i64* pad_before, const i64* pad_after, const i64* dilation, bool ceil_mode,
                                       PoolPadding padding_kind) {
  check_rank(rank);
  PoolGeometry g;
  g.rank = rank;
  g.padding_kind = padding_kind;
  g.ceil_mode = ceil_mode;
  if (planes < 0) fail("input batch*channels must be >= 0, got " + std::to_string(planes));
  g.planes = planes;
  check_positive(kernel, rank, "kernel_size");
  check_positive(stride, rank, "stride");
  check_positive(dilation, rank, "dilation");
  check_non_negative(pad_before, rank, "padding");
  check_non_negative(pad_after, rank, "padding");
  if (padding_kind == PoolPadding::kSameOrValid && ceil_mode)
    fail("ceil_mode must be False with padding='same' or 'valid'");
  for (int i = kSpatial - rank; i < kSpatial; ++i) {
    if (in[i] < 1) fail("input spatial size must be >= 1 on every axis, got " + tuple_str(in, rank));
    if (padding_kind == PoolPadding::kExplicit) {
      if (pad_before[i] != pad_after[i]) fail("explicit pooling padding must be symmetric");
      if (pad_before[i] > kernel[i] / 2)
        fail("padding must be at most half of kernel_size on every axis, got padding=" + tuple_str(pad_before, rank) +
             " and kernel_size=" + tuple_str(kernel, rank));
    }
  }
  i128 out[kSpatial] = {1, 1, 1};
  set_window_axes(g, rank, in, kernel, stride, dilation, pad_before, pad_after);
  for (int i = 0; i < kSpatial; ++i) {
    out[i] = pool_output_size(g.in[i], g.kernel[i], g.pad_before[i], g.pad_after[i], g.stride[i], g.dilation[i],
                              ceil_mode);
  }
  for (int i = kSpatial - rank; i < kSpatial; ++i)
    if (out[i] < 1)
      fail("output size is too small: input size " + tuple_str(in, rank) + ", kernel_size " + tuple_str(kernel, rank) +
           ", stride " + tuple_str(stride, rank) + ", dilation " + tuple_str(dilation, rank) + " give output size " +
           tuple_str(out, rank));
  for (int i = 0; i < kSpatial; ++i) g.out[i] = narrow_size(out[i], "pooling output size");
  checked_mul(planes, checked_mul(checked_mul(g.in[0], g.in[1], "input size"), g.in[2], "input size"), "input size");
  checked_mul(planes, checked_mul(checked_mul(g.out[0], g.out[1], "output size"), g.out[2], "output size"),
              "output size");
  return g;
}

// ---------------------------------------------------------------------------------------------
// Adaptive pooling (PyTorch's adaptive_{avg,max}_pool): output cell i of an axis reads input cells
// [floor(i*in/out), ceil((i+1)*in/out)), so windows cover the input, never padding, and may overlap
// by one cell. output_size 0 is allowed and gives an empty result, as in PyTorch.
// ---------------------------------------------------------------------------------------------

struct AdaptivePoolGeometry {
  int rank = 2;
  i64 planes = 0;  // N * C
  i64 in[kSpatial] = {1, 1, 1};
  i64 out[kSpatial] = {1, 1, 1};

  i64 in_plane() const { return in[0] * in[1] * in[2]; }
  i64 out_plane() const { return out[0] * out[1] * out[2]; }
};

// Both are safe from overflow for 0 <= i < out once make_adaptive_pool_geometry has checked
// out*(in+1).
inline i64 adaptive_window_begin(i64 i, i64 in, i64 out) { return i * in / out; }
inline i64 adaptive_window_end(i64 i, i64 in, i64 out) { return ((i + 1) * in + out - 1) / out; }

inline AdaptivePoolGeometry make_adaptive_pool_geometry(int rank, i64 planes, const i64* in, const i64* out) {
  check_rank(rank);
  AdaptivePoolGeometry g;
  g.rank = rank;
  if (planes < 0) fail("input batch*channels must be >= 0, got " + std::to_string(planes));
  g.planes = planes;
  for (int i = kSpatial - rank; i < kSpatial; ++i) {
    if (in[i] < 1) fail("input spatial size must be >= 1 on every axis, got " + tuple_str(in, rank));
    if (out[i] < 0) fail("output_size must be >= 0 on every spatial axis, got " + tuple_str(out, rank));
  }
  for (int i = 0; i < kSpatial; ++i) {
    const bool used = i >= kSpatial - rank;
    g.in[i] = used ? in[i] : 1;
    g.out[i] = used ? out[i] : 1;
    checked_mul(g.out[i], checked_add(g.in[i], 1, "adaptive window bounds"), "adaptive window bounds");
  }
  checked_mul(planes, checked_mul(checked_mul(g.in[0], g.in[1], "input size"), g.in[2], "input size"), "input size");
  checked_mul(planes, checked_mul(checked_mul(g.out[0], g.out[1], "output size"), g.out[2], "output size"),
              "output size");
  return g;
}

}  // namespace convkern
