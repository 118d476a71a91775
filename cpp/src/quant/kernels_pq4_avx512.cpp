// AVX-512 pq4 fast scan: four subspaces per 512-bit register (vpshufb works within each
// 128-bit lane, so each lane reads its own subspace's table); a trailing pair of
// subspaces uses the 256-bit form. Same sums, de-biasing and threshold test as the AVX2
// kernel. This file alone is compiled with the AVX-512 flags.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

// Four queries per pass: their 16 accumulators fit in the 32 registers next to the codes,
// and at 256 queries, 1 thread, this was 5 - 10 % faster than two.
constexpr std::size_t kQueriesPerPass = 4;

template <std::size_t MQ>
inline void pq4_block(const uint8_t* block, const uint8_t* const* luts, std::size_t padded_m,
                      const float* inverse_scale, const float* bias, const float* thresholds, const uint16_t* floors,
                      float (*scores)[32], unsigned* bits) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512i lo_words[MQ], lo_odd[MQ], hi_words[MQ], hi_odd[MQ];
  for (std::size_t m = 0; m < MQ; ++m)
    lo_words[m] = lo_odd[m] = hi_words[m] = hi_odd[m] = _mm512_setzero_si512();
  const std::size_t quads = padded_m / 4;
  for (std::size_t p = 0; p < quads; ++p) {
    const __m512i codes = _mm512_loadu_si512(block + p * 64);
    const __m512i lo_index = _mm512_and_si512(codes, low4);
    const __m512i hi_index = _mm512_and_si512(_mm512_srli_epi16(codes, 4), low4);
    for (std::size_t m = 0; m < MQ; ++m) {
      const __m512i table = _mm512_loadu_si512(luts[m] + p * 64);
      const __m512i lo = _mm512_shuffle_epi8(table, lo_index), hi = _mm512_shuffle_epi8(table, hi_index);
      lo_words[m] = _mm512_add_epi16(lo_words[m], lo);
      lo_odd[m] = _mm512_add_epi16(lo_odd[m], _mm512_srli_epi16(lo, 8));
      hi_words[m] = _mm512_add_epi16(hi_words[m], hi);
      hi_odd[m] = _mm512_add_epi16(hi_odd[m], _mm512_srli_epi16(hi, 8));
    }
  }
  // Folds four 128-bit lanes (plus a trailing 256-bit pair) into one.
  auto fold512 = [](__m512i v) {
    const __m256i half = _mm256_add_epi16(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
    return half;
  };
  __m256i lw[MQ], lo_[MQ], hw[MQ], ho[MQ];
  for (std::size_t m = 0; m < MQ; ++m) {
    lw[m] = fold512(lo_words[m]);
    lo_[m] = fold512(lo_odd[m]);
    hw[m] = fold512(hi_words[m]);
    ho[m] = fold512(hi_odd[m]);
  }
  if (padded_m % 4) {  // the last pair of subspaces
    const std::size_t off = quads * 64;
    const __m256i low4_256 = _mm256_set1_epi8(0x0f);
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + off));
    const __m256i lo_index = _mm256_and_si256(codes, low4_256);
    const __m256i hi_index = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4_256);
    for (std::size_t m = 0; m < MQ; ++m) {
      const __m256i table = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(luts[m] + off));
      const __m256i lo = _mm256_shuffle_epi8(table, lo_index), hi = _mm256_shuffle_epi8(table, hi_index);
      lw[m] = _mm256_add_epi16(lw[m], lo);
      lo_[m] = _mm256_add_epi16(lo_[m], _mm256_srli_epi16(lo, 8));
      hw[m] = _mm256_add_epi16(hw[m], hi);
      ho[m] = _mm256_add_epi16(ho[m], _mm256_srli_epi16(hi, 8));
    }
  }
  auto fold = [](__m256i v) {
    return _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  };
  for (std::size_t m = 0; m < MQ; ++m) {
    const __m128i lo_o = fold(lo_[m]), hi_o = fold(ho[m]);
    const __m128i lo_e = _mm_sub_epi16(fold(lw[m]), _mm_slli_epi16(lo_o, 8));
    const __m128i hi_e = _mm_sub_epi16(fold(hw[m]), _mm_slli_epi16(hi_o, 8));
    const __m128i floor = _mm_set1_epi16(static_cast<short>(floors[m]));
    const __mmask8 reach = _mm_cmpge_epu16_mask(lo_e, floor) | _mm_cmpge_epu16_mask(lo_o, floor) |
                           _mm_cmpge_epu16_mask(hi_e, floor) | _mm_cmpge_epu16_mask(hi_o, floor);
    if (!reach) {
      bits[m] = 0;
      continue;
    }
    // Items 0..15 and 16..31 as two vectors of 16 uint16 -> 16 floats each.
    const __m256i first = _mm256_set_m128i(_mm_unpackhi_epi16(lo_e, lo_o), _mm_unpacklo_epi16(lo_e, lo_o));
    const __m256i second = _mm256_set_m128i(_mm_unpackhi_epi16(hi_e, hi_o), _mm_unpacklo_epi16(hi_e, hi_o));
    const __m512 scale = _mm512_set1_ps(inverse_scale[m]), offset = _mm512_set1_ps(bias[m]),
                 limit = _mm512_set1_ps(thresholds[m]);
    const __m512 s0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(first)), scale, offset);
    const __m512 s1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(second)), scale, offset);
    const unsigned m0 = _mm512_cmp_ps_mask(s0, limit, _CMP_GT_OQ), m1 = _mm512_cmp_ps_mask(s1, limit, _CMP_GT_OQ);
    if (m0) _mm512_storeu_ps(scores[m], s0);
    if (m1) _mm512_storeu_ps(scores[m] + 16, s1);
    bits[m] = m0 | (m1 << 16);
  }
}

#include "pq4_scan.inl"

}  // namespace

void pq4_scan_avx512(const Pq4Job& job) { pq4_scan_blocks(job); }

}  // namespace llmrec::quant::detail
