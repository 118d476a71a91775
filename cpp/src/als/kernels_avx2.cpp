// AVX2 + FMA ALS kernels; this file alone is compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "../simd/f32_avx2.hpp"
#include "kernels.hpp"

namespace llmrec::als::detail {
namespace {

using Isa = llmrec::simd::F32Avx2;

// Rows per block of the gathered-row kernels: two accumulators per row stay in registers.
constexpr std::size_t kBlockRows = 4;

// out[r] = Isa::hsum(acc[r]) for the 4 vectors at once, adding the same pairs in the same
// order as hsum (halves, then lanes i and i + 2, then lanes 0 and 1), so the sums are
// bit-identical to four hsum calls at a fraction of the shuffles.
inline void hsum_rows(const __m256* acc, float* out) {
  const __m256 ab = _mm256_add_ps(_mm256_permute2f128_ps(acc[0], acc[1], 0x20),
                                  _mm256_permute2f128_ps(acc[0], acc[1], 0x31));
  const __m256 cd = _mm256_add_ps(_mm256_permute2f128_ps(acc[2], acc[3], 0x20),
                                  _mm256_permute2f128_ps(acc[2], acc[3], 0x31));
  // ab = [row 0 (4) | row 1 (4)], cd = [row 2 | row 3]
  const __m256 pairs = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, 0x44), _mm256_shuffle_ps(ab, cd, 0xEE));
  const __m256 sums = _mm256_add_ps(pairs, _mm256_movehdup_ps(pairs));
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, sums);
  out[0] = lanes[0];
  out[1] = lanes[4];
  out[2] = lanes[2];
  out[3] = lanes[6];
}

// Vectors of each product that symv_rows keeps in registers (4 products at a time).
constexpr std::size_t kSymvVectors = 2;

#include "kernels_simd.inl"

}  // namespace

float dot_f32_avx2(const float* a, const float* b, std::size_t n) { return dot_impl(a, b, n); }

void gather_apply_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                           const float* c0, const float* c1, const float* v, float* out) {
  gather_apply_impl(Y, f, idx, n, c0, c1, v, out);
}

void symv_f32_avx2(const float* G, std::size_t f, const float* v, float* out) {
  symv_impl(G, f, v, out);
}

void symv_rows_f32_avx2(const float* G, std::size_t f, const float* const* v, std::size_t m,
                      float* const* out) {
  symv_rows_impl(G, f, v, m, out);
}

void rank_update_f32_avx2(const float* Y, std::size_t f, const int32_t* idx, std::size_t n,
                          const float* w, float* A) {
  rank_update_impl(Y, f, idx, n, w, A);
}

}  // namespace llmrec::als::detail
