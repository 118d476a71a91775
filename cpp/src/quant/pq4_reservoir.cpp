// The pq4 reservoirs' cut (declared in kernels.hpp): selection and stable compaction of
// (uint16 table sum, slot) entries, on integers, with ties at the cut decided on the
// float scores so that the result is the float contract's (score, then smaller id).
#include <algorithm>
#include <cstdint>
#include <functional>
#include <limits>
#include <vector>

#include "../common/scratch.hpp"
#include "kernels.hpp"

namespace llmrec::quant::detail {
namespace {

// The k-th largest (1 <= k <= n) of a[0 .. n), a left unchanged; `scratch` holds 4n
// values. Quickselect that partitions into two scratch buffers, writing every value to
// both and advancing each by its comparison: no branch on the data and no store that a
// following load must wait for (in-place swaps made each step wait on the last).
uint16_t kth_largest(const uint16_t* a, std::size_t n, std::size_t k, uint16_t* scratch) {
  uint16_t* spare = scratch + 2 * n;  // the other half of the ping-pong
  for (int rounds = 0; n > 16; ++rounds) {
    if (rounds == 64) {  // pathological pivots: finish with the library's selection
      std::vector<uint16_t> rest(a, a + n);
      std::nth_element(rest.begin(), rest.begin() + (k - 1), rest.end(), std::greater<uint16_t>());
      return rest[k - 1];
    }
    const uint16_t x = a[0], y = a[n / 2], z = a[n - 1];
    const uint16_t pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));
    uint16_t* above = scratch;
    uint16_t* below = scratch + n;
    std::size_t n_above = 0, n_below = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const uint16_t v = a[i];
      above[n_above] = v;
      below[n_below] = v;
      n_above += v > pivot;
      n_below += v < pivot;
    }
    if (k <= n_above) {
      a = above;
      n = n_above;
    } else if (k <= n - n_below) {
      return pivot;
    } else {
      k -= n - n_below;
      a = below;
      n = n_below;
    }
    std::swap(scratch, spare);
  }
  uint16_t last[16];
  std::copy(a, a + n, last);
  std::sort(last, last + n, std::greater<uint16_t>());
  return last[k - 1];
}

}  // namespace

void pq4_compact(Pq4Reservoirs& r, std::size_t query) {
  const std::size_t size = r.sizes[query], k = r.k;
  const uint16_t* sums = r.sums + query * r.capacity;
  if (size <= k) return;
  Scratch<uint16_t, 4 * 2048> scratch(4 * size);  // on the stack for the usual shortlists
  pq4_compact_at(r, query, pq4_cut(r, query, kth_largest(sums, size, k, scratch.data())));
}

void pq4_compact_at(Pq4Reservoirs& r, std::size_t query, Pq4Cut cut) {
  const std::size_t size = r.sizes[query], k = r.k;
  uint16_t* sums = r.sums + query * r.capacity;
  uint32_t* slots = r.slots + query * r.capacity;
  const uint32_t above = cut.above, tie = cut.tie;
  std::size_t n_above = 0;
  for (std::size_t j = 0; j < size; ++j) n_above += sums[j] >= above;
  std::size_t ties = k - n_above;  // entries scoring t that still fit
  // With ids, the tied entries kept are those with the `ties` smallest ids (ids are
  // unique): every tied entry with an id up to id_limit.
  int64_t id_limit = std::numeric_limits<int64_t>::max();
  if (r.slot_ids) {
    // Cuts through tied sums are common (uint16 sums collide): no allocation for the usual sizes.
    Scratch<int64_t, 1024> scratch(size);
    int64_t* tied_ids = scratch.data();
    std::size_t n_tied = 0;
    for (std::size_t j = 0; j < size; ++j)
      if (sums[j] < above && sums[j] >= tie) tied_ids[n_tied++] = r.slot_ids[slots[j]];
    if (n_tied > ties) {
      std::nth_element(tied_ids, tied_ids + (ties - 1), tied_ids + n_tied);
      id_limit = tied_ids[ties - 1];
    }
  }
  std::size_t out = 0;
  for (std::size_t j = 0; j < size; ++j) {
    const uint16_t s = sums[j];
    const uint32_t slot = slots[j];
    const bool tied = s < above && s >= tie;
    const bool take_tie = r.slot_ids ? tied && r.slot_ids[slot] <= id_limit : tied && ties > 0;
    ties -= take_tie && !r.slot_ids;
    sums[out] = s;
    slots[out] = slot;
    out += (s >= above) | take_tie;
  }
  r.sizes[query] = static_cast<uint32_t>(out);  // == k
  r.floors[query] = r.slot_ids ? tie : above;
}

}  // namespace llmrec::quant::detail
