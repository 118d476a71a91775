// AVX-512 ALS kernels; this file alone is compiled with AVX-512 flags.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "../simd/f32_avx512.hpp"
#include "kernels.hpp"

namespace llmrec::als::detail {
namespace {

using Isa = llmrec::simd::F32Avx512;

// Rows per block of the gathered-row kernels: two accumulators per row stay in registers.
constexpr std::size_t kBlockRows = 8;

// out[r] = Isa::hsum(acc[r]) for the 8 vectors at once, adding the same pairs in the same
// order as hsum (halves, then quarters, then lanes i and i + 2, then lanes 0 and 1), so
// the sums are bit-identical to eight hsum calls at a fraction of the shuffles.
inline void hsum_rows(const __m512* acc, float* out) {
  __m512 half[4];
  for (int p = 0; p < 4; ++p) {
    const __m512 a = acc[2 * p], b = acc[2 * p + 1];
    half[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  }  // half[p] = [row 2p (8 lanes) | row 2p+1 (8 lanes)]
  __m512 quarter[2];
  for (int p = 0; p < 2; ++p) {
    const __m512 a = half[2 * p], b = half[2 * p + 1];
    quarter[p] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  }  // quarter[p]: 128-bit lanes hold rows 4p, 4p+1, 4p+2, 4p+3 (4 floats each)
  const __m512 lo = _mm512_shuffle_ps(quarter[0], quarter[1], 0x44);
  const __m512 hi = _mm512_shuffle_ps(quarter[0], quarter[1], 0xEE);
  const __m512 pairs = _mm512_add_ps(lo, hi);  // lane l: [r(l) x2, r(4+l) x2]
  const __m512 sums = _mm512_add_ps(pairs, _mm512_movehdup_ps(pairs));
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, sums);
  for (int l = 0; l < 4; ++l) {
    out[l] = lanes[4 * l];
    out[4 + l] = lanes[4 * l + 2];
  }
}

// Vectors of each product that symv_rows keeps in registers (4 products at a time).
constexpr std::size_t kSymvVectors = 4;

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

void symv_rows_f32_avx512(const float* G, std::size_t f, const float* const* v, std::size_t m,
                      float* const* out) {
  symv_rows_impl(G, f, v, m, out);
}

void rank_update_f32_avx512(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                            const float* w, float* A) {
  rank_update_impl(Y, f, idx, n, w, A);
}

}  // namespace llmrec::als::detail
