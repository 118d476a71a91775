// AVX-512 pq4 reservoir cut: the same result as pq4_compact (pq4_reservoir.cpp), with
// the selection's partitions and the stable compaction done 16 entries at a time by
// vpcompressd (sums widened to 32-bit lanes; AVX-512F has no 16-bit compress). This file
// alone is compiled with the AVX-512 flags.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <vector>

#include "../common/scratch.hpp"
#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

inline __mmask16 first_lanes(std::size_t count) {
  return count >= 16 ? __mmask16(0xffff) : static_cast<__mmask16>((1u << count) - 1u);
}

inline __m512i load_sums(const uint16_t* p, __mmask16 m) {
  return _mm512_maskz_cvtepu16_epi32(m, _mm256_maskz_loadu_epi16(m, p));
}

inline __m512i load_sums(const uint32_t* p, __mmask16 m) { return _mm512_maskz_loadu_epi32(m, p); }

// Splits a[0 .. n) into values above and below the pivot (32-bit, in `above` and
// `below`, each with 16 slack entries); returns their counts.
template <class T>
inline void partition(const T* a, std::size_t n, uint32_t pivot, uint32_t* above, uint32_t* below, std::size_t& n_above,
                      std::size_t& n_below) {
  const __m512i p = _mm512_set1_epi32(static_cast<int>(pivot));
  n_above = n_below = 0;
  for (std::size_t i = 0; i < n; i += 16) {
    const __mmask16 m = first_lanes(n - i);
    const __m512i v = load_sums(a + i, m);
    const __mmask16 hi = _mm512_mask_cmpgt_epu32_mask(m, v, p), lo = _mm512_mask_cmplt_epu32_mask(m, v, p);
    _mm512_storeu_si512(above + n_above, _mm512_maskz_compress_epi32(hi, v));
    _mm512_storeu_si512(below + n_below, _mm512_maskz_compress_epi32(lo, v));
    n_above += static_cast<std::size_t>(__builtin_popcount(hi));
    n_below += static_cast<std::size_t>(__builtin_popcount(lo));
  }
}

template <class T>
inline uint32_t median_of_three(const T* a, std::size_t n) {
  const uint32_t x = a[0], y = a[n / 2], z = a[n - 1];
  return std::max(std::min(x, y), std::min(std::max(x, y), z));
}

// The k-th largest (1 <= k <= n) of the n sums; scratch holds 4 (n + 16) values.
uint32_t kth_largest(const uint16_t* sums, std::size_t n, std::size_t k, uint32_t* scratch) {
  uint32_t* buffers[2] = {scratch, scratch + 2 * (n + 16)};
  const std::size_t half = n + 16;
  std::size_t n_above, n_below;
  uint32_t pivot = median_of_three(sums, n);
  partition(sums, n, pivot, buffers[0], buffers[0] + half, n_above, n_below);
  const uint32_t* a = nullptr;
  for (int round = 1;; ++round) {
    if (k <= n_above) {
      a = buffers[(round - 1) % 2];
      n = n_above;
    } else if (k <= n - n_below) {
      return pivot;
    } else {
      k -= n - n_below;
      a = buffers[(round - 1) % 2] + half;
      n = n_below;
    }
    if (n <= 16 || round == 64) {  // small, or pathological pivots: finish by sorting
      std::vector<uint32_t> rest(a, a + n);
      std::nth_element(rest.begin(), rest.begin() + (k - 1), rest.end(), std::greater<uint32_t>());
      return rest[k - 1];
    }
    pivot = median_of_three(a, n);
    partition(a, n, pivot, buffers[round % 2], buffers[round % 2] + half, n_above, n_below);
  }
}

}  // namespace

void pq4_compact_avx512(Pq4Reservoirs& r, std::size_t query) {
  const std::size_t size = r.sizes[query], k = r.k;
  uint16_t* sums = r.sums + query * r.capacity;
  uint32_t* slots = r.slots + query * r.capacity;
  if (size <= k) return;
  Scratch<uint32_t, 4 * (2048 + 16)> scratch(4 * (size + 16));
  const Pq4Cut cut = pq4_cut(r, query, kth_largest(sums, size, k, scratch.data()));
  const __m512i above = _mm512_set1_epi32(static_cast<int>(cut.above)), tie = _mm512_set1_epi32(static_cast<int>(cut.tie));
  std::size_t n_above = 0;
  for (std::size_t j = 0; j < size; j += 16) {
    const __mmask16 m = first_lanes(size - j);
    n_above += static_cast<std::size_t>(__builtin_popcount(_mm512_mask_cmpge_epu32_mask(m, load_sums(sums + j, m), above)));
  }
  std::size_t ties = k - n_above, out = 0;  // entries scoring t that still fit
  if (r.slot_ids) {  // ties by id: take every tied entry, unless they must be cut (rare)
    std::size_t n_tied = 0;
    for (std::size_t j = 0; j < size; j += 16) {
      const __mmask16 m = first_lanes(size - j);
      const __m512i s = load_sums(sums + j, m);
      n_tied += static_cast<std::size_t>(__builtin_popcount(_mm512_mask_cmpge_epu32_mask(m, s, tie) &
                                                            _mm512_mask_cmplt_epu32_mask(m, s, above)));
    }
    if (n_tied > ties) {
      pq4_compact_at(r, query, cut);
      return;
    }
  }
  for (std::size_t j = 0; j < size; j += 16) {
    const __mmask16 m = first_lanes(size - j);
    const __m512i s = load_sums(sums + j, m), id = _mm512_maskz_loadu_epi32(m, slots + j);
    const __mmask16 keep_above = _mm512_mask_cmpge_epu32_mask(m, s, above);
    unsigned tied = _mm512_mask_cmpge_epu32_mask(m, s, tie) & ~static_cast<unsigned>(keep_above);
    const std::size_t n_tied = static_cast<std::size_t>(__builtin_popcount(tied));
    if (n_tied <= ties) {
      ties -= n_tied;
    } else {  // the earliest `ties` of them
      unsigned first = 0;
      for (; ties; --ties, tied &= tied - 1) first |= tied & (0u - tied);
      tied = first;
    }
    const __mmask16 keep = static_cast<__mmask16>(keep_above | tied);
    const __mmask16 kept = first_lanes(static_cast<std::size_t>(__builtin_popcount(keep)));
    // Writes stay below j + 16, inside the entries already read.
    _mm512_mask_cvtepi32_storeu_epi16(sums + out, kept, _mm512_maskz_compress_epi32(keep, s));
    _mm512_mask_storeu_epi32(slots + out, kept, _mm512_maskz_compress_epi32(keep, id));
    out += static_cast<std::size_t>(__builtin_popcount(keep));
  }
  r.sizes[query] = static_cast<uint32_t>(out);  // == k
  r.floors[query] = r.slot_ids ? cut.tie : cut.above;
}

}  // namespace llmrec::quant::detail
