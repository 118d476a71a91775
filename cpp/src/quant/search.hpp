// Internal: the quantized search plumbing shared by the codec files (not by the kernels,
// which see only kernels.hpp): kernel selection, the probed-list loop and pq4's searches.
#pragma once

#include <functional>

#include "../simd/select.hpp"
#include "../topk/driver.hpp"
#include "kernels.hpp"
#include "llmrec/quant.hpp"

namespace llmrec::quant::detail {

// The pq4 scan kernel (with its name) and reservoir cut for the active SIMD level (pq4.cpp).
const simd::Variant<Pq4Fn>& pq4_active_scan();
Pq4CompactFn pq4_active_compact();

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

// The `probes` best non-empty lists of each query (exact, batch-invariant q . c, best
// first; -1 padded), as nq x probes ids and scores.
void rank_lists(const IndexView& index, const float* queries, std::size_t nq, std::size_t threads,
                int64_t* probe_ids, float* probe_scores);

// pq4 search (flat or partitioned), in pq4.cpp. With sorted_rows false, a row's results
// may come in any order (the valid ones first, then the -1 padding): the exact re-ranking
// reorders its candidates anyway.
void pq4_search(const IndexView& index, const float* queries, std::size_t nq, std::size_t k,
                const topk::Filter& filter, std::size_t threads, int64_t* out_ids, float* out_scores,
                bool sorted_rows = true);

// Unfiltered partitioned pq4 search (pq4_partitions.cpp): each query's probed lists feed
// one integer reservoir; only its k survivors get float scores. Same results as the
// filtered path's heap: codec score descending, smaller id first. Needs slots < 2^32.
void pq4_search_lists(const IndexView& index, const float* queries, const uint8_t* luts, const float* bias,
                      const float* inverse_scale, std::size_t nq, std::size_t k, std::size_t threads,
                      bool sorted_rows, int64_t* out_ids, float* out_scores);

}  // namespace llmrec::quant::detail
