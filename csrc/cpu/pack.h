// pack.h — the copies behind the GEMM drivers' packs: short row copies and transposing copies.
// Shared by the channels-first (conv.cpp) and channels-last (conv_channels_last.cpp) drivers.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "../shape.h"
#include "simd_vector.h"

namespace convkern::cpu {

// A short row copy without a library call (rows of late layers are 7 to 28 elements: memmove
// per row was 8% of resnet50.l4.3x3's backward weight).
template <class T>
inline void copy_row(T* d, const T* s, i64 n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    for (; n >= 16; n -= 16, d += 16, s += 16) _mm512_storeu_ps(d, _mm512_loadu_ps(s));
    if (n > 0) {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      _mm512_mask_storeu_ps(d, m, _mm512_maskz_loadu_ps(m, s));
    }
    return;
  }
#endif
  std::copy(s, s + n, d);
}

// d[0, n) += s[0, n): the col2im scatter's short channel runs, one masked add per 16 floats.
template <class T>
inline void add_row(T* d, const T* s, i64 n) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    for (; n >= 16; n -= 16, d += 16, s += 16)
      _mm512_storeu_ps(d, _mm512_add_ps(_mm512_loadu_ps(d), _mm512_loadu_ps(s)));
    if (n > 0) {
      const __mmask16 m = static_cast<__mmask16>((1u << n) - 1);
      _mm512_mask_storeu_ps(d, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, d), _mm512_maskz_loadu_ps(m, s)));
    }
    return;
  }
#endif
  for (i64 e = 0; e < n; ++e) d[e] += s[e];
}

#if defined(__AVX512F__)
// r[j] (16 rows of 16 floats) becomes its transpose: r[e] holds element e of every row.
inline void transpose_16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k], 128-bit lane L: column 4L + k of rows 4i .. 4i + 3.
  for (int i = 0; i < 4; ++i) {
    const __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
    const __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    const __m512 a = _mm512_shuffle_f32x4(r[k], r[4 + k], 0x88), b = _mm512_shuffle_f32x4(r[k], r[4 + k], 0xdd);
    const __m512 c = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0x88),
                 d = _mm512_shuffle_f32x4(r[8 + k], r[12 + k], 0xdd);
    t[k] = _mm512_shuffle_f32x4(a, c, 0x88);
    t[8 + k] = _mm512_shuffle_f32x4(a, c, 0xdd);
    t[4 + k] = _mm512_shuffle_f32x4(b, d, 0x88);
    t[12 + k] = _mm512_shuffle_f32x4(b, d, 0xdd);
  }
  for (int i = 0; i < 16; ++i) r[i] = t[i];
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
// r[j] (8 rows of 8 floats) becomes its transpose: r[e] holds element e of every row.
inline void transpose_8x8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  // r[4i + k], 128-bit lane L: column 4L + k of rows 4i .. 4i + 3.
  for (int i = 0; i < 2; ++i) {
    const __m256d a = _mm256_castps_pd(t[4 * i]), b = _mm256_castps_pd(t[4 * i + 1]);
    const __m256d c = _mm256_castps_pd(t[4 * i + 2]), d = _mm256_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm256_castpd_ps(_mm256_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm256_castpd_ps(_mm256_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm256_castpd_ps(_mm256_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm256_castpd_ps(_mm256_unpackhi_pd(b, d));
  }
  for (int k = 0; k < 4; ++k) {
    t[k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x20);
    t[4 + k] = _mm256_permute2f128_ps(r[k], r[4 + k], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}
#endif

#if defined(__AVX2__) && !defined(__AVX512F__)
// AVX2's lane mask for the first n lanes (the sign bit of each lane selects it).
template <class T>
inline __m256i first_lanes(i64 n) {
  if constexpr (std::is_same_v<T, float>)
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  else
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}

// The first n (<= 8) lanes of v to p by plain stores of 8, 4, 2 and 1 lanes. AMD's cores (Zen 2
// to 4) run VMASKMOVPS stores as microcode, many times the cost of a plain store: the AVX2
// transposing copies, every one of whose stores had been masked, took a fifth of a strided
// layer's forward on a Zen 4.
inline void store_first_lanes(float* p, __m256 v, i64 n) {
  if (n >= 8) {
    _mm256_storeu_ps(p, v);
    return;
  }
  __m128 h = _mm256_castps256_ps128(v);
  if (n >= 4) {
    _mm_storeu_ps(p, h);
    h = _mm256_extractf128_ps(v, 1);
    p += 4;
    n -= 4;
  }
  if (n >= 2) {
    _mm_storel_pi(reinterpret_cast<__m64*>(p), h);
    h = _mm_movehl_ps(h, h);
    p += 2;
    n -= 2;
  }
  if (n > 0) _mm_store_ss(p, h);
}
#endif

// dst[e * ld + j] = rows[j][e] for e < len and j < width, zero for j >= nrows (nrows <= width
// <= 16): the transposing copy behind the outer-product packs and the layout copies. Float blocks
// are transposed in registers, 16 x 16 under AVX-512 and 8 x 8 under AVX2; element-wise strided
// stores cost ~2 cycles an element, which is what made the outer-product backward weight lose on
// layers with few channels.
// With kStream, whole 64-byte lines that land on a line boundary are stored non-temporally (to
// memory, past the caches, without reading the lines first): for results too large to stay in
// cache; the caller ends its stores with stream_fence().
template <class T, bool kStream = false>
inline void transpose_rows(const T* const* rows, i64 nrows, i64 len, T* dst, i64 ld, i64 width) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    const __mmask16 wmask = static_cast<__mmask16>((1u << width) - 1);
    for (i64 e0 = 0; e0 < len; e0 += 16) {
      const i64 m = std::min<i64>(16, len - e0);
      const __mmask16 emask = static_cast<__mmask16>((1u << m) - 1);
      __m512 r[16];
      for (i64 j = 0; j < 16; ++j) r[j] = j < nrows ? _mm512_maskz_loadu_ps(emask, rows[j] + e0) : _mm512_setzero_ps();
      transpose_16x16(r);
      for (i64 e = 0; e < m; ++e) {
        float* d = dst + (e0 + e) * ld;
        if (kStream && width == 16 && reinterpret_cast<std::uintptr_t>(d) % 64 == 0)
          _mm512_stream_ps(d, r[e]);
        else
          _mm512_mask_storeu_ps(d, wmask, r[e]);
      }
    }
    return;
  }
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    if (kStream && width == 16 && nrows == 16 && reinterpret_cast<std::uintptr_t>(dst) % 64 == 0 && ld % 16 == 0) {
      // Both halves of each 64-byte line stored one after the other: 8 floats at a time, a line's
      // halves a whole 8 x 8 block apart, left partly filled lines in the write-combining buffers
      // (resnet50.conv1 NCHW forward 11.5 -> 13.2 ms on a Zen 4).
      for (i64 e0 = 0; e0 < len; e0 += 8) {
        const i64 m = std::min<i64>(8, len - e0);
        const __m256i emask = first_lanes<float>(m);
        __m256 lo[8], hi[8];
        for (i64 j = 0; j < 8; ++j) {
          lo[j] = m == 8 ? _mm256_loadu_ps(rows[j] + e0) : _mm256_maskload_ps(rows[j] + e0, emask);
          hi[j] = m == 8 ? _mm256_loadu_ps(rows[j + 8] + e0) : _mm256_maskload_ps(rows[j + 8] + e0, emask);
        }
        transpose_8x8(lo);
        transpose_8x8(hi);
        for (i64 e = 0; e < m; ++e) {
          _mm256_stream_ps(dst + (e0 + e) * ld, lo[e]);
          _mm256_stream_ps(dst + (e0 + e) * ld + 8, hi[e]);
        }
      }
      return;
    }
    for (i64 j0 = 0; j0 < width; j0 += 8) {
      const i64 lanes = std::min<i64>(8, width - j0);
      for (i64 e0 = 0; e0 < len; e0 += 8) {
        const i64 m = std::min<i64>(8, len - e0);
        const __m256i emask = first_lanes<float>(m);
        __m256 r[8];
        for (i64 j = 0; j < 8; ++j)
          r[j] = j0 + j >= nrows ? _mm256_setzero_ps()
                 : m == 8        ? _mm256_loadu_ps(rows[j0 + j] + e0)
                                 : _mm256_maskload_ps(rows[j0 + j] + e0, emask);
        transpose_8x8(r);
        for (i64 e = 0; e < m; ++e) store_first_lanes(dst + (e0 + e) * ld + j0, r[e], lanes);
      }
    }
    return;
  }
#endif
  for (i64 e = 0; e < len; ++e) {
    for (i64 j = 0; j < nrows; ++j) dst[e * ld + j] = rows[j][e];
    for (i64 j = nrows; j < width; ++j) dst[e * ld + j] = T(0);
  }
}

}  // namespace convkern::cpu
