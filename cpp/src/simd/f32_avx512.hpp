// Float vector traits for AVX-512 (F, DQ), shared by the kernels of every area (top-k
// scan, ALS, the float dot products in simd/dot*). Include only from files compiled with
// the AVX-512 flags; the kernels are written once against these names in each *_simd.inl.
#pragma once

#include <immintrin.h>

#include <cstddef>

namespace llmrec::simd {

struct F32Avx512 {
  using V = __m512;
  static constexpr std::size_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {  // the first n < W lanes, rest 0
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static V load_i8(const int8_t* p) {  // W int8 codes as floats (exact)
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  static V load_first_i8(const int8_t* p, std::size_t n) {  // the first n < W codes, rest 0
    return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << n) - 1), p)));
  }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static unsigned greater(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static __m256 fold(V a) {
    return _mm256_add_ps(_mm512_extractf32x8_ps(a, 0), _mm512_extractf32x8_ps(a, 1));
  }
  static __m128 sum4(V a, V b, V c, V d) {  // the four horizontal sums, one per lane
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)),
                                    _mm256_hadd_ps(fold(c), fold(d)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
  static float hsum(V a) {
    const __m256 h = fold(a);
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

}  // namespace llmrec::simd
