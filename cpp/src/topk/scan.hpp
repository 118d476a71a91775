// Internal: the per-ISA scoring kernels behind topk::search and the contract they share.
#pragma once

#include <cstddef>
#include <cstdint>

#include "hit.hpp"

namespace llmrec::topk::detail {

// One scan of a range of items against a block of queries. The kernel computes each
// inner product and reports only those strictly above the query's running threshold;
// `on_hit` decides (filters, heap) and may raise thresholds[query]. Items are visited in
// ascending position order for every query, so a later equal score never beats an
// earlier one: a strict comparison keeps ties ordered by smaller id.
struct ScanJob {
  const float* queries;      // nq x d, row-major
  std::size_t nq;
  std::size_t d;
  const float* items;        // item rows, stride d
  const int64_t* positions;  // when set: scan items positions[begin .. end); else rows begin .. end
  std::size_t begin;
  std::size_t end;
  float* thresholds;         // nq running thresholds, -inf until a query's heap is full
  HitFn on_hit;
  void* context;
  // Room for the kernel's transposed copy of the queries: at least
  // scratch_floats(nq, d) floats, 64-byte aligned. Owned by the caller so that kernels
  // compiled for one ISA never instantiate library code shared with other files.
  float* scratch;
};

// Scratch a ScanJob over nq queries of dimension d must provide.
inline std::size_t scratch_floats(std::size_t nq, std::size_t d) { return (nq + 32) * d + 16; }

using ScanFn = void (*)(const ScanJob&);

void scan_scalar(const ScanJob& job);
void scan_avx2(const ScanJob& job);
void scan_avx512(const ScanJob& job);

// The kernel for the active SIMD level.
ScanFn active_scan();

// One scan of items begin .. end, packed in groups of kGroup (topk::PackedItems),
// against a block of queries, with ScanJob's reporting contract. Every score is one
// multiply-add chain over the dimensions in order, whatever nq and the kernel's tiling
// (see topk::search_packed), and items are visited in ascending id order per query.
struct PackedScanJob {
  static constexpr std::size_t kGroup = 16;  // = PackedItems::kGroup (ISA files include no <memory>)
  const float* queries;  // nq x d, row-major
  std::size_t nq;
  std::size_t d;
  const float* packed;   // the packed items ([group][d][kGroup]), 64-byte aligned
  std::size_t begin;     // a multiple of kGroup
  std::size_t end;
  float* thresholds;
  HitFn on_hit;
  void* context;
};

using PackedScanFn = void (*)(const PackedScanJob&);

void scan_packed_scalar(const PackedScanJob& job);
void scan_packed_avx2(const PackedScanJob& job);
void scan_packed_avx512(const PackedScanJob& job);

// The packed-items kernel for the active SIMD level.
PackedScanFn active_packed_scan();

}  // namespace llmrec::topk::detail
