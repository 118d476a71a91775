// AVX-512 ALS kernels; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::als::detail {
namespace {

struct Isa {
  using V = __m512;
  static constexpr std::size_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V set1(float x) { return _mm512_set1_ps(x); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static V add(V a, V b) { return _mm512_add_ps(a, b); }
  static float hsum(V a) {
    const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(a, 0), _mm512_extractf32x8_ps(a, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx512(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void gather_apply_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                             const float* c0, const float* c1, const float* v, float* out) {
  gather_apply_impl(Y, f, idx, n, c0, c1, v, out);
}

void symv_f32_avx512(const float* G, std::size_t f, const float* v, float* out) {
  symv_impl(G, f, v, out);
}

void rank_update_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A) {
  rank_update_impl(Y, f, idx, n, w, A);
}

}  // namespace llmrec::als::detail
