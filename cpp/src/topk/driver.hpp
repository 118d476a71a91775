// Internal: the part of top-k search that does not depend on how scores are computed.
// It plans the candidates (all items, a gathered allow-list, or a mask), cuts the work
// into (query block, item range) tasks, keeps one bounded heap per query and task with
// the filters applied before a heap is touched, merges the heaps and writes padded,
// sorted rows. A scorer (the exact float kernels, or a quantized codec) plugs in as a
// callback that scans one task and reports hits above the running thresholds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>

#include "hit.hpp"
#include "llmrec/topk.hpp"

namespace llmrec::topk::detail {

// One unit of work for a scorer.
struct ScanTask {
  std::size_t first_query;   // global index of the task's query 0
  std::size_t nq;            // queries in the task
  const int64_t* positions;  // when set: scan items positions[begin .. end); else items begin .. end
  std::size_t begin;
  std::size_t end;
  float* thresholds;         // nq running thresholds, -inf until a query's heap is full
  HitFn on_hit;              // filters and heap; call only for score > thresholds[query]
  void* context;
};

struct DriveOptions {
  std::size_t n_items = 0;             // items ids are in [0, n_items)
  std::size_t nq = 0;
  std::size_t k = 0;
  std::size_t num_threads = 1;
  std::size_t query_bytes = 0;         // bytes of one query as the scorer reads it
  std::size_t min_items_per_split = 16384;  // below this, item ranges are not split
  std::size_t split_align = 1;         // item-range boundaries are multiples of this
  bool gather_sparse_allow = true;     // scan a sparse allow-list as positions
};

// The options every search sets; the rest keep their defaults.
inline DriveOptions drive_options(std::size_t n_items, std::size_t nq, std::size_t k, std::size_t num_threads,
                                  std::size_t query_bytes) {
  DriveOptions o;
  o.n_items = n_items;
  o.nq = nq;
  o.k = k;
  o.num_threads = num_threads;
  o.query_bytes = query_bytes;
  return o;
}

// Runs `scan` over every task and writes nq x k ids and scores (sorted, ties by smaller
// id, padded with -1 / -inf). Within one task the scorer must visit each query's items
// in ascending id order (a strict threshold test then keeps smaller ids on ties), or
// report equal scores itself. Exclusions and a mask-form allow-list are checked in
// on_hit; a gathered allow-list arrives as task positions.
void drive(const Filter& filter, const DriveOptions& options,
           const std::function<void(const ScanTask&)>& scan, int64_t* out_ids,
           float* out_scores);

// Per-query candidate lists: runs `scan_query(q, sink)` for each query on the pool,
// where the scorer reports hits through sink.on_hit(sink.context, 0, item, score) with
// sink.thresholds[0] as the running threshold. Used where each query reads different
// items (partitions), so item ranges are not shared between queries. Items may be
// reported in any order; equal scores are ordered by id.
void drive_per_query(const Filter& filter, const DriveOptions& options,
                     const std::function<void(std::size_t query, const ScanTask& sink)>& scan_query,
                     int64_t* out_ids, float* out_scores);

}  // namespace llmrec::topk::detail
