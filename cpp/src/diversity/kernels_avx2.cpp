// AVX2 + FMA similarity kernels; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::diversity::detail {
namespace {

struct Isa {
  using V = __m256;
  static constexpr std::size_t W = 8;
  static V zero() { return _mm256_setzero_ps(); }
  static V load(const float* p) { return _mm256_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {
    alignas(32) static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                                            0,  0,  0,  0,  0,  0,  0,  0};
    const __m256i mask = _mm256_loadu_si256(
        reinterpret_cast<const __m256i*>(ones_then_zeros + 8 - n));
    return _mm256_maskload_ps(p, mask);
  }
  static V fma(V a, V b, V acc) { return _mm256_fmadd_ps(a, b, acc); }
  static __m128 sum4(V a, V b, V c, V d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
};

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void max_dot_f32_avx2(const float* rows, std::size_t m, std::size_t d, const float* v,
                      float* best) {
  max_dot_impl(rows, m, d, v, best);
}

}  // namespace llmrec::diversity::detail
