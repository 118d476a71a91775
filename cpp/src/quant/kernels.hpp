// Internal: the per-ISA kernels behind quantized search and the contract they share.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::quant::detail {

using HitFn = void (*)(void* context, std::size_t query, int64_t item, float score);

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

// Scores blocks of pq4 codes: for query q and item x, acc = sum over padded subspaces of
// luts[q][s][code_s(x)] in uint16 (exact: at most 256 * 255), score =
// std::fma(acc, inverse_scale[q], bias[q]); reported through on_hit only when score >
// thresholds[q], each query's items in ascending slot order.
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
};

using Pq4Fn = void (*)(const Pq4Job&);
void pq4_scan_scalar(const Pq4Job& job);
void pq4_scan_avx2(const Pq4Job& job);
void pq4_scan_avx512(const Pq4Job& job);

}  // namespace llmrec::quant::detail

#include <functional>

#include "../topk/driver.hpp"
#include "llmrec/quant.hpp"

namespace llmrec::quant::detail {

// One probed inverted list: its number, first slot, item count and q . centroid.
struct ProbedList {
  std::size_t list, start, size;
  float score;
};

// The partitioned search loop shared by the codecs (in codecs.cpp): ranks the centroids
// for all queries at once (exact top-probes), then for each query calls
// scan_list(query, list, sink) on its probed non-empty lists, best first, all feeding
// that query's heap (filters applied by the sink).
void probe_lists(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                 const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores,
                 const std::function<void(std::size_t, const ProbedList&, const topk::detail::ScanTask&)>& scan_list);

// pq4 search (flat or partitioned), in pq4.cpp.
void pq4_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores);

// Converts the first count / W * W halves to floats (W = 8 or 16); returns how many it
// converted, leaving the tail to the caller.
std::size_t fp16_decode_avx2(const uint16_t* h, std::size_t count, float* out);
std::size_t fp16_decode_avx512(const uint16_t* h, std::size_t count, float* out);

}  // namespace llmrec::quant::detail
