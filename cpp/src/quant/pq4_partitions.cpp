// Unfiltered pq4 search over partitions: each query's probed lists are scanned into one
// integer reservoir of (uint16 table sum, slot), whose floor carries from list to list;
// only the k survivors are turned into float scores and ids. The heap path (probe_lists)
// pushed every hit as a float, which with re-ranking shortlists (k = 160 and lists of a
// few hundred items) cost more than the scan itself.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "../topk/select.hpp"
#include "search.hpp"
#include "llmrec/quant.hpp"
#include "llmrec/thread_pool.hpp"

namespace llmrec::quant::detail {

void pq4_search_lists(const IndexView& index, const float* queries, const uint8_t* luts, const float* bias,
                      const float* inverse_scale, std::size_t nq, std::size_t k, std::size_t threads,
                      bool sorted_rows, int64_t* out_ids, float* out_scores) {
  const std::size_t probes = std::min(index.probes, index.partitions), padded = pq4_padded(index.pq4_m);
  const std::size_t block_bytes = pq4_block_bytes(index.pq4_m);
  std::vector<int64_t> probe_ids(nq * probes);
  std::vector<float> probe_scores(nq * probes);
  rank_lists(index, queries, nq, threads, probe_ids.data(), probe_scores.data());
  const Pq4Fn kernel = pq4_active_scan().kernels;
  const Pq4CompactFn compact = pq4_active_compact();
  // Room for 2k hits between cuts (as the flat scan's reservoirs), at least 64 so that a
  // small k is not cut every few hits.
  const std::size_t capacity = std::max<std::size_t>(2 * k, 64);
  constexpr std::size_t kQueriesPerTask = 8;
  parallel_for((nq + kQueriesPerTask - 1) / kQueriesPerTask, std::max<std::size_t>(1, threads), [&](std::size_t t) {
    std::vector<uint16_t> sums(capacity);
    std::vector<uint32_t> slots(capacity);
    std::vector<topk::detail::Hit> found;
    for (std::size_t q = t * kQueriesPerTask; q < std::min(nq, (t + 1) * kQueriesPerTask); ++q) {
      uint32_t size = 0, floor = 0;
      Pq4Reservoirs reservoir{k, capacity, sums.data(), slots.data(), &size, &floor, bias + q, inverse_scale + q, compact};
      reservoir.slot_ids = index.slot_ids;
      float unused_threshold = -std::numeric_limits<float>::infinity();
      Pq4Job job{};
      job.padded_m = padded;
      job.luts = luts + q * 16 * padded;
      job.bias = bias + q;
      job.inverse_scale = inverse_scale + q;
      job.nq = 1;
      job.thresholds = &unused_threshold;
      job.reservoirs = &reservoir;
      for (std::size_t j = 0; j < probes; ++j) {  // best list first: the floor rises early
        const int64_t p = probe_ids[q * probes + j];
        if (p < 0 || index.list_sizes[p] == 0) continue;
        const std::size_t start = static_cast<std::size_t>(index.list_starts[p]);
        job.blocks = index.pq4_blocks + (start / kPq4Block) * block_bytes;
        job.n_items = static_cast<std::size_t>(index.list_sizes[p]);
        job.n_blocks = pq4_blocks(job.n_items);
        reservoir.slot_base = static_cast<uint32_t>(start);
        kernel(job);
      }
      compact(reservoir, 0);  // no-op unless more than k
      found.clear();
      for (std::size_t j = 0; j < size; ++j)
        found.emplace_back(pq4_score(sums[j], inverse_scale[q], bias[q]), index.slot_ids[slots[j]]);
      // Unsorted rows keep the survivors in reservoir order (at most k of them).
      const std::size_t keep = sorted_rows ? topk::detail::select_best(found, k) : std::min(k, found.size());
      topk::detail::write_row(found.data(), keep, k, out_ids + q * k, out_scores + q * k);
    }
  });
}

}  // namespace llmrec::quant::detail
