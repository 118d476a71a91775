// Internal: the per-ISA kernels behind quantized search and the contract they share.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "../topk/hit.hpp"

namespace llmrec::quant::detail {

using topk::detail::HitFn;

// Scores blocks of sq8 codes against quantized queries. For query q and item x the
// kernel computes dot = sum_i s_i(x) * t_i(q) exactly in int32 (s = code byte ^ 0x80 as
// signed, t = qcodes as signed) and
//   score = fma(dot, qscale[q] * item_scale[slot], qoffset[q] + base_scores[q][item_base[slot]])
// (the per-item factors only where their arrays are given; residual codes); it reports
// (q, item, score) through on_hit only when score > thresholds[q], visiting each
// query's items in ascending slot order. Per-slot arrays cover whole blocks.
struct Sq8Job {
  const uint8_t* blocks;  // n_blocks blocks of 64 * groups bytes
  std::size_t n_blocks;
  std::size_t groups;     // four-dimension groups per item
  std::size_t n_items;    // valid slots from the first block on; later lanes are skipped
  int64_t first_id;       // id of slot 0 when ids is null (slot j has id first_id + j)
  const int64_t* ids;     // else the id of each slot
  const int8_t* qcodes;   // nq x (4 * groups), padded with zeros
  const uint8_t* qabs;    // |qcodes| (kernels that multiply unsigned |t| by signed codes)
  const int32_t* qsums;   // nq: sum of each query's qcodes (kernels that use s + 128)
  const float* qscale;
  const float* qoffset;
  std::size_t nq;
  float* thresholds;
  HitFn on_hit;
  void* context;
  const float* item_scale = nullptr;    // per slot, or null (1)
  const uint16_t* item_base = nullptr;  // per slot, or null (no base term)
  const float* base_scores = nullptr;   // nq rows of base_stride floats: q . base
  std::size_t base_stride = 0;
};

using Sq8Fn = void (*)(const Sq8Job&);
void sq8_scan_scalar(const Sq8Job& job);
void sq8_scan_avx2(const Sq8Job& job);
void sq8_scan_avx512vnni(const Sq8Job& job);

// The codec score of a pq4 table sum, as every kernel and the reservoir compute it.
inline float pq4_score(uint32_t acc, float inverse_scale, float bias) {
  return std::fma(static_cast<float>(acc), inverse_scale, bias);
}

// The smallest table sum whose score is above `threshold` (65536 when none is): since the
// score is non-decreasing in the sum, "sum >= floor" is exactly "score > threshold", so
// kernels compare their uint16 sums and compute a float only for the sums that pass.
inline uint32_t pq4_floor(float threshold, float bias, float inverse_scale) {
  auto passes = [&](uint32_t a) { return pq4_score(a, inverse_scale, bias) > threshold; };
  if (passes(0)) return 0;
  if (!passes(65535)) return 65536;
  uint32_t lo = 0, hi = 65535;  // !passes(lo), passes(hi)
  const double guess = std::ceil((static_cast<double>(threshold) - bias) / inverse_scale);
  if (guess > 0.0 && guess < 65535.0) {  // usually exact: two evaluations
    const uint32_t g = static_cast<uint32_t>(guess);
    if (passes(g)) {
      if (!passes(g - 1)) return g;
      hi = g;
    } else {
      lo = g;
    }
  }
  while (hi - lo > 1) {
    const uint32_t mid = lo + (hi - lo) / 2;
    (passes(mid) ? hi : lo) = mid;
  }
  return hi;
}

// Per-query reservoirs of (table sum, slot) for long shortlists: hits are appended, and
// when one is full (capacity = 2k) it is cut to the best k in arrival order (`compact`)
// and its floor rises, all on integers; floats are computed for the survivors only.
struct Pq4Reservoirs;
using Pq4CompactFn = void (*)(Pq4Reservoirs& r, std::size_t query);

struct Pq4Reservoirs {
  std::size_t k, capacity;
  uint16_t* sums;        // nq x capacity
  uint32_t* slots;       // nq x capacity: slot_base + the job's slot numbers
  uint32_t* sizes;       // nq
  uint32_t* floors;      // nq: the smallest sum that may still enter (pq4_floor)
  const float* bias;     // nq, for the score ties at the cut
  const float* inverse_scale;
  Pq4CompactFn compact;  // pq4_compact or a SIMD version with the same result
  uint32_t slot_base = 0;            // added to every pushed slot (a list's first slot)
  const int64_t* slot_ids = nullptr; // set when slots do not arrive in id order (lists)
};

// Keeps the k best of a reservoir holding more: sums whose score is above the k-th best
// score t, then those scoring exactly t in arrival order, or, with slot_ids, those with
// the smallest ids. The floor becomes pq4_floor(t), or with slot_ids the smallest sum
// scoring t (a later item scoring t may still beat a kept one on its id).
void pq4_compact(Pq4Reservoirs& r, std::size_t query);
void pq4_compact_avx512(Pq4Reservoirs& r, std::size_t query);

// The cut for a k-th best sum `kth`: sums >= above score more than pq4_score(kth), sums
// in [tie, above) score exactly as much (different sums can round to one float).
struct Pq4Cut {
  uint32_t above, tie;
};
inline Pq4Cut pq4_cut(const Pq4Reservoirs& r, std::size_t query, uint32_t kth) {
  const float scale = r.inverse_scale[query], bias = r.bias[query];
  const float t = pq4_score(kth, scale, bias);
  return {pq4_floor(t, bias, scale), pq4_floor(std::nextafter(t, -INFINITY), bias, scale)};
}

// pq4_compact's second half, for a cut already chosen (pq4_compact_avx512 hands its rare
// id-ordered tie cuts to it).
void pq4_compact_at(Pq4Reservoirs& r, std::size_t query, Pq4Cut cut);

inline void pq4_push(Pq4Reservoirs& r, std::size_t query, uint16_t sum, uint32_t slot) {
  const std::size_t at = query * r.capacity + r.sizes[query];
  r.sums[at] = sum;
  r.slots[at] = slot;
  if (++r.sizes[query] == r.capacity) r.compact(r, query);
}

// Scores blocks of pq4 codes: for query q and item x, acc = sum over padded subspaces of
// luts[q][s][code_s(x)] in uint16 (exact: at most 256 * 255), score = pq4_score(acc).
// Without reservoirs, (q, item, score) is reported through on_hit when score >
// thresholds[q]; with them, (acc, slot) is pushed into query q's reservoir when acc >=
// its floor. Each query's items are visited in ascending slot order.
struct Pq4Job {
  const uint8_t* blocks;  // n_blocks blocks of 16 * padded_m bytes
  std::size_t n_blocks;
  std::size_t padded_m;   // even
  std::size_t n_items;
  int64_t first_id;
  const int64_t* ids;
  const uint8_t* luts;    // nq x padded_m x 16
  const float* bias;
  const float* inverse_scale;
  std::size_t nq;
  float* thresholds;
  HitFn on_hit;
  void* context;
  Pq4Reservoirs* reservoirs = nullptr;  // queries 0 .. nq of the job; flat scans (ids null) only
};

using Pq4Fn = void (*)(const Pq4Job&);
void pq4_scan_scalar(const Pq4Job& job);
void pq4_scan_avx2(const Pq4Job& job);
void pq4_scan_avx512(const Pq4Job& job);

// pq4_tables' baseline and AVX-512 versions (the same bytes, bias and scale); pq4_tables
// calls the active one.
void pq4_tables_scalar(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                       uint8_t* luts, float* bias, float* inverse_scale);
void pq4_tables_avx512(const float* queries, std::size_t nq, std::size_t d, std::size_t m, const float* codebooks,
                       uint8_t* luts, float* bias, float* inverse_scale);

// Converts the first count / W * W halves to floats (W = 8 or 16); returns how many it
// converted, leaving the tail to the caller.
std::size_t fp16_decode_avx2(const uint16_t* h, std::size_t count, float* out);
std::size_t fp16_decode_avx512(const uint16_t* h, std::size_t count, float* out);

}  // namespace llmrec::quant::detail
