// AVX-512 pq4 fast scan: four subspaces per 512-bit register (vpshufb works within each
// 128-bit lane, so each lane reads its own subspace's table); a trailing pair of
// subspaces is zero-extended. Same sums and de-biasing as the AVX2 kernel; the four
// accumulators of a query fold into one register of 32 sums, compared with the query's
// integer floor in one instruction. This file alone is compiled with the AVX-512 flags.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

// Four queries per pass: their 16 accumulators fit in the 32 registers next to the codes,
// and at 256 queries, 1 thread, this was 5 - 10 % faster than two.
constexpr std::size_t kQueriesPerPass = 4;

// Codes are fetched this many bytes ahead (4 blocks at M = 64): one query per call is
// bound by reading the codes, and this prefetch took it from x0.82 - 0.88 of faiss to
// x1.05 - 1.18 (1 thread, set A); with many queries the chunk is in L2 already.
constexpr std::size_t kPrefetchBytes = 4096;

// Item i's sum sits in word kPositionOf[i] of the folded register (below); vpermw with
// this table puts the 32 sums in item order.
alignas(64) constexpr uint16_t kPositionOf[32] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23,
                                                  8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

template <std::size_t MQ>
inline void pq4_block(const uint8_t* block, const uint8_t* const* luts, std::size_t padded_m, const uint32_t* floors,
                      uint16_t (*sums)[32], unsigned* bits) {
  const __m512i low4 = _mm512_set1_epi8(0x0f);
  __m512i lo_words[MQ], lo_odd[MQ], hi_words[MQ], hi_odd[MQ];
  for (std::size_t m = 0; m < MQ; ++m)
    lo_words[m] = lo_odd[m] = hi_words[m] = hi_odd[m] = _mm512_setzero_si512();
  auto add = [&](__m512i codes, const std::size_t offset, auto load_table) {
    const __m512i lo_index = _mm512_and_si512(codes, low4);
    const __m512i hi_index = _mm512_and_si512(_mm512_srli_epi16(codes, 4), low4);
    for (std::size_t m = 0; m < MQ; ++m) {
      const __m512i table = load_table(luts[m] + offset);
      const __m512i lo = _mm512_shuffle_epi8(table, lo_index), hi = _mm512_shuffle_epi8(table, hi_index);
      lo_words[m] = _mm512_add_epi16(lo_words[m], lo);
      lo_odd[m] = _mm512_add_epi16(lo_odd[m], _mm512_srli_epi16(lo, 8));
      hi_words[m] = _mm512_add_epi16(hi_words[m], hi);
      hi_odd[m] = _mm512_add_epi16(hi_odd[m], _mm512_srli_epi16(hi, 8));
    }
  };
  const std::size_t quads = padded_m / 4;
  for (std::size_t p = 0; p < quads; ++p) {
    _mm_prefetch(reinterpret_cast<const char*>(block + p * 64 + kPrefetchBytes), _MM_HINT_T0);
    add(_mm512_loadu_si512(block + p * 64), p * 64, [](const uint8_t* t) { return _mm512_loadu_si512(t); });
  }
  if (padded_m % 4) {  // the last pair of subspaces, upper half zero (table 0 adds nothing)
    auto half = [](const uint8_t* p) { return _mm512_maskz_loadu_epi64(0x0f, p); };
    add(half(block + quads * 64), quads * 64, half);
  }
  const __m512i to_items = _mm512_load_si512(kPositionOf);
  for (std::size_t m = 0; m < MQ; ++m) {
    if (floors[m] > 65535) {
      bits[m] = 0;
      continue;
    }
    // Sum the four 128-bit lanes (subspaces) of the four accumulators into one register
    // [even 0..14, even 16..30, odd 1..15, odd 17..31]; then even = words - (odd << 8).
    const __m512i a = _mm512_add_epi16(_mm512_maskz_shuffle_i64x2(0xff, lo_words[m], hi_words[m], 0x44),
                                       _mm512_maskz_shuffle_i64x2(0xff, lo_words[m], hi_words[m], 0xee));
    const __m512i b = _mm512_add_epi16(_mm512_maskz_shuffle_i64x2(0xff, lo_odd[m], hi_odd[m], 0x44),
                                       _mm512_maskz_shuffle_i64x2(0xff, lo_odd[m], hi_odd[m], 0xee));
    const __m512i u = _mm512_add_epi16(_mm512_maskz_shuffle_i64x2(0xff, a, b, 0x88), _mm512_maskz_shuffle_i64x2(0xff, a, b, 0xdd));
    const __m512i odd = _mm512_maskz_shuffle_i64x2(0xff, u, u, 0xee);
    const __m512i folded = _mm512_mask_sub_epi16(u, 0xffff, u, _mm512_slli_epi16(odd, 8));
    const __m512i floor = _mm512_set1_epi16(static_cast<short>(floors[m]));
    if (!_mm512_cmpge_epu16_mask(folded, floor)) {
      bits[m] = 0;
      continue;
    }
    const __m512i items = _mm512_permutexvar_epi16(to_items, folded);
    _mm512_store_si512(sums[m], items);
    bits[m] = static_cast<unsigned>(_mm512_cmpge_epu16_mask(items, floor));
  }
}

#include "pq4_scan.inl"

}  // namespace

void pq4_scan_avx512(const Pq4Job& job) { pq4_scan_blocks(job); }

}  // namespace llmrec::quant::detail
