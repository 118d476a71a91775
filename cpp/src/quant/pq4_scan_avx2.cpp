// AVX2 pq4 fast scan (vpshufb table lookups). Compiled with -mavx2 -mfma.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

// pq4 fast scan over one block of 32 items for MQ queries: two subspaces per 256-bit
// register, each query's uint8 tables read by vpshufb with the code nibbles as indices;
// the nibbles are extracted once and shared by the MQ queries. Sums are kept in uint16
// lanes with the usual de-biasing: the shuffled bytes are added as 16-bit words (the odd
// item's byte lands 256 times too high in its even neighbour's word) and, separately,
// the odd bytes alone (word >> 8); at the end even = words - (odd << 8), exact mod 2^16
// since every true sum is below 2^16. The two 128-bit halves (two subspaces) are added,
// the sums compared with the query's integer floor, and only when one reaches it are
// the parities interleaved back into item order for sums[m] and bits[m].
// Two queries per pass: four would need 16 accumulators, all 16 AVX2 registers.
constexpr std::size_t kQueriesPerPass = 2;

template <std::size_t MQ>
inline void pq4_block(const uint8_t* block, const uint8_t* const* luts, std::size_t padded_m, const uint32_t* floors,
                      uint16_t (*sums)[32], unsigned* bits) {
  const std::size_t pairs = padded_m / 2;
  const __m256i low4 = _mm256_set1_epi8(0x0f);
  __m256i lo_words[MQ], lo_odd[MQ], hi_words[MQ], hi_odd[MQ];
  for (std::size_t m = 0; m < MQ; ++m)
    lo_words[m] = lo_odd[m] = hi_words[m] = hi_odd[m] = _mm256_setzero_si256();
  for (std::size_t p = 0; p < pairs; ++p) {
    // Codes fetched 4 KB ahead, as in the AVX-512 kernel (one query is bound by reading them).
    _mm_prefetch(reinterpret_cast<const char*>(block + p * 32 + 4096), _MM_HINT_T0);
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + p * 32));
    const __m256i lo_index = _mm256_and_si256(codes, low4);
    const __m256i hi_index = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4);
    for (std::size_t m = 0; m < MQ; ++m) {
      const __m256i table = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(luts[m] + p * 32));
      const __m256i lo = _mm256_shuffle_epi8(table, lo_index), hi = _mm256_shuffle_epi8(table, hi_index);
      lo_words[m] = _mm256_add_epi16(lo_words[m], lo);
      lo_odd[m] = _mm256_add_epi16(lo_odd[m], _mm256_srli_epi16(lo, 8));
      hi_words[m] = _mm256_add_epi16(hi_words[m], hi);
      hi_odd[m] = _mm256_add_epi16(hi_odd[m], _mm256_srli_epi16(hi, 8));
    }
  }
  auto fold = [](__m256i v) {
    return _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  };
  for (std::size_t m = 0; m < MQ; ++m) {
    if (floors[m] > 65535) {
      bits[m] = 0;
      continue;
    }
    const __m128i lo_o = fold(lo_odd[m]), hi_o = fold(hi_odd[m]);
    const __m128i lo_e = _mm_sub_epi16(fold(lo_words[m]), _mm_slli_epi16(lo_o, 8));
    const __m128i hi_e = _mm_sub_epi16(fold(hi_words[m]), _mm_slli_epi16(hi_o, 8));
    // Unsigned v >= floor as max(v, floor) == v.
    const __m256i floor = _mm256_set1_epi16(static_cast<short>(floors[m]));
    auto reaches = [&](__m256i v) { return _mm256_cmpeq_epi16(_mm256_max_epu16(v, floor), v); };
    const __m256i lo = _mm256_set_m128i(lo_o, lo_e), hi = _mm256_set_m128i(hi_o, hi_e);
    if (_mm256_testz_si256(_mm256_or_si256(reaches(lo), reaches(hi)), _mm256_set1_epi8(-1))) {
      bits[m] = 0;
      continue;
    }
    // Items 0..15 and 16..31 in order: interleave the even and odd items' sums.
    const __m256i first = _mm256_set_m128i(_mm_unpackhi_epi16(lo_e, lo_o), _mm_unpacklo_epi16(lo_e, lo_o));
    const __m256i second = _mm256_set_m128i(_mm_unpackhi_epi16(hi_e, hi_o), _mm_unpacklo_epi16(hi_e, hi_o));
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums[m]), first);
    _mm256_store_si256(reinterpret_cast<__m256i*>(sums[m] + 16), second);
    // Word masks packed to one byte per item (packs keeps 0 / -1), in item order.
    const __m256i packed = _mm256_permute4x64_epi64(_mm256_packs_epi16(reaches(first), reaches(second)), 0xd8);
    bits[m] = static_cast<unsigned>(_mm256_movemask_epi8(packed));
  }
}

#include "pq4_scan.inl"

}  // namespace

void pq4_scan_avx2(const Pq4Job& job) { pq4_scan_blocks(job); }

}  // namespace llmrec::quant::detail
