// Internal: the per-ISA kernels behind quantized search and the contract they share.
#pragma once

#include <cstddef>
#include <cstdint>

namespace llmrec::quant::detail {

using HitFn = void (*)(void* context, std::size_t query, int64_t item, float score);

// Scores blocks of sq8 codes against quantized queries. For query q and item x the
// kernel computes dot = sum_i s_i(x) * t_i(q) exactly in int32 (s = code byte ^ 0x80 as
// signed, t = qcodes as signed) and score = qscale[q] * dot + qoffset[q]; it reports
// (q, item, score) through on_hit only when score > thresholds[q], visiting each
// query's items in ascending slot order.
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
};

using Sq8Fn = void (*)(const Sq8Job&);
void sq8_scan_scalar(const Sq8Job& job);
void sq8_scan_avx2(const Sq8Job& job);
void sq8_scan_avx512vnni(const Sq8Job& job);

// Converts the first count / W * W halves to floats (W = 8 or 16); returns how many it
// converted, leaving the tail to the caller.
std::size_t fp16_decode_avx2(const uint16_t* h, std::size_t count, float* out);
std::size_t fp16_decode_avx512(const uint16_t* h, std::size_t count, float* out);

}  // namespace llmrec::quant::detail
