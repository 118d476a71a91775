// AVX-512 pq4 lookup tables: the same bytes, bias and scale as pq4_tables (pq4.cpp), the
// 16 centroids of a subspace in one register. Every product and sum is rounded once,
// in the scalar code's order: explicitly rounded intrinsics, which the compiler may not
// fuse into FMAs. A single query's tables were a quarter of a one-probe IVF search at
// the scalar speed. This file alone is compiled with the AVX-512 flags.
#include <immintrin.h>

// GCC 12's own intrinsic wrappers start from _mm512_undefined_*() and then warn that
// the value "may be used uninitialized" (a false positive in the compiler's headers).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>
#include <vector>

#include "kernels.hpp"
#include "llmrec/quant.hpp"

namespace llmrec::quant::detail {
namespace {

constexpr int kNearest = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

inline __m512 add(__m512 a, __m512 b) { return _mm512_add_round_ps(a, b, kNearest); }
inline __m512 sub(__m512 a, __m512 b) { return _mm512_sub_round_ps(a, b, kNearest); }
inline __m512 mul(__m512 a, __m512 b) { return _mm512_mul_round_ps(a, b, kNearest); }

}  // namespace

void pq4_tables_avx512(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                       uint8_t* luts, float* bias, float* inverse_scale) {
  const std::size_t dsub = d / m, padded = pq4_padded(m);
  std::vector<float> table(m * 16);
  // Centroid c's coordinate i of a subspace sits at c * dsub + i.
  const __m512i stride = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(static_cast<int>(dsub)));
  for (std::size_t q = 0; q < nq; ++q) {
    const float* v = queries + q * d;
    float widest = 0.f;
    double base = 0.0;
    for (std::size_t s = 0; s < m; ++s) {
      const float* cb = codebooks + s * 16 * dsub;
      __m512 dots = _mm512_setzero_ps();
      for (std::size_t i = 0; i < dsub; ++i)
        dots = add(dots, mul(_mm512_set1_ps(v[s * dsub + i]), _mm512_i32gather_ps(stride, cb + i, 4)));
      // Min and max are exact in any order (a zero's sign cannot change a table byte).
      const float lo = _mm512_reduce_min_ps(dots), hi = _mm512_reduce_max_ps(dots);
      _mm512_storeu_ps(table.data() + s * 16, sub(dots, _mm512_set1_ps(lo)));
      base += lo;
      const float range = hi - lo;
      widest = range > widest ? range : widest;
    }
    const float scale = widest > 0.f ? 255.f / widest : 1.f;
    uint8_t* lut = luts + q * padded * 16;
    const __m512 factor = _mm512_set1_ps(scale), top = _mm512_set1_ps(255.f), round = _mm512_set1_ps(12582912.f);
    for (std::size_t s = 0; s < m; ++s) {
      // Into [0, 255] before the conversion: min gives its second operand (255) for NaN,
      // which the conversion would turn into INT_MIN; as the scalar code.
      const __m512 x = _mm512_max_ps(_mm512_min_ps(mul(_mm512_loadu_ps(table.data() + s * 16), factor), top),
                                     _mm512_setzero_ps());
      const __m512i bytes = _mm512_cvttps_epi32(sub(add(x, round), round));  // nearest, ties to even
      _mm_storeu_si128(reinterpret_cast<__m128i*>(lut + s * 16), _mm512_cvtepi32_epi8(bytes));
    }
    for (std::size_t e = m * 16; e < padded * 16; ++e) lut[e] = 0;
    bias[q] = static_cast<float>(base);
    inverse_scale[q] = 1.f / scale;
  }
}

}  // namespace llmrec::quant::detail
