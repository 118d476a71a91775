// Float vector traits for AVX2 + FMA, shared by the kernels of every area (top-k scan,
// ALS, the float dot products in simd/dot*). Include only from files compiled with
// -mavx2 -mfma; the kernels are written once against these names in each *_simd.inl.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

namespace llmrec::simd {

struct F32Avx2 {
  using V = __m256;
  static constexpr std::size_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {  // the first n < W lanes, rest 0
    alignas(32) static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                            0,  0,  0,  0,  0,  0,  0,  0};
    const __m256i mask = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(ones_then_zeros + 8 - n));
    return _mm256_maskload_ps(p, mask);
  }
  static V load_i8(const int8_t* p) {  // W int8 codes as floats (exact)
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  static V load_first_i8(const int8_t* p, std::size_t n) {  // the first n < W codes, rest 0
    alignas(16) int8_t first[W] = {};
    for (std::size_t i = 0; i < n; ++i) first[i] = p[i];
    return load_i8(first);
  }
  static V broadcast(const float* p) { return _mm256_broadcast_ss(p); }
  static V set1(float x) { return _mm256_set1_ps(x); }
  static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static V add(V a, V b) { return _mm256_add_ps(a, b); }
  static unsigned greater(V a, V b) {  // one bit per lane where a > b
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_GT_OQ)));
  }
  static __m128 sum4(V a, V b, V c, V d) {  // the four horizontal sums, one per lane
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
  static float hsum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace llmrec::simd
