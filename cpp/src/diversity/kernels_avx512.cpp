// AVX-512 (F, DQ, BW, VL) similarity kernels; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::diversity::detail {
namespace {

struct Isa {
  using V = __m512;
  static constexpr std::size_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static __m256 fold(V a) {
    return _mm256_add_ps(_mm512_extractf32x8_ps(a, 0), _mm512_extractf32x8_ps(a, 1));
  }
  static __m128 sum4(V a, V b, V c, V d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)),
                                    _mm256_hadd_ps(fold(c), fold(d)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
};

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void max_dot_f32_avx512(const float* rows, std::size_t m, std::size_t d, const float* v,
                        float* best) {
  max_dot_impl(rows, m, d, v, best);
}

}  // namespace llmrec::diversity::detail
