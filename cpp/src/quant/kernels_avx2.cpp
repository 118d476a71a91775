// AVX2 kernels: pq4 fast scan (vpshufb table lookups, below), sq8 by byte multiply-add (vpmaddubsw on |t| and sign-adjusted codes, so
// pairs never saturate: 2 * 127 * 127 < 2^15) and fp16 decoding by F16C. This file alone
// is compiled with -mavx2 -mfma -mf16c.
#include <immintrin.h>

#include <cstdint>

#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

struct Isa {
  static constexpr std::size_t W = 8;
  using V = __m256i;
  using C = __m256i;
  struct Q {
    __m256i t, a;
  };
  static V zero() { return _mm256_setzero_si256(); }
  static V load(const int32_t* p) { return _mm256_load_si256(reinterpret_cast<const __m256i*>(p)); }
  static void store(int32_t* p, V v) { _mm256_store_si256(reinterpret_cast<__m256i*>(p), v); }
  static C prep(const uint8_t* p) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  }
  static Q query(const int8_t* t, const uint8_t* a) {
    int32_t t4, a4;
    __builtin_memcpy(&t4, t, 4);
    __builtin_memcpy(&a4, a, 4);
    return {_mm256_set1_epi32(t4), _mm256_set1_epi32(a4)};
  }
  static V dot(V acc, C c, const Q& q) {
    const __m256i pairs = _mm256_maddubs_epi16(q.a, _mm256_sign_epi8(c, q.t));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
  }
  static V finish(V acc, int32_t) { return acc; }
  static unsigned above(V acc, float scale, float offset, float threshold, float* scores) {
    const __m256 s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), _mm256_set1_ps(scale), _mm256_set1_ps(offset));
    const unsigned bits = static_cast<unsigned>(
        _mm256_movemask_ps(_mm256_cmp_ps(s, _mm256_set1_ps(threshold), _CMP_GT_OQ)));
    if (bits) _mm256_store_ps(scores, s);
    return bits;
  }
};

#include "kernels_simd.inl"

// pq4 fast scan over one block of 32 items for one query: two subspaces per 256-bit
// register, the query's uint8 tables read by vpshufb with the code nibbles as indices.
// Sums are kept in uint16 lanes split by item parity (even items in the low byte of each
// 16-bit lane, odd items in the high byte), so a byte never carries into its neighbour;
// the two 128-bit halves (two subspaces) are added at the end and the parities
// interleaved back into item order. Returns a mask of lanes whose score beats threshold.
inline unsigned pq4_block(const uint8_t* block, const uint8_t* lut, std::size_t pairs, float inverse_scale,
                          float bias, float threshold, float* scores) {
  const __m256i low4 = _mm256_set1_epi8(0x0f), low_byte = _mm256_set1_epi16(0x00ff);
  __m256i lo_even = _mm256_setzero_si256(), lo_odd = lo_even, hi_even = lo_even, hi_odd = lo_even;
  for (std::size_t p = 0; p < pairs; ++p) {
    const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + p * 32));
    const __m256i table = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(lut + p * 32));
    const __m256i lo = _mm256_shuffle_epi8(table, _mm256_and_si256(codes, low4));
    const __m256i hi = _mm256_shuffle_epi8(table, _mm256_and_si256(_mm256_srli_epi16(codes, 4), low4));
    lo_even = _mm256_add_epi16(lo_even, _mm256_and_si256(lo, low_byte));
    lo_odd = _mm256_add_epi16(lo_odd, _mm256_srli_epi16(lo, 8));
    hi_even = _mm256_add_epi16(hi_even, _mm256_and_si256(hi, low_byte));
    hi_odd = _mm256_add_epi16(hi_odd, _mm256_srli_epi16(hi, 8));
  }
  auto fold = [](__m256i v) {
    return _mm_add_epi16(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  };
  const __m128i le = fold(lo_even), lo_ = fold(lo_odd), he = fold(hi_even), ho = fold(hi_odd);
  const __m128i items[4] = {_mm_unpacklo_epi16(le, lo_), _mm_unpackhi_epi16(le, lo_),
                            _mm_unpacklo_epi16(he, ho), _mm_unpackhi_epi16(he, ho)};
  const __m256 scale = _mm256_set1_ps(inverse_scale), offset = _mm256_set1_ps(bias),
               limit = _mm256_set1_ps(threshold);
  unsigned bits = 0;
  for (int v = 0; v < 4; ++v) {
    const __m256 s = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(items[v])), scale, offset);
    const unsigned mask = static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(s, limit, _CMP_GT_OQ)));
    if (mask) _mm256_storeu_ps(scores + 8 * v, s);
    bits |= mask << (8 * v);
  }
  return bits;
}

}  // namespace

void pq4_scan_avx2(const Pq4Job& job) {
  const std::size_t block_bytes = 16 * job.padded_m, pairs = job.padded_m / 2;
  std::size_t chunk = 64 * 1024 / block_bytes;
  if (chunk == 0) chunk = 1;
  alignas(32) float scores[32];
  for (std::size_t c0 = 0; c0 < job.n_blocks; c0 += chunk) {
    const std::size_t c1 = c0 + chunk < job.n_blocks ? c0 + chunk : job.n_blocks;
    for (std::size_t q = 0; q < job.nq; ++q) {
      const uint8_t* lut = job.luts + q * 16 * job.padded_m;
      for (std::size_t b = c0; b < c1; ++b) {
        const std::size_t slot0 = b * 32;
        if (slot0 >= job.n_items) break;
        unsigned bits = pq4_block(job.blocks + b * block_bytes, lut, pairs, job.inverse_scale[q], job.bias[q],
                                  job.thresholds[q], scores);
        if (job.n_items - slot0 < 32) bits &= (1u << (job.n_items - slot0)) - 1u;
        for (; bits; bits &= bits - 1) {
          const std::size_t lane = static_cast<std::size_t>(__builtin_ctz(bits));
          if (!(scores[lane] > job.thresholds[q])) continue;
          const std::size_t slot = slot0 + lane;
          job.on_hit(job.context, q, job.ids ? job.ids[slot] : job.first_id + static_cast<int64_t>(slot),
                     scores[lane]);
        }
      }
    }
  }
}

void sq8_scan_avx2(const Sq8Job& job) { sq8_scan_dispatch<4, 1, 2>(job); }

std::size_t fp16_decode_avx2(const uint16_t* h, std::size_t count, float* out) {
  std::size_t i = 0;
  for (; i + 8 <= count; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  return i;
}

}  // namespace llmrec::quant::detail
