// simd_vector.h — one register of the kernel set's widest vectors, as a GCC vector type, for the
// kernels that vectorise by hand without intrinsics (depthwise convolution, pooling).
//
// The width follows the set being compiled: 64 bytes under AVX-512, 32 under AVX2, 16 otherwise.
// A 64-byte type compiled for AVX2 becomes pairs of ymm that GCC keeps on the stack as soon as a
// kernel holds a few of them: the 3x3 depthwise weight gradient (9 accumulators) ran 5x slower
// so, and the channels-last global average pool 2x.
#pragma once

#include <cstdint>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

namespace convkern::cpu {

#if defined(__AVX512F__)
constexpr std::int64_t kVectorBytes = 64;
#elif defined(__AVX2__)
constexpr std::int64_t kVectorBytes = 32;
#else
constexpr std::int64_t kVectorBytes = 16;
#endif

template <class T>
constexpr std::int64_t vector_length() {
  return kVectorBytes / static_cast<std::int64_t>(sizeof(T));
}

// One vector of T, and the same vector at T's alignment for unaligned loads and stores through a
// pointer (std::memcpy into a vector compiled to an 8-byte copy loop through the stack). Spelled
// per type: GCC drops vector attributes on an alias of a dependent type.
template <class T>
struct VectorTypes;
template <>
struct VectorTypes<float> {
  typedef float vec __attribute__((vector_size(kVectorBytes)));
  typedef float unaligned __attribute__((vector_size(kVectorBytes), aligned(4)));
};
template <>
struct VectorTypes<double> {
  typedef double vec __attribute__((vector_size(kVectorBytes)));
  typedef double unaligned __attribute__((vector_size(kVectorBytes), aligned(8)));
};
template <class T>
using Vec = typename VectorTypes<T>::vec;
template <class T>
using UnalignedVec = typename VectorTypes<T>::unaligned;

template <class T>
inline Vec<T> load_vec(const T* p) {
  return *reinterpret_cast<const UnalignedVec<T>*>(p);
}

template <class T>
inline void store_vec(T* p, Vec<T> v) {
  *reinterpret_cast<UnalignedVec<T>*>(p) = v;
}

// A non-temporal store (to memory, past the caches, without reading the line first) to a
// vector-aligned address: for results too large to stay in cache. A thread ends its streamed
// stores with stream_fence() before the parallel region that made them ends.
template <class T>
inline void stream_vec(T* p, Vec<T> v) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4)
    _mm512_stream_ps(p, reinterpret_cast<__m512&>(v));
  else
    _mm512_stream_pd(p, reinterpret_cast<__m512d&>(v));
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4)
    _mm256_stream_ps(p, reinterpret_cast<__m256&>(v));
  else
    _mm256_stream_pd(p, reinterpret_cast<__m256d&>(v));
#elif defined(__SSE2__)
  if constexpr (sizeof(T) == 4)
    _mm_stream_ps(p, reinterpret_cast<__m128&>(v));
  else
    _mm_stream_pd(p, reinterpret_cast<__m128d&>(v));
#else
  store_vec(p, v);
#endif
}

// dst[0, n) = src[0, n), the whole vectors from dst's first vector-aligned element on stored
// non-temporally (a line's vectors one after another, so each line leaves the write-combining
// buffer whole), the elements before and after with plain stores. The caller ends with
// stream_fence().
template <class T>
inline void stream_copy(const T* src, T* dst, std::int64_t n) {
  constexpr std::int64_t VL = vector_length<T>();
  const std::int64_t misaligned = static_cast<std::int64_t>(reinterpret_cast<std::uintptr_t>(dst) % kVectorBytes);
  std::int64_t head = misaligned == 0 ? 0 : (kVectorBytes - misaligned) / static_cast<std::int64_t>(sizeof(T));
  if (misaligned % static_cast<std::int64_t>(sizeof(T)) != 0 || head > n) head = n;
  std::int64_t i = 0;
  for (; i < head; ++i) dst[i] = src[i];
  for (; i + VL <= n; i += VL) stream_vec(dst + i, load_vec(src + i));
  for (; i < n; ++i) dst[i] = src[i];
}

// Orders a thread's non-temporal stores before whatever it does next (stream_vec here, the
// transposing copies' streamed lines in pack.h).
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace convkern::cpu
