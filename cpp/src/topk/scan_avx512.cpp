// AVX-512 (F, DQ, BW, VL) kernel; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "scan.hpp"

namespace llmrec::topk::detail {
namespace {

struct Isa {
  using V = __m512;
  static constexpr std::size_t W = 16;
  static V zero() { return _mm512_setzero_ps(); }
  static V load(const float* p) { return _mm512_loadu_ps(p); }
  static V load_first(const float* p, std::size_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static V broadcast(const float* p) { return _mm512_set1_ps(*p); }
  static void store(float* p, V v) { _mm512_storeu_ps(p, v); }
  static V fma(V a, V b, V acc) { return _mm512_fmadd_ps(a, b, acc); }
  static unsigned greater(V a, V b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
  static __m256 fold(V a) {
    return _mm256_add_ps(_mm512_extractf32x8_ps(a, 0), _mm512_extractf32x8_ps(a, 1));
  }
  static __m128 sum4(V a, V b, V c, V d) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(fold(a), fold(b)),
                                    _mm256_hadd_ps(fold(c), fold(d)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  }
};

#include "scan_simd.inl"

}  // namespace

void scan_avx512(const ScanJob& job) { scan_dispatch<4, 12, 24>(job); }

}  // namespace llmrec::topk::detail
